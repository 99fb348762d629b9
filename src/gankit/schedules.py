"""Schedules for any hyper-parameter: a value as a function of the training step.

A schedule is a callable ``schedule(step) -> float`` (``step``: steps done so far). A
trainer (or its step) applies a mapping ``{target: schedule}`` before every step; targets
name what to set:

* ``"g.lr"``, ``"d.lr"``, ``"g.beta1"``, ``"g.beta2"``, ``"d.beta1"``, ``"d.beta2"``, or
  any other key of the optimizers' parameter groups (``"d.weight_decay"``);
* ``"<regulariser name>"`` or ``"<name>.<attribute>"``: a regulariser's weight (or another
  attribute), e.g. ``"r1"`` for an :class:`~gankit.regularizers.R1Penalty` named ``r1``
  (its weight is ``gamma / 2``: schedule the weight);
* ``"<callback name>.<attribute>"``: any attribute of a callback, e.g. an EMA's half-life
  (``"ema.half_life_images"``);
* ``"<augmentation name>.<attribute>"``: the step's input augmentation, e.g. ``"ada.p"``
  or ``"diffaugment.p"``.

Shapes: :func:`constant`, :func:`linear`, :func:`cosine` and :func:`exponential`, each with
an optional warm-up (from ``warmup_from``), a hold at the start value and a floor (``end``);
:func:`over_images` states any of them in images seen instead of steps, as R3GAN and
StyleGAN do. R3GAN schedules its learning rate, Adam's beta2, the R1/R2 gamma, the
augmentation probability and the EMA half-life over images, each from a start value to
a floor; with the values of its configuration (``lr_0``, ``lr_floor``, ... below are
placeholders, not gankit's numbers)::

    {"g.lr": over_images(cosine(lr_0, lr_floor, steps=images, warmup=w), batch),
     "d.beta2": over_images(cosine(beta2_0, beta2_end, steps=images), batch),  # may rise
     "r1": over_images(cosine(gamma_0 / 2, gamma_floor / 2, steps=images), batch),
     "ema.half_life_images": over_images(linear(h_0, h_end, steps=images), batch)}

"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["Schedule", "constant", "linear", "cosine", "exponential", "over_images"]

Schedule = Callable[[int], float]


@dataclass(frozen=True)
class _Constant:
    value: float

    def __call__(self, step: int) -> float:
        return self.value


@dataclass(frozen=True)
class _Ramp:
    """Warm-up from ``warmup_from`` to ``start``, hold ``start``, then ``shape`` to ``end``."""

    shape: str
    start: float
    end: float
    steps: int
    warmup: int = 0
    warmup_from: float = 0.0
    hold: int = 0

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.warmup_from + (self.start - self.warmup_from) * step / self.warmup
        t = min(1.0, max(0.0, (step - self.warmup - self.hold) / self.steps))
        if self.shape == "linear":
            return self.start + (self.end - self.start) * t
        if self.shape == "cosine":
            return self.end + (self.start - self.end) * 0.5 * (1 + math.cos(math.pi * t))
        return self.start * (self.end / self.start) ** t  # exponential (geometric)


@dataclass(frozen=True)
class _OverImages:
    schedule: Callable[[int], float]
    batch_size: int

    def __call__(self, step: int) -> float:
        return self.schedule(step * self.batch_size)


def _check(steps: int, warmup: int, hold: int = 0) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"a schedule's steps must be a positive integer, got {steps!r}.")
    for name, value in (("warmup", warmup), ("hold", hold)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"a schedule's {name} must be a non-negative integer, got {value!r}.")


def constant(value: float) -> Schedule:
    """Always ``value``."""
    return _Constant(float(value))


def linear(start: float, end: float, *, steps: int, warmup: int = 0, warmup_from: float = 0.0,
           hold: int = 0) -> Schedule:
    """From ``start`` to ``end`` in ``steps`` steps after a linear warm-up, then ``end``.

    Args:
        start: value after the warm-up.
        end: value from ``warmup + hold + steps`` on (the floor).
        steps: length of the ramp.
        warmup: steps of linear warm-up from ``warmup_from`` to ``start``.
        warmup_from: value at step 0 (0 by default).
        hold: steps at ``start`` between the warm-up and the ramp.
    """
    _check(steps, warmup, hold)
    return _Ramp("linear", float(start), float(end), steps, warmup, float(warmup_from), hold)


def cosine(start: float, end: float = 0.0, *, steps: int, warmup: int = 0, warmup_from: float = 0.0,
           hold: int = 0) -> Schedule:
    """Half a cosine from ``start`` down (or up) to ``end`` over ``steps``, after a warm-up.

    Args:
        start: value after the warm-up.
        end: value from ``warmup + hold + steps`` on (the floor).
        steps: length of the cosine.
        warmup: steps of linear warm-up from ``warmup_from`` to ``start``.
        warmup_from: value at step 0 (0 by default).
        hold: steps at ``start`` between the warm-up and the cosine.
    """
    _check(steps, warmup, hold)
    return _Ramp("cosine", float(start), float(end), steps, warmup, float(warmup_from), hold)


def exponential(start: float, end: float, *, steps: int, warmup: int = 0, warmup_from: float = 0.0,
                hold: int = 0) -> Schedule:
    """Geometric interpolation ``start * (end / start) ** t`` over ``steps``, then ``end``.

    A constant ratio per step: learning-rate decays, or an EMA half-life that grows by
    the same factor every step.

    Args:
        start: value after the warm-up (> 0).
        end: value from ``warmup + hold + steps`` on (> 0).
        steps: length of the ramp.
        warmup: steps of linear warm-up from ``warmup_from`` to ``start``.
        warmup_from: value at step 0 (0 by default).
        hold: steps at ``start`` between the warm-up and the ramp.

    Example:
        >>> s = exponential(1.0, 0.01, steps=2)
        >>> [round(s(i), 6) for i in range(4)]
        [1.0, 0.1, 0.01, 0.01]
    """
    _check(steps, warmup, hold)
    if not (start > 0 and end > 0):
        raise ConfigError(f"an exponential schedule needs start and end > 0, got {start!r} and {end!r}; "
                          "use linear or cosine to reach 0.")
    return _Ramp("exponential", float(start), float(end), steps, warmup, float(warmup_from), hold)


def over_images(schedule: Schedule, batch_size: int) -> Schedule:
    """A schedule stated in images seen (as R3GAN and StyleGAN state theirs), run by steps.

    Args:
        schedule: a schedule whose argument is the number of images seen.
        batch_size: images per step (the global batch).

    Returns:
        ``step -> schedule(step * batch_size)``.

    Example:
        >>> s = over_images(linear(1.0, 0.0, steps=1000), batch_size=100)
        >>> s(5)
        0.5
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"over_images needs a positive integer batch_size, got {batch_size!r}.")
    return _OverImages(schedule, batch_size)
