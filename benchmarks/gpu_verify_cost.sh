#!/usr/bin/env bash
# One device call: the judge's staging and verification per call, this checkout's
# avo/harness/calls.py against another version (benchmarks/verify_cost.py), then `avo bench`
# of the lineage's v4 with this checkout (a whole evaluation through the runner).
# Before the call: mkdir -p .bench && git show REV:avo/harness/calls.py > .bench/calls_before.py
# (.bench is git-ignored: carry ".bench"; with BENCH_S also ".whl", the wheels of benchmarks/GPU-WHEELS.md).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true COLUMNS=150
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version())"
  } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
timeout ${VERIFY_S:-150} python3 benchmarks/verify_cost.py --before .bench/calls_before.py --repeat ${REPEAT:-3} --out "$OUT" > "$OUT/verify_cost.txt" 2>&1
echo "verify_cost rc=$?"; cat "$OUT/verify_cost.txt" | tail -45
[ "${BENCH_S:-0}" -gt 0 ] || exit 0  # BENCH_S=200: also the whole evaluation (needs .whl)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
timeout ${BENCH_S} python3 -m avo.cli bench kernel_src/attention/lineage/cuda/v0004/kernel.py --device cuda --suite avo \
    --json "$OUT/bench-v4.json" > "$OUT/bench-v4.txt" 2>&1
echo "bench rc=$?"; tail -40 "$OUT/bench-v4.txt"
