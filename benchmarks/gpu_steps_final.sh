#!/usr/bin/env bash
# Final device call for issue 8: each step file on --suite avo and --suite d64 (cuDNN and
# FA2 timed in the same worker process), with GPU/driver/versions.
# Usage (on the GPU machine, repo root): OUT=dir bash benchmarks/gpu_steps_final.sh
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-benchmarks/results/h100-steps}
RES=/tmp/steps_res
mkdir -p "$OUT" "$RES"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv > "$RES/env.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version())" >> "$RES/env.txt"
# s1 and s2 entered the lineage as v2 and v3 (`avo lineage add` emptied them from the steps/ inbox)
declare -A FILE=([s1_causal_split]=kernel_src/attention/lineage/cuda/v0002/kernel.py
                 [s2_tma]=kernel_src/attention/lineage/cuda/v0003/kernel.py
                 [s3_tail_unrolled]=kernel_src/attention/steps/s3_tail_unrolled.py)
for s in s1_causal_split s2_tma s3_tail_unrolled; do
  for suite in avo d64; do
    python3 -m avo.cli bench "${FILE[$s]}" --suite $suite --json "$RES/${s}_$suite.json" > "$RES/${s}_$suite.txt" 2>&1
    grep -E "geomean|correctness|status" "$RES/${s}_$suite.txt" | sed "s/^/$s $suite: /"
  done
done
cat "$RES/env.txt"
(cd "$RES" && tar czf "$OUT/steps_all.tgz" *.json *.txt)
