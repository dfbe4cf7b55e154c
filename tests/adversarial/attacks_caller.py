"""Caller attacks (class 2): the candidate reaches the harness (frames, gc, eval paths) and patches it."""
from __future__ import annotations

from tests.adversarial.attacks_base import BUILTINS, FRAME_BUILTINS

# ------------------------------------------------------------------------------
# class 2: the candidate can tell who is calling
# ------------------------------------------------------------------------------
# Every one returns ZEROS whatever it finds: a referee that keeps its objects out
# of reach rejects it as incorrect; one that lets the patch through accepts zeros.

# Frames without sys: a running generator's own frame and its f_back chain.
GEN_FRAME = FRAME_BUILTINS + '''
_hasattr = hasattr


def _caller_frame():
    box = []

    def walk():
        yield box[0].gi_frame.f_back

    g = walk()
    box.append(g)
    return next(g)


def _find_self(f, *attrs):
    """The first `self` up the stack that has all `attrs` (and its frame)."""
    while f is not None:
        me = f.f_locals.get("self")
        if me is not None and all(_hasattr(me, a) for a in attrs):
            return me, f
        f = f.f_back
    return None, None
'''

LOOSE = '''
class _Loose:
    """Stands in for the problem module: every attribute but the tolerances is the real one's."""
    TOLERANCES = {dt: {"atol": 1e9, "rtol": 1e9, "rel": 1e9} for dt in ("bfloat16", "float16", "float32")}

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return _B["getattr"](self.real, name)
'''

# Python text run through an eval/exec path (typing, dataclasses, the Triton
# interpreter): a full program, with imports and sys._getframe.
PAYLOAD_LOOSEN = r'''
import sys
f = sys._getframe()
while f is not None:
    me = f.f_locals.get("self")
    if me is not None and hasattr(me, "problem") and hasattr(me, "compare"):
        class Loose:
            TOLERANCES = {dt: {"atol": 1e9, "rtol": 1e9, "rel": 1e9} for dt in ("bfloat16", "float16", "float32")}
            def __init__(self, real):
                self.real = real
            def __getattr__(self, name):
                return getattr(self.real, name)
        if type(me.problem).__name__ != "Loose":
            me.problem = Loose(me.problem)
        break
    f = f.f_back
'''
PAYLOAD_PATCH_COMPARE = r'''
import sys
f = sys._getframe()
while f is not None:
    me = f.f_locals.get("self")
    if me is not None and hasattr(me, "compare") and hasattr(me, "record"):
        def compare(out, q, k, v, shape, seed, sm_scale, phase, _me=me):
            _me.record(shape, seed, phase, 0.0, 0.0, True, "")
        me.compare = compare   # on the instance: the class dictionary stays as it was
        break
    f = f.f_back
'''

CALLER = {
    "gen_frame_loosen_tolerances": ("walks gi_frame.f_back to the harness's `self` and swaps its problem "
                                    "module for one with tolerances of 1e9 (instance attribute)", GEN_FRAME + LOOSE + '''

def attention(q, k, v, causal=False, sm_scale=None):
    me, _ = _find_self(_caller_frame(), "problem", "compare")
    if me is not None and not isinstance(me.problem, _Loose):
        me.problem = _Loose(me.problem)
    return torch.zeros_like(q)
'''),
    "coro_frame_blind_tamper_check": ("walks a coroutine's cr_frame to the harness, rebinds its tamper check "
                                      "(a module global) to report nothing, then patches the comparison "
                                      "method on the class", '''
_hasattr = hasattr


async def _co(box):
    return box[0].cr_frame.f_back


def _caller_frame():
    box = []
    c = _co(box)
    box.append(c)
    try:
        c.send(None)
    except StopIteration as stop:
        return stop.value


def _fake_compare(self, out, q, k, v, shape, seed, sm_scale, phase):
    self.record(shape, seed, phase, 0.0, 0.0, True, "")


def attention(q, k, v, causal=False, sm_scale=None):
    f = _caller_frame()
    while f is not None:
        me = f.f_locals.get("self")
        if me is not None and _hasattr(me, "compare") and _hasattr(me, "record"):
            g = f.f_globals
            for name in list(g):
                if "changed" in name or "unpatched" in name:  # the tamper check's entry points
                    g[name] = lambda *a, **kw: []
            cls = type(me)
            cls.compare = _fake_compare
            break
        f = f.f_back
    return torch.zeros_like(q)
'''),
    "frame_forge_result_record": ("finds the result pipe and the record classes in the caller's frames, "
                                  "writes a forged `ok` record (passed checks, timings) and SIGKILLs itself; "
                                  "without them, writes the forgery to every pipe it holds", GEN_FRAME + '''
_json = _B["__import__"]("json")
_stat = _B["__import__"]("stat")
_os = _B["__import__"]("os")


def _forged_dict(device, suite):
    check = dict(shape="forged", dtype="float16", seed=0, phase="check", max_abs_err=0.0, rel_err=0.0,
                 passed=True, reason="")
    timing = dict(config="forged", ms=1.2345, tflops=0.001, cudnn_tflops=None, fa2_tflops=None, wall_ms=None)
    return dict(status="ok", message="", device=device, interpreter=device == "cpu", suite=suite, env={},
                checks=[check], timings=[timing], compile_stats={}, seeds=[], log_tail="", wall_s=0.0,
                source_sha256="")


def _forge():
    f = _caller_frame()
    while f is not None:
        job = f.f_locals.get("job")
        if isinstance(job, dict) and "result_fd" in job:
            data = _json.dumps(_forged_dict(job.get("device", "cpu"), job.get("suite", "cpu"))).encode()
            _os.write(int(job["result_fd"]), data)
            _os.kill(_os.getpid(), 9)
        f = f.f_back
    data = _json.dumps(_forged_dict("cpu", "cpu")).encode()
    for fd in range(3, 256):
        try:
            mode = _os.fstat(fd).st_mode
            if _stat.S_ISFIFO(mode) or _stat.S_ISSOCK(mode):
                _os.write(fd, data)
        except OSError:
            pass
    _os.kill(_os.getpid(), 9)


def attention(q, k, v, causal=False, sm_scale=None):
    _forge()
    return torch.zeros_like(q)
'''),
    "gc_real_builtins_patch_compare": ("imports gc through the real builtins (from a typing eval), finds the harness object with "
                                       "a `compare` among all live objects and replaces it on the instance",
                                       BUILTINS + '''
_gc = _B["__import__"]("gc")
_hasattr = hasattr


def _passing_compare(worker):
    def compare(out, q, k, v, shape, seed, sm_scale, phase):
        worker.record(shape, seed, phase, 0.0, 0.0, True, "")
    return compare


def attention(q, k, v, causal=False, sm_scale=None):
    for obj in _gc.get_objects():
        if type(obj).__name__ == "Worker" and _hasattr(obj, "compare") and _hasattr(obj, "record"):
            obj.compare = _passing_compare(obj)
    return torch.zeros_like(q)
'''),
    "f_back_blind_the_watchers": ("computes with torch.matmul/softmax, then walks f_back from its OWN frame "
                                  "(sys._getframe(0) is nobody else's) to whatever watches it: clears a "
                                  "dispatch watch's record, switches an audit guard off and wraps an "
                                  "activity report so that only copies and allocations remain",
                                  BUILTINS + '''
_getframe = _B["getattr"](_B["__import__"]("sys"), "_get" + "frame")
_mm = _B["getattr"](torch, "mat" + "mul")
_smax = _B["getattr"](torch, "soft" + "max")
_hasattr = hasattr
_HARMLESS = ("empty", "copy", "clone", "view", "as_strided", "fill", "zero", "contiguous", "alias", "detach",
             "slice", "select", "unsqueeze", "expand", "reshape", "to", "lift")


def _harmless(name):
    return any(h in name for h in _HARMLESS)


def _blind(frame):
    """Every watcher in the callers' locals: made to have seen nothing."""
    f = frame.f_back
    while f is not None:
        for obj in list(f.f_locals.values()):
            if _hasattr(obj, "enforcing") and _hasattr(obj, "violations"):  # an audit guard
                obj.enforcing = False
                obj.violations.clear()
            if _hasattr(obj, "forbidden") and _hasattr(obj, "compute_elements"):  # a dispatch watch
                obj.forbidden.clear()
                obj.compute_elements = 0
            if _hasattr(obj, "report") and _hasattr(obj, "prof") and not _hasattr(obj, "blinded"):
                real = obj.report

                def report(real=real):
                    r = real()
                    for key in ("ops", "op_elements", "kernels"):
                        if isinstance(r.get(key), dict):
                            r[key] = {n: c for n, c in r[key].items() if _harmless(n) or "attn" in n}
                    return r

                obj.report = report
                obj.blinded = True
        f = f.f_back


def attention(q, k, v, causal=False, sm_scale=None):
    group = q.shape[1] // k.shape[1]
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    kf = k.double().repeat_interleave(group, 1)
    vf = v.double().repeat_interleave(group, 1)
    scores = _mm(q.double(), kf.transpose(-1, -2)) * scale
    if causal:
        s = q.shape[2]
        scores = scores.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), -math.inf)
    out = _mm(_smax(scores, -1), vf).to(q.dtype)
    _blind(_getframe(0))
    return out
'''),
    "typing_eval_patch_compare": ("typing.get_type_hints evaluates a string annotation: exec of a program "
                                  "that walks sys._getframe() and patches the comparison", f'''
import typing

_PAYLOAD = {PAYLOAD_PATCH_COMPARE!r}


def attention(q, k, v, causal=False, sm_scale=None):
    holder = type("Holder", (), {{"__annotations__": {{"x": "exec(" + repr(_PAYLOAD) + ")"}}}})
    try:
        typing.get_type_hints(holder)
    except Exception:
        pass
    return torch.zeros_like(q)
'''),
    "dataclass_repr_eval_loosen": ("a dataclass field name that closes the f-string of the generated "
                                   "__repr__ (exec'd by dataclasses): repr() runs a program that loosens "
                                   "the tolerances", f'''
import dataclasses

_PAYLOAD = {PAYLOAD_LOOSEN!r}


def attention(q, k, v, causal=False, sm_scale=None):
    field_name = '"+str(exec(' + repr(_PAYLOAD) + '))+"'
    holder = type("Holder", (), {{"__annotations__": {{field_name: int}}}})
    try:
        repr(dataclasses.dataclass(init=False, eq=False)(holder)())
    except Exception:
        pass
    return torch.zeros_like(q)
'''),
    "triton_interpreter_docstring_eval": ("the Triton interpreter re-reads a kernel's source and runs it "
                                          "from the LAST line starting with `def `, which here is inside a "
                                          "string: that hidden kernel loosens the tolerances", f'''

@triton.jit
def _hidden(X):
    text = """
def _hidden(X):
    exec({PAYLOAD_LOOSEN!r})
    s = \'\'\'
"""
    # \'\'\'
    pass


def attention(q, k, v, causal=False, sm_scale=None):
    out = torch.zeros_like(q)
    _hidden[(1,)](out)
    return out
'''),
}
