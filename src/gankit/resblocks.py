"""Residual and conditional building blocks: SNGAN/BigGAN ResNets, self-attention, minibatch stddev.

* :class:`GBlock` -- the pre-activation generator up-block of SNGAN (Miyato et al. 2018) and
  BigGAN (Brock et al. 2019): ``norm -> act -> [upsample] -> conv3x3 -> norm -> act -> conv3x3``
  plus a shortcut (a learnable 1x1 convolution, or the identity), optionally with
  conditional BatchNorm and spectral norm.
* :class:`DBlock` -- the discriminator down-block: ``act -> conv3x3 -> act -> conv3x3 ->
  [avgpool]`` plus a shortcut; ``preactivation=False`` gives the "optimized" first block
  of SNGAN (no activation before the first convolution, shortcut pooled then convolved).
* :class:`ConditionalBatchNorm2d` -- BatchNorm without its own affine parameters, whose
  per-channel gain and bias come from the class (an embedding) or from a conditioning
  vector (linear maps of a shared class embedding, optionally with the latent, BigGAN).
* :class:`ConditionalSequential` -- a Sequential that hands the labels (or conditioning
  vector) to the layers that take them.
* :class:`SelfAttention` -- the SAGAN non-local block (Zhang et al. 2019) in BigGAN's form.
* :class:`MinibatchStdDev` -- PGGAN's minibatch standard deviation channel (Karras et al. 2018).

Every block is a :class:`~gankit.blocks.LayerContainer` (a layer table lists its layers,
not the block) and has ``output_shape(shape)``, which :func:`gankit.models.infer_shape`
uses, so a residual body composes in :class:`~gankit.models.Generator` and
:class:`~gankit.models.Discriminator` with its shapes checked at construction. Blocks that
take labels have ``takes_labels = True`` and are called as ``block(x, y)``.

Initialisation follows the SNGAN reference code: Xavier-uniform with gain sqrt(2) for the
3x3 convolutions of the residual branch and gain 1 for the shortcut (biases zero).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .blocks import LayerContainer
from .errors import ConfigError
from .layers import LayerSpec, make_act

__all__ = [
    "ConditionalBatchNorm2d",
    "ConditionalSequential",
    "GBlock",
    "DBlock",
    "SelfAttention",
    "MinibatchStdDev",
    "takes_labels",
    "xavier_init_",
]

Shape = tuple[int, int, int]
SHORTCUTS = ("auto", "conv", "identity")


def takes_labels(module: nn.Module) -> bool:
    """Whether a module is called as ``module(x, y)`` with labels or a conditioning vector."""
    return bool(getattr(module, "takes_labels", False))


def xavier_init_(module: nn.Module, gain: float = 1.0) -> nn.Module:
    """Xavier-uniform weight (with ``gain``) and zero bias, as SNGAN's reference code initialises.

    Works on spectrally normalised layers too (the original weight is initialised).

    Args:
        module: a convolution or linear layer.
        gain: the Xavier gain (sqrt(2) for residual convolutions, 1 elsewhere).

    Returns:
        The module.
    """
    from torch.nn.utils import parametrize

    with torch.no_grad():
        if parametrize.is_parametrized(module, "weight"):
            weight = module.parametrizations["weight"].original
        else:
            weight = module.weight
        nn.init.xavier_uniform_(weight, gain)
        if getattr(module, "bias", None) is not None:
            module.bias.zero_()
    return module


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}.")


def _check_in(shape: Shape, channels: int, what: str) -> None:
    if shape[0] != channels:
        raise ConfigError(f"{what} expects {channels} input channels but receives {shape[0]}; "
                          "make the channel counts chain.")


class ConditionalBatchNorm2d(LayerContainer):
    """BatchNorm whose gain and bias depend on the class (BigGAN / cGAN-PD conditional BN).

    Give ``num_classes`` for a class embedding (one gain and bias per class; the gains start
    at N(1, 0.02) and the biases at 0, as torch-mimicry's ``ConditionalBatchNorm2d``), or
    ``cond_dim`` for linear maps of a conditioning vector (BigGAN's shared embedding,
    optionally concatenated with the latent): gain ``1 + W_g c`` and bias ``W_b c``. The
    normalisation itself has no affine parameters.

    Args:
        num_features: channels.
        num_classes: classes of the embedding (0: use ``cond_dim``).
        cond_dim: size of the conditioning vector (0: use ``num_classes``).
        eps: BatchNorm's epsilon.
        momentum: BatchNorm's running-statistics momentum.

    Example:
        >>> cbn = ConditionalBatchNorm2d(8, num_classes=10)
        >>> cbn(torch.randn(4, 8, 5, 5), torch.tensor([0, 1, 2, 3])).shape
        torch.Size([4, 8, 5, 5])
    """

    takes_labels = True

    def __init__(self, num_features: int, num_classes: int = 0, *, cond_dim: int = 0,
                 eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        _check_positive(num_features=num_features)
        if (num_classes > 0) == (cond_dim > 0):
            raise ConfigError("ConditionalBatchNorm2d needs exactly one of num_classes (a class "
                              f"embedding) or cond_dim (a conditioning vector), got {num_classes} and {cond_dim}.")
        self.num_features, self.num_classes, self.cond_dim = num_features, num_classes, cond_dim
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)
        if num_classes:
            self.embed = nn.Embedding(num_classes, 2 * num_features)
            with torch.no_grad():
                self.embed.weight[:, :num_features].normal_(1.0, 0.02)
                self.embed.weight[:, num_features:].zero_()
        else:
            self.gain_map = nn.Linear(cond_dim, num_features, bias=False)
            self.bias_map = nn.Linear(cond_dim, num_features, bias=False)

    def output_shape(self, shape: Shape) -> Shape:
        """The shape is kept (channels checked)."""
        _check_in(shape, self.num_features, "ConditionalBatchNorm2d")
        return tuple(shape)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` and apply the gain and bias of ``y`` (labels, or conditioning vectors)."""
        if y is None:
            raise ConfigError("a conditional BatchNorm needs labels; call the generator with labels=...")
        out = self.bn(x)
        if self.num_classes:
            if y.is_floating_point():
                raise ConfigError("this ConditionalBatchNorm2d embeds class labels (int64), got a "
                                  "float tensor; build it with cond_dim for conditioning vectors.")
            gain, bias = self.embed(y).chunk(2, dim=1)
        else:
            gain, bias = 1.0 + self.gain_map(y), self.bias_map(y)
        return out * gain[:, :, None, None] + bias[:, :, None, None]


class ConditionalSequential(nn.Sequential):
    """A Sequential that passes ``y`` to the layers that take labels (``takes_labels``).

    Example:
        >>> seq = ConditionalSequential(nn.Conv2d(3, 4, 1), ConditionalBatchNorm2d(4, 2), nn.ReLU())
        >>> seq(torch.randn(2, 3, 4, 4), torch.tensor([0, 1])).shape
        torch.Size([2, 4, 4, 4])
    """

    takes_labels = True

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # noqa: D102
        for layer in self:
            x = layer(x, y) if takes_labels(layer) else layer(x)
        return x


def _norm(kind: LayerSpec, channels: int, num_classes: int, cond_dim: int) -> nn.Module | None:
    if num_classes or cond_dim:
        return ConditionalBatchNorm2d(channels, num_classes, cond_dim=cond_dim)
    if kind is None:
        return None
    from .layers import make_norm

    return make_norm(kind, channels)


def _shortcut_is_learnable(shortcut: str, c_in: int, c_out: int, resample: bool) -> bool:
    if shortcut not in SHORTCUTS:
        raise ConfigError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got {shortcut!r}.")
    if shortcut == "identity":
        if c_in != c_out:
            raise ConfigError(f"an identity shortcut needs in_channels == out_channels, got {c_in} and "
                              f"{c_out}; use shortcut='conv' (a learnable 1x1 convolution) or 'auto'.")
        return False
    return shortcut == "conv" or c_in != c_out or resample


def _init_block(block: nn.Module, spectral_norm: bool) -> None:
    """A residual block's init: Xavier with gain sqrt(2) on ``c1``/``c2``, 1 on the shortcut, then SN."""
    for conv in (block.c1, block.c2):
        xavier_init_(conv, math.sqrt(2.0))
    if block.c_sc is not None:
        xavier_init_(block.c_sc, 1.0)
    _apply_sn(block, spectral_norm)


def _apply_sn(block: nn.Module, spectral_norm: bool) -> None:
    if spectral_norm:
        from .constraints import spectral_norm_

        spectral_norm_(block)


class GBlock(LayerContainer):
    """The pre-activation residual up-block of SNGAN / BigGAN generators.

    Residual branch ``norm -> act -> [upsample x2] -> conv3x3 -> norm -> act -> conv3x3``;
    shortcut ``[upsample x2] -> [conv1x1]``. The sum is returned (no activation after it).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        hidden_channels: channels between the two 3x3 convolutions (default ``out_channels``).
        upsample: double the side (nearest-neighbour by default, as SNGAN's Chainer code).
        upsample_mode: ``"nearest"`` or ``"bilinear"`` (torch-mimicry's choice).
        shortcut: ``"auto"`` (a learnable 1x1 convolution when the channels change or the
            block upsamples, else the identity: SNGAN's rule), ``"conv"`` (always learnable)
            or ``"identity"`` (never; needs equal channels).
        norm_layer: normalisation of the residual branch (BatchNorm by default).
        act_layer: activation of the residual branch.
        num_classes: > 0: conditional BatchNorm from a class embedding (labels ``y``).
        cond_dim: > 0: conditional BatchNorm from a conditioning vector ``y`` of this size.
        spectral_norm: wrap the convolutions in spectral norm (BigGAN's generator does).

    Example:
        >>> block = GBlock(16, 8, upsample=True)
        >>> block(torch.randn(2, 16, 4, 4)).shape, block.output_shape((16, 4, 4))
        (torch.Size([2, 8, 8, 8]), (8, 8, 8))
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int | None = None, *,
                 upsample: bool = True, upsample_mode: str = "nearest", shortcut: str = "auto",
                 norm_layer: LayerSpec = nn.BatchNorm2d, act_layer: LayerSpec = nn.ReLU,
                 num_classes: int = 0, cond_dim: int = 0, spectral_norm: bool = False) -> None:
        super().__init__()
        hidden = out_channels if hidden_channels is None else hidden_channels
        _check_positive(in_channels=in_channels, out_channels=out_channels, hidden_channels=hidden)
        if upsample_mode not in ("nearest", "bilinear"):
            raise ConfigError(f"upsample_mode must be 'nearest' or 'bilinear', got {upsample_mode!r}.")
        self.in_channels, self.out_channels, self.hidden_channels = in_channels, out_channels, hidden
        self.upsample = bool(upsample)
        self.num_classes, self.cond_dim = num_classes, cond_dim
        self.takes_labels = bool(num_classes or cond_dim)
        self.learnable_sc = _shortcut_is_learnable(shortcut, in_channels, out_channels, self.upsample)
        self.b1 = _norm(norm_layer, in_channels, num_classes, cond_dim) or nn.Identity()
        self.a1 = make_act(act_layer) or nn.Identity()
        self.up = (nn.Upsample(scale_factor=2, mode=upsample_mode) if self.upsample else nn.Identity())
        self.c1 = nn.Conv2d(in_channels, hidden, 3, 1, 1)
        self.b2 = _norm(norm_layer, hidden, num_classes, cond_dim) or nn.Identity()
        self.a2 = make_act(act_layer) or nn.Identity()
        self.c2 = nn.Conv2d(hidden, out_channels, 3, 1, 1)
        self.c_sc = nn.Conv2d(in_channels, out_channels, 1, 1, 0) if self.learnable_sc else None
        _init_block(self, spectral_norm)

    def output_shape(self, shape: Shape) -> Shape:
        """``(out_channels, 2H, 2W)`` when upsampling, else ``(out_channels, H, W)``."""
        _check_in(shape, self.in_channels, "GBlock")
        f = 2 if self.upsample else 1
        return (self.out_channels, shape[1] * f, shape[2] * f)

    def _cond(self, norm: nn.Module, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return norm(h, y) if takes_labels(norm) else norm(h)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The block's output; ``y``: labels (or conditioning vectors) of a conditional block."""
        h = self.a1(self._cond(self.b1, x, y))
        h = self.c1(self.up(h))
        h = self.c2(self.a2(self._cond(self.b2, h, y)))
        sc = self.up(x)
        if self.c_sc is not None:
            sc = self.c_sc(sc)
        return h + sc


class DBlock(LayerContainer):
    """The residual down-block of SNGAN / BigGAN discriminators.

    Pre-activation (the default): ``act -> conv3x3 -> act -> conv3x3 -> [avgpool 2]``,
    shortcut ``[conv1x1] -> [avgpool 2]``. With ``preactivation=False`` it is SNGAN's
    "optimized" first block, which reads the image directly: ``conv3x3 -> act -> conv3x3 ->
    avgpool``, shortcut ``avgpool -> conv1x1``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        hidden_channels: channels between the convolutions (default ``in_channels``, or
            ``out_channels`` without pre-activation, as SNGAN's code).
        downsample: halve the side with a 2x2 average pooling.
        shortcut: ``"auto"``, ``"conv"`` or ``"identity"`` (see :class:`GBlock`).
        act_layer: the activation.
        preactivation: start with the activation (False: the optimized first block).
        spectral_norm: wrap the convolutions in spectral norm (SNGAN's discriminator does).

    Example:
        >>> block = DBlock(3, 8, downsample=True, preactivation=False)
        >>> block(torch.randn(2, 3, 8, 8)).shape, block.output_shape((3, 8, 8))
        (torch.Size([2, 8, 4, 4]), (8, 4, 4))
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int | None = None, *,
                 downsample: bool = True, shortcut: str = "auto", act_layer: LayerSpec = nn.ReLU,
                 preactivation: bool = True, spectral_norm: bool = False) -> None:
        super().__init__()
        hidden = hidden_channels if hidden_channels is not None else (in_channels if preactivation else out_channels)
        _check_positive(in_channels=in_channels, out_channels=out_channels, hidden_channels=hidden)
        self.in_channels, self.out_channels, self.hidden_channels = in_channels, out_channels, hidden
        self.downsample, self.preactivation = bool(downsample), bool(preactivation)
        self.learnable_sc = _shortcut_is_learnable(shortcut, in_channels, out_channels, self.downsample)
        if not self.preactivation and not self.learnable_sc:
            raise ConfigError("a DBlock without pre-activation (the optimized first block) needs a learnable "
                              "shortcut; use shortcut='auto' or 'conv'.")
        self.a1 = make_act(act_layer) if self.preactivation else None
        self.c1 = nn.Conv2d(in_channels, hidden, 3, 1, 1)
        self.a2 = make_act(act_layer) or nn.Identity()
        self.c2 = nn.Conv2d(hidden, out_channels, 3, 1, 1)
        self.pool = nn.AvgPool2d(2) if self.downsample else nn.Identity()
        self.c_sc = nn.Conv2d(in_channels, out_channels, 1, 1, 0) if self.learnable_sc else None
        _init_block(self, spectral_norm)

    def output_shape(self, shape: Shape) -> Shape:
        """``(out_channels, H // 2, W // 2)`` when downsampling, else ``(out_channels, H, W)``."""
        _check_in(shape, self.in_channels, "DBlock")
        h, w = shape[1:]
        if self.downsample:
            if h < 2 or w < 2:
                raise ConfigError(f"DBlock cannot downsample a {h}x{w} feature map; use fewer "
                                  "downsampling blocks or larger images.")
            h, w = h // 2, w // 2
        return (self.out_channels, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output."""
        h = x if self.a1 is None else self.a1(x)
        h = self.pool(self.c2(self.a2(self.c1(h))))
        if self.c_sc is None:
            sc = self.pool(x)
        elif self.preactivation:
            sc = self.pool(self.c_sc(x))
        else:
            sc = self.c_sc(self.pool(x))
        return h + sc


class SelfAttention(LayerContainer):
    """The SAGAN self-attention block in BigGAN's form: ``x + gamma * attention(x)``.

    Query and key are 1x1 convolutions to ``C/8`` channels, the value to ``C/2``; keys and
    values are max-pooled 2x2 (BigGAN's memory saving; ``pool=False``: SAGAN's full
    attention); a last 1x1 convolution returns to ``C``. ``gamma`` starts at 0, so the block
    starts as the identity. Convolutions have no bias.

    Args:
        channels: input (and output) channels (>= 8).
        pool: max-pool keys and values 2x2 (needs even sides).
        spectral_norm: wrap the 1x1 convolutions in spectral norm.

    Example:
        >>> attn = SelfAttention(16)
        >>> attn(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(self, channels: int, *, pool: bool = True, spectral_norm: bool = False) -> None:
        super().__init__()
        _check_positive(channels=channels)
        if channels < 8:
            raise ConfigError(f"SelfAttention needs at least 8 channels (queries have channels // 8), got {channels}.")
        self.channels, self.pool = channels, bool(pool)
        self.theta = nn.Conv2d(channels, channels // 8, 1, bias=False)
        self.phi = nn.Conv2d(channels, channels // 8, 1, bias=False)
        self.g = nn.Conv2d(channels, channels // 2, 1, bias=False)
        self.o = nn.Conv2d(channels // 2, channels, 1, bias=False)
        self.downsample = nn.MaxPool2d(2) if self.pool else nn.Identity()
        self.softmax = nn.Softmax(dim=-1)
        self.gamma = nn.Parameter(torch.zeros(()))
        _apply_sn(self, spectral_norm)

    def output_shape(self, shape: Shape) -> Shape:
        """The shape is kept (channels checked; even sides when pooling)."""
        _check_in(shape, self.channels, "SelfAttention")
        if self.pool and (shape[1] % 2 or shape[2] % 2):
            raise ConfigError(f"SelfAttention with pool=True needs even sides, got {shape[1]}x{shape[2]}; "
                              "place it after a resolution that is even or use pool=False.")
        return tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus the attended values, scaled by ``gamma``."""
        n, c, h, w = x.shape
        q = self.theta(x).flatten(2)  # (n, c/8, hw)
        k = self.downsample(self.phi(x)).flatten(2)  # (n, c/8, hw')
        v = self.downsample(self.g(x)).flatten(2)  # (n, c/2, hw')
        attn = self.softmax(torch.bmm(q.transpose(1, 2), k))  # (n, hw, hw')
        out = torch.bmm(v, attn.transpose(1, 2)).view(n, c // 2, h, w)
        return x + self.gamma * self.o(out)


class MinibatchStdDev(nn.Module):
    """PGGAN's minibatch standard deviation: append the features' spread over a group as channels.

    The batch is split into groups of ``group_size`` images (the whole batch when it does
    not divide); for each group the standard deviation over its images of every feature
    (within ``num_channels`` channel slices) is averaged to one number per slice and
    appended as constant feature maps, so the discriminator sees how varied the batch is.

    Args:
        group_size: images per group (PGGAN: 4).
        num_channels: appended channels (StyleGAN2: 1).
        eps: added to the variance before the square root.

    Example:
        >>> MinibatchStdDev()(torch.randn(8, 16, 4, 4)).shape
        torch.Size([8, 17, 4, 4])
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1, eps: float = 1e-8) -> None:
        super().__init__()
        _check_positive(group_size=group_size, num_channels=num_channels)
        self.group_size, self.num_channels, self.eps = group_size, num_channels, eps

    def output_shape(self, shape: Shape) -> Shape:
        """``(C + num_channels, H, W)``; C must divide into the channel slices."""
        if shape[0] % self.num_channels:
            raise ConfigError(f"MinibatchStdDev: {shape[0]} channels do not split into "
                              f"{self.num_channels} slices; choose num_channels dividing them.")
        return (shape[0] + self.num_channels, shape[1], shape[2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with ``num_channels`` standard-deviation maps appended."""
        n, c, h, w = x.shape
        g = self.group_size if n % self.group_size == 0 else n
        f = self.num_channels
        y = x.reshape(g, n // g, f, c // f, h, w)
        y = (y.var(dim=0, unbiased=False) + self.eps).sqrt()  # (n/g, f, c/f, h, w)
        y = y.mean(dim=(2, 3, 4))  # (n/g, f)
        y = y.repeat(g, 1)[:, :, None, None].expand(n, f, h, w)
        return torch.cat([x, y.to(x.dtype)], dim=1)

    def extra_repr(self) -> str:  # noqa: D102
        return f"group_size={self.group_size}, num_channels={self.num_channels}"

