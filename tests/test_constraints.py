"""Weight clipping and spectral normalisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from gankit.constraints import (
    WeightClipper,
    clip_weights_,
    remove_spectral_norm_,
    spectral_norm_,
    weight_spectral_norms,
)
from gankit.errors import ConfigError


def _within(p: torch.Tensor, c: float) -> bool:
    # Compare in the parameter's dtype: float32(0.05) is a hair above the float64 0.05.
    return bool((p.abs() <= torch.tensor(c, dtype=p.dtype)).all())


def _critic() -> nn.Module:
    """A miniature of the task-two critic: conv, BN, LeakyReLU, Dropout2d, linear head."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 5, 2, 2),
        nn.LeakyReLU(0.2),
        nn.Conv2d(4, 8, 5, 2, 2),
        nn.BatchNorm2d(8),
        nn.LeakyReLU(0.2),
        nn.Dropout2d(0.25),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 1),
    )


def test_clipper_bounds_every_parameter_including_batchnorm() -> None:
    critic = _critic()
    assert critic[3].weight.min() == 1.0  # BatchNorm weight starts at 1
    reference = _critic()
    for p in reference.parameters():  # the WGAN loop, literally
        p.data.clamp_(-0.01, 0.01)
    assert WeightClipper(0.01)(critic) is critic
    for (name, p), q in zip(critic.named_parameters(), reference.parameters(), strict=True):
        assert _within(p, 0.01), name
        assert torch.equal(p, q), name
    assert torch.all(critic[3].weight == torch.tensor(0.01))


def test_clipper_hand_values_and_small_values_untouched() -> None:
    lin = nn.Linear(3, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[-0.5, 0.005, 0.02]]))
        lin.bias.copy_(torch.tensor([-0.003]))
    clip_weights_(lin, 0.01)
    assert torch.equal(lin.weight, torch.tensor([[-0.01, 0.005, 0.01]]))
    assert torch.equal(lin.bias, torch.tensor([-0.003]))


def test_clipper_keeps_grad_and_works_under_spectral_norm() -> None:
    critic = spectral_norm_(_critic())
    clip_weights_(critic, 0.05)
    for p in critic.parameters():
        assert p.requires_grad and _within(p, 0.05)
    assert parametrize.is_parametrized(critic[0], "weight")


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), True, "0.01"])
def test_clip_value_validated(bad) -> None:
    with pytest.raises(ConfigError, match="clip_value"):
        WeightClipper(bad)


class _SNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.convt = nn.ConvTranspose2d(8, 4, 4, 2, 1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.convt(self.conv(x))).flatten(1))


def _sigma(layer: nn.Module) -> float:
    """Largest singular value of the weight as the parametrization reshapes it."""
    w = layer.weight.detach()
    if isinstance(layer, nn.ConvTranspose2d):  # dim=1: (in, out, k, k) -> (out, in*k*k)
        w = w.transpose(0, 1)
    return torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2).item()


def test_spectral_norm_reaches_unit_sigma() -> None:
    torch.manual_seed(0)
    net = _SNNet()
    assert all(_sigma(m) > 0 for m in (net.conv, net.convt, net.fc))
    assert spectral_norm_(net, n_power_iterations=5) is net
    wrapped = [net.conv, net.convt, net.fc]
    assert all(parametrize.is_parametrized(m, "weight") for m in wrapped)
    assert not parametrize.is_parametrized(net.bn)
    # ConvTranspose is normalised along its output dim (dim=1): u has out_channels entries
    assert net.convt.parametrizations.weight[0]._u.shape == (4,)
    net.train()
    x = torch.randn(2, 3, 4, 4)
    for _ in range(20):
        net(x)
    net.eval()
    for m in wrapped:
        assert _sigma(m) == pytest.approx(1.0, abs=1e-3)


def test_spectral_norm_targets_and_idempotence() -> None:
    model = nn.Sequential(
        nn.Conv1d(2, 3, 3),
        nn.Conv3d(2, 3, 3),
        nn.ConvTranspose1d(2, 3, 3),
        nn.ConvTranspose3d(2, 3, 3),
        nn.Embedding(5, 4),
        nn.LayerNorm(4),
    )
    spectral_norm_(model)
    spectral_norm_(model)  # second call leaves already-normalised layers alone
    for m in list(model)[:4]:
        assert len(m.parametrizations.weight) == 1
    assert not parametrize.is_parametrized(model[4])
    spectral_norm_(model, include_embeddings=True)
    assert parametrize.is_parametrized(model[4], "weight")
    assert not parametrize.is_parametrized(model[5])


@pytest.mark.parametrize("kwargs", [{"n_power_iterations": 0}, {"eps": 0.0}])
def test_spectral_norm_validates(kwargs) -> None:
    with pytest.raises(ConfigError):
        spectral_norm_(nn.Linear(2, 2), **kwargs)


def test_remove_spectral_norm_restores_plain_weights() -> None:
    torch.manual_seed(0)
    net = spectral_norm_(_SNNet())
    x = torch.randn(2, 3, 4, 4)
    for _ in range(3):
        net(x)
    net.eval()
    before = net(x)
    assert remove_spectral_norm_(net) is net
    for m in (net.conv, net.convt, net.fc):
        assert not parametrize.is_parametrized(m)
        assert type(m.weight) is nn.Parameter and m.weight.requires_grad
    torch.testing.assert_close(net(x), before)
    assert set(dict(net.named_parameters())) == set(dict(_SNNet().named_parameters()))


def test_weight_spectral_norms_reads_without_side_effects() -> None:
    lin = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 0.5]]))
    assert weight_spectral_norms(lin) == {"": pytest.approx(3.0)}
    torch.manual_seed(0)
    net = spectral_norm_(_SNNet()).train()
    u = net.fc.parametrizations.weight[0]._u.clone()
    norms = weight_spectral_norms(net)
    assert list(norms) == ["conv", "convt", "fc"]
    assert torch.equal(u, net.fc.parametrizations.weight[0]._u)  # no power iteration ran
    assert net.fc.parametrizations.weight[0].training
    net.eval()
    assert norms["convt"] == pytest.approx(_sigma(net.convt), rel=1e-5)
