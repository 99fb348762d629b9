"""Optimizer presets and their registry."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gankit import optim
from gankit.errors import ConfigError
from gankit.optim import (
    OptimizerPreset,
    build_optimizer,
    get_optimizer,
    list_optimizers,
    register_optimizer,
)

_EXPECTED = {
    "adam_dcgan": (torch.optim.Adam, {"lr": 1e-4, "betas": (0.5, 0.999)}),
    "sgd_wgan_report": (torch.optim.SGD, {"lr": 1e-4}),
    "rmsprop_wgan": (torch.optim.RMSprop, {"lr": 5e-5}),
    "adam_wgan_gp": (torch.optim.Adam, {"lr": 1e-4, "betas": (0.0, 0.9)}),
    "adam_dcgan_paper": (torch.optim.Adam, {"lr": 2e-4, "betas": (0.5, 0.999)}),
    "adam_ttur_g": (torch.optim.Adam, {"lr": 1e-4, "betas": (0.0, 0.9)}),
    "adam_ttur_d": (torch.optim.Adam, {"lr": 4e-4, "betas": (0.0, 0.9)}),
    "adam_r3gan": (torch.optim.Adam, {"lr": 2e-4, "betas": (0.0, 0.99)}),
}


def _params() -> list[torch.nn.Parameter]:
    return list(torch.nn.Linear(3, 2).parameters())


@pytest.mark.parametrize("name", list(_EXPECTED))
def test_presets_build_the_right_optimizer(name) -> None:
    cls, hyper = _EXPECTED[name]
    preset = get_optimizer(name)
    assert preset.optimizer is cls and preset.defaults == hyper and preset.description
    opt = build_optimizer(name, _params())
    assert type(opt) is cls
    for key, value in hyper.items():
        assert opt.param_groups[0][key] == value


def test_registry_lists_the_presets() -> None:
    # exactly the built-ins, plus what a docs example run in this process may have registered
    assert set(_EXPECTED) <= set(list_optimizers()) and list_optimizers() == sorted(list_optimizers())
    assert set(n for n in _EXPECTED if n.startswith("adam")) <= set(list_optimizers("adam*"))
    assert all(n.startswith("adam") for n in list_optimizers("adam*"))
    assert {"adam_wgan_gp", "rmsprop_wgan", "sgd_wgan_report"} <= set(list_optimizers("*wgan*"))
    assert list_optimizers("nothing*") == []


def test_overrides_and_none_values() -> None:
    opt = build_optimizer("adam_dcgan", _params(), lr=2e-4, weight_decay=None)
    assert opt.defaults["lr"] == 2e-4 and opt.defaults["betas"] == (0.5, 0.999)
    assert opt.defaults["weight_decay"] == 0  # None does not override
    opt = get_optimizer("sgd_wgan_report").build(_params(), lr=None, momentum=0.9)
    assert opt.defaults["lr"] == 1e-4 and opt.defaults["momentum"] == 0.9


def test_preset_object_is_accepted_and_param_groups_work() -> None:
    preset = get_optimizer("rmsprop_wgan")
    a, b = _params(), _params()
    opt = build_optimizer(preset, [{"params": a}, {"params": b, "lr": 1e-3}])
    assert [g["lr"] for g in opt.param_groups] == [5e-5, 1e-3]


def test_bad_override_keyword_and_value() -> None:
    with pytest.raises(ConfigError) as info:
        build_optimizer("adam_dcgan", _params(), lrr=1e-3)
    assert "'lrr'" in str(info.value) and "'lr'" in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="adam_dcgan"):
        build_optimizer("adam_dcgan", _params(), lr=-1.0)


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(ConfigError) as info:
        get_optimizer("adam_dcgn")
    message = str(info.value)
    assert "'adam_dcgn'" in message and "'adam_dcgan'" in message and "rmsprop_wgan" in message
    assert "\n" not in message


def test_duplicate_registration_raises(monkeypatch) -> None:
    monkeypatch.setattr(optim, "_OPTIMIZERS", dict(optim._OPTIMIZERS))
    with pytest.raises(ConfigError, match="already registered"):
        register_optimizer(OptimizerPreset("adam_dcgan", torch.optim.Adam, {"lr": 1.0}))
    mine = register_optimizer(OptimizerPreset("mine", torch.optim.SGD, [("lr", 0.5)]))
    assert get_optimizer("mine") is mine and "mine" in list_optimizers("m*")


def test_preset_is_frozen_hashable_and_validated() -> None:
    a = OptimizerPreset("x", torch.optim.Adam, {"betas": (0.5, 0.9), "lr": 1.0})
    b = OptimizerPreset("x", torch.optim.Adam, (("lr", 1.0), ("betas", (0.5, 0.9))))
    assert a == b and hash(a) == hash(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.name = "y"  # type: ignore[misc]
    a.defaults["lr"] = 5.0  # a copy: the preset is unchanged
    assert a.defaults["lr"] == 1.0
    with pytest.raises(ConfigError, match="'momentum'"):
        OptimizerPreset("bad", torch.optim.Adam, {"momentum": 0.9})
    with pytest.raises(ConfigError, match="not a torch.optim.Optimizer"):
        OptimizerPreset("bad", dict, {})  # type: ignore[arg-type]
