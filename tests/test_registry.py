"""The preset registry: registration, lookup, wildcards, overrides and errors."""

from __future__ import annotations

import pytest
import torch

from gankit import ConfigError
from gankit.presets import (
    RecipeSettings,
    dcgan_task1,
    get_preset,
    list_presets,
    preset_description,
    register_preset,
    unregister_preset,
    wgan_task2,
)


def test_list_and_wildcards():
    names = list_presets()
    assert {"dcgan_task1", "wgan_task2"} <= set(names)
    assert names == sorted(names)
    assert list_presets("dcgan*") == [n for n in names if n.startswith("dcgan")]
    assert list_presets("*task?") == ["dcgan_task1", "r3gan_task1", "sngan_task1", "wgan_gp_task2", "wgan_task2"]
    assert list_presets("nothing*") == []


def test_builders_importable_and_equal_to_registry():
    assert get_preset("dcgan_task1").settings == dcgan_task1().settings
    assert get_preset("wgan_task2").settings == wgan_task2().settings
    assert "ML2020" in preset_description("dcgan_task1")


def test_report_settings():
    t1 = dcgan_task1()
    assert (t1.z_dim, t1.image_size, t1.batch_size, t1.epochs) == (100, 64, 64, 51)
    assert (t1.loss, t1.g_optimizer, t1.d_optimizer) == ("bce", "adam_dcgan", "adam_dcgan")
    assert (t1.clip_value, t1.n_critic) == (None, 1)
    t2 = wgan_task2()
    assert (t2.batch_size, t2.epochs, t2.loss) == (32, 51, "wasserstein")
    assert (t2.g_optimizer, t2.d_optimizer) == ("sgd_wgan_report", "sgd_wgan_report")
    assert (t2.clip_value, t2.n_critic) == (0.01, 5)


def test_overrides_change_settings_and_architecture():
    r = get_preset("dcgan_task1", batch_size=8, epochs=2, z_dim=16, image_size=32, base_channels=8)
    assert (r.batch_size, r.epochs, r.z_dim, r.image_size) == (8, 2, 16, 32)
    assert r.overrides == dict(batch_size=8, epochs=2, z_dim=16, image_size=32, base_channels=8)
    assert r.generator.out_shape == (3, 32, 32)
    # None means "keep the preset's value" (command-line defaults)
    assert get_preset("wgan_task2", batch_size=None).batch_size == 32


def test_unknown_preset_lists_close_matches():
    with pytest.raises(ConfigError, match="dcgan_task1") as info:
        get_preset("dcgan_taks1")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"batchsize": 3}, "batch_size"),
        ({"batch_size": 0}, "positive"),
        ({"clip_value": -1.0}, "clip_value"),
        ({"image_size": 48}, "image_size"),
    ],
)
def test_bad_overrides(overrides, match):
    with pytest.raises(ConfigError, match=match):
        get_preset("dcgan_task1", **overrides)


def test_wgan_task2_image_sizes():
    with pytest.raises(ConfigError, match="stage lists for image sizes \\[32, 64, 128\\]"):
        get_preset("wgan_task2", image_size=48)
    recipe = get_preset("wgan_task2", image_size=32, base_channels=4)
    assert recipe.generator(torch.randn(2, 100)).shape == (2, 3, 32, 32)
    assert recipe.discriminator(torch.randn(2, 3, 32, 32)).shape == (2,)


def test_duplicate_registration_raises_and_custom_preset_works():
    @register_preset(name="_test_tiny", description="tiny test preset")
    def tiny(**overrides):
        return dcgan_task1(**{"image_size": 32, "base_channels": 4, **overrides})

    try:
        assert "_test_tiny" in list_presets("_test*")
        assert get_preset("_test_tiny", z_dim=8).z_dim == 8
        assert preset_description("_test_tiny") == "tiny test preset"
        with pytest.raises(ConfigError, match=r"already registered; .*unregister_preset\('_test_tiny'\) first"):
            register_preset(name="_test_tiny")(tiny)
    finally:
        assert unregister_preset("_test_tiny") is tiny
    assert "_test_tiny" not in list_presets()
    register_preset(name="_test_tiny")(tiny)  # the name is free again
    assert unregister_preset("_test_tiny") is tiny
    with pytest.raises(ConfigError, match="unknown preset '_test_tiny'") as info:
        unregister_preset("_test_tiny")
    assert "\n" not in str(info.value)
    assert unregister_preset("_test_tiny", missing_ok=True) is None


@pytest.mark.parametrize(
    "key,text,value",
    [
        ("batch_size", "32", 32),
        ("clip_value", "0.02", 0.02),
        ("clip_value", "none", None),
        ("spectral_norm", "true", True),
        ("loss", "hinge", "hinge"),
    ],
)
def test_parse_value(key, text, value):
    assert RecipeSettings.parse_value(key, text) == value


@pytest.mark.parametrize("key,text", [("batch_size", "many"), ("nope", "1"), ("spectral_norm", "maybe")])
def test_parse_value_errors(key, text):
    with pytest.raises(ConfigError):
        RecipeSettings.parse_value(key, text)
