#!/usr/bin/env bash
# One device-tool call: `avo evolve` on the GPU with the heuristic operator,
# resuming whatever lineage/journal came with the working tree, then the state
# (lineage, MLflow store, resume journal) packed into $OUT for the next call.
# Usage on the GPU machine (repo root, wheels for prefect/mlflow in .whl/):
#   MIN=7 SUITE=mha OUT=dir bash benchmarks/gpu_evolve_run.sh
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true \
       PREFECT_SERVER_ANALYTICS_ENABLED=false COLUMNS=120
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -m avo.cli evolve --device cuda --suite "${SUITE:-mha}" --population "${POP:-4}" \
    --generations 1000 --budget-minutes "${MIN:-7}" 2>&1 | grep -v "Finished in state\|prefect.task_runs\|^\s*$" | tail -60 | tee "$OUT/evolve.log"
python3 -m avo.cli lineage list --lineage kernel_src/attention/lineage/cuda 2>&1 | tee "$OUT/lineage.txt"
tar czf "$OUT/state.tgz" kernel_src/attention/lineage/cuda mlflow .avo
