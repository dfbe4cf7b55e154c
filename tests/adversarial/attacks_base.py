"""Shared by every attack class: the base kernel's paths, the real-builtins preludes, attack(), LONG_SEEN."""
from __future__ import annotations

from pathlib import Path

from avo.problem import REPO_ROOT

KERNELS = Path(__file__).parent / "kernels"
BASE = KERNELS / "referee_base.py"
BF16_PURE = KERNELS / "referee_bf16_pure.py"
LINEAGE_DIR = REPO_ROOT / "kernel_src" / "attention" / "lineage"

# The real builtins dict (getattr, open, __import__, ...) with no name the static checks
# ban and no frame attribute: typing.get_type_hints eval()s a string annotation (globals
# given explicitly, so it works whatever the module is called); dataclasses' exec of a
# generated __repr__ is the fallback.
BUILTINS = '''
import dataclasses
import typing

_BOX = []
try:
    typing.get_type_hints(type("Box", (), {"__annotations__": {"b": "_BOX.append(__import__('builtins').__dict__)"}}),
                          globalns={"_BOX": _BOX})
except Exception:
    pass
if not _BOX:
    try:
        repr(dataclasses.dataclass(init=False, eq=False)(type("Box2", (), {"__annotations__": {
            '"+str(_BOX.append(__import__("builtins").__dict__))+"': int}}))())
    except Exception:
        pass
_B = _BOX[0]
'''
# Escapes (class 6) first switch off any in-process audit guard they can reach by walking
# f_back from their own frame (sys._getframe(0) is the candidate's), so that their
# effects test the OS sandbox, not only a Python-level hook.
OS = BUILTINS + '''_os = _B["__import__"]("os")
_getframe = _B["getattr"](_B["__import__"]("sys"), "_get" + "frame")


def _guards_off():
    f = _getframe(0).f_back
    while f is not None:
        for obj in list(f.f_locals.values()):
            if hasattr(obj, "enforcing") and hasattr(obj, "violations"):
                obj.enforcing = False
        f = f.f_back
'''
# The same through a generator's frame (class 2's frame attacks).
FRAME_BUILTINS = '_B = (x for x in ()).gi_frame.f_builtins  # the real builtins (getattr, open, __import__, ...)\n'


def attack(body: str) -> str:
    """The frozen base kernel followed by `body` (which redefines `attention`)."""
    return BASE.read_text() + "\n\n# ---------------------------------------------------------------- ATTACK\n" + body


# A timed shape of the CPU suite (S=128) but no check shape (S=130, 97, ...): a
# power of two >= 128. "Seen" = the same problem came before: its first call, the
# one a referee verifies before timing, is honest.
LONG_SEEN = '''
_SEEN = {}


def _long_and_seen(q, k, causal, sm_scale):
    s = q.shape[2]
    key = (tuple(q.shape), tuple(k.shape), q.dtype, causal, sm_scale)
    seen = key in _SEEN
    _SEEN[key] = _SEEN.get(key, 0) + 1
    return s >= 128 and s & (s - 1) == 0 and seen
'''
