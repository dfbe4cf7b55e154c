#!/usr/bin/env bash
# One device-tool call: the seed on the whole suite (MHA + GQA) and D=64, with
# the GPU, driver and versions, plus a second MHA run to measure run-to-run spread.
# Usage (on the GPU machine, repo root): OUT=dir bash benchmarks/gpu_seed_run.sh
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv | tee "$OUT/nvidia-smi.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version())"
K=${KERNEL:-kernel_src/attention/seeds/fa2.py}
python3 -m avo.cli bench "$K" --suite avo --json "$OUT/seed_avo.json" 2>&1 | tee "$OUT/seed_avo.txt"
python3 -m avo.cli bench "$K" --suite d64 --json "$OUT/seed_d64.json" 2>&1 | tee "$OUT/seed_d64.txt"
python3 -m avo.cli bench "$K" --suite mha --json "$OUT/seed_mha_rerun.json" 2>&1 | tee "$OUT/seed_mha_rerun.txt"
