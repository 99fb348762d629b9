#!/usr/bin/env bash
# Distributed training on CUDA / NCCL: the tests of tests/test_distributed.py on 2 GPUs,
# then a short torchrun training run on every GPU of this machine.
#
#   usage: benchmarks/multi_gpu_check.sh OUT_DIR
#
# Writes to OUT_DIR: gpus.txt, pytest.log and pytest.xml (the tests), train.log and
# run/ (the torchrun run: metrics.jsonl, samples, checkpoints), summary.txt.
# With fewer than 2 CUDA GPUs it says so (OUT_DIR/SKIPPED.txt) and exits 0.
# Exit status: 0 when every step passed, 1 otherwise.
set -uo pipefail

OUT=${1:?usage: benchmarks/multi_gpu_check.sh OUT_DIR}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n "${PYTHON:-}" ]]; then
    PY=$PYTHON
elif [[ -x "$ROOT/.venv/bin/python" ]]; then
    PY=$ROOT/.venv/bin/python
else
    PY=python3
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$ROOT" || exit 1

NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
NCCL=$("$PY" -c "import torch.distributed as d; print(int(d.is_available() and d.is_nccl_available()))")
if [[ "$NGPU" -lt 2 || "$NCCL" != 1 ]]; then
    msg="multi_gpu_check: skipped: this machine has $NGPU CUDA GPU(s) (NCCL available: $NCCL); the NCCL check needs at least 2 GPUs and NCCL."
    echo "$msg" | tee "$OUT/SKIPPED.txt"
    exit 0
fi
nvidia-smi -L > "$OUT/gpus.txt" 2>&1 || "$PY" -c "import torch; [print(torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())]" > "$OUT/gpus.txt"
echo "multi_gpu_check: $NGPU GPUs; results in $OUT"

status=0

# 1. The distributed tests (2 processes, ranks on cuda:0 and cuda:1, NCCL).
echo "== tests/test_distributed.py on CUDA / NCCL"
GANKIT_TEST_DEVICE=cuda OMP_NUM_THREADS=1 "$PY" -m pytest -q -rs tests/test_distributed.py \
    --junitxml "$OUT/pytest.xml" 2>&1 | tee "$OUT/pytest.log"
tests_rc=${PIPESTATUS[0]}
[[ $tests_rc -eq 0 ]] || status=1

# 2. A short training run on every GPU (global batch: 32 images per GPU).
echo "== torchrun --nproc_per_node=$NGPU: dcgan_task1 on toy-faces, 200 steps"
BATCH=$((32 * NGPU))
rm -rf "$OUT/run"
SECONDS=0
if "$PY" -m gankit train --help > /dev/null 2>&1; then
    OMP_NUM_THREADS=4 "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" \
        -m gankit train dcgan_task1 --data toy-faces --max-steps 200 --out "$OUT/run" \
        --device cuda --seed 0 --set "batch_size=$BATCH" 2>&1 | tee "$OUT/train.log"
    train_rc=${PIPESTATUS[0]}
else  # no 'gankit train' command yet: the same run through the Python API
    cat > "$OUT/train_api.py" <<EOF
import torch
from gankit import Trainer, get_preset
torch.manual_seed(0)
trainer = Trainer(get_preset("dcgan_task1", batch_size=$BATCH), device="cuda", out_dir="$OUT/run", progress=False)
trainer.fit("toy-faces", max_steps=200)
EOF
    OMP_NUM_THREADS=4 "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" \
        "$OUT/train_api.py" 2>&1 | tee "$OUT/train.log"
    train_rc=${PIPESTATUS[0]}
fi
seconds=$SECONDS
[[ $train_rc -eq 0 ]] || status=1
checkpoints=$(ls "$OUT/run/checkpoints" 2>/dev/null | tr '\n' ' ')
log_lines=$(wc -l < "$OUT/run/metrics.jsonl" 2>/dev/null || echo 0)
# rank 0 alone writes: one line per step (not one per process) and the last checkpoint
if [[ ! -f "$OUT/run/checkpoints/last.pt" || "$log_lines" -ne 200 ]]; then
    echo "multi_gpu_check: expected checkpoints/last.pt and 200 lines in metrics.jsonl, got '$checkpoints' and $log_lines lines"
    status=1
fi

{
    echo "gpus: $NGPU"
    echo "tests: exit $tests_rc ($(tail -n 1 "$OUT/pytest.log"))"
    echo "train: exit $train_rc, $NGPU processes, global batch $BATCH, 200 steps in ${seconds} s (startup included)"
    echo "train outputs: checkpoints: $checkpoints; metrics.jsonl lines: $log_lines"
    echo "status: $([[ $status -eq 0 ]] && echo PASS || echo FAIL)"
} | tee "$OUT/summary.txt"
exit $status
