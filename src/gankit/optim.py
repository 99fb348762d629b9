"""Optimizer presets: named, frozen (optimizer class, hyperparameters) pairs.

Registered presets:

========================  ===========  =================================  ======================
name                      class        hyperparameters                    source
========================  ===========  =================================  ======================
``adam_dcgan``            Adam         lr 1e-4, betas (0.5, 0.999)        report task one (ML2020)
``sgd_wgan_report``       SGD          lr 1e-4                            report task two
``rmsprop_wgan``          RMSprop      lr 5e-5                            WGAN paper
``adam_wgan_gp``          Adam         lr 1e-4, betas (0.0, 0.9)          WGAN-GP paper
``adam_dcgan_paper``      Adam         lr 2e-4, betas (0.5, 0.999)        DCGAN paper
``adam_ttur_g``           Adam         lr 1e-4, betas (0.0, 0.9)          SAGAN / TTUR generator
``adam_ttur_d``           Adam         lr 4e-4, betas (0.0, 0.9)          SAGAN / TTUR critic
``adam_r3gan``            Adam         lr 2e-4, betas (0.0, 0.99)         R3GAN
========================  ===========  =================================  ======================

Example:
    >>> import torch
    >>> opt = build_optimizer("adam_dcgan", torch.nn.Linear(2, 2).parameters())
    >>> type(opt).__name__, opt.defaults["lr"], opt.defaults["betas"]
    ('Adam', 0.0001, (0.5, 0.999))
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from gankit.errors import ConfigError, unknown_choice

__all__ = [
    "OptimizerPreset",
    "register_optimizer",
    "get_optimizer",
    "list_optimizers",
    "build_optimizer",
]


def _accepted_kwargs(optimizer: type[torch.optim.Optimizer]) -> list[str] | None:
    # None means "anything goes": the optimizer takes **kwargs, so we cannot check.
    params = inspect.signature(optimizer.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [n for n in params if n not in ("self", "params")]


def _unknown_keyword(preset: str, key: str, valid: list[str]) -> ConfigError:
    return unknown_choice(f"optimizer preset {preset!r} has no keyword", key, valid)


@dataclass(frozen=True)
class OptimizerPreset:
    """A named optimizer class with default hyperparameters.

    Args:
        name: Registry name, e.g. ``"adam_dcgan"``.
        optimizer: A ``torch.optim.Optimizer`` subclass.
        kwargs: Default keyword arguments, given as a mapping or as ``(key, value)``
            pairs; stored as a sorted tuple of pairs so the preset stays hashable.
        description: One line for listings and docs.

    Raises:
        ConfigError: If a keyword is not accepted by ``optimizer``.

    Example:
        >>> import torch
        >>> p = OptimizerPreset("tiny_sgd", torch.optim.SGD, {"lr": 0.1})
        >>> p.defaults
        {'lr': 0.1}
    """

    name: str
    optimizer: type[torch.optim.Optimizer]
    kwargs: tuple[tuple[str, Any], ...] | Mapping[str, Any] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not (
            isinstance(self.optimizer, type) and issubclass(self.optimizer, torch.optim.Optimizer)
        ):
            raise ConfigError(
                f"optimizer preset {self.name!r}: {self.optimizer!r} is not a "
                "torch.optim.Optimizer class"
            )
        items = dict(self.kwargs.items() if isinstance(self.kwargs, Mapping) else self.kwargs)
        valid = _accepted_kwargs(self.optimizer)
        for key in items:
            if valid is not None and key not in valid:
                raise _unknown_keyword(self.name, key, valid)
        object.__setattr__(self, "kwargs", tuple(sorted(items.items())))

    @property
    def defaults(self) -> dict[str, Any]:
        """The preset's keyword arguments as a fresh dict.

        Returns:
            A copy that can be modified freely.
        """
        return dict(self.kwargs)

    def build(self, params: Iterable[Any], **overrides: Any) -> torch.optim.Optimizer:
        """Instantiate the optimizer over ``params``.

        Overrides whose value is ``None`` are dropped, so command-line defaults of
        ``None`` never replace a preset's values.

        Args:
            params: Parameters or parameter groups, as for any torch optimizer.
            **overrides: Hyperparameters replacing the preset's (e.g. ``lr=2e-4``).

        Returns:
            The optimizer.

        Raises:
            ConfigError: For a keyword the optimizer does not accept or a value it rejects.

        Example:
            >>> import torch
            >>> opt = get_optimizer("rmsprop_wgan").build([torch.zeros(1, requires_grad=True)])
            >>> opt.defaults["lr"]
            5e-05
        """
        valid = _accepted_kwargs(self.optimizer)
        kwargs = self.defaults
        for key, value in overrides.items():
            if valid is not None and key not in valid:
                raise _unknown_keyword(self.name, key, valid)
            if value is not None:
                kwargs[key] = value
        try:
            return self.optimizer(params, **kwargs)
        except ValueError as err:  # torch validates values (e.g. a negative lr) this way
            raise ConfigError(f"optimizer preset {self.name!r}: {err}") from err


_OPTIMIZERS: dict[str, OptimizerPreset] = {}


def register_optimizer(preset: OptimizerPreset) -> OptimizerPreset:
    """Add a preset to the registry under ``preset.name``.

    Args:
        preset: The preset to register.

    Returns:
        The same preset.

    Raises:
        ConfigError: If the name is already registered.

    Example:
        >>> register_optimizer(get_optimizer("adam_dcgan"))  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        gankit.errors.ConfigError: optimizer preset 'adam_dcgan' is already registered
    """
    if preset.name in _OPTIMIZERS:
        raise ConfigError(
            f"optimizer preset {preset.name!r} is already registered; pick another name"
        )
    _OPTIMIZERS[preset.name] = preset
    return preset


def list_optimizers(pattern: str | None = None) -> list[str]:
    """Sorted names of registered presets, optionally filtered by a shell-style wildcard.

    Args:
        pattern: An ``fnmatch`` pattern such as ``"adam*"``; ``None`` lists all.

    Returns:
        The matching names, sorted.

    Example:
        >>> list_optimizers("*wgan*")
        ['adam_wgan_gp', 'rmsprop_wgan', 'sgd_wgan_report']
    """
    names = sorted(_OPTIMIZERS)
    return names if pattern is None else fnmatch.filter(names, pattern)


def get_optimizer(name: str | OptimizerPreset) -> OptimizerPreset:
    """Look a preset up by name (an :class:`OptimizerPreset` is passed through).

    Args:
        name: A registered name, or a preset.

    Returns:
        The preset.

    Raises:
        ConfigError: For an unknown name; the message lists close matches and the
            valid choices.

    Example:
        >>> get_optimizer("sgd_wgan_report").defaults
        {'lr': 0.0001}
    """
    if isinstance(name, OptimizerPreset):
        return name
    try:
        return _OPTIMIZERS[name]
    except (KeyError, TypeError):
        raise unknown_choice("unknown optimizer preset", name, _OPTIMIZERS) from None


def build_optimizer(
    name_or_preset: str | OptimizerPreset, params: Iterable[Any], **overrides: Any
) -> torch.optim.Optimizer:
    """Build an optimizer from a preset name (or preset) over ``params``.

    Args:
        name_or_preset: A registered name or an :class:`OptimizerPreset`.
        params: Parameters or parameter groups.
        **overrides: Hyperparameters replacing the preset's; ``None`` values are ignored.

    Returns:
        The optimizer.

    Raises:
        ConfigError: For an unknown preset, keyword or rejected value.

    Example:
        >>> import torch
        >>> opt = build_optimizer("adam_wgan_gp", [torch.zeros(1, requires_grad=True)], lr=2e-4)
        >>> opt.defaults["lr"], opt.defaults["betas"]
        (0.0002, (0.0, 0.9))
    """
    return get_optimizer(name_or_preset).build(params, **overrides)


for _preset in (
    OptimizerPreset(
        "adam_dcgan",
        torch.optim.Adam,
        {"lr": 1e-4, "betas": (0.5, 0.999)},
        "Adam lr 1e-4, betas (0.5, 0.999): the ML2020 baseline (report task one)",
    ),
    OptimizerPreset(
        "sgd_wgan_report", torch.optim.SGD, {"lr": 1e-4}, "SGD lr 1e-4 (report task two)"
    ),
    OptimizerPreset(
        "rmsprop_wgan", torch.optim.RMSprop, {"lr": 5e-5}, "RMSprop lr 5e-5 (WGAN paper)"
    ),
    OptimizerPreset(
        "adam_wgan_gp",
        torch.optim.Adam,
        {"lr": 1e-4, "betas": (0.0, 0.9)},
        "Adam lr 1e-4, betas (0.0, 0.9) (WGAN-GP paper)",
    ),
    OptimizerPreset(
        "adam_dcgan_paper",
        torch.optim.Adam,
        {"lr": 2e-4, "betas": (0.5, 0.999)},
        "Adam lr 2e-4, betas (0.5, 0.999) (DCGAN paper)",
    ),
    OptimizerPreset(
        "adam_ttur_g",
        torch.optim.Adam,
        {"lr": 1e-4, "betas": (0.0, 0.9)},
        "Adam lr 1e-4, betas (0.0, 0.9): TTUR generator rate (SAGAN)",
    ),
    OptimizerPreset(
        "adam_ttur_d",
        torch.optim.Adam,
        {"lr": 4e-4, "betas": (0.0, 0.9)},
        "Adam lr 4e-4, betas (0.0, 0.9): TTUR discriminator rate (SAGAN)",
    ),
    OptimizerPreset(
        "adam_r3gan",
        torch.optim.Adam,
        {"lr": 2e-4, "betas": (0.0, 0.99)},
        "Adam lr 2e-4, betas (0.0, 0.99) (R3GAN)",
    ),
):
    register_optimizer(_preset)
del _preset
