#!/usr/bin/env bash
# One device call: the shared-GPU guard's GPU tests (tests/adversarial/test_gpu_sharing.py:
# NVML sees another process by its pid, a judge waits while one is busy, a kernel hung in
# its compile call ends in seconds), then the GPU referee tests with the guard on.
# Needs the prefect wheels in .whl/ (benchmarks/GPU-WHEELS.md): carry ".whl" in the call.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true COLUMNS=150
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version())"
  } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
timeout 200 python3 -m pytest -v -p no:cacheprovider tests/adversarial/test_gpu_sharing.py > "$OUT/sharing-tests.txt" 2>&1
echo "sharing tests rc=$?"; grep -E "PASSED|FAILED|ERROR|passed|failed|assert" "$OUT/sharing-tests.txt" | head -30
timeout ${REFEREE_S:-380} python3 -m pytest -v -p no:cacheprovider tests/adversarial/test_gpu.py tests/adversarial/test_referee_gpu.py > "$OUT/referee-tests.txt" 2>&1
echo "referee tests rc=$?"; grep -E "PASSED|FAILED|ERROR|passed|failed" "$OUT/referee-tests.txt" | tail -20
