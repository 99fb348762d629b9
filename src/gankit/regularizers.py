"""Regularisers and constraints: the terms a training step adds to a loss, as objects.

A :class:`Regularizer` is a loss term with a ``name`` (its key in the logs), a ``weight``,
a ``side`` (``"d"``: added to the discriminator's loss, ``"g"``: to the generator's) and an
``every`` interval: a regulariser with ``every=k`` runs on every k-th step of its side and
is then scaled by k (StyleGAN2's lazy regularisation), so its average strength is that of
``weight``. ``__call__(ctx)`` gets the :class:`~gankit.train.StepContext` of the current
(micro-)batch -- the real images, the latents and fakes, the discriminator's outputs, and
``ctx.score(x)`` to call the discriminator through the engine (precision, DDP, compile) --
and returns the *unweighted* value, which is logged under ``name``; the step adds
``weight * every * value`` to the loss.

A :class:`Constraint` acts on a network's weights after its optimizer step (weight clipping)
or once when training starts (spectral normalisation).

Example: a consistency regulariser written in a few lines (bCR, Zhao et al. 2020):

    >>> class FlipConsistency(Regularizer):
    ...     def __call__(self, ctx):
    ...         flipped = ctx.score(ctx.real.flip(-1))
    ...         return (flipped - ctx.real_out).pow(2).mean()
    >>> reg = FlipConsistency("bcr", weight=10.0)
    >>> reg.name, reg.side, reg.every
    ('bcr', 'd', 1)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .errors import ConfigError
from .losses import gradient_penalty, r1_penalty

if TYPE_CHECKING:  # pragma: no cover
    from .train.step import StepContext

__all__ = [
    "Regularizer",
    "GradientPenalty",
    "R1Penalty",
    "R2Penalty",
    "LeCam",
    "Constraint",
    "WeightClip",
    "SpectralNorm",
]


class Regularizer(ABC):
    """A named, weighted loss term of one side of the step.

    Args:
        name: key of its value in the logs (unique within a step).
        weight: its coefficient (a schedule may change it during training).
        side: ``"d"`` or ``"g"``.
        every: run on every ``every``-th step of its side, scaled by ``every`` (lazy).
    """

    #: Whether the term can run inside a captured CUDA graph.
    graph_safe: bool = False

    def __init__(self, name: str, weight: float = 1.0, *, side: str = "d", every: int = 1) -> None:
        if side not in ("d", "g"):
            raise ConfigError(f"regulariser {name!r}: side must be 'd' or 'g', got {side!r}.")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ConfigError(f"regulariser {name!r}: every must be a positive integer, got {every!r}.")
        if not weight >= 0:
            raise ConfigError(f"regulariser {name!r}: weight must be >= 0, got {weight!r}.")
        self.name, self.weight, self.side, self.every = name, float(weight), side, every

    def due(self, side_steps: int) -> bool:
        """Whether it runs at this step of its side (``side_steps`` counted from 0)."""
        return side_steps % self.every == 0

    @abstractmethod
    def __call__(self, ctx: StepContext) -> Tensor:
        """The unweighted value on the current (micro-)batch."""

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (EMA anchors, ...); the weight is always saved."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore :meth:`state_dict`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, weight={self.weight}, side={self.side!r}, every={self.every})"


class GradientPenalty(Regularizer):
    """WGAN-GP (Gulrajani et al. 2017): ``mean((||grad D(x_hat)|| - center)^2)`` at interpolates.

    Args:
        weight: lambda (10 in the paper).
        center: target norm (1; 0 gives the zero-centred variant).
        name: log key.
        every: lazy interval.
    """

    def __init__(self, weight: float = 10.0, *, center: float = 1.0, name: str = "gp", every: int = 1) -> None:
        super().__init__(name, weight, side="d", every=every)
        self.center = center

    def __call__(self, ctx: StepContext) -> Tensor:
        return gradient_penalty(ctx.score, ctx.real, ctx.fake.float(), weight=1.0, center=self.center)


class R1Penalty(Regularizer):
    """R1 (Mescheder et al. 2018): ``mean(||grad_x D(x)||^2)`` on real images, weight ``gamma / 2``.

    Args:
        gamma: the paper's gamma (the loss term is ``gamma / 2 * value``).
        name: log key.
        every: lazy interval (StyleGAN2: 16).
    """

    def __init__(self, gamma: float = 10.0, *, name: str = "r1", every: int = 1) -> None:
        super().__init__(name, gamma / 2, side="d", every=every)

    def __call__(self, ctx: StepContext) -> Tensor:
        return r1_penalty(ctx.score, ctx.real, gamma=2.0)


class R2Penalty(Regularizer):
    """R2: R1's penalty on generated images (detached), weight ``gamma / 2`` (R3GAN uses both).

    Args:
        gamma: the paper's gamma.
        name: log key.
        every: lazy interval.
    """

    def __init__(self, gamma: float = 10.0, *, name: str = "r2", every: int = 1) -> None:
        super().__init__(name, gamma / 2, side="d", every=every)

    def __call__(self, ctx: StepContext) -> Tensor:
        return r1_penalty(ctx.score, ctx.fake.float(), gamma=2.0)


class LeCam(Regularizer):
    """LeCam regulariser (Tseng et al. 2021) with EMA anchors of the mean real and fake scores.

    ``mean(relu(D(x) - anchor_fake)^2) + mean(relu(anchor_real - D(G(z)))^2)``; the anchors
    are exponential moving averages (``decay``) of the mean scores, checkpointed.

    Args:
        weight: lambda.
        decay: EMA decay of the anchors (0.99 in the paper).
        name: log key.
    """

    def __init__(self, weight: float = 0.3, *, decay: float = 0.99, name: str = "lecam") -> None:
        super().__init__(name, weight, side="d")
        self.decay = decay
        self.anchor_real: Tensor | None = None
        self.anchor_fake: Tensor | None = None

    def __call__(self, ctx: StepContext) -> Tensor:
        real, fake = ctx.real_out.float(), ctx.fake_out.float()
        with torch.no_grad():
            r, f = real.detach().mean(), fake.detach().mean()
            if self.anchor_real is None:
                self.anchor_real, self.anchor_fake = r.clone(), f.clone()
            else:
                # anchors restored from a checkpoint are loaded on the CPU: follow the scores
                self.anchor_real = self.anchor_real.to(r.device).lerp_(r, 1 - self.decay)
                self.anchor_fake = self.anchor_fake.to(f.device).lerp_(f, 1 - self.decay)
        return (torch.relu(real - self.anchor_fake).pow(2).mean()
                + torch.relu(self.anchor_real - fake).pow(2).mean())

    def state_dict(self) -> dict[str, Any]:
        # copies: the anchors are updated in place, a saved state must not follow them
        return {"anchor_real": None if self.anchor_real is None else self.anchor_real.clone(),
                "anchor_fake": None if self.anchor_fake is None else self.anchor_fake.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        real, fake = state.get("anchor_real"), state.get("anchor_fake")
        self.anchor_real = None if real is None else real.clone()
        self.anchor_fake = None if fake is None else fake.clone()


class Constraint(ABC):
    """Acts on a network's weights: once at the start (``setup``) and after each of its updates.

    Args:
        name: a label for listings.
        side: ``"d"`` or ``"g"``: the network it acts on.
    """

    graph_safe: bool = True

    def __init__(self, name: str, *, side: str = "d") -> None:
        if side not in ("d", "g"):
            raise ConfigError(f"constraint {name!r}: side must be 'd' or 'g', got {side!r}.")
        self.name, self.side = name, side

    def setup(self, net: nn.Module) -> None:  # noqa: B027 - optional hook
        """Prepare the network once before training (default: nothing)."""

    @abstractmethod
    def after_step(self, net: nn.Module) -> None:
        """Called right after the network's optimizer step."""


class WeightClip(Constraint):
    """Clamp every parameter of the network to ``[-c, c]`` after each update (WGAN).

    Args:
        clip_value: ``c`` (0.01 in the WGAN paper).
    """

    def __init__(self, clip_value: float = 0.01, *, side: str = "d") -> None:
        super().__init__("weight_clip", side=side)
        from .constraints import WeightClipper

        self.clipper = WeightClipper(clip_value)
        self.clip_value = clip_value

    def after_step(self, net: nn.Module) -> None:
        self.clipper(net)


class SpectralNorm(Constraint):
    """Spectral normalisation (Miyato et al. 2018) of every conv and linear layer, applied in ``setup``.

    Presets apply it when they build their networks (``spectral_norm=True``); this
    constraint applies it to a network that does not have it yet.
    """

    def __init__(self, *, side: str = "d") -> None:
        super().__init__("spectral_norm", side=side)

    def setup(self, net: nn.Module) -> None:
        from torch.nn.utils import parametrize

        from .constraints import spectral_norm_

        if not any(parametrize.is_parametrized(m) for m in net.modules()):
            spectral_norm_(net)

    def after_step(self, net: nn.Module) -> None:
        """Nothing: the parametrisation normalises on every forward."""
