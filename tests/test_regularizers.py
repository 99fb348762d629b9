"""Relativistic losses and the regulariser objects against hand-computed values, and their
properties (hypothesis): hinge >= 0, R1 = 0 for a constant critic, RpGAN/RaGAN antisymmetric."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gankit.losses import get_loss
from gankit.regularizers import GradientPenalty, LeCam, R1Penalty, R2Penalty
from gankit.train import StepContext

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
scores = st.lists(st.floats(-20, 20), min_size=1, max_size=8).map(
    lambda v: torch.tensor(v, dtype=torch.float64))
pairs = st.integers(1, 8).flatmap(lambda n: st.tuples(
    *[st.lists(st.floats(-20, 20), min_size=n, max_size=n).map(
        lambda v: torch.tensor(v, dtype=torch.float64))] * 2))
SP = lambda v: math.log1p(math.exp(v))  # noqa: E731 - softplus by hand


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_rpgan_hand_values():
    real, fake = t(1.0, 0.0), t(0.0, math.log(3))
    # d: mean softplus(fake - real) = (softplus(-1) + softplus(ln 3)) / 2 = (sp(-1) + ln 4) / 2
    loss = get_loss("rpgan")
    assert loss.d_loss(real, fake).item() == pytest.approx((SP(-1) + math.log(4)) / 2)
    # g: mean softplus(real - fake) = (sp(1) + sp(-ln 3)) / 2 = (sp(1) + ln(4/3)) / 2
    assert loss.generator_loss(fake, real).item() == pytest.approx((SP(1) + math.log(4 / 3)) / 2)


def test_ragan_hand_values():
    real, fake = t(2.0, 0.0), t(-1.0, 1.0)  # mean real 1, mean fake 0
    loss = get_loss("ragan")
    # d: (mean sp(-(r - 0)) + mean sp(f - 1)) / 2 = ((sp(-2) + ln 2) / 2 + (sp(-2) + ln 2) / 2) / 2
    assert loss.d_loss(real, fake).item() == pytest.approx((SP(-2) + math.log(2)) / 2)
    # g: (mean sp(-(f - 1)) + mean sp(r - 0)) / 2 = ((sp(2) + ln 2) / 2 + (sp(2) + ln 2) / 2) / 2
    assert loss.generator_loss(fake, real).item() == pytest.approx((SP(2) + math.log(2)) / 2)


@SETTINGS
@given(real=scores, fake=scores)
def test_hinge_discriminator_loss_is_non_negative(real, fake):
    assert get_loss("hinge").d_loss(real, fake).item() >= 0
    assert get_loss("nonsaturating").d_loss(real, fake).item() >= 0


@SETTINGS
@given(pair=pairs)
@pytest.mark.parametrize("name", ["rpgan", "ragan"])
def test_relativistic_losses_are_antisymmetric_in_real_and_fake(name, pair):
    # the generator's loss is the discriminator's with the roles of real and fake swapped
    a, b = pair
    loss = get_loss(name)
    assert loss.d_loss(a, b).item() == pytest.approx(loss.generator_loss(a, b).item(), rel=1e-12, abs=1e-12)
    assert loss.d_loss(b, a).item() == pytest.approx(loss.generator_loss(b, a).item(), rel=1e-12, abs=1e-12)


# --- regulariser objects on a StepContext ---------------------------------------------------


def _ctx(critic, real, fake, **kw) -> StepContext:
    engine = SimpleNamespace(score=lambda x, generator_step=False, augment=True: critic(x))
    return StepContext(engine, "d", real, None, torch.zeros(len(real), 2), fake, **kw)


def _linear(w: torch.Tensor):
    return lambda x: x.flatten(1) @ w


def test_r1_r2_and_gp_hand_values():
    w = torch.tensor([3.0, 4.0, 0.0, 0.0])  # ||grad_x D|| = 5 everywhere
    real, fake = torch.randn(6, 4), torch.randn(6, 4)
    ctx = _ctx(_linear(w), real, fake)
    r1, r2, gp = R1Penalty(gamma=4.0), R2Penalty(gamma=6.0), GradientPenalty(10.0)
    assert r1(ctx).item() == pytest.approx(25.0) and r1.weight == 2.0  # gamma / 2 * 25 in the loss
    assert r2(ctx).item() == pytest.approx(25.0) and r2.weight == 3.0
    assert gp(ctx).item() == pytest.approx((5 - 1) ** 2) and gp.weight == 10.0
    assert GradientPenalty(center=0.0)(ctx).item() == pytest.approx(25.0)


def test_r2_penalises_the_fakes_not_the_reals():
    critic = lambda x: (x.flatten(1) ** 2).sum(1)  # noqa: E731 - ||grad||^2 = 4 ||x||^2
    real, fake = torch.zeros(3, 2), torch.ones(3, 2)
    ctx = _ctx(critic, real, fake)
    assert R1Penalty()(ctx).item() == 0.0
    assert R2Penalty()(ctx).item() == pytest.approx(8.0)


@SETTINGS
@given(c=st.floats(-5, 5), n=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_r1_is_zero_for_a_constant_critic(c, n, seed):
    real = torch.randn(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    critic = lambda x: x.flatten(1).sum(1) * 0 + c  # noqa: E731
    ctx = _ctx(critic, real, real.clone())
    assert R1Penalty()(ctx).item() == 0.0 and R2Penalty()(ctx).item() == 0.0


def test_lecam_hand_values_with_ema_anchors():
    lecam = LeCam(weight=0.3)
    assert lecam.decay == 0.99
    # first call: anchors are the mean scores (real 1, fake -1)
    v = lecam(_ctx(None, torch.zeros(2, 1), torch.zeros(2, 1), real_out=t(0.0, 2.0), fake_out=t(-2.0, 0.0)))
    # relu(real - a_fake)^2 = relu([1, 3])^2 -> 5; relu(a_real - fake)^2 = relu([3, 1])^2 -> 5
    assert v.item() == pytest.approx(10.0)
    # second call: anchors move 1% towards the new means (real 3, fake 1)
    v = lecam(_ctx(None, torch.zeros(2, 1), torch.zeros(2, 1), real_out=t(3.0, 3.0), fake_out=t(1.0, 1.0)))
    a_real, a_fake = 0.99 * 1 + 0.01 * 3, 0.99 * -1 + 0.01 * 1
    assert lecam.anchor_real.item() == pytest.approx(a_real)
    assert lecam.anchor_fake.item() == pytest.approx(a_fake)
    assert v.item() == pytest.approx((3 - a_fake) ** 2 + max(0.0, a_real - 1) ** 2)


def test_lecam_anchors_are_checkpointed_as_copies():
    lecam = LeCam()
    lecam(_ctx(None, torch.zeros(2, 1), torch.zeros(2, 1), real_out=t(1.0, 1.0), fake_out=t(0.0, 0.0)))
    saved = lecam.state_dict()
    lecam(_ctx(None, torch.zeros(2, 1), torch.zeros(2, 1), real_out=t(9.0, 9.0), fake_out=t(9.0, 9.0)))
    assert saved["anchor_real"].item() == 1.0  # the saved state did not follow the update
    restored = LeCam()
    restored.load_state_dict(saved)
    assert restored.anchor_real.item() == 1.0 and restored.anchor_fake.item() == 0.0
