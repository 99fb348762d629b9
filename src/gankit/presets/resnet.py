"""ResNet SNGAN presets: the residual baselines of Miyato et al. (2018), as torch-mimicry ships them.

* :func:`sngan_resnet32` -- the CIFAR-10 ResNet SNGAN: G ``z(128) -> Linear -> 4x4x256``,
  three up-blocks of 256 channels, ``BN -> ReLU -> conv3x3 -> tanh``; D: the optimized
  first block and three residual blocks of 128 channels (the first two downsampling),
  ReLU, global sum pooling, a spectrally normalised ``Linear(128, 1)``.
* :func:`sngan_resnet64` -- the 64x64 ResNet SNGAN: G from 1024 channels at 4x4 halving
  through four up-blocks to 64; D from 64 doubling through five downsampling blocks to 1024.
* :func:`sngan_projection32` -- the class-conditional cGAN with projection discriminator
  (Miyato & Koyama 2018) at 32x32: ``sngan_resnet32`` with conditional BatchNorm in every
  generator block and a projection head (a spectrally normalised class embedding).

All three train with the hinge loss, spectral norm on every discriminator layer, Adam
lr 2e-4 with betas (0.0, 0.9) for both networks, five discriminator steps per generator
step (counted over the whole run), batch 64.

Widths scale with ``base_channels`` (``b``): the 32x32 networks have ``2b`` generator and
``b`` discriminator channels (256 and 128 at the default ``b = 128``); the 64x64 ones go
from ``16b`` down to ``b`` in G and from ``b`` up to ``16b`` in D (``b = 64``). The number
of blocks follows ``image_size`` (the side doubles per generator block from 4x4), so a
small ``image_size`` and ``base_channels`` give a tiny network of the same design.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from torch import nn

from ..blocks import LatentProjection
from ..conditional import ProjectionHead, SumPoolHead
from ..errors import ConfigError
from ..models import Discriminator, Generator
from ..resblocks import ConditionalSequential, DBlock, GBlock, xavier_init_
from ._registry import Recipe, RecipeSettings, make_settings, register_preset

__all__ = ["sngan_resnet32", "sngan_resnet64", "sngan_projection32", "resnet_generator", "resnet_discriminator"]

_MIMICRY = "https://github.com/kwotsin/mimicry"
_SOURCE = ("Miyato, Kataoka, Koyama & Yoshida, 'Spectral Normalization for Generative Adversarial Networks' "
           f"(ICLR 2018), ResNet architectures of its appendix; layer for layer as torch-mimicry ({_MIMICRY}) "
           "builds them in torch_mimicry/nets/sngan/{file} and torch_mimicry/modules/resblocks.py "
           "(upsampling nearest-neighbour as the paper's Chainer code; torch-mimicry's current GBlock is bilinear)")
_RECIPE = ("hinge loss; spectral norm on every D layer; Adam lr 2e-4, betas (0.0, 0.9) for G and D; n_critic 5 "
           "(global count); batch 64; torch-mimicry trains 100k generator steps with a linearly decaying lr "
           "(not applied by default: pass a schedule with Trainer(schedules=...))")

META = {
    "sngan_resnet32": {
        "summary": "The ResNet SNGAN CIFAR-10 baseline (32x32, unconditional).",
        "source": _SOURCE.format(file="sngan_32.py"),
        "recipe": _RECIPE,
        "benchmarks": [],
    },
    "sngan_resnet64": {
        "summary": "The ResNet SNGAN at 64x64 (unconditional).",
        "source": _SOURCE.format(file="sngan_64.py"),
        "recipe": _RECIPE,
        "benchmarks": [],
    },
    "sngan_projection32": {
        "summary": "Class-conditional ResNet SNGAN with conditional BatchNorm in G and a projection discriminator.",
        "source": ("Miyato & Koyama, 'cGANs with Projection Discriminator' (ICLR 2018); layer for layer as "
                   f"torch-mimicry ({_MIMICRY}) builds it in torch_mimicry/nets/cgan_pd/cgan_pd_32.py: "
                   "conditional BatchNorm from a class embedding in every generator block, a spectrally "
                   "normalised class embedding projected on D's pooled features"),
        "recipe": _RECIPE,
        "benchmarks": [],
    },
}

_DEFAULTS = dict(z_dim=128, loss="hinge", g_optimizer="adam_wgan_gp", d_optimizer="adam_wgan_gp", g_lr=2e-4,
                 d_lr=2e-4, n_critic=5, n_critic_count="global", batch_size=64, spectral_norm=True,
                 shuffle="seeded", epochs=100)


def _n_blocks(image_size: int, start: int = 4) -> int:
    n = math.log2(image_size / start) if image_size >= 2 * start else 0
    if n < 1 or n != int(n):
        raise ConfigError(f"image_size {image_size} is not {start} times a power of two; use e.g. 8, 16, 32 or 64.")
    return int(n)


def resnet_generator(*, z_dim: int, image_size: int, channels: list[int], out_channels: int = 3,
                     num_classes: int = 0, upsample_mode: str = "nearest") -> Generator:
    """An SNGAN ResNet generator: ``Linear -> 4x4``, up-blocks, ``BN -> ReLU -> conv3x3 -> tanh``.

    Args:
        z_dim: latent size.
        image_size: output side (4 times a power of two; one block per doubling).
        channels: the channels at 4x4, then after each up-block (``1 + log2(size / 4)`` values).
        out_channels: image channels.
        num_classes: > 0: conditional BatchNorm (class embeddings) in every block.
        upsample_mode: ``"nearest"`` (SNGAN's Chainer code) or ``"bilinear"`` (torch-mimicry).

    Returns:
        The :class:`~gankit.models.Generator` (SNGAN's Xavier initialisation).
    """
    n = _n_blocks(image_size)
    if len(channels) != n + 1:
        raise ConfigError(f"a {image_size}x{image_size} ResNet generator has {n} blocks: give {n + 1} channel "
                          f"counts, got {len(channels)}.")
    proj = LatentProjection(z_dim, channels[0], 4, bias=True, norm_layer=None, act_layer=None)
    xavier_init_(proj.pre[0], 1.0)
    blocks = [GBlock(channels[i], channels[i + 1], upsample=True, num_classes=num_classes,
                     upsample_mode=upsample_mode) for i in range(n)]
    out = nn.Conv2d(channels[-1], out_channels, 3, 1, 1)
    xavier_init_(out, 1.0)
    seq = ConditionalSequential if num_classes else nn.Sequential
    body = seq(*blocks, nn.BatchNorm2d(channels[-1]), nn.ReLU(), out, nn.Tanh())
    return Generator(proj, body, init=None)


def resnet_discriminator(*, image_size: int, channels: list[int], downsample: list[bool], in_channels: int = 3,
                         num_classes: int = 0, spectral_norm: bool = True) -> Discriminator:
    """An SNGAN ResNet discriminator: the optimized first block, residual blocks, ReLU, sum pooling, linear.

    Args:
        image_size: input side.
        channels: the output channels of each block (the first is the optimized block).
        downsample: whether each block after the first halves the side.
        in_channels: image channels.
        num_classes: > 0: a projection head with a class embedding (cGAN-PD).
        spectral_norm: spectral norm on every convolution, linear layer and the embedding.

    Returns:
        The :class:`~gankit.models.Discriminator`.
    """
    if len(downsample) != len(channels) - 1:
        raise ConfigError(f"give one downsample flag per block after the first ({len(channels) - 1}), "
                          f"got {len(downsample)}.")
    blocks = [DBlock(in_channels, channels[0], downsample=True, preactivation=False)]
    blocks += [DBlock(channels[i], channels[i + 1], downsample=downsample[i]) for i in range(len(downsample))]
    head = ProjectionHead(channels[-1], num_classes) if num_classes else SumPoolHead(channels[-1])
    d = Discriminator(nn.Sequential(*blocks), head, image_shape=(in_channels, image_size, image_size))
    if spectral_norm:
        from ..constraints import spectral_norm_

        spectral_norm_(d, include_embeddings=True)
    return d


def _finish(name: str, g: Generator, d: Discriminator, s: RecipeSettings, overrides: dict[str, Any], doc: str) -> Recipe:
    return Recipe(name, g, d, s, dict(overrides), doc, meta=copy.deepcopy(META[name]))


def _resnet32(name: str, overrides: dict[str, Any], defaults: dict[str, Any], doc: str) -> Recipe:
    s = make_settings({**_DEFAULTS, "image_size": 32, "base_channels": 128, **defaults}, overrides)
    n = _n_blocks(s.image_size)
    b = s.base_channels
    g = resnet_generator(z_dim=s.z_dim, image_size=s.image_size, channels=[2 * b] * (n + 1),
                         out_channels=s.channels, num_classes=s.num_classes)
    # the optimized block halves once; blocks then halve down to 8x8; two more keep 8x8
    down = [True] * (n - 2) + [False, False] if n >= 2 else [False, False]
    d = resnet_discriminator(image_size=s.image_size, channels=[b] * (len(down) + 1), downsample=down,
                             in_channels=s.channels, num_classes=s.num_classes, spectral_norm=s.spectral_norm)
    return _finish(name, g, d, s, overrides, doc)


@register_preset
def sngan_resnet32(**overrides: Any) -> Recipe:
    """ResNet SNGAN for 32x32 (CIFAR-10): hinge, spectral norm, Adam 2e-4 / (0, 0.9), n_critic 5, batch 64.

    Generator 4,276,739 and discriminator 1,053,825 parameters at the defaults
    (``base_channels=128``: 256 generator and 128 discriminator channels), as
    torch-mimicry's ``SNGANGenerator32`` / ``SNGANDiscriminator32``.

    Args:
        **overrides: any :class:`~gankit.presets.RecipeSettings` field, e.g. ``base_channels=8``
            and ``image_size=16`` for a tiny network of the same design.

    Returns:
        The :class:`~gankit.presets.Recipe`.

    Example:
        >>> recipe = sngan_resnet32(base_channels=4, image_size=16)
        >>> recipe.generator(torch.randn(2, 128)).shape
        torch.Size([2, 3, 16, 16])
    """
    s_classes = overrides.get("num_classes", 0)
    if s_classes:
        raise ConfigError("sngan_resnet32 is unconditional; use sngan_projection32 for class-conditional training.")
    return _resnet32("sngan_resnet32", overrides, {}, sngan_resnet32.__doc__.splitlines()[0])


@register_preset
def sngan_projection32(**overrides: Any) -> Recipe:
    """Conditional ResNet SNGAN for 32x32: conditional BN in G, projection discriminator (cGAN-PD).

    ``num_classes`` defaults to 10 (CIFAR-10); at the defaults the generator has
    4,304,387 and the discriminator 1,055,105 parameters (torch-mimicry's cGAN-PD 32).

    Args:
        **overrides: any :class:`~gankit.presets.RecipeSettings` field; ``num_classes`` must
            match the data's classes.

    Returns:
        The :class:`~gankit.presets.Recipe`.
    """
    if overrides.get("num_classes", 10) < 1:
        raise ConfigError("sngan_projection32 is class-conditional: num_classes must be >= 1.")
    return _resnet32("sngan_projection32", overrides, {"num_classes": 10}, sngan_projection32.__doc__.splitlines()[0])


@register_preset
def sngan_resnet64(**overrides: Any) -> Recipe:
    """ResNet SNGAN for 64x64: hinge, spectral norm, Adam 2e-4 / (0, 0.9), n_critic 5, batch 64.

    ``base_channels=64``: the generator goes 1024 -> 512 -> 256 -> 128 -> 64 channels, the
    discriminator 64 -> 128 -> 256 -> 512 -> 1024 (torch-mimicry's ``SNGANGenerator64`` /
    ``SNGANDiscriminator64``).

    Args:
        **overrides: any :class:`~gankit.presets.RecipeSettings` field.

    Returns:
        The :class:`~gankit.presets.Recipe`.
    """
    s = make_settings({**_DEFAULTS, "image_size": 64, "base_channels": 64}, overrides)
    if s.num_classes:
        raise ConfigError("sngan_resnet64 is unconditional (num_classes must be 0).")
    n = _n_blocks(s.image_size)
    b = s.base_channels
    g = resnet_generator(z_dim=s.z_dim, image_size=s.image_size, channels=[b * 2 ** (n - i) for i in range(n + 1)],
                         out_channels=s.channels)
    d = resnet_discriminator(image_size=s.image_size, channels=[b * 2**i for i in range(n + 1)],
                             downsample=[True] * n, in_channels=s.channels, spectral_norm=s.spectral_norm)
    return _finish("sngan_resnet64", g, d, s, overrides, sngan_resnet64.__doc__.splitlines()[0])
