#!/usr/bin/env bash
# One device-tool call: the Gluon step g1 enters the H100 lineage through `avo lineage add`
# (the judge, the commit rule, operator = human), then `avo bench` of the lineage's best on the
# AVO suite and the D=64 suite. Brings back the new version's files and both bench records.
# Usage on the GPU machine: OUT=dir bash benchmarks/gpu_g1_lineage.sh
# (Ran on 2026-11-26: g1 is now lineage v4, and `lineage add` emptied it from steps/, the inbox;
#  kept as the record of how v4 entered.)
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true COLUMNS=140
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
L=kernel_src/attention/lineage/cuda
python3 -m avo.cli lineage add kernel_src/attention/steps/g1_gluon.py --device cuda --suite mha --lineage $L \
    --technique "gluon warp-specialized FA3 schedule (producer + 2 consumer warpgroups)" \
    --expected "+15-25% over v3: softmax overlapped with the next tile's GEMMs (FA3), P from registers" \
    --note "hand-written Gluon step, see knowledge_base/kernel-speed-log.md (2026-11-26)" 2>&1 | tail -6 | tee "$OUT/lineage_add.txt"
best=$(ls -d $L/v* | tail -1)
cp "$best/kernel.py" "$OUT/best_kernel.py"; cp "$best/version.json" "$OUT/best_version.json"
cp "$L/attempts.jsonl" "$OUT/attempts.jsonl"
python3 -m avo.cli bench "$best/kernel.py" --device cuda --suite avo --json "$OUT/best_avo.json" 2>&1 | tail -40 | tee "$OUT/best_avo.txt"
python3 -m avo.cli bench "$best/kernel.py" --device cuda --suite d64 --json "$OUT/best_d64.json" 2>&1 | tail -22 | tee "$OUT/best_d64.txt"
