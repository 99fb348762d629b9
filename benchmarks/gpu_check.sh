#!/usr/bin/env bash
# CUDA check (under 5 minutes on one GPU): the test suite's CUDA tests, then the training
# benchmark on the GPU. Results go to the folder given as $1 (default: $OUT or gpu-results).
#
#   bash benchmarks/gpu_check.sh results/
#
# Every device-aware test takes its devices from one fixture (cpu, plus cuda when
# available), so "-k cuda" selects exactly the CUDA variants of the suite.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-results}}
mkdir -p "$out"
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device here: nothing to check" | tee "$out/cuda_tests.log"
    exit 1
fi
status=0
timeout 170 $PY -m pytest -q -k cuda -p no:cacheprovider tests 2>&1 | tee "$out/cuda_tests.log" || status=1
timeout 110 $PY benchmarks/bench_train.py --device cuda --steps 30 --repeats 1 --e2e-images 1024 \
    --out "$out/bench_cuda.json" 2>&1 | tee "$out/bench_cuda.txt" || status=1
exit $status
