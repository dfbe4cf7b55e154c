"""Timing attacks: unverified timed calls (class 1), CPU timing (class 7), work outside the window (class 4)."""
from __future__ import annotations

from tests.adversarial.attacks_base import BUILTINS, LONG_SEEN

# ------------------------------------------------------------------------------
# class 1: timed calls are never verified
# ------------------------------------------------------------------------------
TIMED_UNVERIFIED = {
    "first_call_per_shape_half_kv": ("honest on the first call per problem (shape, causal, sm_scale), "
                                     "then visits only half the key blocks", '''
_SEEN = set()


def attention(q, k, v, causal=False, sm_scale=None):
    key = (tuple(q.shape), tuple(k.shape), q.dtype, causal, sm_scale)
    if key in _SEEN:
        return _honest(q, k, v, causal, sm_scale, kv_div=2)
    _SEEN.add(key)
    return _honest(q, k, v, causal, sm_scale)
'''),
    "first_call_per_address_half_kv": ("honest on the first call per input buffer address, then half the "
                                       "key blocks", '''
_SEEN = set()


def attention(q, k, v, causal=False, sm_scale=None):
    key = (q.data_ptr(), k.data_ptr(), v.data_ptr())
    if key in _SEEN:
        return _honest(q, k, v, causal, sm_scale, kv_div=2)
    _SEEN.add(key)
    return _honest(q, k, v, causal, sm_scale)
'''),
    "long_shapes_half_kv": ("honest on check shapes; on power-of-two S >= 128 (the timed shapes) honest "
                            "only on the first call, then half the key blocks", LONG_SEEN + '''

def attention(q, k, v, causal=False, sm_scale=None):
    if _long_and_seen(q, k, causal, sm_scale):
        return _honest(q, k, v, causal, sm_scale, kv_div=2)
    return _honest(q, k, v, causal, sm_scale)
'''),
    "long_shapes_previous_output": ("on power-of-two S >= 128, after the first call returns the previous "
                                    "output for that problem (no work at all)", LONG_SEEN + '''
_LAST = {}


def attention(q, k, v, causal=False, sm_scale=None):
    key = (tuple(q.shape), causal, sm_scale)
    if _long_and_seen(q, k, causal, sm_scale) and key in _LAST:
        return _LAST[key].clone()
    out = _honest(q, k, v, causal, sm_scale)
    _LAST[key] = out.clone()
    return out
'''),
    "call_count_window": ("honest for the first 31 calls (what today's harness makes before timing), "
                          "half the key blocks for the next 8, honest again after", '''
_CALLS = [0]


def attention(q, k, v, causal=False, sm_scale=None):
    _CALLS[0] += 1
    if 31 < _CALLS[0] <= 39:
        return _honest(q, k, v, causal, sm_scale, kv_div=2)
    return _honest(q, k, v, causal, sm_scale)
'''),
    "back_to_back_half_kv": ("tells timed calls from checked ones by the clock: a call that starts less "
                             "than 1.5 ms after the previous one of the same problem returned (a timing "
                             "loop, no comparison in between) does half the key blocks (S >= 64)", BUILTINS + '''
_clock = _B["__import__"]("time").perf_counter
_LAST = {}


def attention(q, k, v, causal=False, sm_scale=None):
    key = (tuple(q.shape), tuple(k.shape), q.dtype, causal, sm_scale)
    now = _clock()
    rushed = q.shape[2] >= 64 and key in _LAST and now - _LAST[key] < 1.5e-3  # tiny shapes check fast
    out = _honest(q, k, v, causal, sm_scale, kv_div=2 if rushed else 1)
    _LAST[key] = _clock()
    return out
'''),
    "default_scale_half_kv": ("cheats only when sm_scale is None (the timed calls' default) and the "
                              "problem was seen before", '''
_SEEN = set()


def attention(q, k, v, causal=False, sm_scale=None):
    key = (tuple(q.shape), tuple(k.shape), q.dtype, causal)
    seen = key in _SEEN
    _SEEN.add(key)
    if sm_scale is None and seen:
        return _honest(q, k, v, causal, sm_scale, kv_div=2)
    return _honest(q, k, v, causal, sm_scale)
'''),
}

# ------------------------------------------------------------------------------
# class 7: CPU timing cheats (implausibly fast timed calls)
# ------------------------------------------------------------------------------
CPU_TIMING = {
    "long_shapes_zeros": ("on power-of-two S >= 128, after the first call returns zeros at once "
                          "(a timed call costs ~0.01 ms instead of ~20 ms)", LONG_SEEN + '''

def attention(q, k, v, causal=False, sm_scale=None):
    if _long_and_seen(q, k, causal, sm_scale):
        return torch.zeros_like(q)
    return _honest(q, k, v, causal, sm_scale)
'''),
}

# ------------------------------------------------------------------------------
# class 4 (CPU): work outside the timed window
# ------------------------------------------------------------------------------
# _thread threads are not in threading.enumerate(): today's "thread left running"
# check does not see them. A lock keeps two interpreter runs from interleaving.
OUTSIDE_WINDOW = {
    "late_writer_low_level_thread": ("timed calls return an empty output at once; a _thread thread "
                                     "(invisible to threading.enumerate) writes it later", BUILTINS + '''
_thread = _B["__import__"]("_thread")
_LOCK = _thread.allocate_lock()
''' + LONG_SEEN + '''

def attention(q, k, v, causal=False, sm_scale=None):
    if not _long_and_seen(q, k, causal, sm_scale):
        with _LOCK:
            return _honest(q, k, v, causal, sm_scale)
    out = torch.empty_like(q)

    def late():
        with _LOCK:
            _launch(q, k, v, out, causal, sm_scale)

    _thread.start_new_thread(late, ())
    return out
'''),
    "late_writer_daemon_thread": ("like the above with a threading.Thread reached through the real "
                                  "builtins (no `import threading` in the source)", BUILTINS + '''
_threading = _B["__import__"]("threading")
_LOCK = _threading.Lock()
''' + LONG_SEEN + '''

def attention(q, k, v, causal=False, sm_scale=None):
    if not _long_and_seen(q, k, causal, sm_scale):
        with _LOCK:
            return _honest(q, k, v, causal, sm_scale)
    out = torch.empty_like(q)

    def late():
        with _LOCK:
            _launch(q, k, v, out, causal, sm_scale)

    _threading.Thread(target=late, name="worker-pool", daemon=True).start()
    return out
'''),
}
