"""One unit for throughput wherever a person reads it: TFLOPS.

GPU figures are hundreds of TFLOPS; Triton-interpreter figures on a CPU are
millionths of one. Both are printed in TFLOPS with four significant digits
(`2.134e-06`, never `0.0`), and interpreter figures always carry the words
"Triton interpreter" so they are never read as GPU speed.
"""
from __future__ import annotations

import math

UNIT = "TFLOPS"
INTERPRETER_NOTE = "Triton interpreter on CPU: not GPU speed"


def tflops(x: float | None, interpreter: bool = False, missing: str = "-") -> str:
    """A TFLOPS figure with 4 significant digits; tiny interpreter figures in
    scientific notation rather than rounded to zero."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return missing
    if x == 0:
        return "0"
    if interpreter or abs(x) < 0.01:
        return f"{x:.4g}"
    return f"{x:.1f}" if abs(x) >= 100 else f"{x:.4g}"


def unit_label(interpreter: bool) -> str:
    """'TFLOPS', or 'TFLOPS (Triton interpreter on CPU: not GPU speed)'."""
    return f"{UNIT} ({INTERPRETER_NOTE})" if interpreter else UNIT
