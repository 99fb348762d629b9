"""DiffAugment and ADA: shapes, identity at p = 0, differentiability, the adaptive p, and the
seam: the step's augmentation is applied inside Trainer.score to everything scored."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gankit import ConfigError, Trainer
from gankit.augment import ADA, ADA_TRANSFORMS, Augmentation, DiffAugment
from gankit.presets import dcgan_task1
from gankit.regularizers import R1Penalty
from gankit.schedules import constant
from gankit.train import GANStep

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CPU = SimpleNamespace(device=torch.device("cpu"), dist=None)  # what ADA.update reads of a trainer


def _tiny(**kw):
    return dcgan_task1(image_size=32, base_channels=4, z_dim=8, batch_size=4, sample_grid=2, **kw)


policies = st.lists(st.sampled_from(["color", "translation", "cutout"]), min_size=1, max_size=3,
                    unique=True).map(",".join)
transforms = st.lists(st.sampled_from(ADA_TRANSFORMS), min_size=1, max_size=5, unique=True).map(",".join)
shapes = st.tuples(st.integers(1, 3), st.sampled_from([1, 3]), st.integers(4, 12))


@SETTINGS
@given(policy=policies, p=st.floats(0.0, 1.0), shape=shapes, seed=st.integers(0, 2**16))
def test_diffaugment_keeps_shape_and_dtype(policy, p, shape, seed):
    n, c, side = shape
    x = torch.rand(n, c, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    y = DiffAugment(policy, p=p)(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()


@SETTINGS
@given(names=transforms, p=st.floats(0.0, 1.0), shape=shapes, seed=st.integers(0, 2**16))
def test_ada_keeps_shape_and_dtype(names, p, shape, seed):
    n, c, side = shape
    x = torch.rand(n, c, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    y = ADA(p=p, transforms=names)(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()


@SETTINGS
@given(policy=policies, names=transforms, seed=st.integers(0, 2**16))
def test_identity_at_p_zero_bitwise(policy, names, seed):
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(DiffAugment(policy, p=0.0)(x), x)
    assert torch.equal(ADA(p=0.0, transforms=names)(x), x)


def test_some_images_change_at_p_one():
    torch.manual_seed(0)
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    for aug in (DiffAugment("color"), DiffAugment("translation"), DiffAugment("cutout"),
                ADA(p=1.0, transforms="b"), ADA(p=1.0, transforms="c"), ADA(p=1.0)):
        changed = [not torch.equal(a, b) for a, b in zip(aug(x), x)]
        assert sum(changed) >= 4, aug


def test_diffaugment_color_ranges_on_a_constant_image():
    # saturation and contrast keep a constant image constant: only brightness moves it
    torch.manual_seed(0)
    x = torch.full((64, 3, 4, 4), 0.25)
    y = DiffAugment("color")(x)
    shift = y - x
    assert torch.allclose(shift, shift[:, :1, :1, :1].expand_as(shift), atol=1e-6)
    assert shift.abs().max() <= 0.5 + 1e-6 and shift.abs().max() > 0.3


def test_diffaugment_translation_shifts_with_zero_padding():
    torch.manual_seed(1)
    x = torch.rand(16, 1, 16, 16) + 1  # no zeros in the image
    y = DiffAugment("translation")(x)
    for a, b in zip(x, y):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(b, _shift(a, dy, dx))]
        assert found, "every output is the image shifted by at most 1/8 of the side, zero filled"


def _shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[:, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def test_diffaugment_cutout_zeroes_one_square_of_half_the_side():
    torch.manual_seed(2)
    x = torch.rand(32, 3, 16, 16) + 1
    y = DiffAugment("cutout")(x)
    for img in y:
        zero = (img == 0).all(0)
        rows, cols = zero.any(1).nonzero(), zero.any(0).nonzero()
        assert 0 < zero.sum() <= 64
        assert zero.sum() == len(rows) * len(cols)  # a (clipped) rectangle
        assert len(rows) <= 8 and len(cols) <= 8
    assert any((img == 0).all(0).sum() == 64 for img in y)  # unclipped: 8 x 8


def _seeded(fn):
    def run(x):
        torch.manual_seed(0)  # gradcheck calls again and again: the same draws each time
        return fn(x)
    return run


@pytest.mark.parametrize("aug", [DiffAugment("color,translation,cutout"), ADA(p=0.7), ADA(p=1.0, transforms="c")],
                         ids=["diffaugment", "ada-bgc", "ada-c"])
def test_augmentations_are_differentiable(aug):
    x = (torch.rand(2, 3, 6, 6, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    assert torch.autograd.gradcheck(_seeded(aug), (x,), eps=1e-6, atol=1e-4)


def test_bad_names_are_refused_with_the_choices():
    with pytest.raises(ConfigError, match="color, translation, cutout"):
        DiffAugment("colour")
    with pytest.raises(ConfigError, match="xflip"):
        ADA(transforms="flip")
    with pytest.raises(ConfigError, match=r"p must be a probability"):
        ADA(p=1.5)
    with pytest.raises(ConfigError, match="Augmentation"):
        GANStep("hinge", augment=lambda x: x)


# --- the adaptive p --------------------------------------------------------------------------


def _feed(ada: ADA, sign: float, steps: int, batch: int = 8) -> list[float]:
    ps = []
    for _ in range(steps):
        ada.observe(torch.full((batch,), sign))
        ps.append(float(ada.update(CPU)["ada_p"]))
    return ps


def test_ada_p_rises_when_d_overfits_and_falls_otherwise():
    ada = ADA(p=0.0, target=0.6, interval=4, speed_images=320)
    ps = _feed(ada, +1.0, 8)  # r_t = 1 > 0.6: every 4 updates p += 4 * 8 / 320
    assert ps == pytest.approx([0, 0, 0, 0.1, 0.1, 0.1, 0.1, 0.2])
    assert ada.rt == 1.0
    ps = _feed(ada, -1.0, 12)  # r_t = -1 < 0.6: down, and never below 0
    assert ps[3] == pytest.approx(0.1) and ps[7] == pytest.approx(0.0) and ps[11] == 0.0
    assert _feed(ADA(p=1.0, interval=1, speed_images=8), +1.0, 2) == [1.0, 1.0]  # capped at 1


def test_ada_p_goes_from_0_to_1_in_500k_images():
    ada = ADA()  # the paper's target 0.6, interval 4, 500k images
    batch, adjustments = 64, 0
    while ada.p < 1.0:
        ada.adjust(sign_sum=batch * 4, count=batch * 4, images=batch * 4)
        adjustments += 1
    assert adjustments * batch * 4 == pytest.approx(500_000, abs=batch * 4)


def test_ada_without_target_keeps_p_and_can_be_scheduled():
    ada = ADA(p=0.0, target=None)
    step = GANStep("nonsaturating", augment=ada)
    t = Trainer(_tiny(), step=step, device="cpu", progress=False, schedules={"ada.p": constant(0.3)})
    out = t.train_step(torch.rand(4, 3, 32, 32) * 2 - 1)
    assert ada.p == 0.3 and float(out["ada_p"]) == pytest.approx(0.3)


# --- the seam: every discriminator call of the step is augmented -----------------------------


class Recording(Augmentation):
    name = "rec"

    def __init__(self):
        super().__init__(1.0)
        self.calls: list[bool] = []
        self.observed = 0

    def augment(self, x):
        self.calls.append(x.requires_grad)
        return x.flip(-1)

    def observe(self, real_scores):
        self.observed += 1


@pytest.mark.parametrize("loss, g_calls", [("nonsaturating", 1), ("rpgan", 2)])
def test_augmentation_applies_to_real_and_fake_in_both_steps(loss, g_calls):
    aug = Recording()
    torch.manual_seed(0)
    t = Trainer(_tiny(), step=GANStep(loss, augment=aug), device="cpu", progress=False)
    t.train_step(torch.rand(4, 3, 32, 32) * 2 - 1)
    assert len(aug.calls) == 2 + g_calls and aug.observed == 1
    assert aug.calls[-1]  # the generator step's fakes carry G's graph through the augmentation


def test_r1_takes_input_gradients_through_the_augmentation():
    aug = Recording()
    torch.manual_seed(0)
    t = Trainer(_tiny(), step=GANStep("nonsaturating", regularizers=[R1Penalty(1.0)], augment=aug),
                device="cpu", progress=False)
    out = t.train_step(torch.rand(4, 3, 32, 32) * 2 - 1)
    assert aug.calls[:3] == [False, False, True]  # real, fake, then R1's differentiable reals
    assert float(out["r1"]) > 0


def test_score_without_augmentation_on_request():
    aug = Recording()
    t = Trainer(_tiny(), step=GANStep("nonsaturating", augment=aug), device="cpu", progress=False)
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(t.score(x), t.score(x.flip(-1), augment=False))


def test_ada_p_is_logged_checkpointed_and_resumes_bitwise(tmp_path):
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(3))

    def step():
        return GANStep("nonsaturating", augment=ADA(p=0.2, interval=2, speed_images=64))

    torch.manual_seed(0)
    full = Trainer(_tiny(), step=step(), device="cpu", progress=False)
    full.fit(images, max_steps=4)
    assert "ada_p" in full.history[-1] and "ada_rt" in full.history[1]
    assert len({r["ada_p"] for r in full.history}) > 1  # p moved during the run
    torch.manual_seed(0)
    first = Trainer(_tiny(), step=step(), device="cpu", progress=False)
    first.fit(images, max_steps=3)  # stops inside an adjustment interval
    first.save(tmp_path / "last.pt")
    torch.manual_seed(99)
    second = Trainer.load(tmp_path / "last.pt", device="cpu", progress=False, step=step())
    assert second.step_fn.augment.p == first.step_fn.augment.p
    second.fit(images, max_steps=4)
    assert second.step_fn.augment.p == full.step_fn.augment.p
    for a, b in zip(full.generator.state_dict().values(), second.generator.state_dict().values()):
        assert torch.equal(a, b)
    assert [r["ada_p"] for r in full.history] == [r["ada_p"] for r in first.history + second.history[3:]]
