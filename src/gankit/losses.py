"""Adversarial losses and gradient penalties: pure functions over discriminator outputs.

A loss is an :class:`AdversarialLoss`: a name, a discriminator loss
``d_loss(real_out, fake_out)``, a generator loss ``g_loss(fake_out)`` and whether it
expects raw logits (``from_logits=True``) or probabilities. Nothing here calls
``zero_grad``, ``backward`` or ``step``: the Trainer owns the loop.

All losses reduce with a mean over every element, so discriminator outputs of shape
``(N,)`` and ``(N, 1)`` give the same number.

Registered losses:

* ``bce`` -- task one of the report, on sigmoid probabilities, exactly
  ``(BCELoss()(D(x), 1) + BCELoss()(D(G(z)), 0)) / 2``.
* ``bce_logits`` -- the same numbers from logits (autocast-safe twin of ``bce``).
* ``nonsaturating`` -- the non-saturating GAN loss on logits (no ``/ 2``).
* ``wasserstein`` -- task two of the report, exactly ``-mean(D(x)) + mean(D(G(z)))``.
* ``hinge`` -- the hinge loss of SAGAN / BigGAN.
* ``lsgan`` -- least squares (LSGAN, targets 0 and 1).

Example:
    >>> import torch
    >>> loss = get_loss("hinge")
    >>> real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    >>> float(loss.d_loss(real, fake)), float(loss.g_loss(fake))
    (0.75, 1.0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from gankit.errors import ConfigError, unknown_choice

__all__ = [
    "AdversarialLoss",
    "register_loss",
    "get_loss",
    "list_losses",
    "gradient_penalty",
    "r1_penalty",
    "auxiliary_class_loss",
]


@dataclass(frozen=True)
class AdversarialLoss:
    """A pair of discriminator / generator losses over discriminator outputs.

    Args:
        name: Registry name, e.g. ``"hinge"``.
        d_loss: ``d_loss(real_out, fake_out) -> Tensor``, the scalar the discriminator
            minimises; ``fake_out`` should come from detached fakes.
        g_loss: ``g_loss(fake_out) -> Tensor``, the scalar the generator minimises.
        from_logits: ``True`` if the losses expect raw scores, ``False`` if they expect
            probabilities in ``[0, 1]`` (a discriminator ending in a sigmoid).
        description: One line for listings and docs.
        mixed_precision_twin: name of the loss that computes the same function in an
            autocast-safe way (``"bce_logits"`` for ``"bce"``): the trainer uses it under
            bf16/fp16 and calls the discriminator for logits instead of probabilities.
        g_uses_real: ``g_loss`` takes ``(fake_out, real_out)``: the generator step also
            scores the real batch (relativistic losses). Otherwise ``g_loss(fake_out)``.

    Example:
        >>> import torch
        >>> loss = get_loss("wasserstein")
        >>> float(loss.g_loss(torch.tensor([1.0, 3.0])))
        -2.0
    """

    name: str
    d_loss: Callable[[Tensor, Tensor], Tensor]
    g_loss: Callable[..., Tensor]
    from_logits: bool
    description: str = ""
    mixed_precision_twin: str | None = None
    g_uses_real: bool = False

    def generator_loss(self, fake_out: Tensor, real_out: Tensor | None = None) -> Tensor:
        """``g_loss`` with the real scores when the loss uses them (relativistic losses).

        Args:
            fake_out: discriminator outputs on generated images (with gradients to G).
            real_out: discriminator outputs on the real batch (needed when ``g_uses_real``).

        Returns:
            The scalar the generator minimises.
        """
        if self.g_uses_real:
            if real_out is None:
                raise ConfigError(f"loss {self.name!r} needs the real scores in the generator step.")
            return self.g_loss(fake_out, real_out)
        return self.g_loss(fake_out)

    def for_mixed_precision(self) -> AdversarialLoss:
        """The autocast-safe form of this loss (itself when it is already safe)."""
        return self if self.mixed_precision_twin is None else get_loss(self.mixed_precision_twin)


_LOSSES: dict[str, AdversarialLoss] = {}


def register_loss(loss: AdversarialLoss) -> AdversarialLoss:
    """Add a loss to the registry under ``loss.name``.

    Args:
        loss: The loss to register.

    Returns:
        The same loss, so the call can be used in an assignment.

    Raises:
        ConfigError: If the name is already registered.

    Example:
        >>> register_loss(get_loss("hinge"))  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        gankit.errors.ConfigError: loss 'hinge' is already registered
    """
    if loss.name in _LOSSES:
        raise ConfigError(f"loss {loss.name!r} is already registered; pick another name")
    _LOSSES[loss.name] = loss
    return loss


def list_losses() -> list[str]:
    """Names of every registered loss, sorted.

    Returns:
        The sorted names.

    Example:
        >>> "bce" in list_losses()
        True
    """
    return sorted(_LOSSES)


def get_loss(name: str | AdversarialLoss) -> AdversarialLoss:
    """Look a loss up by name (an :class:`AdversarialLoss` is passed through).

    Args:
        name: A registered name, or a loss object.

    Returns:
        The registered loss.

    Raises:
        ConfigError: For an unknown name; the message lists close matches and the
            valid choices.

    Example:
        >>> get_loss("lsgan").from_logits
        True
    """
    if isinstance(name, AdversarialLoss):
        return name
    try:
        return _LOSSES[name]
    except (KeyError, TypeError):
        raise unknown_choice("unknown loss", name, _LOSSES) from None


# --- task one: binary cross-entropy --------------------------------------------------------


def _bce_d(real: Tensor, fake: Tensor) -> Tensor:
    # The same ops in the same order as (nn.BCELoss()(r, 1) + nn.BCELoss()(f, 0)) / 2,
    # so the number is bitwise that of the ML2020 baseline.
    real_loss = F.binary_cross_entropy(real, torch.ones_like(real))
    fake_loss = F.binary_cross_entropy(fake, torch.zeros_like(fake))
    return (real_loss + fake_loss) / 2


def _bce_g(fake: Tensor) -> Tensor:
    return F.binary_cross_entropy(fake, torch.ones_like(fake))


def _bce_logits_d(real: Tensor, fake: Tensor) -> Tensor:
    real_loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
    fake_loss = F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    return (real_loss + fake_loss) / 2


def _bce_logits_g(fake: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def _nonsaturating_d(real: Tensor, fake: Tensor) -> Tensor:
    # -log(sigmoid(r)) = softplus(-r) and -log(1 - sigmoid(f)) = softplus(f), stably.
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def _nonsaturating_g(fake: Tensor) -> Tensor:
    return F.softplus(-fake).mean()


# --- task two: Wasserstein -----------------------------------------------------------------


def _wasserstein_d(real: Tensor, fake: Tensor) -> Tensor:
    # Exactly the report's expression, real term first.
    return -torch.mean(real) + torch.mean(fake)


def _wasserstein_g(fake: Tensor) -> Tensor:
    return -torch.mean(fake)


# --- margin and least-squares losses -------------------------------------------------------


def _hinge_d(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def _hinge_g(fake: Tensor) -> Tensor:
    return -fake.mean()


def _lsgan_d(real: Tensor, fake: Tensor) -> Tensor:
    return 0.5 * (real - 1).pow(2).mean() + 0.5 * fake.pow(2).mean()


def _lsgan_g(fake: Tensor) -> Tensor:
    return 0.5 * (fake - 1).pow(2).mean()


# --- relativistic losses: the critic compares real and fake scores --------------------------


def _rpgan_d(real: Tensor, fake: Tensor) -> Tensor:
    # RpGAN (Jolicoeur-Martineau 2019; R3GAN, Huang et al. 2024): pairs real i with fake i.
    return F.softplus(fake - real).mean()


def _rpgan_g(fake: Tensor, real: Tensor) -> Tensor:
    return F.softplus(real - fake).mean()


def _ragan_d(real: Tensor, fake: Tensor) -> Tensor:
    # Relativistic average GAN: each score against the mean score of the other side.
    return (F.softplus(-(real - fake.mean())).mean() + F.softplus(fake - real.mean()).mean()) / 2


def _ragan_g(fake: Tensor, real: Tensor) -> Tensor:
    return (F.softplus(-(fake - real.mean())).mean() + F.softplus(real - fake.mean()).mean()) / 2


for _loss in (
    AdversarialLoss(
        "bce", _bce_d, _bce_g, False, "binary cross-entropy on probabilities (report task one)",
        mixed_precision_twin="bce_logits",
    ),
    AdversarialLoss(
        "bce_logits",
        _bce_logits_d,
        _bce_logits_g,
        True,
        "bce computed from logits: same numbers, autocast-safe",
    ),
    AdversarialLoss(
        "nonsaturating",
        _nonsaturating_d,
        _nonsaturating_g,
        True,
        "non-saturating GAN loss on logits (softplus form)",
    ),
    AdversarialLoss(
        "wasserstein",
        _wasserstein_d,
        _wasserstein_g,
        True,
        "WGAN critic loss -mean(D(x)) + mean(D(G(z))) (report task two)",
    ),
    AdversarialLoss("hinge", _hinge_d, _hinge_g, True, "hinge loss (SAGAN, BigGAN)"),
    AdversarialLoss("lsgan", _lsgan_d, _lsgan_g, True, "least-squares GAN loss, targets 0/1"),
    AdversarialLoss("rpgan", _rpgan_d, _rpgan_g, True,
                    "relativistic pairing loss softplus(D(fake) - D(real)) (R3GAN)", g_uses_real=True),
    AdversarialLoss("ragan", _ragan_d, _ragan_g, True,
                    "relativistic average loss (each score against the other side's mean)",
                    g_uses_real=True),
):
    register_loss(_loss)
del _loss


# --- penalties ------------------------------------------------------------------------------


def _input_gradients(outputs: Tensor, inputs: Tensor) -> Tensor:
    # create_graph=True so the penalty itself can be back-propagated into D's weights.
    (grad,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
    return grad


def gradient_penalty(
    discriminator: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    *,
    weight: float = 10.0,
    center: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP gradient penalty on random interpolates of real and fake samples.

    Draws ``eps ~ U(0, 1)`` per sample, forms ``x = eps * real + (1 - eps) * fake``
    (both detached) and returns ``weight * mean((||grad_x D(x)||_2 - center) ** 2)``.
    The discriminator is called once on the interpolates, so in train mode its
    BatchNorm statistics and dropout masks are touched (the WGAN-GP paper advises
    a critic without BatchNorm).

    Args:
        discriminator: Any callable returning scores of shape ``(N,)`` or ``(N, 1)``.
        real: Real samples, shape ``(N, ...)``.
        fake: Generated samples, same shape as ``real``.
        weight: Penalty coefficient (lambda; 10 in the paper).
        center: Target gradient norm (1 for WGAN-GP, 0 for a zero-centred variant).
        generator: Optional ``torch.Generator`` (on ``real``'s device) for ``eps``.

    Returns:
        A scalar tensor, differentiable with respect to the discriminator's parameters.

    Example:
        >>> import torch
        >>> w = torch.tensor([0.6, 0.8])
        >>> d = lambda x: x @ w  # a linear critic with a unit-norm weight
        >>> gp = gradient_penalty(d, torch.randn(4, 2), torch.randn(4, 2))
        >>> bool(gp.abs() < 1e-6)
        True
    """
    if real.shape != fake.shape:
        raise ConfigError(
            f"gradient_penalty needs real and fake of one shape, got "
            f"{tuple(real.shape)} and {tuple(fake.shape)}"
        )
    # One eps per sample, broadcast over every other dimension.
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, device=real.device, dtype=real.dtype, generator=generator)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    grad = _input_gradients(discriminator(mixed), mixed)
    norms = torch.linalg.vector_norm(grad.flatten(1), ord=2, dim=1)
    return weight * (norms - center).pow(2).mean()


def r1_penalty(
    discriminator: Callable[[Tensor], Tensor], real: Tensor, *, gamma: float = 10.0
) -> Tensor:
    """R1 regulariser (Mescheder et al. 2018): ``gamma / 2 * mean(||grad_x D(x)||^2)``.

    The gradient is taken at the real samples only; the discriminator is called once.

    Args:
        discriminator: Any callable returning scores of shape ``(N,)`` or ``(N, 1)``.
        real: Real samples, shape ``(N, ...)``.
        gamma: Penalty coefficient.

    Returns:
        A scalar tensor, differentiable with respect to the discriminator's parameters.

    Example:
        >>> import torch
        >>> d = lambda x: x @ torch.tensor([3.0, 4.0])  # ||grad|| = 5 everywhere
        >>> float(r1_penalty(d, torch.randn(8, 2), gamma=2.0))
        25.0
    """
    real = real.detach().requires_grad_(True)
    grad = _input_gradients(discriminator(real), real)
    return gamma / 2 * grad.flatten(1).pow(2).sum(dim=1).mean()


def auxiliary_class_loss(class_logits: Tensor, labels: Tensor) -> Tensor:
    """ACGAN's auxiliary classification loss (Odena et al. 2017): cross-entropy of the
    discriminator's class logits against the classes the images are of (real) or were
    generated for (fake). The discriminator minimises it on real and fake images, the
    generator on its fakes.

    Args:
        class_logits: ``(N, K)`` logits of the auxiliary classifier.
        labels: ``(N,)`` class indices.

    Returns:
        The mean cross-entropy (a scalar).

    Example:
        >>> import torch
        >>> round(float(auxiliary_class_loss(torch.zeros(2, 4), torch.tensor([0, 3]))), 4)
        1.3863
    """
    return F.cross_entropy(class_logits.float(), labels.long())
