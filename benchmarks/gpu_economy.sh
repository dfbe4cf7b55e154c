#!/usr/bin/env bash
# Issue 13 on one GPU, in one device call: the fused recheck reference against the torch one
# (benchmarks/reference_check.py), then an `avo evolve` leg (benchmarks/gpu_evolve_legs.sh)
# with GPU memory and utilisation sampled every 2 s, then its throughput
# (benchmarks/evolve_stages.py). Everything lands in $OUT.
#   SECS (default 420): the leg's length before SIGINT; KILL_AFTER (default 60) for the drain.
#   SKIP_REFERENCE=1: the leg only.
#   DEPTH, HELPERS: harness.pipeline_depth and harness.compile_helpers for the leg (params.yaml
#   with those two values changed, written to benchmarks/params-leg.yaml, whose folder is in the
#   repository, so relative paths still hang off its root; a copy goes to $OUT); unset: params.yaml's.
# Needs the prefect wheels in .whl/ (benchmarks/GPU-WHEELS.md): carry ".whl" in the call.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version())"
  git log --oneline -1; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
if [ -z "${SKIP_REFERENCE:-}" ]; then
  timeout 240 python3 benchmarks/reference_check.py --out "$OUT/reference" --repeat 1 > "$OUT/reference.txt" 2>&1
  echo "reference_check rc=$?"; tail -12 "$OUT/reference.txt"
fi
if [ -n "${DEPTH:-}${HELPERS:-}" ]; then
  sed -e "s/^  pipeline_depth: [0-9]*/  pipeline_depth: ${DEPTH:-3}/" \
      -e "s/^  compile_helpers: [0-9]*/  compile_helpers: ${HELPERS:-2}/" params.yaml > benchmarks/params-leg.yaml
  cp benchmarks/params-leg.yaml "$OUT/params.yaml"
  export PARAMS=benchmarks/params-leg.yaml
  grep -E "^  (pipeline_depth|compile_helpers):" "$PARAMS"
fi
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader -l 2 > "$OUT/gpu-samples.csv" &
SAMPLER=$!
while sleep 2; do echo "$(date -u +%s) $(cut -d' ' -f1-4 /proc/loadavg)"; done > "$OUT/load-samples.txt" &
LOADS=$!
LEGS="1:${SECS:-420}" KILL_AFTER=${KILL_AFTER:-60} OUT="$OUT" bash benchmarks/gpu_evolve_legs.sh
kill $SAMPLER $LOADS 2>/dev/null
python3 benchmarks/evolve_stages.py "$OUT/legs.log" --json "$OUT/stages.json" > "$OUT/stages.txt" 2>&1
tail -25 "$OUT/stages.txt"
sort -t, -k2 -n "$OUT/gpu-samples.csv" | tail -1 | sed 's/^/peak memory sample: /'
