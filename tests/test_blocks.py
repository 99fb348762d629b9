"""Property-based shape tests of the blocks and models, and construction-time errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from gankit import ConfigError
from gankit.blocks import (
    ConvHead,
    LatentProjection,
    LayerContainer,
    LinearHead,
    OutputConv,
    conv_out_size,
    conv_transpose_out_size,
    downsampling_stack,
    upsampling_stack,
)
from gankit.layers import get_act_layer, get_norm_layer
from gankit.models import Discriminator, Generator, dcgan_discriminator, dcgan_generator

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def stage_lists(draw, transposed: bool):
    n = draw(st.integers(1, 3))
    chans = draw(st.lists(st.integers(1, 6), min_size=n + 1, max_size=n + 1))
    kernels = draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))
    strides = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    pads = [draw(st.integers(0, k // 2)) for k in kernels]
    out_pads = [draw(st.integers(0, s - 1)) for s in strides] if transposed else [0] * n
    return chans, kernels, strides, pads, out_pads


def expected_side(side, kernels, strides, pads, out_pads, transposed):
    """The final side by the size formulas, or 0 if any stage drops below 1."""
    for k, s, p, op in zip(kernels, strides, pads, out_pads):
        side = conv_transpose_out_size(side, k, s, p, op) if transposed else conv_out_size(side, k, s, p)
        if side < 1:
            return 0
    return side


@SETTINGS
@given(stage_lists(transposed=True), st.integers(1, 6), st.integers(1, 3))
def test_upsampling_stack_shape_formula(cfg, side, batch):
    chans, kernels, strides, pads, out_pads = cfg
    out = expected_side(side, kernels, strides, pads, out_pads, True)
    if out < 1:
        with pytest.raises(ConfigError, match="shrink"):
            upsampling_stack(chans, kernel_size=kernels, stride=strides, padding=pads,
                             output_padding=out_pads, input_size=side)
        return
    stack = upsampling_stack(chans, kernel_size=kernels, stride=strides, padding=pads,
                             output_padding=out_pads, input_size=side, norm_layer="batch")
    y = stack(torch.randn(max(batch, 2), chans[0], side, side))
    assert y.shape == (max(batch, 2), chans[-1], out, out)
    assert all(type(m).__module__.startswith("torch.nn") for m in stack)


@SETTINGS
@given(stage_lists(transposed=False), st.integers(1, 40), st.integers(1, 3), st.sampled_from([0.0, 0.25]))
def test_downsampling_stack_shape_formula(cfg, side, batch, dropout):
    chans, kernels, strides, pads, _ = cfg
    out = expected_side(side, kernels, strides, pads, [0] * len(kernels), False)
    kwargs = dict(kernel_size=kernels, stride=strides, padding=pads, input_size=side, dropout=dropout)
    if out < 1:
        with pytest.raises(ConfigError, match="shrink"):
            downsampling_stack(chans, **kwargs)
        return
    stack = downsampling_stack(chans, norm_layer=None, **kwargs)
    assert sum(isinstance(m, nn.Dropout2d) for m in stack) == (len(kernels) if dropout else 0)
    y = stack(torch.randn(batch, chans[0], side, side))
    assert y.shape == (batch, chans[-1], out, out)


@SETTINGS
@given(
    st.integers(1, 4),
    st.integers(1, 16),
    st.sampled_from([8, 16, 32]),
    st.integers(1, 3),
    st.sampled_from([1, 3]),
    st.sampled_from([3, 5]),
)
def test_dcgan_generator_and_discriminator_shapes(batch, z_dim, image_size, width, channels, k):
    g = dcgan_generator(z_dim=z_dim, image_size=image_size, channels=channels, base_channels=width,
                        kernel_size=k)
    d = dcgan_discriminator(image_size=image_size, channels=channels, base_channels=width, kernel_size=k)
    g.eval(), d.eval()  # batch of one is fine for BatchNorm in eval mode
    x = g(torch.randn(batch, z_dim))
    assert x.shape == (batch, channels, image_size, image_size)
    assert g.out_shape == (channels, image_size, image_size)
    assert d(x).shape == (batch,)
    assert d(x, return_logits=True).shape == (batch,)


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 8), st.integers(1, 4), st.integers(1, 5),
       st.sampled_from(["before_reshape", "after_reshape"]))
def test_latent_projection_shapes(batch, z_dim, c, side, where):
    proj = LatentProjection(z_dim, c, side, norm_position=where).eval()
    assert proj(torch.randn(batch, z_dim)).shape == (batch, c, side, side)
    norms = [m for m in proj.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert isinstance(norms[0], nn.BatchNorm1d if where == "before_reshape" else nn.BatchNorm2d)


def test_heads_give_one_score_per_image():
    x = torch.randn(3, 8, 4, 4)
    conv = ConvHead(8, 4, sigmoid=True)
    p = conv(x)
    assert p.shape == (3,) and bool(((p > 0) & (p < 1)).all())
    assert torch.allclose(torch.sigmoid(conv(x, return_logits=True)), p)
    lin = LinearHead(8 * 16)
    assert lin(x).shape == (3,)


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: upsampling_stack([8, 4], kernel_size=[3, 3]), "2 entries"),
        (lambda: upsampling_stack([8, 0]), "positive"),
        (lambda: upsampling_stack([8, 4], stride=2, output_padding=2), "output_padding"),
        (lambda: downsampling_stack([3, 8], kernel_size=5, padding=0, input_size=4), "shrink"),
        (lambda: downsampling_stack([3, 8], dropout=1.5), "dropout"),
        (lambda: ConvHead(8, 3, input_size=4), "1x1"),
        (lambda: LatentProjection(10, 4, 4, norm_position="middle"), "norm_position"),
        (lambda: dcgan_generator(image_size=48), "power of two"),
        (lambda: dcgan_discriminator(head="mlp"), "head"),
        (lambda: get_act_layer("relux"), "relu"),
        (lambda: get_norm_layer("btach"), "batch"),
    ],
)
def test_invalid_configurations_raise_at_construction(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_channel_lists_that_do_not_chain_raise():
    with pytest.raises(ConfigError, match="channels"):
        Generator(LatentProjection(10, 32, 4), upsampling_stack([16, 8], output=OutputConv(3)))
    with pytest.raises(ConfigError, match="channels"):
        Discriminator(downsampling_stack([1, 8]), ConvHead(8, 2), image_shape=(3, 4, 4))
    with pytest.raises(ConfigError, match="features"):
        Discriminator(downsampling_stack([3, 8], input_size=8), LinearHead(10), image_shape=(3, 8, 8))
    with pytest.raises(ConfigError, match="one score"):
        Discriminator(downsampling_stack([3, 8]), ConvHead(8, 2), image_shape=(3, 16, 16))


@pytest.mark.parametrize(
    "build,keys",
    [
        (
            lambda: LatentProjection(16, 8, 2),
            ["pre.0.weight", "pre.1.weight", "pre.1.bias", "pre.1.running_mean",
             "pre.1.running_var", "pre.1.num_batches_tracked"],
        ),
        (
            lambda: LatentProjection(16, 8, 2, bias=True, norm_position="after_reshape"),
            ["pre.0.weight", "pre.0.bias", "post.0.weight", "post.0.bias", "post.0.running_mean",
             "post.0.running_var", "post.0.num_batches_tracked"],
        ),
        (lambda: ConvHead(8, 4, sigmoid=True), ["layers.0.weight", "layers.0.bias"]),
        (lambda: LinearHead(32, sigmoid=True), ["layers.0.weight", "layers.0.bias"]),
    ],
)
def test_containers_are_sequentials_with_the_checkpoint_keys_of_before(build, keys):
    # Sequential subclasses so that torchsummary prints no row for them; their state_dict
    # keys stay those of the plain nn.Module versions, so saved checkpoints still load.
    block = build()
    assert isinstance(block, LayerContainer) and isinstance(block, nn.Sequential)
    assert list(block.state_dict()) == keys
    g, d = dcgan_generator(), dcgan_discriminator()
    assert next(iter(g.state_dict())) == "projection.pre.0.weight"
    assert list(d.state_dict())[-2:] == ["head.layers.0.weight", "head.layers.0.bias"]


def test_layer_container_without_forward_raises():
    class Bare(LayerContainer):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

    with pytest.raises(TypeError, match="Bare defines no forward"):
        Bare()(torch.zeros(1, 2))
