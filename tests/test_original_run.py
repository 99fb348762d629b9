"""gankit train replays the report's original code bitwise: the notebook transcribed in
``original_notebook.py`` and ``gankit train`` (the CLI, in a subprocess) on one folder of
JPEGs, two epochs with a partial last batch, compared batch by batch, latent by latent,
epoch by epoch (G and D), z_sample and the epoch grids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

TESTS = Path(__file__).resolve().parent


def _folder(tmp: Path, n: int) -> Path:
    """``n`` JPEGs of several sizes (so the resize matters), named 1.jpg ... as the face set."""
    folder = tmp / "faces"
    folder.mkdir()
    g = torch.Generator().manual_seed(5)
    for i in range(n):
        side = (72, 96, 64, 80)[i % 4]
        base = torch.rand(3, 1, 1, generator=g) * 255
        noise = torch.rand(3, side, side, generator=g) * 80
        pixels = (base + noise).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(folder / f"{i + 1}.jpg", quality=90)
    return folder


# Both programs run with the same number of threads, named rather than left to each
# process's view of the machine: the thread count sets how ATen, oneDNN and MKL split
# their sums, so two processes that see different counts disagree in the last bits (with
# OMP_NUM_THREADS=1 for gankit alone, 25 of the generator's 42 state-dict entries
# differ after one epoch of task two). Equality is promised for one environment.
THREADS = str(min(2, os.cpu_count() or 1))


def _run(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": THREADS, "MKL_NUM_THREADS": THREADS}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def _trace(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _unequal(ours: dict, theirs: dict) -> list[str]:
    """The entries that are not bitwise equal, in order (the two codes name their layers differently)."""
    assert len(ours) == len(theirs)
    return [f"{k} vs {k2} (max |diff| {(a.double() - b.double()).abs().max().item():.3g})"
            if a.shape == b.shape else f"{k} {tuple(a.shape)} vs {k2} {tuple(b.shape)}"
            for (k, a), (k2, b) in zip(ours.items(), theirs.items()) if a.shape != b.shape or not torch.equal(a, b)]


def _differences(out: Path, orig: Path) -> list[str]:
    """Where gankit's run folder ``out`` and the original's ``orig`` differ: G and D after
    each epoch, and the epoch grids' pixels (gankit's PNG also names its writer in a
    Software chunk, so the pixels are compared, not the files)."""
    found = []
    for epoch in (1, 2):
        ckpt = torch.load(out / "checkpoints" / f"epoch_{epoch:04d}.pt", weights_only=True)
        for side, name in (("generator", "G"), ("discriminator", "D")):
            bad = _unequal(ckpt[side], torch.load(orig / f"{name}_epoch{epoch}.pth", weights_only=True))
            if bad:
                found.append(f"{name} after epoch {epoch}: {len(bad)} of {len(ckpt[side])} entries, first {bad[0]}")
        grid_ours = Image.open(out / "samples" / f"epoch_{epoch:04d}.png")
        grid_theirs = Image.open(orig / f"Epoch_{epoch:03d}.png")
        if (grid_ours.size, grid_ours.mode, grid_ours.tobytes()) != (grid_theirs.size, grid_theirs.mode,
                                                                     grid_theirs.tobytes()):
            found.append(f"the grid of epoch {epoch}")
    return found


@pytest.mark.slow
@pytest.mark.parametrize("task,preset,images", [(1, "dcgan_task1", 100), (2, "wgan_task2", 170)])
def test_gankit_train_replays_the_original_run(tmp_path, task, preset, images):
    # task one: 100 images = 64 + 36; task two: 170 = 5 x 32 + 10 (a generator step at i = 4)
    folder = _folder(tmp_path, images)
    orig = tmp_path / "original"
    _run([sys.executable, str(TESTS / "original_notebook.py"), str(task), str(folder), str(orig), "2"], tmp_path)
    out = tmp_path / "gankit"
    _run([sys.executable, "-m", "gankit", "train", preset, "--data", str(folder), "--epochs", "2",
          "--device", "cpu", "--seed", "0", "--seed-order", "original",
          "--init-generator", str(orig / "G_init.pth"), "--init-discriminator", str(orig / "D_init.pth"),
          "--file-order", "listing", "--set", "checkpoint_every=1", "--trace", str(out / "trace.jsonl"),
          "--out", str(out), "--no-progress"], tmp_path)

    theirs, ours = _trace(orig / "trace.jsonl"), _trace(out / "trace.jsonl")
    steps = 4 if task == 1 else 12
    assert len(theirs) == len(ours) == steps
    for a, b in zip(ours, theirs):  # every batch and every latent, in order
        assert (a["step"], a["batch"], a["latents"]) == (b["step"], b["batch"], b["latents"])
    assert sum(len(r["latents"]) for r in ours) == (8 if task == 1 else 12 + 2)
    ckpt = torch.load(out / "checkpoints" / "epoch_0001.pt", weights_only=True)
    assert torch.equal(ckpt["z_sample"], torch.load(orig / "z_sample.pt", weights_only=True))
    first = _differences(out, orig)
    if not first:
        return
    # Twice in about six full runs of the suite (never in some 40 runs of this test alone)
    # the original program's own run came out differently: gankit, and the original rerun
    # on the same initial weights, agreed bitwise with each other and not with it (the
    # cause is not known; see docs/reproducing.rst). So a mismatch reruns the original once
    # on those weights: gankit must equal the rerun bitwise, and the warning records it.
    rerun = tmp_path / "original-rerun"
    _run([sys.executable, str(TESTS / "original_notebook.py"), str(task), str(folder), str(rerun), "2", str(orig)],
         tmp_path)
    assert _trace(rerun / "trace.jsonl") == theirs  # the same batches and latents again
    again = _differences(out, rerun)
    assert not again, (f"gankit differs from the original run ({'; '.join(first)}) and from the original "
                       f"rerun on the same initial weights ({'; '.join(again)})")
    warnings.warn(f"the original program's first run was not reproducible ({'; '.join(first)}); its rerun on "
                  "the same initial weights equals gankit's run bitwise", stacklevel=1)
