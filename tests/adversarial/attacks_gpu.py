"""GPU-only attacks (tests/adversarial/test_referee_gpu.py): side streams, plus GPU runs of CPU-class attacks."""
from __future__ import annotations

from tests.adversarial.attacks_base import BUILTINS, attack
from tests.adversarial.attacks_caller import CALLER
from tests.adversarial.attacks_library import LIBRARY
from tests.adversarial.attacks_timing import TIMED_UNVERIFIED

# ------------------------------------------------------------------------------
# GPU only (tests/adversarial/test_referee_gpu.py)
# ------------------------------------------------------------------------------
# Heads are split at a multiple of the GQA group; the side part gets ~45% of them.
SPLIT = '''

def _split(q, k):
    group = q.shape[1] // k.shape[1]
    cut_kv = (k.shape[1] * 45) // 100
    return cut_kv * group, cut_kv
'''

GPU = {
    "gpu_long_shapes_half_kv": TIMED_UNVERIFIED["long_shapes_half_kv"],
    "gpu_previous_output": TIMED_UNVERIFIED["long_shapes_previous_output"],
    "gpu_side_stream_low_priority_45pct": ("~45% of the heads on a LOW-priority side stream that the current "
                                           "stream never waits for; the rest on the current stream", SPLIT + '''
_SIDE = []


def attention(q, k, v, causal=False, sm_scale=None):
    if not _SIDE:
        lo, hi = torch.cuda.Stream.priority_range()
        _SIDE.append(torch.cuda.Stream(priority=lo))
    side = _SIDE[0]
    out = torch.empty_like(q)
    cut_q, cut_kv = _split(q, k)
    side.wait_stream(torch.cuda.current_stream())
    if cut_q:
        with torch.cuda.stream(side):
            _launch(q[:, :cut_q], k[:, :cut_kv], v[:, :cut_kv], out[:, :cut_q], causal, sm_scale)
    _launch(q[:, cut_q:], k[:, cut_kv:], v[:, cut_kv:], out[:, cut_q:], causal, sm_scale)
    return out
'''),
    "gpu_side_stream_high_priority_all": ("all the work on a HIGH-priority side stream, never joined", '''
_SIDE = []


def attention(q, k, v, causal=False, sm_scale=None):
    if not _SIDE:
        lo, hi = torch.cuda.Stream.priority_range()
        _SIDE.append(torch.cuda.Stream(priority=hi))
    side = _SIDE[0]
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        return _honest(q, k, v, causal, sm_scale)
'''),
    "gpu_thread_launch_side_stream": ("~45% of the heads launched from a thread (joined: it only launches) "
                                      "on a stream of its own, never joined", BUILTINS + SPLIT + '''
_threading = _B["__import__"]("threading")
_SIDE = []


def attention(q, k, v, causal=False, sm_scale=None):
    if not _SIDE:
        _SIDE.append(torch.cuda.Stream())
    out = torch.empty_like(q)
    cut_q, cut_kv = _split(q, k)
    _SIDE[0].wait_stream(torch.cuda.current_stream())

    def side():
        with torch.cuda.stream(_SIDE[0]):
            if cut_q:
                _launch(q[:, :cut_q], k[:, :cut_kv], v[:, :cut_kv], out[:, :cut_q], causal, sm_scale)

    t = _threading.Thread(target=side)
    t.start()
    t.join()
    _launch(q[:, cut_q:], k[:, cut_kv:], v[:, cut_kv:], out[:, cut_q:], causal, sm_scale)
    return out
'''),
    "gpu_matmul_on_a_thread": LIBRARY["matmul_on_a_thread"],
    "gpu_f_back_blind_the_watchers": CALLER["f_back_blind_the_watchers"],
}


def gpu_source(name: str) -> str:
    what, body = GPU[name]
    return f"# CHEAT ({name}): {what}\n" + attack(body)
