"""Weight-initialisation schemes.

Each scheme is a function that initialises a module in place and returns it. Schemes
visit ``module.modules()`` in registration order, so the random draws happen in the
same order as the original code's ``model.apply(weights_init)`` (only leaf layers are
touched, and leaves are visited in the same order by both).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from .errors import unknown_choice

__all__ = ["dcgan_normal_init_", "default_init_", "get_init", "INIT_SCHEMES"]


@torch.no_grad()
def dcgan_normal_init_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """The DCGAN / ML2020 initialisation (SPEC.md).

    Every convolution and transposed convolution weight ~ N(0, ``std``) (biases keep
    PyTorch's default); every BatchNorm weight ~ N(1, ``std``) and bias 0. Linear layers
    keep PyTorch's default initialisation.

    Args:
        module: the network to initialise in place.
        std: standard deviation of the normal draws.

    Returns:
        ``module``.

    Example:
        >>> net = dcgan_normal_init_(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)))
    """
    for m in module.modules():
        if isinstance(m, _ConvNd):
            m.weight.normal_(0.0, std)
        elif isinstance(m, _BatchNorm) and m.affine:
            m.weight.normal_(1.0, std)
            m.bias.zero_()
    return module


def default_init_(module: nn.Module) -> nn.Module:
    """Keep PyTorch's default initialisation (what each layer drew when it was built).

    Args:
        module: the network.

    Returns:
        ``module``, unchanged.
    """
    return module


#: Named initialisation schemes, for configs that give a name.
INIT_SCHEMES: dict[str, Callable[[nn.Module], nn.Module]] = {
    "dcgan": dcgan_normal_init_,
    "default": default_init_,
}


def get_init(name: str | Callable[[nn.Module], nn.Module] | None) -> Callable[[nn.Module], nn.Module]:
    """Return an initialisation scheme by name (``"dcgan"``, ``"default"``) or pass a callable through.

    Args:
        name: a scheme name, a callable, or None (PyTorch's default).

    Returns:
        A function that initialises a module in place and returns it.
    """
    if name is None:
        return default_init_
    if callable(name):
        return name
    if name not in INIT_SCHEMES:
        raise unknown_choice("unknown init scheme", name, INIT_SCHEMES)
    return INIT_SCHEMES[name]
