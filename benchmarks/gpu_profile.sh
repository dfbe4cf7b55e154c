#!/usr/bin/env bash
# Issue 17 item 2: ncu on the CUDA lineage's best kernel (v0004, Gluon warp-specialised)
# and its parent (v0003) on "mha b4 s8192 d128 causal bf16", with the agent's own profiler
# code (avo.profiling). Writes 8 flat files to $OUT (see benchmarks/profile_example.py)
# and prints the summary, the delta and the excerpts' heads. Bounded to ~4.5 minutes.
# Usage on the GPU machine, repository root:  bash benchmarks/gpu_profile.sh
# Then copy $OUT to benchmarks/results/h100-profile/.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
export PATH="$PATH:/usr/local/cuda/bin"
OUT=${OUT:-benchmarks/results/h100-profile}
mkdir -p "$OUT"
timeout -k 10 285 python3 benchmarks/profile_example.py --out "$OUT" "$@"
rc=$?
[ $rc -eq 124 ] && echo "gpu_profile.sh: stopped at 285 s; the files written so far are in $OUT"
exit $rc
