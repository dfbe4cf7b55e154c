#!/usr/bin/env bash
# Issue 13: `avo evolve` on a multi-GPU machine in legs, each stopped with SIGINT (Ctrl-C:
# the candidates in flight finish and the run stays resumable), the next leg resuming it.
#   LEGS="1:100 2:100 4:130"   GPUs:seconds per leg in this call (GPUs 0..n-1); then SIGINT, and
#   KILL_AFTER (default 100) seconds for the candidates in flight to finish
# After every leg the lineage, the run's journal and the baseline cache go to $OUT/state.tgz,
# so a call stopped at its limit still brings back every finished leg. Bring the tarball
# back, unpack it in the repository and carry .avo (and .whl) into the next call.
# Needs prefect wheels in .whl/ (benchmarks/GPU-WHEELS.md). SUITE (default avo); PER_GPU: candidates
# per generation per GPU (unset: avo's default, 4 x pipeline_depth per GPU).
# PARAMS: another params.yaml (e.g. benchmarks/params-depth6.yaml: six evaluations in flight per GPU).
set -u
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true NCCL_NVLS_ENABLE=0 \
       PREFECT_SERVER_ANALYTICS_ENABLED=false COLUMNS=140
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
LINEAGE=kernel_src/attention/lineage/cuda
nvidia-smi --query-gpu=index,name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader >> "$OUT/legs.log"
for leg in ${LEGS:-4:270}; do
  n=${leg%%:*}; secs=${leg##*:}; gpus=$(seq -s, 0 $((n - 1)))
  echo "== leg start $(date -u +%s) gpus=$gpus seconds=$secs" | tee -a "$OUT/legs.log"
  CUDA_VISIBLE_DEVICES=$gpus timeout -s INT -k "${KILL_AFTER:-100}" "$secs" python3 -m avo.cli evolve --device cuda \
      --suite "${SUITE:-avo}" ${PER_GPU:+--population $((PER_GPU * n))} ${PARAMS:+--params "$PARAMS"} \
      --generations 1000 --budget-minutes 60 2>&1 \
      | grep --line-buffered -v "Finished in state\|prefect.task_runs\|^\s*$" >> "$OUT/legs.log"
  echo "== leg end $(date -u +%s) rc=${PIPESTATUS[0]}" | tee -a "$OUT/legs.log"
  tar czf "$OUT/state.tgz" "$LINEAGE" .avo
done
python3 -m avo.cli lineage list --lineage "$LINEAGE" 2>&1 | tail -15 | tee -a "$OUT/legs.log"
