"""Profiler feedback for the agent: ncu on one config, the compiled code, deltas.

    ncu.py     metrics, the ncu command line, the raw-CSV parse -> Profile, summary, diff
    run.py     Profiler: availability, the sandboxed ncu run, reading results back
    driver.py  the program ncu runs (one candidate, one config; warm-up outside the range)
    asm.py     TTGIR/PTX/SASS from Triton's cache, ptxas warnings, bounded excerpts

    python -m avo.profiling KERNEL.py [--parent PARENT.py] [--config NAME] [--out DIR]
"""
from avo.profiling.ncu import METRICS, SECTIONS, KernelProfile, Profile, build_command, diff, parse_raw_csv, summarize
from avo.profiling.run import Profiler, ProfileRun, find_ncu, unavailable

__all__ = ["METRICS", "SECTIONS", "KernelProfile", "Profile", "ProfileRun", "Profiler", "build_command", "diff",
           "find_ncu", "parse_raw_csv", "summarize", "unavailable"]
