#!/usr/bin/env bash
# One device-tool call: GPU-only adversarial tests, the lineage's best on both
# suites (cuDNN/FA2 in the same run), the MHA -> GQA transfer, and the report.
# Usage on the GPU machine: OUT=dir bash benchmarks/gpu_final.sh
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true \
       PREFECT_SERVER_ANALYTICS_ENABLED=false COLUMNS=120
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT/res"
L=kernel_src/attention/lineage/cuda
BEST=$(python3 -c "from avo.lineage import Lineage; print(Lineage('$L').best().number)")
K=$L/v$(printf %04d "$BEST")/kernel.py
python3 -m pytest -m gpu tests/adversarial -q -p no:cacheprovider 2>&1 | tail -15 | tee "$OUT/res/gpu_tests.txt"
python3 -m avo.cli bench "$K" --suite avo --json "$OUT/res/best_avo.json" 2>&1 | tee "$OUT/res/best_avo.txt"
python3 -m avo.cli bench "$K" --suite d64 --json "$OUT/res/best_d64.json" 2>&1 | tee "$OUT/res/best_d64.txt"
python3 -m avo.cli transfer --to gqa --generations 2 --population 2 --device cuda 2>&1 \
    | grep -v "Finished in state\|prefect.task_runs\|supervisor failed\|^\s*$" | tail -25 | tee "$OUT/res/transfer.txt"
python3 -m avo.cli report --lineage $L --out reports/h100 2>&1 | tail -5
python3 -m avo.cli report --lineage $L-gqa --out reports/h100-gqa 2>&1 | tail -5
tar czf "$OUT/state.tgz" $L-gqa reports/h100 reports/h100-gqa mlflow .avo "$OUT/res"
