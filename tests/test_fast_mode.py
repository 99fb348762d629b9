"""Fast mode (bf16 autocast + channels-last) trains comparably to the faithful default."""

from __future__ import annotations

import statistics

import torch

from gankit import Trainer
from gankit.data import load_images
from gankit.presets import get_preset


def _train(faces, **options):
    torch.manual_seed(0)
    recipe = get_preset("dcgan_task1", image_size=32, base_channels=8, z_dim=16, batch_size=32,
                        g_lr=2e-4, d_lr=2e-4)
    trainer = Trainer(recipe, device="cpu", progress=False, eval_every=300, eval_samples=256,
                      **options)
    trainer.fit(faces, max_steps=300)
    return trainer


def test_fast_mode_reaches_comparable_losses_and_samples():
    faces = load_images("toy-faces", num_images=1024, image_size=32, progress=False)
    faithful = _train(faces)
    fast = _train(faces, precision="bf16", channels_last=True)
    assert fast.objective.name == "bce_logits" and faithful.objective.name == "bce"

    def late(trainer, column):
        return statistics.mean(row[column] for row in trainer.history[-100:] if row[column] == row[column])

    for column in ("loss_d", "loss_g"):  # over the last 100 steps
        a, b = late(faithful, column), late(fast, column)
        assert 0.6 < b / a < 1.6, (column, a, b)
    fid_start = faithful.eval_history[0]["fid"]
    fid_faithful, fid_fast = faithful.eval_history[-1]["fid"], fast.eval_history[-1]["fid"]
    assert fid_faithful < 0.7 * fid_start and fid_fast < 0.7 * fid_start
    assert 0.6 < fid_fast / fid_faithful < 1.6, (fid_faithful, fid_fast)
    # the two runs really differ (fast mode is other numerics)
    assert not torch.equal(faithful.generator.projection.pre[0].weight, fast.generator.projection.pre[0].weight)
