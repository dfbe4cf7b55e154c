"""Judges started ahead of their candidates, one spare per evaluation in flight.

A judge process spends its first seconds on imports, CUDA contexts and starting its
runners (prestart.py), none of which depends on the candidate. An evolve run keeps a
spare judge for each (device, GPU, problem) it evaluates on: `take()` hands one over
(or None, and the caller starts a judge itself) and asks for a replacement at once,
so the next evaluation on that GPU finds its judge ready. The pool grows to the
number of evaluations that ran at the same time, and by one more each time a take
finds it empty (a judge needs ~10-15 s to be ready; evaluations that end in seconds,
a compile error, drained it on an H100), up to MAX_PER_KEY.

Each spare serves one evaluation and is never reused. It holds nothing of a
candidate until its job is written to its stdin. Spares are started on one
long-lived thread (a child's PR_SET_PDEATHSIG fires when the thread that started it
ends) and killed by `close()`, at the end of the run or at exit.
"""
from __future__ import annotations

import atexit
import queue
import threading
import time
from typing import Callable

Key = tuple  # (device, GPU, problem path)
CLOSE_GRACE_S = 10.0  # at close, for every spare together: time to end its runners before it is killed
MAX_PER_KEY = 8  # spares of one GPU at most (each holds CUDA contexts: ~0.5 GB of GPU memory per process)


class Spares:
    def __init__(self, spawn: Callable[[Key], object]):
        """spawn(key) starts one judge for key (runner.spawn_judge); it has .alive() and .discard()."""
        self._spawn = spawn
        self._ready: dict[Key, list] = {}
        self._lock = threading.Lock()
        self._wanted: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: dict[Key, int] = {}  # asked for, not yet started
        self._thread: threading.Thread | None = None
        self.enabled = False
        self.started = self.taken = 0  # for the record and the tests

    def enable(self) -> None:
        with self._lock:
            if self.enabled:
                return
            self.enabled = True
            self._thread = threading.Thread(target=self._starter, name="avo-spare-judges", daemon=True)
            self._thread.start()
        atexit.register(self.close)

    def take(self, key: Key):
        """A ready judge for key, or None; either way one more is started for the next evaluation."""
        if not self.enabled:
            return None
        found = None
        with self._lock:
            spares = self._ready.get(key, [])
            while spares and found is None:
                judge = spares.pop(0)
                if judge.alive():
                    found = judge
                else:
                    judge.discard()
            if found is not None:
                self.taken += 1
            # a replacement; found none: one more, so that the pool keeps one in hand
            room = MAX_PER_KEY - len(spares) - self._pending.get(key, 0)
            wanted = max(0, min(room, 1 if found is not None else 2))
            self._pending[key] = self._pending.get(key, 0) + wanted
        for _ in range(wanted):
            self._wanted.put(key)
        return found

    def close(self) -> None:
        """Kill every spare (the run is over); take() returns None from now on."""
        with self._lock:
            if not self.enabled:
                return
            self.enabled = False
            spares = [j for js in self._ready.values() for j in js]
            self._ready.clear()
        self._wanted.put(None)
        for judge in spares:  # all told at once, then all given the same few seconds (a Ctrl-C waits for this)
            getattr(judge, "hang_up", lambda: None)()
        if self._thread is not None:
            self._thread.join(timeout=30)
        deadline = time.monotonic() + CLOSE_GRACE_S
        for judge in spares:
            judge.discard(grace_s=max(0.0, deadline - time.monotonic()))

    def count(self) -> int:
        with self._lock:
            return sum(len(js) for js in self._ready.values())

    def _starter(self) -> None:
        while True:
            key = self._wanted.get()
            if key is None:
                return
            try:
                judge = self._spawn(key)
            except Exception:  # noqa: BLE001 - no spare: the next evaluation starts its judge itself
                judge = None
            with self._lock:
                self._pending[key] = max(0, self._pending.get(key, 0) - 1)
                if judge is not None and self.enabled:
                    self._ready.setdefault(key, []).append(judge)
                    self.started += 1
                    judge = None
            if judge is not None:  # closed meanwhile
                judge.discard()
