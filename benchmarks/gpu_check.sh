#!/usr/bin/env bash
# CUDA check (about 8 minutes on one GPU): the test suite's CUDA tests, then the training
# benchmark on the GPU. Results go to the folder given as $1 (default: $OUT or gpu-results).
#
#   bash benchmarks/gpu_check.sh results/
#
# Every device-aware test takes its devices from one fixture (cpu, plus cuda when
# available), and the CUDA-only tests have "cuda" in their names, so "-k cuda" selects
# exactly the CUDA part of the suite.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-results}}
mkdir -p "$out"
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device here: nothing to check" | tee "$out/cuda_tests.log"
    exit 1
fi
status=0
timeout 150 $PY -m pytest -q -k cuda -p no:cacheprovider tests 2>&1 | tee "$out/cuda_tests.log" || status=1
# training steps: baseline loop, faithful, fast without and with CUDA graphs (both presets)
timeout 170 $PY benchmarks/bench_train.py --device cuda --steps 200 --repeats 1 --e2e-images 0 \
    --modes baseline,faithful,fast_nograph,fast --out "$out/bench_cuda_steps.json" 2>&1 \
    | tee "$out/bench_cuda_steps.txt" || status=1
# end to end over a JPEG folder (the baseline with its 4-worker DataLoader)
timeout 120 $PY benchmarks/bench_train.py --device cuda --steps 0 --e2e-images 4096 --e2e-epochs 3 \
    --out "$out/bench_cuda_e2e.json" 2>&1 | tee "$out/bench_cuda_e2e.txt" || status=1
# sweeps: task one fast mode with K = 1, 4, 8, 16 members batched (MultiTrainer, engine vmap)
timeout 200 $PY benchmarks/sweep_gpu.py --ks 1,4,8,16 --steps 100 --timeout 45 --out "$out/sweep_gpu.json" 2>&1 \
    | tee "$out/sweep_gpu.txt" || status=1
exit $status
