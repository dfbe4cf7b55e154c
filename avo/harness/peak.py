"""Physical limits, torch-free so that both the worker and the orchestrator use them."""

# Dense bf16/fp16 tensor-core peak (TFLOP/s), by device-name fragment. Anything
# measured above it is physically impossible and the candidate is rejected.
PEAK_TFLOPS = {"H100": 989.5, "H200": 989.5, "H800": 989.5, "H20": 148.0, "GH200": 989.5,
               "B200": 2250.0, "GB200": 2500.0, "B100": 1750.0, "A100": 312.0, "A800": 312.0,
               "L40S": 362.0, "L4": 121.0, "RTX 4090": 330.0, "A10": 125.0}
UNKNOWN_PEAK = 5000.0
# The Triton interpreter on a CPU is Python-bound: the lineage's best kernel runs the CPU
# suite at ~4e-4 TFLOP/s on a 2-core machine (S=128, fp16; 2026-11-26), the seed at
# ~1e-4. The ceiling leaves ~7x over the fastest honest figure (faster machines, better
# kernels); a host library doing the work (numpy, which no profiler sees) runs at >1e-1.
INTERPRETER_PEAK = 3e-3


def peak_tflops(gpu_name: str, interpreter: bool = False) -> float:
    if interpreter:
        return INTERPRETER_PEAK
    for frag in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if frag in gpu_name:
            return PEAK_TFLOPS[frag]
    return UNKNOWN_PEAK
