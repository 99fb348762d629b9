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
    downsampling_stack,
    upsampling_stack,
)
from .errors import ConfigError
from .init import get_init
from .layers import LayerSpec

__all__ = [
    "Generator",
    "Discriminator",
    "infer_shape",
    "register_shape_rule",
    "SHAPE_KEEPING",
    "dcgan_generator",
    "dcgan_discriminator",
]

InitSpec = str | Callable[[nn.Module], nn.Module] | None


ShapeRule = Callable[[nn.Module, tuple[int, int, int], str], tuple[int, int, int]]
_SHAPE_RULES: dict[type[nn.Module], ShapeRule] = {}


def register_shape_rule(layer_type: type[nn.Module], rule: ShapeRule | None = None):
    """Teach :func:`infer_shape` the output shape of a layer type (usable as a decorator).

    A layer of your own can instead define ``output_shape(self, shape) -> shape``; a rule
    is for types you cannot change. Rules apply to subclasses too (the most specific wins).

    Args:
        layer_type: the module class.
        rule: ``rule(module, (C, H, W), where) -> (C, H, W)``; raise a
            :class:`~gankit.errors.ConfigError` (mentioning ``where``) for a bad input.

    Returns:
        The rule (so it can decorate a function).

    Example:
        >>> class Twice(nn.Module):
        ...     def forward(self, x):
        ...         return torch.cat([x, x], 1)
        >>> _ = register_shape_rule(Twice, lambda m, s, where: (2 * s[0], s[1], s[2]))
        >>> infer_shape(nn.Sequential(Twice()), (3, 4, 4))
        (6, 4, 4)
    """
    if rule is None:
        return lambda fn: register_shape_rule(layer_type, fn)
    _SHAPE_RULES[layer_type] = rule
    return rule


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _check_channels(m: nn.Module, attr: str, c: int, where: str) -> None:
    want = getattr(m, attr)
    if want != c:
        verb = "expects" if attr == "in_channels" else "normalises"
        what = "input channels" if attr == "in_channels" else "channels"
        raise ConfigError(f"{where} {verb} {want} {what} but receives {c}; make the channel lists chain.")


def _conv_rule(m, shape, where):
    c, h, w = shape
    _check_channels(m, "in_channels", c, where)
    (k0, k1), (s0, s1), (d0, d1) = _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation)
    if isinstance(m.padding, str):  # "same" keeps the side, "valid" is no padding
        if m.padding == "same":
            return (m.out_channels, h, w)
        p0 = p1 = 0
    else:
        p0, p1 = _pair(m.padding)
    if isinstance(m, nn.ConvTranspose2d):
        o0, o1 = _pair(m.output_padding)
        h = (h - 1) * s0 - 2 * p0 + d0 * (k0 - 1) + o0 + 1
        w = (w - 1) * s1 - 2 * p1 + d1 * (k1 - 1) + o1 + 1
    else:
        h = conv_out_size(h, d0 * (k0 - 1) + 1, s0, p0)
        w = conv_out_size(w, d1 * (k1 - 1) + 1, s1, p1)
    if h < 1 or w < 1:
        raise ConfigError(f"{where} shrinks the feature map to {h}x{w}.")
    return (m.out_channels, h, w)


def _pool_rule(m, shape, where):
    c, h, w = shape
    k = _pair(m.kernel_size)
    s = _pair(m.stride if m.stride is not None else m.kernel_size)
    p = _pair(m.padding)
    d = _pair(getattr(m, "dilation", 1))
    out = []
    for size, kk, ss, pp, dd in zip((h, w), k, s, p, d):
        span = size + 2 * pp - dd * (kk - 1) - 1
        n = (-(-span // ss) if m.ceil_mode else span // ss) + 1
        if m.ceil_mode and (n - 1) * ss >= size + pp:
            n -= 1
        out.append(n)
    if min(out) < 1:
        raise ConfigError(f"{where} shrinks the {h}x{w} feature map to {out[0]}x{out[1]}.")
    return (c, out[0], out[1])


def _upsample_rule(m, shape, where):
    c, h, w = shape
    if m.size is not None:
        return (c, *_pair(m.size))
    f = m.scale_factor
    fh, fw = (f, f) if not isinstance(f, (tuple, list)) else f
    return (c, int(math.floor(h * fh)), int(math.floor(w * fw)))


def _adaptive_rule(m, shape, where):
    oh, ow = (m.output_size, m.output_size) if not isinstance(m.output_size, (tuple, list)) else m.output_size
    return (shape[0], shape[1] if oh is None else int(oh), shape[2] if ow is None else int(ow))


def _norm_rule(m, shape, where):
    _check_channels(m, "num_features", shape[0], where)
    return shape


def _group_norm_rule(m, shape, where):
    if m.num_channels != shape[0]:
        raise ConfigError(f"{where} normalises {m.num_channels} channels but receives {shape[0]}.")
    return shape


def _pixel_shuffle_rule(m, shape, where):
    c, h, w = shape
    r = m.upscale_factor
    if c % (r * r):
        raise ConfigError(f"{where} needs channels divisible by {r * r}, got {c}.")
    return (c // (r * r), h * r, w * r)


def _pixel_unshuffle_rule(m, shape, where):
    c, h, w = shape
    r = m.downscale_factor
    if h % r or w % r:
        raise ConfigError(f"{where} needs sides divisible by {r}, got {h}x{w}.")
    return (c * r * r, h // r, w // r)


def _pad_rule(m, shape, where):
    left, right, top, bottom = m.padding if len(m.padding) == 4 else (*m.padding, 0, 0)
    return (shape[0], shape[1] + top + bottom, shape[2] + left + right)


def _flatten_rule(m, shape, where):
    raise ConfigError(f"{where} flattens the feature map inside the stack; flatten in the head "
                      "(LinearHead does) so the stack keeps (C, H, W) shapes.")


def _keep(m, shape, where):
    return shape


for _t in (nn.Conv2d, nn.ConvTranspose2d):
    register_shape_rule(_t, _conv_rule)
for _t in (nn.AvgPool2d, nn.MaxPool2d):
    register_shape_rule(_t, _pool_rule)
for _t in (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d):
    register_shape_rule(_t, _adaptive_rule)
for _t in (nn.BatchNorm2d, nn.InstanceNorm2d, nn.SyncBatchNorm):
    register_shape_rule(_t, _norm_rule)
for _t in (nn.ZeroPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.ConstantPad2d):
    register_shape_rule(_t, _pad_rule)
register_shape_rule(nn.Upsample, _upsample_rule)
register_shape_rule(nn.GroupNorm, _group_norm_rule)
register_shape_rule(nn.PixelShuffle, _pixel_shuffle_rule)
register_shape_rule(nn.PixelUnshuffle, _pixel_unshuffle_rule)
register_shape_rule(nn.Flatten, _flatten_rule)
#: Layers that keep the shape: activations, dropout, identity, local response norm.
SHAPE_KEEPING = (
    nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ReLU6, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign, nn.Tanhshrink,
    nn.Hardshrink, nn.Softshrink, nn.Threshold, nn.LogSigmoid, nn.Softmax2d, nn.Identity, nn.Dropout, nn.Dropout2d,
    nn.AlphaDropout, nn.FeatureAlphaDropout, nn.LocalResponseNorm,
)
for _t in SHAPE_KEEPING:
    register_shape_rule(_t, _keep)


def _rule_for(m: nn.Module) -> ShapeRule | None:
    for klass in type(m).__mro__:  # the most specific registered class wins
        if klass in _SHAPE_RULES:
            return _SHAPE_RULES[klass]
    return None


def infer_shape(layers: nn.Module, shape: tuple[int, int, int], name: str = "stack") -> tuple[int, int, int]:
    """Compute the ``(C, H, W)`` a stack of layers produces, without running it.

    Understands every layer gankit builds or offers: convolutions and transposed
    convolutions (spectrally normalised ones too), ``Upsample``, average / max / adaptive
    pooling, pixel (un)shuffle, padding, the normalisations, activations and dropout, and
    any module with an ``output_shape(shape)`` method -- gankit's residual blocks
    (:class:`~gankit.resblocks.GBlock`, :class:`~gankit.resblocks.DBlock`), attention,
    minibatch standard deviation and conditional BatchNorm. ``nn.Sequential`` containers
    are walked in order. Teach it other types with :func:`register_shape_rule`; a layer it
    does not know is refused, never guessed.

    Args:
        layers: the stack (a module; Sequential containers are walked in order).
        shape: the input ``(C, H, W)``.
        name: how to call the stack in error messages.

    Returns:
        The output ``(C, H, W)``.

    Raises:
        ConfigError: when a layer's input channels do not match, a side drops below 1, or
            a layer is of a type whose shape is unknown.

    Example:
        >>> infer_shape(nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(3, 8, 3, padding=1)), (3, 4, 4))
        (8, 8, 8)
    """
    counter = [0]

    def walk(m: nn.Module, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        method = getattr(m, "output_shape", None)
        rule = _rule_for(m)
        if callable(method) or rule is not None:
            where = f"{name} layer {counter[0]} ({type(m).__name__})"
            counter[0] += 1
            return tuple(method(shape)) if callable(method) else tuple(rule(m, shape, where))
        if isinstance(m, nn.Sequential):
            for child in m:
                shape = walk(child, shape)
            return shape
        raise ConfigError(
            f"{name} layer {counter[0]} ({type(m).__name__}): gankit cannot infer its output shape; give "
            "the layer an output_shape(shape) method or register a rule with "
            "gankit.models.register_shape_rule."
        )

    c, h, w = shape
    return walk(layers, (int(c), int(h), int(w)))


def _num_classes(module: nn.Module) -> int:
    """The largest ``num_classes`` any sub-module declares (0: unconditional)."""
    return max((int(getattr(m, "num_classes", 0) or 0) for m in module.modules()), default=0)


class Generator(nn.Module):
    """Latent projection followed by an upsampling stack: ``(N, z_dim) -> (N, C, H, W)``.

    A class-conditional generator (one whose projection or body holds a layer with
    ``num_classes``, e.g. :class:`~gankit.conditional.ConditionalLatentProjection` or
    :class:`~gankit.resblocks.GBlock` with conditional BatchNorm) is called
    ``generator(z, labels=y)``; the labels reach every part that takes them
    (``takes_labels``), or their shared embedding does (``shared_embedding``).

    Args:
        projection: maps latents to the first feature map.
        body: the upsampling stack (ends with the image layer and its activation).
        init: initialisation scheme applied over all modules after both parts are built
            (``"dcgan"``, ``"default"``/None or a callable).
        shared_embedding: BigGAN's shared class embedding: the body's conditional layers then
            receive ``embedding(labels)`` (built with ``cond_dim``) instead of the labels.
        concat_latent: with a shared embedding, append the latent to it (BigGAN-deep: the
            conditioning vector is ``[embedding(y), z]``).
        class_names: names of the classes (kept in exports), or None.

    Attributes:
        num_classes: number of classes (0: unconditional).
        class_names: the class names, or None.

    Example:
        >>> g = dcgan_generator(z_dim=100, image_size=64)
        >>> g(torch.randn(2, 100)).shape
        torch.Size([2, 3, 64, 64])
    """

    def __init__(self, projection: LatentProjection, body: nn.Module, *, init: InitSpec = None,
                 shared_embedding: nn.Embedding | None = None, concat_latent: bool = False,
                 class_names: list[str] | None = None):
        super().__init__()
        self.projection = projection
        self.body = body
        if shared_embedding is not None:
            self.shared_embedding = shared_embedding
        self.concat_latent = bool(concat_latent)
        self.z_dim = projection.z_dim
        self.out_shape = infer_shape(body, projection.out_shape, "generator body")
        self.num_classes = shared_embedding.num_embeddings if shared_embedding is not None else _num_classes(self)
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        get_init(init)(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Generate images (in the range of the output activation, [-1, 1] for tanh).

        Args:
            z: ``(N, z_dim)`` latents.
            labels: ``(N,)`` class indices of a conditional generator (ignored by none:
                an unconditional generator refuses them).
        """
        if not self.num_classes:
            if labels is not None:
                raise ConfigError("this generator is unconditional: it takes no labels; train a "
                                  "conditional preset (e.g. sngan_projection32) to sample classes.")
            return self.body(self.projection(z))
        from .conditional import check_labels
        from .resblocks import takes_labels

        labels = check_labels(labels, self.num_classes, z.shape[0], "generator")
        h = self.projection(z, labels) if takes_labels(self.projection) else self.projection(z)
        if not takes_labels(self.body):
            return self.body(h)
        cond = labels
        embedding = getattr(self, "shared_embedding", None)
        if embedding is not None:
            cond = embedding(labels)
            if self.concat_latent:
                cond = torch.cat([cond, z], dim=1)
        return self.body(h, cond)


class Discriminator(nn.Module):
    """Downsampling stack followed by a critic head: ``(N, C, H, W) -> (N,)``.

    A class-conditional head (:class:`~gankit.conditional.ProjectionHead`) is called with
    the labels: ``discriminator(x, labels=y)``.

    Args:
        body: the downsampling stack (plain layers or residual blocks).
        head: a :class:`~gankit.blocks.ConvHead`, a :class:`~gankit.blocks.LinearHead`, or a
            pooling head (:class:`~gankit.conditional.SumPoolHead`,
            :class:`~gankit.conditional.ProjectionHead`,
            :class:`~gankit.conditional.AuxClassifierHead`: any with ``check_features``).
        image_shape: the ``(C, H, W)`` of the images it scores.
        init: initialisation scheme applied over all modules after both parts are built.

    Attributes:
        num_classes: classes the head knows (0: none).
        takes_labels: whether the head scores images *given* their labels (projection).

    Example:
        >>> d = dcgan_discriminator(image_size=64)
        >>> d(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2])
    """

    def __init__(
        self,
        body: nn.Module,
        head: nn.Module,
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
        elif callable(getattr(head, "check_features", None)):
            head.check_features(feat)
        else:
            out = infer_shape(head, feat, "discriminator head")
            if out != (1, 1, 1):
                raise ConfigError(
                    f"the head turns the body's {feat} features into {out}, not one score "
                    "per image; set the head's kernel_size to the feature map's side."
                )
        self.feature_shape = feat
        self.num_classes = int(getattr(head, "num_classes", 0) or 0)
        self.takes_labels = bool(getattr(head, "takes_labels", False))
        get_init(init)(self)

    @property
    def outputs_probability(self) -> bool:
        """True when the head ends with a sigmoid (the output is a probability)."""
        return bool(getattr(self.head, "sigmoid", False))

    def forward(self, x: torch.Tensor, return_logits: bool = False, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Score images as ``(N,)``; ``return_logits`` skips a final sigmoid; ``labels`` for a
        conditional (projection) head."""
        if self.takes_labels:
            return self.head(self.body(x), return_logits=return_logits, labels=labels)
        if labels is not None:
            raise ConfigError("this discriminator's head takes no labels; use a ProjectionHead for a "
                              "class-conditional discriminator.")
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
