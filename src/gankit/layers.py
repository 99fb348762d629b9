"""Resolve layer types from names, so configs can say ``"relu"`` or ``nn.ReLU`` alike.

Blocks take layer *types* (``act_layer=nn.ReLU``, ``norm_layer=nn.BatchNorm2d``) or
any callable that builds a module; these helpers also accept short names so that
string configurations (the command line, JSON) stay possible.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from .errors import ConfigError, unknown_choice

__all__ = ["LayerSpec", "get_act_layer", "get_norm_layer", "make_act", "make_norm"]

#: A layer given as a module class, a factory (e.g. ``functools.partial``), a short name, or None.
LayerSpec = type[nn.Module] | Callable[..., nn.Module] | str | None

_ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "relu": nn.ReLU,
    # GAN convention: "leaky_relu" means slope 0.2 (DCGAN, the report), not torch's 0.01.
    "leaky_relu": partial(nn.LeakyReLU, 0.2),
    "lrelu": partial(nn.LeakyReLU, 0.2),
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}

# Normalisations take the channel count as their only positional argument.
_NORMS: dict[str, dict[int, Callable[..., nn.Module]]] = {
    "batch": {1: nn.BatchNorm1d, 2: nn.BatchNorm2d},
    "batchnorm": {1: nn.BatchNorm1d, 2: nn.BatchNorm2d},
    "instance": {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d},
    "instancenorm": {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d},
    "layer": {1: nn.LayerNorm, 2: partial(nn.GroupNorm, 1)},
    "group": {1: partial(nn.GroupNorm, 32), 2: partial(nn.GroupNorm, 32)},
}


def _unknown(kind: str, name: str, choices: list[str]) -> ConfigError:
    return unknown_choice(f"unknown {kind}", name, choices)


def get_act_layer(spec: LayerSpec) -> Callable[..., nn.Module] | None:
    """Turn an activation spec into a factory of activation modules.

    Args:
        spec: a module class, a factory, a name (``"relu"``, ``"leaky_relu"`` -- slope
            0.2 as in DCGAN --, ``"tanh"``, ``"sigmoid"``, ``"elu"``, ``"gelu"``,
            ``"silu"``, ``"identity"``) or None.

    Returns:
        A callable that builds the activation with no arguments, or None.

    Example:
        >>> get_act_layer("relu")()
        ReLU()
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        key = spec.lower()
        if key not in _ACTIVATIONS:
            raise _unknown("activation", spec, list(_ACTIVATIONS))
        return _ACTIVATIONS[key]
    if callable(spec):
        return spec
    raise ConfigError(f"activation must be a module class, a factory or a name, got {spec!r}")


def get_norm_layer(spec: LayerSpec, dims: int = 2) -> Callable[..., nn.Module] | None:
    """Turn a normalisation spec into a factory ``f(num_features) -> nn.Module``.

    Args:
        spec: a module class (``nn.BatchNorm2d``), a factory, a name (``"batch"``,
            ``"instance"``, ``"layer"``, ``"group"``) or None.
        dims: 1 for features of shape (N, C), 2 for images (N, C, H, W); picks the
            variant of a named normalisation.

    Returns:
        A callable taking the number of channels, or None.

    Example:
        >>> get_norm_layer("batch", dims=1)(8)
        BatchNorm1d(8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        key = spec.lower()
        if key not in _NORMS:
            raise _unknown("normalisation", spec, list(_NORMS))
        return _NORMS[key][dims]
    if callable(spec):
        return spec
    raise ConfigError(f"normalisation must be a module class, a factory or a name, got {spec!r}")


def make_act(spec: LayerSpec) -> nn.Module | None:
    """Build one activation module from a spec (None gives None)."""
    factory = get_act_layer(spec)
    return None if factory is None else factory()


def make_norm(spec: LayerSpec, channels: int, dims: int = 2) -> nn.Module | None:
    """Build one normalisation module over ``channels`` from a spec (None gives None)."""
    factory = get_norm_layer(spec, dims)
    return None if factory is None else factory(channels)
