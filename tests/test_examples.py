"""Every script in examples/ runs end to end in quick mode and writes what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

RUN_FILES = [
    "metrics.jsonl",
    "loss_curve.png",
    "samples/epoch_0001.png",
    "samples/epoch_0002.png",
    "checkpoints/epoch_0001.pt",
    "checkpoints/epoch_0002.pt",
    "checkpoints/last.pt",
]

# example -> files it must write under --out in quick mode
EXPECTED = {
    "train_task1.py": RUN_FILES,
    "train_task2.py": RUN_FILES,
    "compose_hinge_sn.py": [*RUN_FILES, "samples_seed0.png"],
    "r3gan_objective.py": ["metrics.jsonl", "loss_curve.png", "checkpoints/last.pt"],
    "lazy_r1.py": ["metrics.jsonl", "loss_curve.png", "checkpoints/last.pt"],
    "consistency_bcr.py": ["metrics.jsonl", "loss_curve.png", "checkpoints/last.pt"],
    "csv_logger.py": ["metrics.csv", "hparams.csv", "metrics.jsonl", "checkpoints/last.pt"],
    "ttur_cosine.py": ["metrics.jsonl", "loss_curve.png", "checkpoints/last.pt"],
    "grad_accumulation.py": ["metrics.jsonl", "loss_curve.png", "checkpoints/last.pt"],
    "sample_from_checkpoint.py": [
        "train/checkpoints/last.pt",
        "samples.png",
        "generator.safetensors",
    ],
}


def run_example(script: str, out: Path, *args: str, env: dict[str, str] | None = None):
    # One thread: the examples are tiny, and the test suite may run beside other work.
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--out", str(out), *args],
        cwd=out.parent, env=full_env, capture_output=True, text=True, timeout=300,
    )


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs_in_quick_mode(script, tmp_path):
    out = tmp_path / "out"
    proc = run_example(script, out, "--quick")
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    missing = [name for name in EXPECTED[script] if not (out / name).is_file()]
    assert not missing, f"{script} did not write {missing}:\n{proc.stdout}"


def test_environment_variable_selects_quick_mode(tmp_path):
    # Without --quick and without --checkpoint, only quick mode trains a checkpoint itself;
    # full mode would stop because runs/train_task1 does not exist in tmp_path.
    out = tmp_path / "out"
    proc = run_example("sample_from_checkpoint.py", out, env={"GANKIT_EXAMPLES_QUICK": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "samples.png").is_file()
    assert "reproduces the samples: True" in proc.stdout
