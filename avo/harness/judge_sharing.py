"""The judge's guard against timing a GPU that something else is using (gpu_activity.py
says why and how NVML is read). CascadeStages (judge_stages.py), so `Judge`, has it:

  open_gpu_watch / close_gpu_watch   NVML sampled on a thread for the judge's lifetime
  await_quiet_gpu                    on taking the GPU lock: wait (bounded) until no
                                     process outside this judge's tree is busy on it
  note_shared_hold                   on letting it go: record the outside processes
                                     busy during the hold in env.gpu_shared
  note_unlocked_work (at the end)    this judge's own processes busy on the GPU outside its
                                     holds, by stage, in env.gpu_busy_unlocked: work that
                                     runs beside other judges' timing, named at its source
  hang_watch                         a compile call's, or a shape's first batch: this
                                     judge's own processes busy on the GPU COMPILE_BUSY_S
                                     in a row are hung

What follows from env.gpu_shared (the evaluator judges again, SHARED_TRIES in all; the figures are never
committed or cached) is the evaluator's and the commit rule's.
"""
from __future__ import annotations

import os
import time
from typing import Callable

from avo.harness import cores, gpu_activity
from avo.harness.gpu_activity import COMPILE_BUSY_S, QUIET_MAX_S, QUIET_WINDOW_S, SETTLE_S, alive, busy, now_us
from avo.harness.host import clock


def holder(fd: int) -> int | None:
    """Just after taking the lock: the pid of the judge that held it last (the file says),
    and this judge's pid written in its place."""
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.pwrite(fd, f"{os.getpid():>12}\n".encode(), 0)
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) != os.getpid() else None


class SharingGuard:
    gpu_watch: gpu_activity.Watcher | None = None

    def open_gpu_watch(self) -> None:
        """On a GPU: start sampling; env.gpu_sharing_guard says whether it is on, or why not."""
        self.own_seen: set[int] = {os.getpid()}
        self.named: dict[int, str] = {}  # pid -> what it was, looked up when first busy
        self.hold_since_us = self.opened_us = now_us()
        self.holds_us: list[tuple[int, int]] = []  # this judge's holds, by NVML's clock
        self.stage_marks: list[tuple[int, str]] = []  # (when, stage) as each stage began
        if self.device != "cuda":
            return
        try:
            gpu, why = gpu_activity.open_gpu(uuid=gpu_activity.torch_uuid())
        except Exception as e:  # noqa: BLE001 - no uuid from torch: say so, time unguarded
            gpu, why = None, f"{type(e).__name__}: {e}"[:200]
        self.result.env["gpu_sharing_guard"] = "on" if gpu else f"off: {why}"
        if gpu:
            self.gpu_watch = gpu_activity.Watcher(gpu)
            self.gpu_watch.on_new_pids = self.first_seen
            self.gpu_watch.start()

    def first_seen(self, pids: set[int]) -> None:
        """A process busy on the GPU for the first time: whether it is this judge's is looked up
        now, while it lives (one started and killed inside a hold is gone by the hold's end)."""
        self.own_pids()
        for pid in pids:
            self.named.setdefault(pid, gpu_activity.describe(pid))

    def who(self, pids) -> dict[str, dict]:
        return {str(p): {"sm": sm, "what": self.named.get(p) or gpu_activity.describe(p)} for p, sm in pids.items()}

    def mark_stage(self, name: str) -> None:
        if self.gpu_watch:
            self.stage_marks.append((now_us(), name))

    def close_gpu_watch(self) -> None:
        if self.gpu_watch:
            self.note_unlocked_work()
            self.gpu_watch.stop()
            if self.gpu_watch.error:
                self.result.env["gpu_sharing_guard"] = f"on, with a read error: {self.gpu_watch.error}"

    def own_pids(self) -> set[int]:
        """This judge and every process it started, alive now or seen alive before (a helper
        killed at the lock still has samples from just before)."""
        self.own_seen |= cores.descendants(os.getpid())
        return self.own_seen

    def await_quiet_gpu(self, previous: int | None = None) -> None:
        """Holding the lock: wait until no live outside process is busy on the GPU (a dead
        one's kernels died with it), at most QUIET_MAX_S; then the hold starts. Samples from
        the last second count at first; once something was busy, only samples from SETTLE_S
        after the lock was taken (the previous holder's last kernels fall before). Waits go to
        env.gpu_quiet_waits and stage gpu_quiet; a GPU still busy after the longest wait is
        recorded as shared before the hold. `previous`: the judge that held the lock last
        (its pid, from the lock file): it and its processes were busy until it let go."""
        if not self.gpu_watch:
            return
        t0, taken_us, seen = clock(), now_us(), {}
        since = taken_us - 1_000_000
        before = ({previous} | cores.descendants(previous)) if previous else set()
        while True:
            mine = self.own_pids() | (before if since < taken_us + SETTLE_S * 1e6 else set())
            outside = {pid: sm for pid, sm in busy(self.gpu_watch.since(since), since,
                                                     besides=mine).items() if alive(pid)}
            for pid, sm in outside.items():
                seen[pid] = max(seen.get(pid, 0), sm)
            if not outside and (not seen or now_us() - since >= QUIET_WINDOW_S * 1e6):
                break  # (after a busy look, quiet only over a whole window: no sample yet is not quiet)
            if clock() - t0 > QUIET_MAX_S:
                self.result.env.setdefault("gpu_shared", []).append(
                    {"when": f"before a hold, after waiting {QUIET_MAX_S:.0f} s",
                     "pids": self.who(outside)})
                break
            if outside:
                since = max(taken_us + int(SETTLE_S * 1e6), now_us() - int(QUIET_WINDOW_S * 1e6))
            time.sleep(0.1)
        waited = clock() - t0
        self.stage_s["gpu_quiet"] = self.stage_s.get("gpu_quiet", 0.0) + waited
        if seen:
            self.result.env.setdefault("gpu_quiet_waits", []).append(
                {"s": round(waited, 2), "pids": self.who(seen)})
        self.hold_since_us = now_us()

    def note_unlocked_work(self) -> None:
        """At the judge's end: samples of its own processes busy on the GPU outside its holds
        (SETTLE_S after each counts as inside it), grouped by process and by the stage the judge
        was in, into env.gpu_busy_unlocked. That work ran beside whatever another judge timed."""
        own = self.own_pids()
        settle = int(SETTLE_S * 1e6)
        found: dict[tuple[int, str], list[int]] = {}
        for sample in self.gpu_watch.since(self.opened_us):
            if sample.pid not in own or sample.sm < gpu_activity.BUSY_SM:
                continue
            if any(a <= sample.time_us <= b + settle for a, b in self.holds_us):
                continue
            stage = next((name for t, name in reversed(self.stage_marks) if t <= sample.time_us), "start")
            found.setdefault((sample.pid, stage), []).append(sample.sm)
        if found:
            self.result.env["gpu_busy_unlocked"] = [
                {"pid": pid, "what": "judge" if pid == os.getpid() else self.named.get(pid, ""), "stage": stage,
                 "sm": max(sms), "samples": len(sms)} for (pid, stage), sms in list(found.items())[:20]]

    def note_shared_hold(self) -> None:
        """Letting the lock go: every outside process busy on the GPU during this hold (from
        SETTLE_S into it), alive or not."""
        if not self.gpu_watch:
            return
        since, until = self.hold_since_us + int(SETTLE_S * 1e6), now_us()
        self.holds_us.append((self.hold_since_us, until))
        outside = busy(self.gpu_watch.since(since), since, until, besides=self.own_pids())
        if outside:
            self.result.env.setdefault("gpu_shared", []).append(
                {"when": f"during a {(until - self.hold_since_us) / 1e6:.1f} s hold",
                 "pids": self.who(outside)})

    def hang_watch(self, what: str = "a first batch") -> Callable[[], str] | None:
        """For Host.receive while a compile call or a shape's first batch runs (what the
        watchdog gives the compile bound, 120 s): '' while fine, else why the runner is hung:
        this judge's processes (runner, helpers) busy on the GPU for COMPILE_BUSY_S in a row.
        A compile call launches nothing (compile_only.py); a first batch is at most a few
        calls of one shape, milliseconds each, plus any autotuning."""
        if not self.gpu_watch:
            return None
        state = {"checked_us": now_us(), "busy_since": None}

        def watch() -> str:
            now = now_us()
            own = self.own_pids() - {os.getpid()}  # the judge's own staging is not the candidate's
            hot = busy(self.gpu_watch.since(state["checked_us"]), state["checked_us"], only=own)
            state["checked_us"] = now
            if not hot:
                state["busy_since"] = None
                return ""
            state["busy_since"] = state["busy_since"] or time.monotonic()
            held = time.monotonic() - state["busy_since"]
            return "" if held < COMPILE_BUSY_S else \
                f"its processes kept the GPU busy for {held:.0f} s in {what} (a hung kernel)"
        return watch
