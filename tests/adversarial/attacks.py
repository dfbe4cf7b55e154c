"""Attack kernels for the classes of issue 12 (the referee must not be fooled).

Written by the red team of 2026-11-26 as acceptance tests for the new referee
(judge process + sandboxed runner); the held-back set of issue 12 was never seen.
Every attack passes the static checks of 2026-11-26 (checked when they were written):
what those checks ban is reached through paths they do not see, e.g. the real builtins

    typing.get_type_hints(type("Box", (), {"__annotations__": {"b": "<any expression>"}}))
    _B = (x for x in ()).gi_frame.f_builtins      # class 2's frame attacks
    _B["__import__"]("os"), _B["getattr"], _B["open"], ...

so these are attacks a search could find, not run-time-only exercises. The tests run
them with static_checks=False all the same: the run-time referee must hold on its own.

Each attack is the frozen base kernel (kernels/referee_base.py: the seed of
2026-11-26 with `_launch(..., out, ...)` and a `kv_div` knob for "less work")
followed by a body that redefines `attention`. Attacks whose effect must be
checked outside the evaluation (files, secrets, later evaluations) take a
per-run marker and write only under paths made from it.

This module is the index: the attacks live in one module per class, and everything is
re-exported here. attacks_base (shared preludes, attack()), attacks_timing (classes 1, 7,
4), attacks_library (class 5), attacks_liars (class 3), attacks_caller (class 2),
attacks_escapes (class 6), attacks_gpu (GPU only); the honest controls and source() below.
"""
from __future__ import annotations

from tests.adversarial.attacks_base import (BASE, BF16_PURE, BUILTINS, FRAME_BUILTINS, KERNELS, LINEAGE_DIR,
                                            LONG_SEEN, OS, attack)
from tests.adversarial.attacks_caller import CALLER, GEN_FRAME, LOOSE, PAYLOAD_LOOSEN, PAYLOAD_PATCH_COMPARE
from tests.adversarial.attacks_escapes import (environ_thief, file_dropper, import_path_poisoner, poison_texts,
                                               state_keeper)
from tests.adversarial.attacks_gpu import GPU, SPLIT, gpu_source
from tests.adversarial.attacks_library import LIBRARY
from tests.adversarial.attacks_liars import LIARS
from tests.adversarial.attacks_timing import CPU_TIMING, OUTSIDE_WINDOW, TIMED_UNVERIFIED

__all__ = ["BASE", "BF16_PURE", "BUILTINS", "CALLER", "CPU_TIMING", "FRAME_BUILTINS", "GEN_FRAME", "GPU", "HONEST",
           "KERNELS", "LIARS", "LIBRARY", "LINEAGE_DIR", "LONG_SEEN", "LOOSE", "OS", "OUTSIDE_WINDOW", "PAYLOAD_LOOSEN",
           "PAYLOAD_PATCH_COMPARE", "SPLIT", "TIMED_UNVERIFIED", "attack", "environ_thief", "file_dropper",
           "gpu_source", "import_path_poisoner", "poison_texts", "source", "state_keeper"]

# ------------------------------------------------------------------------------
# honest controls (false positives are failures too)
# ------------------------------------------------------------------------------
HONEST = {
    "honest_per_batch_views": ("honest: one launch per batch entry, writing into views of one output "
                               "(several launches, strided views, an explicit torch.empty)", '''

def attention(q, k, v, causal=False, sm_scale=None):
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    for b in range(q.shape[0]):
        _launch(q[b:b + 1], k[b:b + 1], v[b:b + 1], out[b:b + 1], causal, sm_scale)
    return out
'''),
}


def source(name: str) -> str:
    """The source of a named attack or honest kernel of the tables above."""
    for table in (TIMED_UNVERIFIED, CPU_TIMING, OUTSIDE_WINDOW, LIBRARY, LIARS, CALLER, HONEST):
        if name in table:
            what, body = table[name]
            kind = "HONEST" if name.startswith("honest") else "CHEAT"
            return f"# {kind} ({name}): {what}\n" + attack(body)
    raise KeyError(name)
