"""Schedules: warm-up from a value, hold, floors, exponential ramps and schedules over images,
enough to state R3GAN's (cosine ramps over images with a floor)."""

from __future__ import annotations

import math

import pytest
import torch

from gankit import ConfigError, Trainer
from gankit.presets import dcgan_task1
from gankit.schedules import constant, cosine, exponential, linear, over_images
from gankit.train import GeneratorEMA


def test_warmup_hold_and_floor():
    s = cosine(1.0, 0.1, steps=10, warmup=4, warmup_from=0.5, hold=2)
    assert [s(i) for i in range(4)] == pytest.approx([0.5, 0.625, 0.75, 0.875])
    assert s(4) == s(5) == s(6) == 1.0  # end of warm-up, then the hold
    assert s(11) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert s(16) == pytest.approx(0.1) and s(10**6) == pytest.approx(0.1)
    lin = linear(2.0, 4.0, steps=4, hold=1)
    assert [lin(i) for i in range(7)] == pytest.approx([2.0, 2.0, 2.5, 3.0, 3.5, 4.0, 4.0])


def test_cosine_can_rise_as_beta2_does():
    s = cosine(0.9, 0.99, steps=100)
    assert s(0) == pytest.approx(0.9) and s(50) == pytest.approx(0.945) and s(100) == pytest.approx(0.99)


def test_exponential_has_a_constant_ratio():
    s = exponential(1e-3, 1e-5, steps=4)
    ratios = [s(i + 1) / s(i) for i in range(4)]
    assert ratios == pytest.approx([10 ** -0.5] * 4)
    assert s(100) == pytest.approx(1e-5)
    with pytest.raises(ConfigError, match="> 0"):
        exponential(1.0, 0.0, steps=3)


def test_over_images_runs_a_schedule_stated_in_images():
    s = over_images(linear(1.0, 0.0, steps=1000), batch_size=64)
    assert s(0) == 1.0 and s(5) == pytest.approx(1 - 320 / 1000) and s(16) == 0.0
    with pytest.raises(ConfigError, match="batch_size"):
        over_images(constant(1.0), batch_size=0)


def test_bad_lengths_are_refused():
    with pytest.raises(ConfigError, match="steps"):
        linear(1, 0, steps=0)
    with pytest.raises(ConfigError, match="hold"):
        cosine(1, 0, steps=3, hold=-1)


def test_an_ema_half_life_is_schedulable():
    ema = GeneratorEMA(half_life_images=10.0)
    t = Trainer(dcgan_task1(image_size=32, base_channels=4, z_dim=8, batch_size=4, sample_grid=2),
                device="cpu", progress=False, callbacks=[ema],
                schedules={"ema.half_life_images": over_images(linear(100.0, 200.0, steps=8), 4)})
    t.train_step(torch.rand(4, 3, 32, 32) * 2 - 1)
    t.train_step(torch.rand(4, 3, 32, 32) * 2 - 1)
    assert ema.half_life_images == pytest.approx(150.0)  # set before step 1: 4 images of 8
