"""Clippers and Lipschitz tools for discriminators / critics.

* :class:`WeightClipper` and :func:`clip_weights_` -- the WGAN weight clipping of the
  report's task two: every parameter (BatchNorm affine ones included) is clamped to
  ``[-c, c]`` in place after each critic step.
* :func:`spectral_norm_` / :func:`remove_spectral_norm_` -- wrap (unwrap) every
  convolution and linear layer with PyTorch's spectral-norm parametrization.
* :func:`weight_spectral_norms` -- the largest singular value of each such weight, for
  monitoring how far a critic is from 1-Lipschitz.

Example:
    >>> import torch.nn as nn
    >>> critic = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    >>> _ = clip_weights_(critic, 0.01)
    >>> all(bool((p.abs() <= 0.01).all()) for p in critic.parameters())
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from gankit.errors import ConfigError

__all__ = [
    "WeightClipper",
    "clip_weights_",
    "spectral_norm_",
    "remove_spectral_norm_",
    "weight_spectral_norms",
]

# Layers whose ``weight`` spectral normalisation applies to (Embedding only on request).
_SN_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)
_CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _check_clip_value(clip_value: float) -> float:
    if (
        isinstance(clip_value, bool)
        or not isinstance(clip_value, (int, float))
        or not math.isfinite(clip_value)
        or clip_value <= 0
    ):
        raise ConfigError(f"clip_value must be a finite number > 0, got {clip_value!r}")
    return float(clip_value)


@dataclass(frozen=True)
class WeightClipper:
    """Clamp every parameter of a module to ``[-clip_value, clip_value]`` in place.

    Same effect as the WGAN loop ``for p in D.parameters(): p.data.clamp_(-c, c)``:
    BatchNorm affine parameters are clamped too, and values already inside the range
    are left bit-for-bit untouched.

    Args:
        clip_value: The bound ``c`` (0.01 in the WGAN paper); must be > 0.

    Example:
        >>> import torch.nn as nn
        >>> clip = WeightClipper(0.01)
        >>> bn = nn.BatchNorm2d(3)  # weight starts at 1.0
        >>> round(clip(bn).weight.max().item(), 6)
        0.01
    """

    clip_value: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "clip_value", _check_clip_value(self.clip_value))

    def __call__(self, module: nn.Module) -> nn.Module:
        """Clamp the parameters of ``module`` in place.

        Args:
            module: The module (all its submodules' parameters included).

        Returns:
            The same module.
        """
        c = self.clip_value
        # no_grad: this is a projection step after the optimizer, not part of the graph.
        with torch.no_grad():
            for p in module.parameters():
                p.clamp_(-c, c)
        return module


def clip_weights_(module: nn.Module, clip_value: float) -> nn.Module:
    """Functional form of :class:`WeightClipper`.

    Args:
        module: The module whose parameters are clamped in place.
        clip_value: The bound ``c``; must be > 0.

    Returns:
        The same module.

    Example:
        >>> import torch.nn as nn
        >>> lin = clip_weights_(nn.Linear(3, 3), 1e-3)
        >>> bool((lin.weight.abs() <= 1e-3).all())
        True
    """
    return WeightClipper(clip_value)(module)


def _has_spectral_norm(module: nn.Module) -> bool:
    if not parametrize.is_parametrized(module, "weight"):
        return False
    # The class is private in torch; match by name to stay version-tolerant.
    return any(type(p).__name__ == "_SpectralNorm" for p in module.parametrizations["weight"])


def _sn_targets(module: nn.Module, include_embeddings: bool) -> list[nn.Module]:
    kinds = _SN_LAYERS + ((nn.Embedding,) if include_embeddings else ())
    return [m for m in module.modules() if isinstance(m, kinds)]


def spectral_norm_(
    module: nn.Module,
    *,
    n_power_iterations: int = 1,
    eps: float = 1e-12,
    include_embeddings: bool = False,
) -> nn.Module:
    """Apply spectral normalisation to every conv / linear layer of a module, in place.

    Uses ``torch.nn.utils.parametrizations.spectral_norm`` on each ``Conv1d/2d/3d``,
    ``ConvTranspose1d/2d/3d`` and ``Linear`` submodule (and ``Embedding`` when asked).
    The weight is reshaped to 2-D with its output dimension first: dim 0 for
    convolutions and linear layers, but **dim 1 for ConvTranspose**, whose weight is
    laid out ``(in, out, *kernel)``. Layers already spectrally normalised are skipped,
    so the call is idempotent. Registering draws the power-iteration vectors from the
    global RNG, and each forward pass in train mode runs ``n_power_iterations`` more.

    Args:
        module: The module to modify.
        n_power_iterations: Power iterations per training forward pass.
        eps: Numerical floor used when normalising the power-iteration vectors.
        include_embeddings: Also wrap ``nn.Embedding`` layers (class-conditional critics).

    Returns:
        The same module.

    Raises:
        ConfigError: If ``n_power_iterations`` < 1 or ``eps`` <= 0.

    Example:
        >>> import torch.nn as nn
        >>> d = spectral_norm_(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 1)))
        >>> sorted(weight_spectral_norms(d))
        ['0', '2']
    """
    if (
        isinstance(n_power_iterations, bool)
        or not isinstance(n_power_iterations, int)
        or (n_power_iterations < 1)
    ):
        raise ConfigError(f"n_power_iterations must be an int >= 1, got {n_power_iterations!r}")
    if not eps > 0:
        raise ConfigError(f"eps must be > 0, got {eps!r}")
    for layer in _sn_targets(module, include_embeddings):
        if not _has_spectral_norm(layer):
            # dim=None lets torch pick 1 for ConvTranspose and 0 otherwise.
            spectral_norm(layer, n_power_iterations=n_power_iterations, eps=eps)
    return module


def remove_spectral_norm_(module: nn.Module) -> nn.Module:
    """Undo :func:`spectral_norm_`: every normalised weight becomes a plain parameter again.

    The plain weight keeps the current normalised value ``W / sigma``, so the module
    computes the same function as before the call (in eval mode).

    Args:
        module: The module to modify in place.

    Returns:
        The same module.

    Raises:
        ConfigError: If a weight carries spectral norm together with another
            parametrization (removing one alone is not supported by torch).

    Example:
        >>> import torch.nn as nn
        >>> lin = remove_spectral_norm_(spectral_norm_(nn.Linear(4, 4)))
        >>> type(lin.weight).__name__
        'Parameter'
    """
    for layer in module.modules():
        if not _has_spectral_norm(layer):
            continue
        if len(layer.parametrizations["weight"]) != 1:
            raise ConfigError(
                f"cannot remove spectral norm from {type(layer).__name__}: its weight "
                "has other parametrizations too; remove them with torch's parametrize"
            )
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return module


def _as_matrix(layer: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    # The reshape the spectral-norm parametrization uses: output dim first, rest flattened.
    if isinstance(layer, _CONV_TRANSPOSE):
        weight = weight.transpose(0, 1)
    return weight.flatten(1)


def _effective_weight(layer: nn.Module) -> torch.Tensor:
    if not parametrize.is_parametrized(layer, "weight"):
        return layer.weight.detach()
    # Reading ``layer.weight`` in train mode would run a power iteration and move the
    # u/v buffers; evaluating the parametrizations in eval mode only reads them.
    chain = layer.parametrizations["weight"]
    modes = [(m, m.training) for m in chain.modules()]
    chain.eval()
    try:
        return layer.weight.detach()
    finally:
        for m, mode in modes:
            m.training = mode


@torch.no_grad()
def weight_spectral_norms(
    module: nn.Module, *, include_embeddings: bool = False
) -> dict[str, float]:
    """Exact largest singular value of the effective weight of each conv / linear layer.

    The weight is reshaped to 2-D the way :func:`spectral_norm_` does (output dim
    first; dim 1 for ConvTranspose) and its spectral norm computed with
    ``torch.linalg.matrix_norm(ord=2)``. With spectral norm applied the effective
    weight is the normalised one, so the values approach 1 as training runs power
    iterations. Note a conv layer's operator norm can differ from this matrix norm;
    this is the quantity spectral norm controls.

    Args:
        module: The module to inspect.
        include_embeddings: Also report ``nn.Embedding`` layers.

    Returns:
        ``{qualified_name: sigma}`` for each layer, in registration order.

    Example:
        >>> import torch, torch.nn as nn
        >>> lin = nn.Linear(2, 2, bias=False)
        >>> _ = lin.weight.data.copy_(torch.diag(torch.tensor([3.0, 0.5])))
        >>> weight_spectral_norms(lin)
        {'': 3.0}
    """
    kinds = _SN_LAYERS + ((nn.Embedding,) if include_embeddings else ())
    out: dict[str, float] = {}
    for name, layer in module.named_modules():
        if isinstance(layer, kinds):
            matrix = _as_matrix(layer, _effective_weight(layer).float())
            out[name] = float(torch.linalg.matrix_norm(matrix, ord=2))
    return out
