"""Generator and Discriminator: thin modules that compose blocks.

A :class:`Generator` is a latent projection followed by an upsampling stack; a
:class:`Discriminator` is a downsampling stack followed by a critic head. Both check at
construction that the parts chain (channels and sizes) and record their shapes, so a
bad configuration fails with a :class:`~gankit.errors.ConfigError` before any forward.

:func:`dcgan_generator` and :func:`dcgan_discriminator` assemble the DCGAN family from
blocks for any power-of-two image size; the report's presets are configurations of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .blocks import (
    ConvHead,
    LatentProjection,
    LinearHead,
    OutputConv,
    conv_out_size,
    conv_transpose_out_size,
    downsampling_stack,
    upsampling_stack,
)
from .errors import ConfigError
from .init import get_init
from .layers import LayerSpec

__all__ = ["Generator", "Discriminator", "infer_shape", "dcgan_generator", "dcgan_discriminator"]

InitSpec = str | Callable[[nn.Module], nn.Module] | None


def infer_shape(layers: nn.Module, shape: tuple[int, int, int], name: str = "stack") -> tuple[int, int, int]:
    """Compute the ``(C, H, W)`` a stack of layers produces, without running it.

    Convolutions and transposed convolutions change the shape; every other layer is
    taken to keep it (normalisations, activations, dropout).

    Args:
        layers: the stack (any module; its leaf layers are walked in order).
        shape: the input ``(C, H, W)``.
        name: how to call the stack in error messages.

    Returns:
        The output ``(C, H, W)``.

    Raises:
        ConfigError: when a layer's input channels do not match, or a side drops below 1.
    """
    c, h, w = shape
    for i, m in enumerate(x for x in layers.modules() if not list(x.children())):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if m.in_channels != c:
                raise ConfigError(
                    f"{name} layer {i} ({type(m).__name__}) expects {m.in_channels} input "
                    f"channels but receives {c}; make the channel lists chain."
                )
            k, s, p = m.kernel_size, m.stride, m.padding
            if isinstance(m, nn.ConvTranspose2d):
                op = m.output_padding
                h = conv_transpose_out_size(h, k[0], s[0], p[0], op[0])
                w = conv_transpose_out_size(w, k[1], s[1], p[1], op[1])
            else:
                h, w = conv_out_size(h, k[0], s[0], p[0]), conv_out_size(w, k[1], s[1], p[1])
            c = m.out_channels
            if h < 1 or w < 1:
                raise ConfigError(f"{name} layer {i} shrinks the feature map to {h}x{w}.")
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.num_features != c:
            raise ConfigError(
                f"{name} layer {i} ({type(m).__name__}) normalises {m.num_features} "
                f"channels but receives {c}."
            )
    return (c, h, w)


class Generator(nn.Module):
    """Latent projection followed by an upsampling stack: ``(N, z_dim) -> (N, C, H, W)``.

    Args:
        projection: maps latents to the first feature map.
        body: the upsampling stack (ends with the image layer and its activation).
        init: initialisation scheme applied over all modules after both parts are built
            (``"dcgan"``, ``"default"``/None or a callable).

    Example:
        >>> g = dcgan_generator(z_dim=100, image_size=64)
        >>> g(torch.randn(2, 100)).shape
        torch.Size([2, 3, 64, 64])
    """

    def __init__(self, projection: LatentProjection, body: nn.Module, *, init: InitSpec = None):
        super().__init__()
        self.projection = projection
        self.body = body
        self.z_dim = projection.z_dim
        self.out_shape = infer_shape(body, projection.out_shape, "generator body")
        get_init(init)(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Generate images (in the range of the output activation, [-1, 1] for tanh)."""
        return self.body(self.projection(z))


class Discriminator(nn.Module):
    """Downsampling stack followed by a critic head: ``(N, C, H, W) -> (N,)``.

    Args:
        body: the downsampling stack.
        head: a :class:`~gankit.blocks.ConvHead` or :class:`~gankit.blocks.LinearHead`.
        image_shape: the ``(C, H, W)`` of the images it scores.
        init: initialisation scheme applied over all modules after both parts are built.

    Example:
        >>> d = dcgan_discriminator(image_size=64)
        >>> d(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2])
    """

    def __init__(
        self,
        body: nn.Module,
        head: ConvHead | LinearHead,
        *,
        image_shape: tuple[int, int, int] = (3, 64, 64),
        init: InitSpec = None,
    ):
        super().__init__()
        self.body = body
        self.head = head
        self.image_shape = tuple(image_shape)
        feat = infer_shape(body, self.image_shape, "discriminator body")
        if isinstance(head, LinearHead):
            if head.in_features != math.prod(feat):
                raise ConfigError(
                    f"LinearHead expects {head.in_features} features but the body gives "
                    f"{feat} = {math.prod(feat)}; set in_features={math.prod(feat)}."
                )
        else:
            out = infer_shape(head, feat, "discriminator head")
            if out != (1, 1, 1):
                raise ConfigError(
                    f"the head turns the body's {feat} features into {out}, not one score "
                    "per image; set the head's kernel_size to the feature map's side."
                )
        self.feature_shape = feat
        get_init(init)(self)

    @property
    def outputs_probability(self) -> bool:
        """True when the head ends with a sigmoid (the output is a probability)."""
        return bool(getattr(self.head, "sigmoid", False))

    def forward(self, x: torch.Tensor, return_logits: bool = False) -> torch.Tensor:
        """Score images as ``(N,)``; ``return_logits`` skips a final sigmoid."""
        return self.head(self.body(x), return_logits=return_logits)


def _n_doublings(image_size: int, start: int) -> int:
    n = math.log2(image_size / start) if image_size >= start else -1
    if n < 1 or n != int(n):
        raise ConfigError(
            f"image_size {image_size} is not {start} times a power of two; use e.g. 32, 64 or 128."
        )
    return int(n)


def dcgan_generator(
    *,
    z_dim: int = 100,
    image_size: int = 64,
    channels: int = 3,
    base_channels: int = 64,
    kernel_size: int = 5,
    norm_layer: LayerSpec = nn.BatchNorm2d,
    act_layer: LayerSpec = nn.ReLU,
    init: InitSpec = "dcgan",
) -> Generator:
    """The ML2020 DCGAN generator for any ``image_size`` = 4 x 2^k (k >= 1).

    ``Linear(z, 8·b·4·4, bias=False) -> BatchNorm1d -> ReLU``, reshape to 4x4, then
    transposed convolutions (kernel 5, stride 2, padding 2, output padding 1, no bias)
    halving the channels while doubling the side, and a last transposed convolution
    with bias to ``channels`` and ``Tanh``. With the defaults this is task one's
    generator (5,142,083 parameters).

    Args:
        z_dim: latent size.
        image_size: output side.
        channels: output image channels.
        base_channels: channels before the output layer (64 in the report).
        kernel_size: kernel side of the transposed convolutions (odd; padding follows).
        norm_layer: normalisation of the hidden stages (and the 1-D one of the projection).
        act_layer: activation of the hidden stages.
        init: initialisation scheme (``"dcgan"`` = SPEC.md's normal init).

    Returns:
        A :class:`Generator`.
    """
    if kernel_size % 2 == 0:
        raise ConfigError(f"kernel_size must be odd for 'same'-style padding, got {kernel_size}.")
    n = _n_doublings(image_size, 4)
    chans = [base_channels * 2 ** (n - 1 - i) for i in range(n)]  # e.g. 512, 256, 128, 64
    pad = kernel_size // 2
    proj_norm = nn.BatchNorm1d if norm_layer is nn.BatchNorm2d else norm_layer
    return Generator(
        LatentProjection(z_dim, chans[0], 4, bias=False, norm_layer=proj_norm, act_layer=act_layer),
        upsampling_stack(
            chans,
            kernel_size=kernel_size,
            stride=2,
            padding=pad,
            output_padding=1,
            bias=False,
            norm_layer=norm_layer,
            act_layer=act_layer,
            output=OutputConv(channels, kernel_size, 2, pad, 1, bias=True, act_layer="tanh"),
            input_size=4,
        ),
        init=init,
    )


def dcgan_discriminator(
    *,
    image_size: int = 64,
    channels: int = 3,
    base_channels: int = 64,
    kernel_size: int = 5,
    norm_layer: LayerSpec = nn.BatchNorm2d,
    act_layer: LayerSpec = "leaky_relu",
    dropout: float = 0.0,
    head: str = "conv",
    sigmoid: bool = True,
    init: InitSpec = "dcgan",
) -> Discriminator:
    """The ML2020 DCGAN discriminator for any ``image_size`` = 4 x 2^k (k >= 1).

    ``Conv2d(channels, b, 5, 2, 2) -> LeakyReLU(0.2)``, then convolution blocks
    (kernel 5, stride 2, padding 2, with bias) doubling the channels, each with
    normalisation, LeakyReLU(0.2) and optional ``Dropout2d``, down to a 4x4 map; then a
    head. With the defaults this is task one's discriminator (4,316,545 parameters);
    with ``dropout=0.25, head="linear", sigmoid=False`` it is task two's critic.

    Args:
        image_size: input side.
        channels: input image channels.
        base_channels: channels of the first convolution (64 in the report).
        kernel_size: kernel side (odd).
        norm_layer: normalisation of every block but the first.
        act_layer: activation after every convolution.
        dropout: ``Dropout2d`` probability after every block but the first (0: none).
        head: ``"conv"`` (a 4x4 convolution to one score) or ``"linear"`` (flatten + Linear).
        sigmoid: end the head with a sigmoid (a probability for BCE).
        init: initialisation scheme (``"dcgan"`` = SPEC.md's normal init).

    Returns:
        A :class:`Discriminator`.
    """
    if kernel_size % 2 == 0:
        raise ConfigError(f"kernel_size must be odd for 'same'-style padding, got {kernel_size}.")
    n = _n_doublings(image_size, 4)
    chans = [channels] + [base_channels * 2**i for i in range(n)]  # 3, 64, 128, 256, 512
    body = downsampling_stack(
        chans,
        kernel_size=kernel_size,
        stride=2,
        padding=kernel_size // 2,
        bias=True,
        norm_layer=[None] + [norm_layer] * (n - 1),
        act_layer=act_layer,
        dropout=[0.0] + [dropout] * (n - 1),
        input_size=image_size,
    )
    if head == "conv":
        critic: ConvHead | LinearHead = ConvHead(chans[-1], 4, sigmoid=sigmoid, input_size=4)
    elif head == "linear":
        critic = LinearHead(chans[-1] * 4 * 4, sigmoid=sigmoid)
    else:
        raise ConfigError(f"head must be 'conv' or 'linear', got {head!r}.")
    return Discriminator(body, critic, image_shape=(channels, image_size, image_size), init=init)
