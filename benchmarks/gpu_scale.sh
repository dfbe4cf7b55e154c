#!/usr/bin/env bash
# Issue 13: one device call on the 4-GPU machine (nvidia-h100-x4; it may come as 4x H200).
#   warm    the best (lineage v4) on all 4 GPUs at once: baseline caches, the per-GPU yardstick,
#           and the same kernel timed on every GPU
#   scale   cascade on with 1, 2 and 4 GPUs, the same mix of candidates, a fixed wall each
# Meanwhile the GPU referee tests run on the last GPU (stopped if still running when the
# 4-GPU phase needs it). Writes $OUT/tp/*.json, $OUT/log.txt (versions first), $OUT/adversarial-gpu.txt.
# Usage on the GPU machine, repository root:  bash benchmarks/gpu_scale.sh
set -u
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >/dev/null 2>&1 || echo "wheels: install failed (pytest may be missing)"
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 PATH="$PATH:/usr/local/cuda/bin"
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT/tp" .avo/evolve
{ nvidia-smi --query-gpu=index,name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version())"
} 2>&1 | tee "$OUT/log.txt"
tests="python3 -m pytest -v -p no:cacheprovider tests/adversarial/test_referee_gpu.py tests/adversarial/test_gpu.py"
# the baseline cache (and each GPU's yardstick) goes where `avo evolve` looks for it: a following
# evolve leg on this machine starts on warm GPUs
timeout -k 10 "${TP_LIMIT:-360}" python3 benchmarks/throughput.py --out "$OUT/tp" --phases scale --best 4 \
    --cache .avo/evolve/baselines.json --scale-wall "${SCALE_WALL:-90}" \
    --background "$tests > $OUT/adversarial-gpu.txt 2>&1" --background-wait 30 "$@" 2>&1 \
    | grep --line-buffered -v "^\s*$" | tee -a "$OUT/log.txt"
exit 0
