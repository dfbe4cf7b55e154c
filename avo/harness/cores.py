"""CPU affinity partition: the CPUs a GPU's timing judge runs on, apart from the CPUs
that load and compile.

A judge times its candidate by its own wall clock (judge.py), so the wake-up latency of
the judge and of its runner enters every timed batch. With several evaluations in flight
per GPU the others compile (Triton, ptxas) on every core; nothing kept a core for the
process that times. This module splits the CPUs this process may use:

    plan = cores.plan(n_gpus=4, per_gpu=2)       # None: no partition (per_gpu 0, too few CPUs)
    plan.timing[0], plan.work                    # GPU 0's timing CPUs; the load-and-compile CPUs
    cores.pin_tree(pid, plan.work)               # pid's threads and all its descendants' threads

The orchestrator (avo.evolution.partition_cpus) pins itself, and with it everything it
starts later, to the work CPUs; a judge (judge_stages.py, `gpu_lock`) moves itself and its
runners onto its GPU's timing CPUs while it holds the GPU's timing lock, and back before it
lets the lock go. Threads and children inherit the affinity of the thread that creates
them, so a runner started inside the hold starts on the timing CPUs.

A GPU's timing CPUs are whole physical cores where the topology allows (hyperthread
siblings stay together, so no compiler shares a core with the timing judge) and come from
the end of the CPU list, away from CPU 0 (which tends to serve more interrupts and
housekeeping). NUMA locality to the GPU is not considered.

Linux only (os.sched_setaffinity); elsewhere `plan` and `pin_tree` do nothing and
`unsupported()` says why. Plain Python: no avo imports.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MIN_WORK_CPUS = 2  # fewer left to load and compile than this: no partition
PASSES = 3  # pin_tree walks again while new threads or processes turn up, at most this often


@dataclass(frozen=True)
class CorePlan:
    """timing: GPU id (as the run's lease pool names it, avo.gpu_pool.gpu_of) -> its CPUs;
    work: every other CPU this process could use."""

    timing: dict
    work: tuple[int, ...]

    def timing_for(self, gpu) -> tuple[int, ...]:
        """The timing CPUs of `gpu` (an id as the pool names it, or its text); () if none."""
        if gpu in self.timing:
            return self.timing[gpu]
        by_text = {str(k): v for k, v in self.timing.items()}
        return by_text.get(str(gpu), ())

    def to_dict(self) -> dict:
        return {"timing": {str(k): list(v) for k, v in self.timing.items()}, "work": list(self.work)}

    def describe(self) -> str:
        """e.g. 'CPUs 7,15 time on GPU 0; 6,14 on GPU 1; 0-5,8-13 load and compile'."""
        gpus = [f"{cpu_list(cpus)}{' time' if k == 0 else ''} on GPU {gpu}"
                for k, (gpu, cpus) in enumerate(self.timing.items())]
        return f"CPUs {'; '.join(gpus)}; {cpu_list(self.work)} load and compile"


def unsupported() -> str:
    """'' where CPU affinity can be set (Linux), else why not."""
    if not (hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")):
        return "CPU affinity cannot be set on this platform (no os.sched_setaffinity)"
    if not Path("/proc/self/task").is_dir():
        return "no /proc/self/task to find threads in"
    return ""


def plan(n_gpus: int, per_gpu: int, available: set[int] | None = None, ids=None) -> CorePlan | None:
    """`per_gpu` CPUs for each GPU's timing (each GPU its own), the rest to load and compile;
    None when per_gpu is 0 or fewer than MIN_WORK_CPUS would be left for work. `available`:
    the CPUs to split (default: this thread's affinity); `ids`: the GPUs' ids as the run
    names them (default 0 .. n_gpus - 1)."""
    return plan_or_reason(n_gpus, per_gpu, available, ids)[0]


def plan_or_reason(n_gpus: int, per_gpu: int, available: set[int] | None = None,
                   ids=None) -> tuple[CorePlan | None, str]:
    """plan(), and when it is None one line saying why."""
    ids = list(range(n_gpus)) if ids is None else list(ids)
    if len(ids) != n_gpus:
        raise ValueError(f"{n_gpus} GPUs but {len(ids)} ids: {ids}")
    if per_gpu <= 0:
        return None, f"harness.timing_cpus_per_gpu is {per_gpu}"
    if n_gpus <= 0:
        return None, "no GPU to time on"
    if available is None:
        why = unsupported()
        if why:
            return None, why
        available = os.sched_getaffinity(0)
    cpus = set(available)
    need = n_gpus * per_gpu
    if len(cpus) - need < MIN_WORK_CPUS:
        return None, (f"{len(cpus)} CPUs here: {n_gpus} GPU(s) x {per_gpu} timing CPUs would leave "
                      f"{max(0, len(cpus) - need)} to load and compile (at least {MIN_WORK_CPUS} needed)")
    ordered = by_core(cpus)
    reserved = ordered[len(ordered) - need:]
    timing = {gpu: tuple(sorted(reserved[k * per_gpu:(k + 1) * per_gpu])) for k, gpu in enumerate(ids)}
    work = tuple(sorted(cpus - set(reserved)))
    return CorePlan(timing=timing, work=work), ""


def by_core(cpus: set[int]) -> list[int]:
    """`cpus` with hyperthread siblings next to each other, cores in the order of their
    first CPU: consecutive slices of it are whole cores where their sizes allow."""
    cores: dict[int, list[int]] = {}
    for cpu in sorted(cpus):
        group = sorted(siblings(cpu) & cpus) or [cpu]
        cores.setdefault(group[0], [])
        if cpu not in cores[group[0]]:
            cores[group[0]].append(cpu)
    return [cpu for first in sorted(cores) for cpu in sorted(cores[first])]


def siblings(cpu: int) -> set[int]:
    """The CPUs sharing `cpu`'s physical core (sysfs), {cpu} where the topology is unknown."""
    for name in ("core_cpus_list", "thread_siblings_list"):
        try:
            return parse_cpu_list(Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/{name}").read_text()) | {cpu}
        except (OSError, ValueError):
            continue
    return {cpu}


def parse_cpu_list(text: str) -> set[int]:
    """'0-3,8,10-11' -> {0, 1, 2, 3, 8, 10, 11} (the kernel's cpulist format)."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def cpu_list(cpus) -> str:
    """{0, 1, 2, 3, 8} -> '0-3,8'."""
    runs: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(f"{a}-{b}" if b > a else str(a) for a, b in runs) or "-"


# ------------------------------------------------------------------ pinning
def pin_tree(pid: int, cpus, counts: dict | None = None) -> int:
    """Set the CPU affinity of every thread of `pid` and of all its descendants to `cpus`;
    returns how many threads it moved. Threads and processes that vanish meanwhile are
    skipped (counts["vanished"]), those that refuse (PermissionError: another uid without
    CAP_SYS_NICE; EINVAL: `cpus` outside the thread's cpuset) are counted in
    counts["refused"]; counts["processes"] is how many processes had a thread moved. New
    threads and children inherit the affinity of their creator; the walk repeats (at most
    PASSES times) while it finds threads it has not seen, for those created during it."""
    counts = {} if counts is None else counts
    for key in ("threads", "processes", "refused", "vanished"):
        counts.setdefault(key, 0)
    if unsupported():
        return 0
    cpus = set(cpus)
    seen: set[int] = set()
    moved_in: set[int] = set()
    moved = 0
    for _ in range(PASSES):
        new = 0
        for proc in [pid, *sorted(descendants(pid))]:
            try:
                tids = [int(t) for t in os.listdir(f"/proc/{proc}/task")]
            except (FileNotFoundError, ProcessLookupError):
                counts["vanished"] += 1
                continue
            except PermissionError:
                counts["refused"] += 1
                continue
            for tid in tids:
                if tid in seen:
                    continue
                seen.add(tid)
                new += 1
                try:
                    os.sched_setaffinity(tid, cpus)
                except ProcessLookupError:
                    counts["vanished"] += 1
                    continue
                except OSError:  # PermissionError, or EINVAL: not allowed there (cpuset)
                    counts["refused"] += 1
                    continue
                moved += 1
                moved_in.add(proc)
        if not new:
            break
    counts["threads"] += moved
    counts["processes"] += len(moved_in)
    return moved


def descendants(root: int) -> set[int]:
    """pids of every live process below `root`, from the parent links in /proc/*/stat."""
    parent_of: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:  # exited while we looked
                continue
            parent_of[int(entry)] = int(fields[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parent_of.items() if parent in frontier} - found
        found |= frontier
    return found


# --------------------------------------------------- the orchestrator's partition
_active: CorePlan | None = None
_decided: tuple | None = None  # what the current partition was decided for (said once)
_before: set[int] | None = None  # this process's CPUs before it was pinned


def active() -> CorePlan | None:
    """The partition this process runs under (partition_run), if any."""
    return _active


def partition_run(ids: list, per_gpu: int, available: set[int] | None = None,
                  why_not: str = "") -> tuple[CorePlan | None, str]:
    """Partition this host's CPUs for a run on the GPUs `ids` (once per process and setting):
    pin this process (every thread, and every process below it) to the work CPUs, so that
    all it starts later inherits them, and remember the plan for the judges' jobs (active()).
    Returns the plan and the line saying it, or why there is none ('' when the same
    partition was already said). `why_not`: the caller's reason for none (then nothing is
    pinned and an earlier partition is undone)."""
    global _active, _decided
    key = (tuple(map(str, ids)), per_gpu, why_not)
    if key == _decided:
        return _active, ""
    release()
    _decided = key
    if why_not:
        return None, f"no CPU partition: {why_not}"
    if available is None and unsupported():
        return None, f"no CPU partition: {unsupported()}"
    found, why = plan_or_reason(len(ids), per_gpu, available, ids)
    if found is None:
        return None, f"no CPU partition: {why}"
    return _apply(found, per_gpu)


def _apply(found: CorePlan, per_gpu: int) -> tuple[CorePlan | None, str]:
    global _active, _before
    before = os.sched_getaffinity(0)
    counts: dict = {}
    if not pin_tree(os.getpid(), found.work, counts):
        return None, f"no CPU partition: this process could not be pinned ({counts})"
    _active, _before = found, before
    return found, (f"{found.describe()} (harness.timing_cpus_per_gpu: {per_gpu}; 0 turns it off)")


def release() -> None:
    """Undo partition_run: this process (and what runs below it) back on the CPUs it had."""
    global _active, _before, _decided
    if _active is not None and _before is not None:
        pin_tree(os.getpid(), _before)
    _active, _before, _decided = None, None, None
