#!/usr/bin/env bash
# Issue 13 (and 17's profile): one device call on the 4-GPU machine (nvidia-h100-x4).
#   warm    the yardstick (lineage v3) on all 4 GPUs at once: baseline caches, same-kernel check
#   onoff   cascade on (GPU 0) vs off (GPUs 1-2), the same candidates; ncu profile on GPU 3
#   scale   cascade on with 1, 2, 4 GPUs, a fixed wall each
# Writes $OUT/tp/*.json, $OUT/log.txt and $OUT/profile.tgz (at most 8 files come back).
# Usage on the GPU machine, repository root:  bash benchmarks/gpu_throughput.sh
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 PATH="$PATH:/usr/local/cuda/bin"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT/tp" /tmp/prof
{ nvidia-smi --query-gpu=index,name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version())"
} > "$OUT/tp/machine.txt" 2>&1
cat "$OUT/tp/machine.txt"
timeout -k 10 "${TP_LIMIT:-540}" python3 benchmarks/throughput.py --out "$OUT/tp" --phases "${PHASES:-onoff,scale}" \
    --background "OUT=/tmp/prof bash benchmarks/gpu_profile.sh > /tmp/prof/profile.log 2>&1" "$@" 2>&1 \
    | grep -v "^\s*$" | tee "$OUT/log.txt"
tar czf "$OUT/profile.tgz" -C /tmp prof 2>/dev/null
exit 0
