"""Class-conditional pieces and critic heads for residual discriminators.

* :class:`ConditionalLatentProjection` -- the latent projection with the class appended to
  the latent (a learned embedding, or a one-hot vector) before the linear layer.
* :class:`SumPoolHead` -- SNGAN's head: activation, global *sum* pooling, ``Linear(C, 1)``.
* :class:`ProjectionHead` -- the projection discriminator of Miyato & Koyama (2018): the
  score of :class:`SumPoolHead` plus ``<embed(y), h>``, the inner product of the pooled
  features with a learned class embedding.
* :class:`AuxClassifierHead` -- the auxiliary-classifier head of ACGAN (Odena et al. 2017):
  a real/fake score and class logits from the same pooled features; the class logits of
  its last call are kept in :attr:`AuxClassifierHead.class_logits` for the auxiliary loss
  (:func:`gankit.losses.auxiliary_class_loss`, :class:`gankit.train.ACGANStep`).

Heads are called ``head(features, return_logits=False, labels=None)`` and return one score
per image ``(N,)``; they never end with a sigmoid (their losses take logits).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import LatentProjection, LayerContainer
from .errors import ConfigError
from .layers import LayerSpec, make_act

__all__ = ["ConditionalLatentProjection", "SumPoolHead", "ProjectionHead", "AuxClassifierHead", "check_labels"]


def check_labels(labels: torch.Tensor | None, num_classes: int, n: int, what: str) -> torch.Tensor:
    """Refuse missing, float, mis-shaped or out-of-range labels with one line.

    Args:
        labels: the labels given.
        num_classes: how many classes the network knows.
        n: the batch size they must match.
        what: the network, for the message.

    Returns:
        The labels as int64.

    Raises:
        ConfigError: naming the problem.
    """
    if labels is None:
        raise ConfigError(f"the {what} is class-conditional ({num_classes} classes): pass labels=..., "
                          "a (N,) tensor of class indices.")
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dim() != 1 or len(labels) != n:
        raise ConfigError(f"the {what} needs labels as a (N,) integer tensor with N={n}, got "
                          f"{getattr(labels, 'shape', type(labels).__name__)}.")
    if not torch.compiler.is_compiling() and labels.numel() and labels.device.type == "cpu":
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise ConfigError(f"the {what} knows classes 0..{num_classes - 1}, got labels in [{lo}, {hi}].")
    return labels.long()


class ConditionalLatentProjection(LatentProjection):
    """Project ``[z, class(y)]`` to a feature map: a :class:`~gankit.blocks.LatentProjection`
    whose linear layer also reads the class, as a learned embedding or a one-hot vector.

    Args:
        z_dim: latent size.
        channels: channels of the feature map.
        size: side of the feature map (or ``(H, W)``).
        num_classes: number of classes.
        embed_dim: size of the learned class embedding; None: a one-hot vector of
            ``num_classes`` (the cGAN of Mirza & Osindero 2014).
        bias, norm_layer, act_layer, norm_position: as :class:`~gankit.blocks.LatentProjection`.

    Example:
        >>> proj = ConditionalLatentProjection(16, 8, 4, num_classes=3, norm_layer=None)
        >>> proj(torch.randn(2, 16), torch.tensor([0, 2])).shape
        torch.Size([2, 8, 4, 4])
    """

    takes_labels = True

    def __init__(self, z_dim: int, channels: int, size: int | tuple[int, int], *, num_classes: int,
                 embed_dim: int | None = None, bias: bool = True, norm_layer: LayerSpec = None,
                 act_layer: LayerSpec = None, norm_position: str = "before_reshape") -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}.")
        extra = num_classes if embed_dim is None else embed_dim
        super().__init__(z_dim + extra, channels, size, bias=bias, norm_layer=norm_layer,
                         act_layer=act_layer, norm_position=norm_position)
        self.z_dim, self.num_classes, self.embed_dim = z_dim, num_classes, embed_dim
        self.embed = None if embed_dim is None else nn.Embedding(num_classes, embed_dim)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """Map ``(N, z_dim)`` latents and ``(N,)`` labels to ``(N, C, H, W)`` feature maps."""
        y = check_labels(y, self.num_classes, z.shape[0], "latent projection")
        code = F.one_hot(y, self.num_classes).to(z.dtype) if self.embed is None else self.embed(y).to(z.dtype)
        return super().forward(torch.cat([z, code], dim=1))


class SumPoolHead(LayerContainer):
    """SNGAN's critic head: activation, global sum pooling over the map, ``Linear(C, 1)``.

    Args:
        in_channels: channels of the features.
        act_layer: activation before pooling (ReLU in SNGAN; None: none).
        bias: whether the linear layer has a bias.

    Example:
        >>> SumPoolHead(8)(torch.randn(2, 8, 4, 4)).shape
        torch.Size([2])
    """

    sigmoid = False
    num_classes = 0

    def __init__(self, in_channels: int, *, act_layer: LayerSpec = nn.ReLU, bias: bool = True) -> None:
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ConfigError(f"in_channels must be a positive integer, got {in_channels!r}.")
        self.in_channels = in_channels
        self.act = make_act(act_layer) or nn.Identity()
        self.linear = nn.Linear(in_channels, 1, bias=bias)
        from .resblocks import xavier_init_

        xavier_init_(self.linear, 1.0)

    def check_features(self, shape: tuple[int, int, int]) -> None:
        """Refuse features whose channel count is not ``in_channels``."""
        if shape[0] != self.in_channels:
            raise ConfigError(f"{type(self).__name__} expects {self.in_channels} feature channels but the body "
                              f"gives {shape}; set in_channels={shape[0]}.")

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The activated features summed over the map: ``(N, C)``."""
        return self.act(x).sum(dim=(2, 3))

    def forward(self, x: torch.Tensor, return_logits: bool = False, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Score ``(N, C, H, W)`` features as ``(N,)`` (``return_logits`` is accepted and ignored)."""
        return self.linear(self.pooled(x)).squeeze(1)


class ProjectionHead(SumPoolHead):
    """The projection discriminator head (Miyato & Koyama 2018): ``psi(h) + <embed(y), h>``.

    ``h`` is the activated, sum-pooled feature vector, ``psi`` a linear layer and ``embed``
    a learned class embedding of size ``C`` (Xavier-uniform initialised, as cGAN-PD's code).
    Apply spectral norm with ``spectral_norm_(d, include_embeddings=True)`` to normalise the
    embedding too, as the paper does.

    Args:
        in_channels: channels of the features.
        num_classes: number of classes.
        act_layer: activation before pooling.

    Example:
        >>> head = ProjectionHead(8, num_classes=3)
        >>> head(torch.randn(2, 8, 4, 4), labels=torch.tensor([0, 2])).shape
        torch.Size([2])
    """

    takes_labels = True

    def __init__(self, in_channels: int, num_classes: int, *, act_layer: LayerSpec = nn.ReLU) -> None:
        super().__init__(in_channels, act_layer=act_layer)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}.")
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, in_channels)
        nn.init.xavier_uniform_(self.embed.weight)

    def forward(self, x: torch.Tensor, return_logits: bool = False, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Score features of images of classes ``labels`` as ``(N,)``."""
        y = check_labels(labels, self.num_classes, x.shape[0], "projection discriminator")
        h = self.pooled(x)
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)


class AuxClassifierHead(SumPoolHead):
    """The ACGAN head: a real/fake score and ``num_classes`` class logits from the pooled features.

    The score is returned; the class logits of the same call are kept in
    :attr:`class_logits` (with their graph) for the auxiliary classification loss of the
    step that made the call.

    Args:
        in_channels: channels of the features.
        num_classes: number of classes.
        act_layer: activation before pooling.

    Example:
        >>> head = AuxClassifierHead(8, num_classes=3)
        >>> head(torch.randn(2, 8, 4, 4)).shape, head.class_logits.shape
        (torch.Size([2]), torch.Size([2, 3]))
    """

    def __init__(self, in_channels: int, num_classes: int, *, act_layer: LayerSpec = nn.ReLU) -> None:
        super().__init__(in_channels, act_layer=act_layer)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
        self.num_classes = num_classes
        self.classifier = nn.Linear(in_channels, num_classes)
        self.class_logits: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, return_logits: bool = False, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Score ``(N, C, H, W)`` features as ``(N,)``; the class logits go to :attr:`class_logits`."""
        h = self.pooled(x)
        self.class_logits = self.classifier(h)
        return self.linear(h).squeeze(1)
