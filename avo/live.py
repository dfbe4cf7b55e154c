"""What a running evolve loop shares with the terminal that started it:
progress events out, a stop request in. Plain Python, process-local.

The loop calls `emit("candidate", ...)`; the CLI subscribes and redraws its
display. Ctrl-C or SIGTERM sets the stop request (see `stop_on_sigint`): the loop lets
evaluations already running finish and commit, starts nothing new, and
returns; a second Ctrl-C interrupts at once. A run stopped this way stays
"running" in its journal, so the next `avo evolve` resumes it.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

_listeners: list[Callable[[str, dict], None]] = []
# two generations in flight emit from their own threads; a listener (the display) sees one
# event at a time. Reentrant: the Ctrl-C handler emits in the main thread, maybe mid-event
_emitting = threading.RLock()
_stop = threading.Event()
SAME_SIGNAL_S = 0.25  # a second signal this soon after the first is the same one, sent twice
_stop_reason = [""]


def subscribe(listener: Callable[[str, dict], None]) -> Callable[[], None]:
    """Call `listener(kind, data)` on every event; returns an unsubscribe function."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def emit(kind: str, **data) -> None:
    with _emitting:
        for listener in list(_listeners):
            try:
                listener(kind, data)
            except Exception as e:  # a display bug must never stop a run
                print(f"avo: warning: progress display failed: {e}", file=sys.stderr)


def request_stop(reason: str = "stop requested") -> None:
    if not _stop.is_set():
        _stop_reason[0] = reason
    _stop.set()


def stop_requested() -> bool:
    return _stop.is_set()


def stop_reason() -> str:
    return _stop_reason[0]


def reset() -> None:
    _stop.clear()
    _stop_reason[0] = ""


@contextmanager
def stop_on_sigint() -> Iterator[None]:
    """First Ctrl-C (SIGINT) or SIGTERM: request a clean stop (the candidates in
    flight finish and are recorded). A second one: KeyboardInterrupt as usual, unless it
    comes within SAME_SIGNAL_S of the first: `timeout -s INT` signals the process and then
    its process group, and on an H100 leg the two arrived apart and the second killed five
    judges mid-evaluation. Only in the main thread (signal handlers cannot be set elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    first = []  # when the first one came

    def handler(signum, frame):
        if first and time.monotonic() - first[0] < SAME_SIGNAL_S:
            return  # the same interruption, delivered twice (timeout(1): to the process and its group)
        if _stop.is_set():
            raise KeyboardInterrupt
        first.append(time.monotonic())
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        request_stop(f"interrupted ({what}): stopping after the candidates in flight")
        emit("stopping", reason=stop_reason())

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


stop_on_signals = stop_on_sigint
