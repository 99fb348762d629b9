"""The presets beyond the report: what each builds, and that each trains, resumes, exports and samples."""

from __future__ import annotations

import copy

import pytest
import torch

from gankit import Trainer, load_generator
from gankit.augment import ADA
from gankit.cli import main
from gankit.errors import ConfigError
from gankit.presets import (
    DCGAN_STABLE_ABLATION,
    META_KEYS,
    dcgan_task1,
    get_preset,
    make_augmentation,
    wgan_task2,
)
from gankit.regularizers import GradientPenalty, R1Penalty, R2Penalty, WeightClip
from gankit.train import GeneratorEMA

NEW = ["wgan_task2_paper", "wgan_gp_task2", "sngan_task1", "r3gan_task1", "dcgan_task1_stable"]
TINY = dict(image_size=32, base_channels=2, z_dim=8, batch_size=4)
IMAGES = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))


def _state(module):
    return [t.detach().clone() for t in module.state_dict().values()]


def _kinds(module):
    return {type(m).__name__ for m in module.modules()}


def test_each_preset_says_what_it_is_and_where_it_comes_from():
    for name in NEW:
        meta = get_preset(name, **TINY).meta
        assert set(META_KEYS) <= set(meta), name
        assert meta["summary"] and meta["source"] and meta["recipe"], name
        assert isinstance(meta["benchmarks"], list)


def test_what_each_preset_changes():
    paper = get_preset("wgan_task2_paper")
    assert (paper.batch_size, paper.g_optimizer, paper.n_critic, paper.clip_value) == (64, "rmsprop_wgan", 5, 0.01)
    opt_g, _ = paper.build_optimizers()
    assert isinstance(opt_g, torch.optim.RMSprop) and opt_g.param_groups[0]["lr"] == 5e-5
    # same networks as the report's task two
    assert [p.shape for p in paper.discriminator.parameters()] == [p.shape for p in wgan_task2().discriminator.parameters()]

    gp = get_preset("wgan_gp_task2")
    step = gp.make_step()
    assert [type(r) for r in step.regularizers] == [GradientPenalty] and step.regularizers[0].weight == 10
    assert not step.constraints and step.schedule.n_critic == 5
    assert "BatchNorm2d" not in _kinds(gp.discriminator) and "GroupNorm" in _kinds(gp.discriminator)
    _, opt_d = gp.build_optimizers()
    assert opt_d.param_groups[0]["betas"] == (0.0, 0.9) and opt_d.param_groups[0]["lr"] == 1e-4

    sn = get_preset("sngan_task1")
    assert sn.loss == "hinge" and isinstance(sn.ema, GeneratorEMA)
    assert (sn.ema.half_life_images, sn.ema.rampup, sn.ema.recompute_bn) == (10_000, None, 2048)  # ema_probe.py
    assert "BatchNorm2d" not in _kinds(sn.discriminator) and "Sigmoid" not in _kinds(sn.discriminator)
    assert any("parametrizations" in k for k in sn.discriminator.state_dict())  # spectral norm
    for opt in sn.build_optimizers():  # Miyato et al. 2018, Table 1 setting C
        assert opt.param_groups[0]["lr"] == 2e-4 and opt.param_groups[0]["betas"] == (0.5, 0.999)

    r3 = get_preset("r3gan_task1")
    step = r3.make_step()
    assert r3.loss == "rpgan" and [type(r) for r in step.regularizers] == [R1Penalty, R2Penalty]
    assert all(r.every == 4 for r in step.regularizers)
    assert r3.r1_gamma == r3.r2_gamma == 100.0  # the sweeps' choice (docs/beyond.rst)
    assert "BatchNorm2d" not in _kinds(r3.discriminator)
    assert set(r3.schedules) == {"g.lr", "d.lr", "r1", "r2"}
    lr = r3.schedules["g.lr"]
    assert lr(0) == pytest.approx(2e-4) and lr(163_840 // 64) == pytest.approx(5e-5)
    assert r3.schedules["r1"](10**6) == pytest.approx(r3.r1_gamma / 20)  # gamma / 10, weight gamma / 2
    assert get_preset("r3gan_task1", decay_images=0).schedules == {}

    stable = get_preset("dcgan_task1_stable")
    assert stable.make_step().augment is None and isinstance(stable.ema, GeneratorEMA)
    # otherwise task one: same settings but the two changes, same initial weights
    base = dcgan_task1()
    differ = {k for k, v in vars(stable.settings).items() if getattr(base.settings, k) != v}
    assert differ == {"g_optimizer", "d_optimizer", "ema_half_life_images", "ema_rampup"}
    torch.manual_seed(0)
    a = get_preset("dcgan_task1_stable", **TINY)
    torch.manual_seed(0)
    b = dcgan_task1(**TINY)
    for x, y in zip(_state(a.generator) + _state(a.discriminator), _state(b.generator) + _state(b.discriminator)):
        assert torch.equal(x, y)


def test_the_ablation_rows_end_at_the_stable_preset():
    *_, (_, last) = DCGAN_STABLE_ABLATION
    stable = get_preset("dcgan_task1_stable").settings
    assert all(getattr(stable, k) == v for k, v in last.items())
    assert DCGAN_STABLE_ABLATION[0][1] == {}


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("size", [32, 64, 128])
def test_every_preset_builds_at_32_64_and_128(name, size):
    recipe = get_preset(name, image_size=size, base_channels=2)
    x = recipe.generator(torch.randn(2, 100))
    assert x.shape == (2, 3, size, size)
    assert recipe.discriminator(x).shape == (2,)


def test_augment_setting_names():
    assert make_augmentation("none") is None
    assert isinstance(make_augmentation("ada"), ADA)
    assert make_augmentation("diffaugment:translation,cutout").policy == "translation,cutout"
    with pytest.raises(ConfigError, match="augment must be none, diffaugment"):
        dcgan_task1(augment="mixup")
    with pytest.raises(ConfigError, match="unknown DiffAugment policy"):
        dcgan_task1(augment="diffaugment:zoom")
    with pytest.raises(ConfigError, match="ema_rampup must be > 0"):
        dcgan_task1(ema_rampup=0.0)


@pytest.mark.parametrize("name", NEW)
def test_trains_and_resumes_bitwise(name, tmp_path):
    kw = dict(TINY, n_critic=2) if "wgan" in name else dict(TINY)
    torch.manual_seed(0)
    full = Trainer(get_preset(name, **kw), device="cpu", progress=False)
    full.fit(IMAGES, max_steps=6)
    torch.manual_seed(0)
    first = Trainer(get_preset(name, **kw), device="cpu", progress=False, out_dir=tmp_path / "run")
    first.fit(IMAGES, max_steps=3)
    first.save(tmp_path / "last.pt")
    torch.manual_seed(123)  # the checkpoint, not the global seed, decides what follows
    second = Trainer.load(tmp_path / "last.pt", device="cpu", progress=False)
    second.fit(IMAGES, max_steps=6)
    nets = ("generator", "discriminator")
    for a, b in zip(sum((_state(getattr(full, n)) for n in nets), []), sum((_state(getattr(second, n)) for n in nets), [])):
        assert torch.equal(a, b)
    assert [r.get("loss_d") for r in full.history] == [r.get("loss_d") for r in first.history + second.history[3:]]
    if full.ema is not None:
        for a, b in zip(_state(full.ema.module), _state(second.ema.module)):
            assert torch.equal(a, b)


def test_ema_and_ada_from_settings_survive_resume(tmp_path):
    kw = dict(TINY, augment="ada", ema_half_life_images=16.0, ema_rampup=0.5, loss="nonsaturating")
    torch.manual_seed(0)
    full = Trainer(dcgan_task1(**kw), device="cpu", progress=False)
    full.fit(IMAGES, max_steps=10)
    torch.manual_seed(0)
    first = Trainer(dcgan_task1(**kw), device="cpu", progress=False)
    first.fit(IMAGES, max_steps=5)
    first.save(tmp_path / "last.pt")
    second = Trainer.load(tmp_path / "last.pt", device="cpu", progress=False)
    assert isinstance(second.step_fn.augment, ADA) and second.ema is not None
    assert second.step_fn.augment.p == first.step_fn.augment.p
    second.fit(IMAGES, max_steps=10)
    assert second.step_fn.augment.p == full.step_fn.augment.p
    # r_t is measured over intervals of 4 steps, one of which spans the checkpoint
    rts = [r.get("ada_rt") for r in full.history]
    assert any(x is not None for x in rts) and rts == [r.get("ada_rt") for r in first.history + second.history[5:]]
    for a, b in zip(_state(full.ema.module), _state(second.ema.module)):
        assert torch.equal(a, b)


def test_ema_recompute_bn_setting_gives_the_average_its_own_batchnorm_statistics():
    from gankit.train.ema import recompute_batchnorm

    with pytest.raises(ConfigError, match="ema_recompute_bn must be a non-negative integer"):
        dcgan_task1(ema_recompute_bn=-1)
    kw = dict(TINY, ema_half_life_images=16.0)
    torch.manual_seed(0)
    copied = Trainer(dcgan_task1(**kw), device="cpu", progress=False)
    copied.fit(IMAGES, max_steps=4)
    torch.manual_seed(0)
    own = Trainer(dcgan_task1(**kw, ema_recompute_bn=8), device="cpu", progress=False)
    own.fit(IMAGES, max_steps=4)
    assert own.ema.recompute_bn == 8 and copied.ema.recompute_bn == 0
    for a, b in zip(_state(copied.ema.module), _state(own.ema.module)):  # training is the same
        assert torch.equal(a, b)
    # sampling uses the average with statistics re-estimated on 8 of its own images
    expected = recompute_batchnorm(copy.deepcopy(copied.ema.module), z_dim=8, num_images=8, batch_size=4)
    for a, b in zip(_state(own.ema.sampling_module()), _state(expected)):
        assert torch.equal(a, b)
    assert not torch.equal(own.sample(4, seed=1), copied.sample(4, seed=1))


def test_recipe_schedules_are_applied_and_the_trainers_win():
    from gankit.schedules import constant

    torch.manual_seed(0)
    t = Trainer(get_preset("r3gan_task1", **TINY, decay_images=48), device="cpu", progress=False)
    t.fit(IMAGES, max_steps=13)  # set before step 13, after 12 steps = 48 images: the end of the cosine
    assert t.opt_g.param_groups[0]["lr"] == pytest.approx(5e-5, rel=1e-3)
    assert t.step_fn.regularizers[0].weight == pytest.approx(t.settings.r1_gamma / 20, rel=1e-3)
    t = Trainer(get_preset("r3gan_task1", **TINY), device="cpu", progress=False,
                schedules={"g.lr": constant(1e-3)})
    t.fit(IMAGES, max_steps=1)
    assert t.opt_g.param_groups[0]["lr"] == 1e-3 and t.opt_d.param_groups[0]["lr"] == pytest.approx(2e-4)


@pytest.mark.parametrize("name", NEW)
def test_cli_trains_exports_and_samples(name, tmp_path, capsys):
    out = tmp_path / "run"
    tiny = ["--set", "image_size=32", "--set", "base_channels=2", "--set", "z_dim=8", "--batch-size", "4",
            "--num-images", "12", "--device", "cpu", "--no-progress"]
    assert main(["train", name, "--data", "toy-faces", "--max-steps", "3", "--out", str(out), *tiny]) == 0
    ckpt = out / "checkpoints" / "last.pt"
    assert main(["train", name, "--data", "toy-faces", "--max-steps", "4", "--out", str(out),
                 "--resume", str(ckpt), *tiny]) == 0
    assert main(["export", str(ckpt), "--out", str(tmp_path / "g.safetensors")]) == 0
    assert main(["sample", str(ckpt), "--n", "4", "--out", str(tmp_path / "s.png"), "--device", "cpu"]) == 0
    capsys.readouterr()
    g = load_generator(tmp_path / "g.safetensors")
    assert g(torch.randn(2, 8)).shape == (2, 3, 32, 32)
    assert (tmp_path / "s.png").is_file()


def test_dcgan_task1_unchanged_by_the_new_settings():
    s = dcgan_task1().settings
    assert (s.r2_gamma, s.reg_every, s.augment, s.ema_half_life_images, s.ema_rampup, s.decay_images) == (
        0.0, 1, "none", 0.0, None, 0)
    assert dcgan_task1().ema is None and dcgan_task1().schedules == {}
    step = wgan_task2().make_step()
    assert [type(c) for c in step.constraints] == [WeightClip] and step.augment is None


def test_ada_measures_the_sign_of_a_sigmoid_head_on_its_logit():
    # task one's discriminator outputs probabilities: sign(p) would always be +1 (r_t = 1)
    torch.manual_seed(0)
    t = Trainer(dcgan_task1(**TINY, augment="ada"), device="cpu", progress=False)
    t.fit(IMAGES, max_steps=8)
    rts = [r["ada_rt"] for r in t.history if r.get("ada_rt") is not None]
    assert rts and all(-1.0 <= x <= 1.0 for x in rts) and min(rts) < 1.0


def test_the_stable_presets_raw_generator_is_the_lr_row_bitwise():
    # the ablation's "+ lr 2e-4" row is measured on the raw generator of the stable run
    torch.manual_seed(0)
    stable = Trainer(get_preset("dcgan_task1_stable", **TINY), device="cpu", progress=False)
    stable.fit(IMAGES, max_steps=4)
    torch.manual_seed(0)
    faster = Trainer(dcgan_task1(**TINY, **DCGAN_STABLE_ABLATION[1][1]), device="cpu", progress=False)
    faster.fit(IMAGES, max_steps=4)
    for a, b in zip(_state(stable.generator), _state(faster.generator)):
        assert torch.equal(a, b)
