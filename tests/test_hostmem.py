"""Host allocator tuning: applied once on glibc, switchable off, and it changes no number."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gankit.train import hostmem

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Three faithful task-one steps (64x64, batch 8), then a digest of every weight.
SCRIPT = """
import hashlib, torch
from gankit import Trainer
from gankit.presets import get_preset
from gankit.train import hostmem
torch.manual_seed(3)
trainer = Trainer(get_preset("dcgan_task1", batch_size=8), device="cpu", progress=False)
g = torch.Generator().manual_seed(4)
for _ in range(3):
    trainer.train_step(torch.rand(8, 3, 64, 64, generator=g) * 2 - 1)
h = hashlib.sha256()
for t in [*trainer.generator.state_dict().values(), *trainer.discriminator.state_dict().values()]:
    h.update(t.detach().contiguous().numpy().tobytes())
print(hostmem._applied, h.hexdigest())
"""


def _run(env_value: str) -> tuple[str, str]:
    env = dict(os.environ, GANKIT_TUNE_MALLOC=env_value,
               PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True)
    applied, digest = out.stdout.split()
    return applied, digest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tuning is Linux-only")
def test_tuning_is_applied_and_changes_no_number():
    tuned = _run("1")
    plain = _run("0")
    assert tuned[0] == "True" and plain[0] == "False"
    assert tuned[1] == plain[1]  # bitwise the same weights after three steps


def test_tuning_is_idempotent():
    first = hostmem.tune_host_allocator()
    assert hostmem.tune_host_allocator() is first
