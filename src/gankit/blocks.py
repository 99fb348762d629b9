"""Composable building blocks: upsampling and downsampling stacks, latent projection, heads.

Every stack is a plain :class:`torch.nn.Sequential` of torch layers, and every block
that holds layers (:class:`LatentProjection`, :class:`ConvHead`, :class:`LinearHead`) is a
:class:`LayerContainer`, so a layer table -- torchsummary's or :func:`gankit.summary`'s --
lists exactly one row per layer call, as the report's tables do. Reshapes and flattens
are never modules: they happen in ``forward`` with :func:`einops.rearrange`.

Settings that may differ per stage (kernel size, stride, padding, output padding, bias,
normalisation, activation, dropout) take either one value for every stage or a
sequence with one value per stage. Invalid configurations raise
:class:`~gankit.errors.ConfigError` (a ``ValueError``) when the block is built, never
inside ``forward``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from einops import rearrange
from torch import nn

from .errors import ConfigError
from .layers import LayerSpec, make_act, make_norm

__all__ = [
    "conv_out_size",
    "conv_transpose_out_size",
    "OutputConv",
    "upsampling_stack",
    "downsampling_stack",
    "LayerContainer",
    "LatentProjection",
    "ConvHead",
    "LinearHead",
]

T = TypeVar("T")
PerStage = T | Sequence[T]


def conv_out_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Side length after a ``Conv2d``: ``(size + 2 * padding - kernel_size) // stride + 1``.

    Args:
        size: input side length.
        kernel_size: kernel side.
        stride: stride.
        padding: zero padding on each side.

    Returns:
        The output side length (may be < 1 for an impossible configuration).

    Example:
        >>> conv_out_size(64, 5, 2, 2)
        32
    """
    return (size + 2 * padding - kernel_size) // stride + 1


def conv_transpose_out_size(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, output_padding: int = 0
) -> int:
    """Side length after a ``ConvTranspose2d``.

    ``(size - 1) * stride - 2 * padding + kernel_size + output_padding``.

    Args:
        size: input side length.
        kernel_size: kernel side.
        stride: stride.
        padding: padding removed from each side.
        output_padding: extra size added to one side.

    Returns:
        The output side length.

    Example:
        >>> conv_transpose_out_size(4, 5, 2, 2, 1)
        8
    """
    return (size - 1) * stride - 2 * padding + kernel_size + output_padding


def _per_stage(value: Any, n: int, name: str) -> list[Any]:
    """Broadcast one value to ``n`` stages, or check a per-stage list has length ``n``."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ConfigError(
                f"{name} has {len(value)} entries but the stack has {n} stages; "
                f"give one value or exactly {n}."
            )
        return list(value)
    return [value] * n


def _check_channels(channels: Sequence[int], name: str) -> list[int]:
    chans = list(channels)
    if len(chans) < 1:
        raise ConfigError(f"{name} needs at least the input channel count, got {chans}.")
    for c in chans:
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ConfigError(f"{name} must be positive integers, got {chans}.")
    return chans


def _check_conv_args(
    stage: int, kernel: int, stride: int, padding: int, output_padding: int = 0, *, transposed=False
) -> None:
    where = f"stage {stage}"
    if kernel < 1 or stride < 1 or padding < 0 or output_padding < 0:
        raise ConfigError(
            f"{where}: kernel_size and stride must be >= 1 and paddings >= 0, got "
            f"kernel_size={kernel}, stride={stride}, padding={padding}, output_padding={output_padding}."
        )
    if transposed and output_padding >= stride:
        raise ConfigError(
            f"{where}: output_padding ({output_padding}) must be smaller than stride ({stride})."
        )


@dataclass(frozen=True)
class OutputConv:
    """The last layer of a stack: one convolution with its own settings and activation.

    Args:
        channels: output channels (3 for RGB images, 1 for a critic score).
        kernel_size: kernel side.
        stride: stride.
        padding: padding.
        output_padding: output padding (transposed convolutions only).
        bias: whether the convolution has a bias.
        act_layer: activation after the convolution (``"tanh"`` for images), or None.
    """

    channels: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 1
    output_padding: int = 0
    bias: bool = True
    act_layer: LayerSpec = "tanh"


def _side(input_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if input_size is None:
        return None
    if isinstance(input_size, int):
        return (input_size, input_size)
    h, w = input_size
    return (int(h), int(w))


def _conv_stack(
    channels: Sequence[int],
    *,
    transposed: bool,
    kernel_size: PerStage[int],
    stride: PerStage[int],
    padding: PerStage[int],
    output_padding: PerStage[int],
    bias: PerStage[bool],
    norm_layer: PerStage[LayerSpec],
    act_layer: PerStage[LayerSpec],
    dropout: PerStage[float],
    output: OutputConv | None,
    input_size: int | tuple[int, int] | None,
    name: str,
) -> nn.Sequential:
    chans = _check_channels(channels, f"{name} channels")
    n = len(chans) - 1
    kernels = _per_stage(kernel_size, n, "kernel_size")
    strides = _per_stage(stride, n, "stride")
    pads = _per_stage(padding, n, "padding")
    out_pads = _per_stage(output_padding, n, "output_padding")
    biases = _per_stage(bias, n, "bias")
    norms = _per_stage(norm_layer, n, "norm_layer")
    acts = _per_stage(act_layer, n, "act_layer")
    drops = _per_stage(dropout, n, "dropout")
    if not transposed and any(out_pads):
        raise ConfigError(f"{name}: output_padding only applies to transposed convolutions.")
    if n == 0 and output is None:
        raise ConfigError(f"{name} has no stages and no output layer; give at least one.")

    size = _side(input_size)
    conv = nn.ConvTranspose2d if transposed else nn.Conv2d
    layers: list[nn.Module] = []

    def add_conv(i, c_in, c_out, k, s, p, op, b):
        nonlocal size
        _check_conv_args(i, k, s, p, op, transposed=transposed)
        if size is not None:
            if transposed:
                new = tuple(conv_transpose_out_size(x, k, s, p, op) for x in size)
            else:
                new = tuple(conv_out_size(x, k, s, p) for x in size)
            if min(new) < 1:
                raise ConfigError(
                    f"{name} stage {i} would shrink the {size[0]}x{size[1]} input to "
                    f"{new[0]}x{new[1]}; use a smaller kernel, stride or padding, or fewer stages."
                )
            size = new
        extra = {"output_padding": op} if transposed else {}
        layers.append(conv(c_in, c_out, k, s, p, bias=b, **extra))

    for i in range(n):
        add_conv(i, chans[i], chans[i + 1], kernels[i], strides[i], pads[i], out_pads[i], biases[i])
        for module in (make_norm(norms[i], chans[i + 1]), make_act(acts[i])):
            if module is not None:
                layers.append(module)
        if drops[i]:
            if not 0.0 <= drops[i] < 1.0:
                raise ConfigError(f"{name} stage {i}: dropout must be in [0, 1), got {drops[i]}.")
            layers.append(nn.Dropout2d(drops[i]))
    if output is not None:
        if transposed is False and output.output_padding:
            raise ConfigError(f"{name}: output_padding only applies to transposed convolutions.")
        add_conv(
            n,
            chans[-1],
            output.channels,
            output.kernel_size,
            output.stride,
            output.padding,
            output.output_padding,
            output.bias,
        )
        act = make_act(output.act_layer)
        if act is not None:
            layers.append(act)
    return nn.Sequential(*layers)


def upsampling_stack(
    channels: Sequence[int],
    *,
    kernel_size: PerStage[int] = 4,
    stride: PerStage[int] = 2,
    padding: PerStage[int] = 1,
    output_padding: PerStage[int] = 0,
    bias: PerStage[bool] = False,
    norm_layer: PerStage[LayerSpec] = nn.BatchNorm2d,
    act_layer: PerStage[LayerSpec] = nn.ReLU,
    dropout: PerStage[float] = 0.0,
    output: OutputConv | None = None,
    input_size: int | tuple[int, int] | None = None,
) -> nn.Sequential:
    """A stack of ``ConvTranspose2d -> norm -> activation`` stages, then an optional output layer.

    Args:
        channels: ``[c_in, c_1, ..., c_n]``: the input channels, then each stage's output
            channels (n stages).
        kernel_size: kernel side, one value or one per stage.
        stride: stride, one value or one per stage.
        padding: padding, one value or one per stage.
        output_padding: output padding, one value or one per stage (must be < stride).
        bias: whether each transposed convolution has a bias (False when a norm follows).
        norm_layer: normalisation after each convolution (type, factory, name or None).
        act_layer: activation after each normalisation (type, factory, name or None).
        dropout: ``Dropout2d`` probability after each stage (0 for none).
        output: the last transposed convolution with its own activation, e.g.
            ``OutputConv(3, 5, 2, 2, 1, act_layer="tanh")``.
        input_size: the input side (or ``(H, W)``); when given, sizes are checked at
            construction and a stage that would shrink a side below 1 raises.

    Returns:
        A :class:`torch.nn.Sequential` of plain torch layers.

    Raises:
        ConfigError: on an invalid configuration.

    Example:
        >>> body = upsampling_stack([512, 256, 128], kernel_size=5, stride=2, padding=2,
        ...                         output_padding=1, output=OutputConv(3, 5, 2, 2, 1))
        >>> body(torch.zeros(2, 512, 4, 4)).shape
        torch.Size([2, 3, 32, 32])
    """
    return _conv_stack(
        channels,
        transposed=True,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        bias=bias,
        norm_layer=norm_layer,
        act_layer=act_layer,
        dropout=dropout,
        output=output,
        input_size=input_size,
        name="upsampling stack",
    )


def downsampling_stack(
    channels: Sequence[int],
    *,
    kernel_size: PerStage[int] = 4,
    stride: PerStage[int] = 2,
    padding: PerStage[int] = 1,
    bias: PerStage[bool] = True,
    norm_layer: PerStage[LayerSpec] = nn.BatchNorm2d,
    act_layer: PerStage[LayerSpec] = "leaky_relu",
    dropout: PerStage[float] = 0.0,
    output: OutputConv | None = None,
    input_size: int | tuple[int, int] | None = None,
) -> nn.Sequential:
    """A stack of ``Conv2d -> norm -> activation [-> Dropout2d]`` stages.

    DCGAN discriminators leave the first stage without normalisation: pass a per-stage
    list such as ``norm_layer=[None, nn.BatchNorm2d, nn.BatchNorm2d, nn.BatchNorm2d]``.

    Args:
        channels: ``[c_in, c_1, ..., c_n]``: the input channels, then each stage's output.
        kernel_size: kernel side, one value or one per stage.
        stride: stride, one value or one per stage.
        padding: padding, one value or one per stage.
        bias: whether each convolution has a bias.
        norm_layer: normalisation after each convolution (type, factory, name or None).
        act_layer: activation after each normalisation; ``"leaky_relu"`` is slope 0.2.
        dropout: ``Dropout2d`` probability after each stage's activation (0 for none).
        output: an optional last convolution with its own activation.
        input_size: the input side (or ``(H, W)``); when given, sizes are checked at
            construction and a stage that would shrink a side below 1 raises.

    Returns:
        A :class:`torch.nn.Sequential` of plain torch layers.

    Raises:
        ConfigError: on an invalid configuration.

    Example:
        >>> body = downsampling_stack([3, 64, 128], kernel_size=5, stride=2, padding=2,
        ...                           norm_layer=[None, "batch"])
        >>> body(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 128, 16, 16])
    """
    return _conv_stack(
        channels,
        transposed=False,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        output_padding=0,
        bias=bias,
        norm_layer=norm_layer,
        act_layer=act_layer,
        dropout=dropout,
        output=output,
        input_size=input_size,
        name="downsampling stack",
    )


class LayerContainer(nn.Sequential):
    """Base class of gankit's blocks that hold layers: a container, never a row of its own.

    torchsummary 1.5.1 hooks every module that is not an :class:`torch.nn.Sequential`,
    not an :class:`torch.nn.ModuleList` and not the model itself, so a custom container
    written as a plain :class:`torch.nn.Module` would print a row of its own (e.g.
    ``LatentProjection-4``) and add its output to "Forward/backward pass size". Deriving
    from :class:`torch.nn.Sequential` is what keeps such a block out of the table;
    :func:`gankit.summary` applies the same rule (see :mod:`gankit.tables`).

    A subclass is a Sequential in name only: it calls ``super().__init__()`` with no
    layers, assigns its sub-modules as named attributes (so the ``state_dict`` keys are
    e.g. ``pre.0.weight``, exactly those of a plain ``nn.Module`` with the same
    attributes), and defines its own ``forward``, which replaces Sequential's
    layer-after-layer one. Building it draws nothing from the RNG, so parameters are
    created, and initialised under a seed, as before.
    """

    def forward(self, *args, **kwargs):
        """Subclasses define the computation; a bare container has none."""
        raise TypeError(f"{type(self).__name__} defines no forward(); a LayerContainer subclass "
                        "must define its own computation.")


class LatentProjection(LayerContainer):
    """Project a latent vector to a feature map: ``Linear``, reshape, with norm/act around it.

    The normalisation and activation go either before the reshape (on the flat
    ``(N, C*H*W)`` vector, ``BatchNorm1d``: the ML2020 DCGAN) or after it (on the
    ``(N, C, H, W)`` map, ``BatchNorm2d``: the LSGAN/WGAN generator of task two).

    A :class:`LayerContainer` (an ``nn.Sequential`` subclass with its own ``forward``):
    torchsummary lists every module that is not a Sequential, so this keeps the block
    itself out of the table and only its layers are rows.

    Args:
        z_dim: latent size.
        channels: channels of the feature map.
        size: side of the (square) feature map, or ``(H, W)``.
        bias: whether the Linear layer has a bias.
        norm_layer: normalisation (type, factory, name or None); a name picks the 1-D or
            2-D variant to match ``norm_position``.
        act_layer: activation (type, factory, name or None).
        norm_position: ``"before_reshape"`` or ``"after_reshape"``.

    Example:
        >>> proj = LatentProjection(100, 512, 4, norm_layer="batch")
        >>> proj(torch.zeros(2, 100)).shape
        torch.Size([2, 512, 4, 4])
    """

    def __init__(
        self,
        z_dim: int,
        channels: int,
        size: int | tuple[int, int],
        *,
        bias: bool = False,
        norm_layer: LayerSpec = "batch",
        act_layer: LayerSpec = nn.ReLU,
        norm_position: str = "before_reshape",
    ) -> None:
        super().__init__()
        if norm_position not in ("before_reshape", "after_reshape"):
            raise ConfigError(
                f"norm_position must be 'before_reshape' or 'after_reshape', got {norm_position!r}."
            )
        h, w = _side(size)
        for name, v in (("z_dim", z_dim), ("channels", channels), ("size", min(h, w))):
            if v < 1:
                raise ConfigError(f"LatentProjection {name} must be >= 1, got {v}.")
        self.z_dim, self.channels, self.height, self.width = z_dim, channels, h, w
        self.norm_position = norm_position
        features = channels * h * w
        before = norm_position == "before_reshape"
        norm = make_norm(norm_layer, features if before else channels, dims=1 if before else 2)
        act = make_act(act_layer)
        tail = [m for m in (norm, act) if m is not None]
        # Layers are created in forward order (Linear first) so that their default
        # initialisation draws from the RNG in the same order as the original code.
        self.pre = nn.Sequential(nn.Linear(z_dim, features, bias=bias), *(tail if before else []))
        self.post = nn.Sequential(*([] if before else tail))

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the produced feature map."""
        return (self.channels, self.height, self.width)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map ``(N, z_dim)`` latents to ``(N, C, H, W)`` feature maps."""
        x = self.pre(z)
        x = rearrange(x, "n (c h w) -> n c h w", c=self.channels, h=self.height, w=self.width)
        return self.post(x)


class ConvHead(LayerContainer):
    """A critic head: one convolution to a single 1x1 score, optionally followed by a sigmoid.

    The ``(N, 1, 1, 1)`` output is flattened to ``(N,)`` in ``forward``.

    A :class:`LayerContainer` (an ``nn.Sequential`` subclass with its own ``forward``):
    torchsummary lists every module that is not a Sequential, so this keeps the block
    itself out of the table and only its layers are rows.

    Args:
        in_channels: channels of the incoming feature map.
        kernel_size: kernel side; equal to the feature map's side for a 1x1 output.
        sigmoid: append ``nn.Sigmoid`` (a probability, for BCE); False gives a raw score.
        bias: whether the convolution has a bias.
        input_size: side of the incoming feature map; checked to give a 1x1 output.

    Example:
        >>> head = ConvHead(512, 4, sigmoid=True)
        >>> head(torch.zeros(2, 512, 4, 4)).shape
        torch.Size([2])
    """

    def __init__(
        self,
        in_channels: int,
        kernel_size: int = 4,
        *,
        sigmoid: bool = True,
        bias: bool = True,
        input_size: int | tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        size = _side(input_size)
        if size is not None and size != (kernel_size, kernel_size):
            raise ConfigError(
                f"ConvHead kernel_size {kernel_size} does not reduce the {size[0]}x{size[1]} "
                f"feature map to 1x1; set kernel_size={size[0]} or change the stack."
            )
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 1, kernel_size, bias=bias)]
        if sigmoid:
            layers.append(nn.Sigmoid())
        self.sigmoid = sigmoid
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, return_logits: bool = False) -> torch.Tensor:
        """Score ``(N, C, k, k)`` features as ``(N,)``; ``return_logits`` skips the sigmoid."""
        layers = self.layers[:-1] if (return_logits and self.sigmoid) else self.layers
        return rearrange(layers(x), "n 1 1 1 -> n")


class LinearHead(LayerContainer):
    """A critic head: flatten the feature map, then ``Linear(C*H*W, 1)``, optionally a sigmoid.

    A :class:`LayerContainer` (an ``nn.Sequential`` subclass with its own ``forward``):
    torchsummary lists every module that is not a Sequential, so this keeps the block
    itself out of the table and only its layers are rows.

    Args:
        in_features: ``C * H * W`` of the incoming feature map.
        sigmoid: append ``nn.Sigmoid``; False (the WGAN critic) gives a raw score.
        bias: whether the Linear layer has a bias.

    Example:
        >>> head = LinearHead(512 * 4 * 4, sigmoid=False)
        >>> head(torch.zeros(2, 512, 4, 4)).shape
        torch.Size([2])
    """

    def __init__(self, in_features: int, *, sigmoid: bool = False, bias: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_features, 1, bias=bias)]
        if sigmoid:
            layers.append(nn.Sigmoid())
        self.in_features = in_features
        self.sigmoid = sigmoid
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, return_logits: bool = False) -> torch.Tensor:
        """Score ``(N, C, H, W)`` features as ``(N,)``; ``return_logits`` skips the sigmoid."""
        layers = self.layers[:-1] if (return_logits and self.sigmoid) else self.layers
        return rearrange(layers(rearrange(x, "n c h w -> n (c h w)")), "n 1 -> n")
