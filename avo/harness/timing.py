"""Machine facts for the record, inside the judge (torch + triton only).

The clock itself is the judge's (avo/harness/judge.py, calls.py): its own
perf_counter around a batch of calls whose outputs it verifies, never a timer
in the candidate's process.
"""
from __future__ import annotations

import platform
import subprocess

import torch
import triton


def env_info(device: str) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "triton": triton.__version__, "device": device}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, sm_count=props.multi_processor_count,
                    cuda=torch.version.cuda, cudnn=str(torch.backends.cudnn.version()),
                    l2_bytes=getattr(props, "L2_cache_size", 50 * 2**20))
        try:
            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"],
                capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            info["driver"] = "unknown"
    else:
        info.update(gpu="Triton interpreter on CPU", cpu=platform.processor() or platform.machine())
    return info
