"""Generator EMA: the averaging rule by hand, decay 0 is the generator, it samples, evaluates
and exports by default, and resumes bitwise."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from gankit import ConfigError, Trainer
from gankit.presets import dcgan_task1
from gankit.train import Callback, GeneratorEMA, load_generator
from gankit.train.ema import recompute_batchnorm

IMAGES = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))


def _tiny(**kw):
    return dcgan_task1(image_size=32, base_channels=4, z_dim=8, batch_size=4, sample_grid=2, **kw)


def _state(net) -> list[torch.Tensor]:
    return [v.detach().clone() for v in net.state_dict().values()]


class Snapshots(Callback):
    """Records the raw generator's parameters after every step."""

    name = "snapshots"

    def __init__(self):
        self.params: list[list[torch.Tensor]] = []

    def on_step_end(self, trainer, batch, logs):
        self.params.append([p.detach().clone() for p in trainer.generator.parameters()])


def test_beta_from_half_life_and_ramp_up():
    ema = GeneratorEMA(half_life_images=640)
    assert ema.beta(batch_images=640, images_seen=10**6) == 0.5
    assert ema.beta(batch_images=64, images_seen=10**6) == pytest.approx(0.5 ** 0.1)
    ramped = GeneratorEMA(half_life_images=10_000, rampup=0.05)  # half-life min(10k, 0.05 * seen)
    assert ramped.beta(batch_images=100, images_seen=2000) == pytest.approx(0.5)
    assert GeneratorEMA(decay=0.9).beta(batch_images=64, images_seen=64) == 0.9
    # a decay with a ramp-up is first turned into its half-life at the batch size
    assert GeneratorEMA(decay=0.5, rampup=1.0).beta(batch_images=8, images_seen=4) == pytest.approx(0.25)


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="not both"):
        GeneratorEMA(0.9, half_life_images=10)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        GeneratorEMA(1.5)
    with pytest.raises(ConfigError, match="'copy' or 'average'"):
        GeneratorEMA(buffers="mean")
    with pytest.raises(ConfigError, match="one GeneratorEMA"):
        Trainer(_tiny(), device="cpu", progress=False, callbacks=[GeneratorEMA(), GeneratorEMA(name="e2")])
    with pytest.raises(ConfigError, match="no GeneratorEMA"):
        Trainer(_tiny(), device="cpu", progress=False).sample(2, ema=True)


def test_decay_zero_equals_the_generator_bitwise():
    torch.manual_seed(0)
    t = Trainer(_tiny(), device="cpu", progress=False, callbacks=[GeneratorEMA(decay=0.0)])
    t.fit(IMAGES, max_steps=3)
    for a, b in zip(_state(t.sampling_generator()), _state(t.generator)):
        assert torch.equal(a, b)


def test_two_steps_averaged_by_hand():
    torch.manual_seed(0)
    snaps, beta = Snapshots(), 0.75
    recipe = _tiny()
    g0 = [p.detach().clone() for p in recipe.generator.parameters()]
    t = Trainer(recipe, device="cpu", progress=False, callbacks=[snaps, GeneratorEMA(decay=beta)])
    t.fit(IMAGES, max_steps=2)
    g1, g2 = snaps.params
    for p0, p1, p2, e in zip(g0, g1, g2, t.ema.module.parameters()):
        assert_close(e, beta * (beta * p0 + (1 - beta) * p1) + (1 - beta) * p2)
        assert not torch.equal(e, p2)
    for a, b in zip(t.ema.module.buffers(), t.generator.buffers()):  # buffers: copied
        assert torch.equal(a, b)
    assert (t.ema.images_seen, t.ema.updates) == (8, 2)


def test_start_step_copies_until_then():
    torch.manual_seed(0)
    snaps = Snapshots()
    t = Trainer(_tiny(), device="cpu", progress=False,
                callbacks=[snaps, GeneratorEMA(decay=0.5, start_step=1)])
    t.fit(IMAGES, max_steps=2)
    g1, g2 = snaps.params
    for p1, p2, e in zip(g1, g2, t.ema.module.parameters()):
        assert_close(e, 0.5 * p1 + 0.5 * p2)


def test_averaged_buffers():
    torch.manual_seed(0)
    t = Trainer(_tiny(), device="cpu", progress=False, callbacks=[GeneratorEMA(decay=0.5, buffers="average")])
    before = [b.clone() for b in t.generator.buffers()]
    t.fit(IMAGES, max_steps=1)
    for b0, b1, e in zip(before, t.generator.buffers(), t.ema.module.buffers()):
        if e.is_floating_point():
            assert_close(e, 0.5 * b0 + 0.5 * b1)
        else:
            assert torch.equal(e, b1)


def test_samples_evaluation_and_export_use_the_average_by_default(tmp_path):
    torch.manual_seed(0)
    recipe = _tiny()
    recipe.ema = GeneratorEMA(decay=0.5)  # a recipe brings its own EMA
    t = Trainer(recipe, device="cpu", progress=False, eval_every=2, eval_samples=8, eval_metrics=("fid",))
    t.fit(IMAGES, max_steps=2)
    assert t.ema is recipe.ema and t.sampling_generator() is recipe.ema.module
    assert torch.equal(t.sample(4, seed=1), t.sample(4, seed=1, ema=True))
    assert not torch.equal(t.sample(4, seed=1), t.sample(4, seed=1, ema=False))
    assert t.eval_history[-1]["generator"] == "ema"
    averaged, raw = _state(t.ema.module), _state(t.generator)
    for ema, expected in ((None, averaged), (False, raw)):
        path = t.export_generator(tmp_path / f"g_{ema}.safetensors", ema=ema)
        for a, b in zip(_state(load_generator(path)), expected):
            assert torch.equal(a, b)
    ckpt = t.save(tmp_path / "last.pt")  # a checkpoint: the average unless asked for the raw one
    for ema, expected in ((True, averaged), (False, raw)):
        for a, b in zip(_state(load_generator(ckpt, ema=ema)), expected):
            assert torch.equal(a, b)


def test_resume_keeps_the_average_bitwise(tmp_path):
    def ema():
        return GeneratorEMA(half_life_images=16, rampup=0.5)

    torch.manual_seed(0)
    full = Trainer(_tiny(), device="cpu", progress=False, callbacks=[ema()])
    full.fit(IMAGES, max_steps=4)
    torch.manual_seed(0)
    first = Trainer(_tiny(), device="cpu", progress=False, callbacks=[ema()])
    first.fit(IMAGES, max_steps=2)
    first.save(tmp_path / "last.pt")
    torch.manual_seed(7)
    second = Trainer.load(tmp_path / "last.pt", device="cpu", progress=False, callbacks=[ema()])
    for a, b in zip(_state(second.ema.module), _state(first.ema.module)):
        assert torch.equal(a, b)
    second.fit(IMAGES, max_steps=4)
    for a, b in zip(_state(full.ema.module), _state(second.ema.module)):
        assert torch.equal(a, b)
    assert full.ema.images_seen == second.ema.images_seen == 16


def test_recompute_batchnorm_is_deterministic_and_leaves_the_rng_alone():
    torch.manual_seed(0)
    t = Trainer(_tiny(), device="cpu", progress=False, callbacks=[GeneratorEMA(decay=0.5, recompute_bn=16)])
    t.fit(IMAGES, max_steps=1)
    rng = torch.get_rng_state()
    sampling = t.sampling_generator()
    assert torch.equal(torch.get_rng_state(), rng)
    assert sampling is not t.ema.module  # the average itself keeps its copied statistics
    for a, b in zip(sampling.parameters(), t.ema.module.parameters()):
        assert torch.equal(a, b)
    bn = [m for m in sampling.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    raw_bn = [m for m in t.ema.module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not torch.equal(bn[0].running_mean, raw_bn[0].running_mean)
    again = recompute_batchnorm(_copy(t.ema.module), z_dim=8, num_images=16, batch_size=4)
    for a, b in zip(_state(again), _state(sampling)):
        assert torch.equal(a, b)
    assert "sampling" in t.ema.state_dict()


def _copy(net):
    import copy

    return copy.deepcopy(net)
