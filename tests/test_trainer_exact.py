"""The Trainer reproduces SPEC.md's procedures: against an independent transcription, and
across save / load (bitwise)."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import spec_reference as ref
from gankit import Trainer
from gankit.presets import get_preset


def _table(history: list[dict]) -> torch.Tensor:
    """A history (one record per step) as a (steps, names) tensor, NaN where not logged."""
    names = sorted({k for rec in history for k in rec})
    return torch.tensor([[rec.get(k, float("nan")) for k in names] for rec in history], dtype=torch.float64)


def _batches(k: int, bs: int, seed: int = 123) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(bs, 3, 64, 64, generator=g) * 2 - 1 for _ in range(k)]


def _reference_run(task: int, seed: int, batches, device):
    builder = ref.build_task1 if task == 1 else ref.build_task2
    G, D = builder(seed)
    G, D = G.to(device).train(), D.to(device).train()
    if task == 1:
        opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.999))
    else:
        opt_g = torch.optim.SGD(G.parameters(), lr=1e-4)
        opt_d = torch.optim.SGD(D.parameters(), lr=1e-4)
    torch.randn(100, 100)  # the original draws its fixed z_sample before the loop
    losses = []
    for i, x in enumerate(batches):
        x = x.to(device)
        if task == 1:
            losses.append(ref.task1_train_step(G, D, opt_g, opt_d, x))
        else:
            losses.append(ref.task2_train_step(G, D, opt_g, opt_d, x, i))
    return G, D, losses


@pytest.mark.parametrize("task,name,k,bs", [(1, "dcgan_task1", 3, 8), (2, "wgan_task2", 10, 4)])
def test_train_steps_equal_reference(task, name, k, bs, device):
    seed = 7
    batches = _batches(k, bs)
    # On the CPU the faithful path is bitwise identical. On CUDA both runs use
    # deterministic algorithms (the trainer's cuDNN autotuning would otherwise pick its
    # own), so only float32 rounding of otherwise equal kernels may remain.
    cuda = device.type == "cuda"
    if cuda:
        saved = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    try:
        G_ref, D_ref, ref_losses = _reference_run(task, seed, batches, device)
        torch.manual_seed(seed)
        trainer = Trainer(get_preset(name), device=device, progress=False, deterministic=cuda)
        ours = [trainer.train_step(x) for x in batches]
        if cuda:
            torch.cuda.synchronize()
    finally:
        if cuda:
            torch.use_deterministic_algorithms(saved[0])
            torch.backends.cudnn.benchmark = saved[1]

    tol = dict(rtol=1e-5, atol=1e-6) if cuda else dict(rtol=0, atol=0)
    g_steps = 0
    for (ld, lg), out in zip(ref_losses, ours):
        assert_close(float(out["loss_d"]), ld, **tol)
        if lg is None:
            assert out["loss_g"] is None
        else:
            g_steps += 1
            assert_close(float(out["loss_g"]), lg, **tol)
    assert g_steps == (k if task == 1 else k // 5) and g_steps >= 1
    for a, b in ((trainer.generator, G_ref), (trainer.discriminator, D_ref)):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert_close(va, vb, msg=f"{ka} vs {kb}", **tol)
    if task == 2:  # clipping held every critic parameter in [-c, c]
        for p in trainer.discriminator.parameters():
            assert p.abs().max() <= 0.01


@pytest.mark.parametrize("name", ["dcgan_task1", "wgan_task2"])
def test_resume_is_bitwise(name, tmp_path):
    # 3 batches per epoch (the last one smaller); N = 7 steps crosses two epoch boundaries.
    side = 32 if name == "dcgan_task1" else 64
    images = torch.randint(0, 256, (10, 3, side, side), dtype=torch.uint8)
    overrides = dict(image_size=32, base_channels=4, z_dim=8, batch_size=4) if name == "dcgan_task1" \
        else dict(base_channels=4, z_dim=8, batch_size=4)
    N, k = 7, 4

    torch.manual_seed(0)
    full = Trainer(get_preset(name, **overrides), device="cpu", progress=False, out_dir=tmp_path / "a")
    full.fit(images, epochs=10, max_steps=N)
    rng_after_full = torch.get_rng_state()

    torch.manual_seed(0)
    first = Trainer(get_preset(name, **overrides), device="cpu", progress=False, out_dir=tmp_path / "b")
    first.fit(images, epochs=10, max_steps=k)
    ckpt = tmp_path / "b" / "checkpoints" / "last.pt"
    assert ckpt.is_file()
    torch.manual_seed(999)  # whatever happens in between must not matter
    torch.randn(5)
    second = Trainer.load(ckpt, device="cpu", progress=False, out_dir=tmp_path / "b")
    assert (second.step, second.epoch, second.batch_index) == (4, 1, 1)
    second.fit(images, epochs=10, max_steps=N)

    assert second.step == full.step == N
    for a, b in ((full.generator, second.generator), (full.discriminator, second.discriminator)):
        for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(va, vb), ka
    assert_close(_table(full.history), _table(second.history), rtol=0, atol=0, equal_nan=True)
    assert torch.equal(rng_after_full, torch.get_rng_state())
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == N
