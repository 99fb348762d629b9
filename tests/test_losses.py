"""Adversarial losses and penalties against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gankit import losses
from gankit.errors import ConfigError
from gankit.losses import AdversarialLoss, get_loss, gradient_penalty, list_losses, r1_penalty

E = math.e


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# Each case: name, real outputs, fake outputs, expected d_loss, expected g_loss.
# Values picked so the logs / softpluses are easy to do by hand.
_HAND = [
    # bce: -log r = [1, 2] -> 1.5; -log(1 - f) = [1, 3] -> 2; d = (1.5 + 2) / 2.
    # g = -mean(log f) with f = 1 - e^-1, 1 - e^-3.
    (
        "bce",
        t(E**-1, E**-2),
        t(1 - E**-1, 1 - E**-3),
        1.75,
        -(math.log(1 - E**-1) + math.log(1 - E**-3)) / 2,
    ),
    # bce_logits on logits ln 3 and 0: -log sigmoid(ln 3) = ln(4/3); -log sigmoid(0) = ln 2;
    # fake logits -ln 3, 0: -log(1 - sigmoid(-ln 3)) = ln(4/3). d = (ln(8/3)/2 * 2) / 2.
    # g: -log sigmoid(-ln 3) = ln 4, -log sigmoid(0) = ln 2 -> 1.5 ln 2.
    (
        "bce_logits",
        t(math.log(3), 0.0),
        t(-math.log(3), 0.0),
        math.log(8 / 3) / 2,
        1.5 * math.log(2),
    ),
    # nonsaturating: the same terms without the / 2.
    (
        "nonsaturating",
        t(math.log(3), 0.0),
        t(-math.log(3), 0.0),
        math.log(8 / 3),
        1.5 * math.log(2),
    ),
    # wasserstein: -mean([1, 2, 3]) + mean([-1, 0.5]) = -2 - 0.25; g = -(-0.25).
    ("wasserstein", t(1.0, 2.0, 3.0), t(-1.0, 0.5), -2.25, 0.25),
    # hinge: relu(1 - [2, .5, -1]) = [0, .5, 2] -> 5/6; relu(1 + [-2, 0, .5]) = [0, 1, 1.5]
    # -> 5/6; g = -mean(fake) = 0.5.
    ("hinge", t(2.0, 0.5, -1.0), t(-2.0, 0.0, 0.5), 5 / 3, 0.5),
    # lsgan: 0.5 * mean([0, 4]) + 0.5 * mean([0, 4]) = 2; g = 0.5 * mean([1, 1]) = 0.5.
    ("lsgan", t(1.0, 3.0), t(0.0, 2.0), 2.0, 0.5),
]


@pytest.mark.parametrize(("name", "real", "fake", "d_expected", "g_expected"), _HAND)
def test_hand_computed_values(name, real, fake, d_expected, g_expected) -> None:
    loss = get_loss(name)
    assert loss.d_loss(real, fake).item() == pytest.approx(d_expected, rel=1e-12)
    assert loss.g_loss(fake).item() == pytest.approx(g_expected, rel=1e-12)


@pytest.mark.parametrize(("name", "real", "fake", "d_expected", "g_expected"), _HAND)
@pytest.mark.parametrize("tail", [(1,), (1, 1, 1)])
def test_mean_reduction_ignores_trailing_singleton_dims(
    name, real, fake, d_expected, g_expected, tail
) -> None:
    loss = get_loss(name)
    r, f = real.view(-1, *tail), fake.view(-1, *tail)
    assert loss.d_loss(r, f).item() == pytest.approx(d_expected, rel=1e-12)
    assert loss.g_loss(f).item() == pytest.approx(g_expected, rel=1e-12)


@pytest.mark.parametrize(("name", "real", "fake", "d_expected", "g_expected"), _HAND)
def test_real_and_fake_terms_reduce_separately(name, real, fake, d_expected, g_expected) -> None:
    """Each term is a mean over its own batch: repeating one batch changes nothing."""
    loss = get_loss(name)
    assert loss.d_loss(real.repeat(3), fake).item() == pytest.approx(d_expected, rel=1e-12)
    assert loss.d_loss(real, fake.repeat(2)).item() == pytest.approx(d_expected, rel=1e-12)


@pytest.mark.parametrize(
    "name", ["bce", "bce_logits", "nonsaturating", "wasserstein", "hinge", "lsgan"]
)
def test_gradients_flow_to_each_side(name) -> None:
    loss = get_loss(name)
    torch.manual_seed(0)
    base = torch.rand(4) * 0.8 + 0.1 if not loss.from_logits else torch.randn(4)
    real, fake = base.clone().requires_grad_(), base.flip(0).clone().requires_grad_()
    loss.d_loss(real, fake).backward()
    assert real.grad.abs().sum() > 0 and fake.grad.abs().sum() > 0
    fake_g = base.clone().requires_grad_()
    loss.g_loss(fake_g).backward()
    assert fake_g.grad.abs().sum() > 0


def test_bce_is_bitwise_the_ml2020_expression() -> None:
    torch.manual_seed(0)
    r, f = torch.rand(64), torch.rand(64)
    crit = nn.BCELoss()
    expected_d = (crit(r, torch.ones(64)) + crit(f, torch.zeros(64))) / 2
    assert torch.equal(get_loss("bce").d_loss(r, f), expected_d)
    assert torch.equal(get_loss("bce").g_loss(f), crit(f, torch.ones(64)))


def test_bce_logits_matches_bce_on_probabilities() -> None:
    torch.manual_seed(0)
    p_real, p_fake = torch.rand(32, dtype=torch.float64), torch.rand(32, dtype=torch.float64)
    bce, bce_logits = get_loss("bce"), get_loss("bce_logits")
    d_p = bce.d_loss(p_real, p_fake)
    d_l = bce_logits.d_loss(torch.logit(p_real), torch.logit(p_fake))
    torch.testing.assert_close(d_l, d_p, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(
        bce_logits.g_loss(torch.logit(p_fake)), bce.g_loss(p_fake), rtol=1e-9, atol=1e-12
    )
    # nonsaturating is bce_logits without the / 2 in the discriminator loss
    torch.testing.assert_close(
        get_loss("nonsaturating").d_loss(torch.logit(p_real), torch.logit(p_fake)), 2 * d_l
    )


def test_wasserstein_is_bitwise_the_report_expression() -> None:
    torch.manual_seed(0)
    r, f = torch.randn(32), torch.randn(32)
    assert torch.equal(get_loss("wasserstein").d_loss(r, f), -torch.mean(r) + torch.mean(f))
    assert torch.equal(get_loss("wasserstein").g_loss(f), -torch.mean(f))


def test_from_logits_flags() -> None:
    # the built-in losses (a docs example run in this process may have registered more)
    flags = {name: get_loss(name).from_logits for name in list_losses() if get_loss(name).d_loss.__module__ == "gankit.losses"}
    assert flags == {
        "bce": False,
        "bce_logits": True,
        "nonsaturating": True,
        "wasserstein": True,
        "hinge": True,
        "lsgan": True,
        "rpgan": True,
        "ragan": True,
    }


def test_registry(monkeypatch) -> None:
    monkeypatch.setattr(losses, "_LOSSES", dict(losses._LOSSES))
    mine = AdversarialLoss("mine", lambda r, f: f.mean(), lambda f: -f.mean(), True, "test")
    assert losses.register_loss(mine) is mine
    assert get_loss("mine") is mine and get_loss(mine) is mine
    assert "mine" in list_losses() and list_losses() == sorted(list_losses())
    with pytest.raises(ConfigError, match="already registered"):
        losses.register_loss(mine)


def test_unknown_loss_lists_close_matches() -> None:
    with pytest.raises(ConfigError) as info:
        get_loss("hing")
    message = str(info.value)
    assert "'hing'" in message and "'hinge'" in message and "wasserstein" in message
    assert "\n" not in message


def test_loss_is_frozen() -> None:
    with pytest.raises(AttributeError):
        get_loss("bce").name = "other"  # type: ignore[misc]


# --- penalties -----------------------------------------------------------------------------


class LinearCritic(nn.Module):
    """D(x) = <w, flatten(x)>: its input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor, keepdim: bool = False) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.keepdim = keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x.flatten(1) @ self.w
        return out.unsqueeze(1) if self.keepdim else out


def _images(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 2, 2, generator=g), torch.randn(4, 3, 2, 2, generator=g)


@pytest.mark.parametrize("keepdim", [False, True])
def test_gradient_penalty_zero_for_unit_norm_linear_critic(keepdim) -> None:
    w = torch.randn(12)
    critic = LinearCritic(w / w.norm(), keepdim)
    real, fake = _images(0)
    assert gradient_penalty(critic, real, fake).item() < 1e-6


def test_gradient_penalty_hand_value_and_gradient() -> None:
    w = torch.zeros(12)
    w[0] = 2.0  # ||grad|| = 2 everywhere: penalty = 10 * (2 - 1)^2 = 10
    critic = LinearCritic(w)
    real, fake = _images(1)
    fake.requires_grad_(True)
    gp = gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx(10.0, rel=1e-6)
    gp.backward()
    # d/dw 10 * (||w|| - 1)^2 = 20 * (||w|| - 1) * w / ||w|| = [20, 0, ...]
    expected = torch.zeros(12)
    expected[0] = 20.0
    torch.testing.assert_close(critic.w.grad, expected)
    assert fake.grad is None  # interpolates are built from detached samples
    # zero-centred variant with another weight: 3 * ||w||^2 = 12
    assert gradient_penalty(critic, real, fake, weight=3.0, center=0.0).item() == pytest.approx(
        12.0, rel=1e-6
    )


def test_gradient_penalty_positive_for_nonlinear_critic_and_seeded() -> None:
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 1))
    real, fake = _images(2)
    a = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(5))
    b = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(5))
    assert a.item() > 0
    assert torch.equal(a, b)


def test_gradient_penalty_shape_mismatch() -> None:
    with pytest.raises(ConfigError, match="one shape"):
        gradient_penalty(LinearCritic(torch.ones(12)), torch.zeros(4, 12), torch.zeros(3, 12))


@pytest.mark.parametrize("keepdim", [False, True])
def test_r1_hand_value(keepdim) -> None:
    w = torch.zeros(12)
    w[:2] = torch.tensor([3.0, 4.0])  # ||grad||^2 = 25: gamma / 2 * 25
    critic = LinearCritic(w, keepdim)
    real, _ = _images(3)
    assert r1_penalty(critic, real).item() == pytest.approx(125.0, rel=1e-6)
    penalty = r1_penalty(critic, real, gamma=1.0)
    assert penalty.item() == pytest.approx(12.5, rel=1e-6)
    penalty.backward()  # d/dw 0.5 * ||w||^2 = w
    torch.testing.assert_close(critic.w.grad, w)
