"""Schedules for any hyper-parameter: a value as a function of the training step.

A schedule is a callable ``schedule(step) -> float`` (``step``: steps done so far). A
trainer (or its step) applies a mapping ``{target: schedule}`` before every step; targets
name what to set:

* ``"g.lr"``, ``"d.lr"``, ``"g.beta1"``, ``"g.beta2"``, ``"d.beta1"``, ``"d.beta2"``, or
  any other key of the optimizers' parameter groups (``"d.weight_decay"``);
* ``"<regulariser name>"`` or ``"<name>.<attribute>"``: a regulariser's weight (or another
  attribute), e.g. ``"r1"`` for an :class:`~gankit.regularizers.R1Penalty` named ``r1``
  (its weight is ``gamma / 2``: schedule the weight);
* ``"<callback name>.<attribute>"``: any attribute of a callback, e.g. an augmentation
  probability or an EMA half-life.

Example:
    >>> s = cosine(1e-3, 1e-5, steps=100, warmup=10)
    >>> round(s(0), 6), round(s(10), 6), round(s(110), 6)
    (0.0, 0.001, 1e-05)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["Schedule", "constant", "linear", "cosine"]

Schedule = Callable[[int], float]


@dataclass(frozen=True)
class _Constant:
    value: float

    def __call__(self, step: int) -> float:
        return self.value


@dataclass(frozen=True)
class _Linear:
    start: float
    end: float
    steps: int
    warmup: int = 0

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.start * step / self.warmup
        t = min(1.0, (step - self.warmup) / self.steps)
        return self.start + (self.end - self.start) * t


@dataclass(frozen=True)
class _Cosine:
    start: float
    end: float
    steps: int
    warmup: int = 0

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.start * step / self.warmup
        t = min(1.0, (step - self.warmup) / self.steps)
        return self.end + (self.start - self.end) * 0.5 * (1 + math.cos(math.pi * t))


def _check(steps: int, warmup: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"a schedule's steps must be a positive integer, got {steps!r}.")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"a schedule's warmup must be a non-negative integer, got {warmup!r}.")


def constant(value: float) -> Schedule:
    """Always ``value``."""
    return _Constant(float(value))


def linear(start: float, end: float, *, steps: int, warmup: int = 0) -> Schedule:
    """From ``start`` to ``end`` in ``steps`` steps after a linear warm-up from 0, then ``end``.

    Args:
        start: value after the warm-up.
        end: value from ``warmup + steps`` on (the floor).
        steps: length of the ramp.
        warmup: steps of linear warm-up from 0 to ``start``.
    """
    _check(steps, warmup)
    return _Linear(float(start), float(end), steps, warmup)


def cosine(start: float, end: float = 0.0, *, steps: int, warmup: int = 0) -> Schedule:
    """Half a cosine from ``start`` down (or up) to ``end`` over ``steps``, after a warm-up.

    Args:
        start: value after the warm-up.
        end: value from ``warmup + steps`` on (the floor).
        steps: length of the cosine.
        warmup: steps of linear warm-up from 0 to ``start``.
    """
    _check(steps, warmup)
    return _Cosine(float(start), float(end), steps, warmup)
