"""One evaluation per GPU at a time, on one host: a lease on a GPU id.

Each evaluate task, wherever it runs (a thread of the flow, a Dask worker
process), takes an exclusive flock on one of this host's per-GPU lock files and
passes the GPU id to the harness, which pins the worker with
CUDA_VISIBLE_DEVICES. The kernel drops a flock when its holder dies, so a
killed run never leaves a GPU locked. Lock files live in the host's temp
folder, not on a shared file system: the lease is per host by design.
On a CPU (Triton interpreter) the same lease caps concurrent evaluations at
`cpu_slots`, so the orchestrator's threads do not oversubscribe the cores.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_DIR = Path(tempfile.gettempdir()) / f"avo-gpu-locks-{os.getuid()}"


def visible_gpus() -> list[int]:
    """GPU ids this host offers: CUDA_VISIBLE_DEVICES if set, else what torch sees.
    The ids are what CUDA_VISIBLE_DEVICES names (passed on to the worker verbatim)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [x.strip() for x in env.split(",") if x.strip() and x.strip() != "-1"]
        return [int(x) if x.isdigit() else x for x in ids]  # type: ignore[misc]
    try:
        import torch

        return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    except ImportError:
        return []


def slots_for(device: str, cpu_slots: int, depth: int = 1) -> list:
    """The lease pool: GPU ids on cuda, `depth` evaluations in flight per GPU (the
    extra slots are named "<gpu>#<k>": they load and compile while the GPU's timing
    lock, held by the judge, keeps the measuring to one at a time); `cpu_slots`
    anonymous slots on cpu."""
    if device == "cuda":
        gpus = visible_gpus()
        if not gpus:
            raise RuntimeError("device cuda asked for, but no GPU is visible on this host")
        return gpus + [f"{g}#{k}" for k in range(2, max(1, depth) + 1) for g in gpus]
    return [f"cpu{i}" for i in range(max(1, cpu_slots))]


def gpu_of(slot) -> int | str:
    """The GPU id a slot of slots_for() stands for."""
    text = str(slot).split("#")[0]
    return int(text) if text.isdigit() else text


def timing_lock(gpu, lock_dir: Path = LOCK_DIR) -> Path:
    """The file whose flock gives one judge this GPU for checking and timing."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    return lock_dir / f"gpu{gpu}.timing.lock"


@contextmanager
def lease(slots: list, lock_dir: Path = LOCK_DIR, poll_s: float = 0.05) -> Iterator:
    """Hold one slot of `slots` exclusively; yields its id (a GPU id or 'cpuN')."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        for slot in slots:
            fd = os.open(lock_dir / f"{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield slot
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        time.sleep(poll_s)
