"""Residual blocks, attention, minibatch stddev and shape inference over every layer gankit offers."""

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
    OutputConv,
    downsampling_stack,
    upsampling_stack,
)
from gankit.conditional import (
    AuxClassifierHead,
    ConditionalLatentProjection,
    ProjectionHead,
    SumPoolHead,
)
from gankit.constraints import spectral_norm_, weight_spectral_norms
from gankit.models import Discriminator, Generator, infer_shape, register_shape_rule
from gankit.resblocks import (
    ConditionalBatchNorm2d,
    ConditionalSequential,
    DBlock,
    GBlock,
    MinibatchStdDev,
    SelfAttention,
)

FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
channels = st.integers(1, 6)


def _run(block, shape, y=None):
    x = torch.randn(2, *shape)
    with torch.no_grad():
        out = block(x) if y is None else block(x, y)
    return tuple(out.shape[1:])


@FAST
@given(c_in=channels, c_out=channels, hidden=st.none() | channels, up=st.booleans(),
       shortcut=st.sampled_from(["auto", "conv", "identity"]), sn=st.booleans(),
       cond=st.sampled_from(["none", "classes", "vector"]), side=st.integers(1, 6),
       mode=st.sampled_from(["nearest", "bilinear"]))
def test_gblock_output_shape_matches_forward_and_infer_shape(c_in, c_out, hidden, up, shortcut, sn, cond, side, mode):
    if shortcut == "identity" and c_in != c_out:
        with pytest.raises(ConfigError, match="identity shortcut"):
            GBlock(c_in, c_out, shortcut=shortcut)
        return
    kw = {"classes": {"num_classes": 3}, "vector": {"cond_dim": 5}, "none": {}}[cond]
    block = GBlock(c_in, c_out, hidden, upsample=up, upsample_mode=mode, shortcut=shortcut, spectral_norm=sn, **kw)
    y = {"classes": torch.tensor([0, 2]), "vector": torch.randn(2, 5), "none": None}[cond]
    shape = (c_in, side, side)
    want = (c_out, side * (2 if up else 1), side * (2 if up else 1))
    assert block.output_shape(shape) == want == _run(block, shape, y)
    assert infer_shape(ConditionalSequential(block), shape) == want
    # the shortcut is learnable exactly when asked for, or (auto) when channels or size change
    learnable = shortcut == "conv" or (shortcut == "auto" and (c_in != c_out or up))
    assert (block.c_sc is not None) == learnable
    assert bool(weight_spectral_norms(block)) and (sn == any(
        type(m).__name__.startswith("Parametrized") for m in block.modules()))
    with pytest.raises(ConfigError, match="input channels"):
        block.output_shape((c_in + 1, side, side))


@FAST
@given(c_in=channels, c_out=channels, down=st.booleans(), pre=st.booleans(),
       shortcut=st.sampled_from(["auto", "conv", "identity"]), sn=st.booleans(), side=st.integers(2, 9))
def test_dblock_output_shape_matches_forward_and_infer_shape(c_in, c_out, down, pre, shortcut, sn, side):
    learnable = shortcut == "conv" or (shortcut == "auto" and (c_in != c_out or down))
    if shortcut == "identity" and c_in != c_out:
        with pytest.raises(ConfigError, match="identity shortcut"):
            DBlock(c_in, c_out, shortcut=shortcut)
        return
    if not pre and not learnable:
        with pytest.raises(ConfigError, match="learnable"):
            DBlock(c_in, c_out, downsample=down, preactivation=pre, shortcut=shortcut)
        return
    block = DBlock(c_in, c_out, downsample=down, preactivation=pre, shortcut=shortcut, spectral_norm=sn)
    shape = (c_in, side, side)
    want = (c_out, side // 2, side // 2) if down else (c_out, side, side)
    assert block.output_shape(shape) == want == _run(block, shape) == infer_shape(nn.Sequential(block), shape)
    assert (block.c_sc is not None) == learnable


@FAST
@given(c=st.integers(8, 24), side=st.integers(1, 5), pool=st.booleans())
def test_self_attention_keeps_the_shape_and_starts_as_identity(c, side, pool):
    side = 2 * side if pool else side
    attn = SelfAttention(c, pool=pool)
    x = torch.randn(2, c, side, side)
    assert attn.output_shape((c, side, side)) == (c, side, side) == infer_shape(nn.Sequential(attn), (c, side, side))
    assert torch.equal(attn(x), x)  # gamma starts at 0
    with torch.no_grad():
        attn.gamma.fill_(1.0)
    assert not torch.equal(attn(x), x)


def test_self_attention_refuses_odd_sides_when_pooling_and_few_channels():
    with pytest.raises(ConfigError, match="even sides"):
        infer_shape(nn.Sequential(SelfAttention(8)), (8, 5, 5))
    with pytest.raises(ConfigError, match="at least 8"):
        SelfAttention(4)


@FAST
@given(n=st.sampled_from([2, 4, 6, 8]), c=st.sampled_from([2, 4]), group=st.sampled_from([2, 4]),
       f=st.sampled_from([1, 2]))
def test_minibatch_stddev_appends_the_group_spread(n, c, group, f):
    m = MinibatchStdDev(group, f)
    x = torch.randn(n, c, 3, 3)
    out = m(x)
    assert tuple(out.shape[1:]) == m.output_shape((c, 3, 3)) == (c + f, 3, 3)
    assert torch.equal(out[:, :c], x)
    # identical images have no spread: the appended maps are (almost) zero
    same = m(x[:1].expand(n, -1, -1, -1).contiguous())
    assert same[:, c:].abs().max() < 1e-3


def test_conditional_batchnorm_gain_and_bias_depend_on_the_class():
    cbn = ConditionalBatchNorm2d(4, num_classes=3)
    with torch.no_grad():
        cbn.embed.weight.normal_()
    x = torch.randn(2, 4, 3, 3)
    a, b = cbn(x, torch.tensor([0, 0])), cbn(x, torch.tensor([1, 1]))
    assert not torch.allclose(a, b)
    vec = ConditionalBatchNorm2d(4, cond_dim=6)
    assert vec(x, torch.zeros(2, 6)).shape == x.shape
    with pytest.raises(ConfigError, match="exactly one"):
        ConditionalBatchNorm2d(4)
    with pytest.raises(ConfigError, match="labels"):
        cbn(x, None)


def test_infer_shape_understands_every_torch_layer_gankit_uses():
    stack = nn.Sequential(
        nn.Upsample(scale_factor=2), nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.LeakyReLU(0.2),
        nn.AvgPool2d(2), nn.MaxPool2d(3, stride=2, padding=1), nn.GroupNorm(2, 6), nn.ZeroPad2d(1),
        nn.ConvTranspose2d(6, 8, 4, 2, 1), nn.PixelShuffle(2), nn.PixelUnshuffle(2), nn.InstanceNorm2d(8),
        nn.Dropout2d(0.1), nn.Conv2d(8, 4, 3, padding="same", dilation=2), nn.AdaptiveAvgPool2d(3), nn.Identity(),
    )
    want = tuple(stack(torch.randn(1, 3, 8, 8)).shape[1:])
    assert infer_shape(stack, (3, 8, 8)) == want


@FAST
@given(side=st.integers(2, 12), k=st.integers(1, 3), s=st.integers(1, 3), ceil=st.booleans(),
       kind=st.sampled_from([nn.AvgPool2d, nn.MaxPool2d]))
def test_pooling_shape_matches_torch(side, k, s, ceil, kind):
    if k > side:
        return
    pool = kind(k, stride=s, padding=k // 2, ceil_mode=ceil)
    assert infer_shape(nn.Sequential(pool), (2, side, side)) == tuple(pool(torch.zeros(1, 2, side, side)).shape[1:])


def test_the_generator_reports_the_size_upsampling_gives():
    # the case: Upsample was ignored and an 8x8 generator reported (3, 4, 4)
    g = Generator(LatentProjection(8, 4, 4, norm_layer=None),
                  nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(4, 3, 3, padding=1), nn.Tanh()))
    assert g.out_shape == (3, 8, 8) == tuple(g(torch.randn(2, 8)).shape[1:])


def test_unknown_layers_are_refused_clearly_and_can_be_taught():
    class Twice(nn.Module):
        def forward(self, x):
            return torch.cat([x, x], 1)

    with pytest.raises(ConfigError, match=r"layer 1 \(Twice\).*register_shape_rule"):
        infer_shape(nn.Sequential(nn.ReLU(), Twice()), (3, 4, 4))
    register_shape_rule(Twice, lambda m, s, where: (2 * s[0], s[1], s[2]))
    assert infer_shape(nn.Sequential(nn.ReLU(), Twice()), (3, 4, 4)) == (6, 4, 4)
    with pytest.raises(ConfigError, match="flatten in the head"):
        infer_shape(nn.Sequential(nn.Flatten()), (3, 4, 4))


def test_spectrally_normalised_stacks_are_walked_as_their_layers():
    d = spectral_norm_(downsampling_stack([3, 8, 16], input_size=16))
    assert infer_shape(d, (3, 16, 16)) == (16, 4, 4)
    up = spectral_norm_(upsampling_stack([8, 4], output=OutputConv(3, 4, 2, 1)))
    assert infer_shape(up, (8, 4, 4)) == (3, 16, 16)


def test_discriminator_accepts_a_residual_body_and_checks_channels():
    body = nn.Sequential(DBlock(3, 16, preactivation=False), DBlock(16, 16), SelfAttention(16),
                         DBlock(16, 16, downsample=False), MinibatchStdDev())
    d = Discriminator(body, SumPoolHead(17), image_shape=(3, 16, 16))
    assert d.feature_shape == (17, 4, 4) and d(torch.randn(4, 3, 16, 16)).shape == (4,)
    with pytest.raises(ConfigError, match="feature channels"):
        Discriminator(body, SumPoolHead(16), image_shape=(3, 16, 16))
    with pytest.raises(ConfigError, match="input channels"):
        Discriminator(nn.Sequential(DBlock(1, 8, preactivation=False)), SumPoolHead(8), image_shape=(3, 8, 8))
    # the report's heads still work on a residual body
    d2 = Discriminator(nn.Sequential(DBlock(3, 8, preactivation=False)), ConvHead(8, 4), image_shape=(3, 8, 8))
    assert d2(torch.randn(2, 3, 8, 8)).shape == (2,)


@FAST
@given(k=st.integers(2, 5), embed=st.none() | st.integers(1, 4))
def test_conditional_generator_output_depends_on_the_label(k, embed):
    torch.manual_seed(0)
    g = Generator(ConditionalLatentProjection(6, 8, 4, num_classes=k, embed_dim=embed),
                  ConditionalSequential(GBlock(8, 4, num_classes=k), nn.BatchNorm2d(4), nn.ReLU(),
                                        nn.Conv2d(4, 3, 3, padding=1), nn.Tanh()))
    with torch.no_grad():  # conditional BN starts at gain 1, bias 0: make the classes differ
        for m in g.modules():
            if isinstance(m, ConditionalBatchNorm2d):
                m.embed.weight.normal_()
    g.eval()
    z = torch.randn(2, 6)
    a, b = g(z, labels=torch.tensor([0, 0])), g(z, labels=torch.tensor([1, 1]))
    assert a.shape == (2, 3, 8, 8) and g.num_classes == k and not torch.allclose(a, b)
    with pytest.raises(ConfigError, match="pass labels"):
        g(z)
    with pytest.raises(ConfigError, match=f"0..{k - 1}"):
        g(z, labels=torch.tensor([0, k]))


def test_projection_and_auxiliary_heads():
    d = Discriminator(nn.Sequential(DBlock(3, 8, preactivation=False)), ProjectionHead(8, 3), image_shape=(3, 8, 8))
    spectral_norm_(d, include_embeddings=True)
    x = torch.randn(2, 3, 8, 8)
    assert d.takes_labels and d.num_classes == 3
    assert not torch.allclose(d(x, labels=torch.tensor([0, 0])), d(x, labels=torch.tensor([2, 2])))
    with pytest.raises(ConfigError, match="pass labels"):
        d(x)
    aux = Discriminator(nn.Sequential(DBlock(3, 8, preactivation=False)), AuxClassifierHead(8, 3),
                        image_shape=(3, 8, 8))
    assert aux(x).shape == (2,) and aux.head.class_logits.shape == (2, 3) and not aux.takes_labels
    with pytest.raises(ConfigError, match="takes no labels"):
        aux(x, labels=torch.tensor([0, 1]))


def test_shared_embedding_with_the_latent_conditions_every_block():
    k, z_dim, e = 3, 4, 5
    g = Generator(LatentProjection(z_dim, 8, 4, norm_layer=None, act_layer=None),
                  ConditionalSequential(GBlock(8, 8, cond_dim=e + z_dim), nn.Conv2d(8, 3, 1), nn.Tanh()),
                  shared_embedding=nn.Embedding(k, e), concat_latent=True)
    assert g.num_classes == k
    z = torch.randn(2, z_dim)
    assert not torch.allclose(g(z, labels=torch.tensor([0, 0])), g(z, labels=torch.tensor([1, 1])))
