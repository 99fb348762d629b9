"""gankit: composable, exact and fast GAN components for PyTorch.

The public API, re-exported here:

* building blocks: :mod:`gankit.blocks`, :mod:`gankit.models`, :mod:`gankit.init`;
* registered presets: :func:`get_preset`, :func:`list_presets`, :func:`register_preset`
  (and ``from gankit.presets import dcgan_task1, wgan_task2``);
* layer tables: :func:`summary`;
* training: :class:`Trainer`, :func:`load_generator`; losses, constraints and optimizer
  presets live in :mod:`gankit.losses`, :mod:`gankit.constraints`, :mod:`gankit.optim`.

Example:
    >>> import torch, gankit
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> recipe = gankit.get_preset("dcgan_task1")
    >>> recipe.generator(torch.randn(4, recipe.z_dim)).shape
    torch.Size([4, 3, 64, 64])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import CheckpointError, ConfigError, DataError, GankitError, TrainingError

if TYPE_CHECKING:
    from .models import Discriminator, Generator
    from .presets import Recipe, RecipeSettings, get_preset, list_presets, register_preset
    from .tables import layer_table, summary
    from .train import MultiTrainer, Trainer, export_generator, load_checkpoint, load_generator

# The names below are imported on first use (PEP 562), so that ``import gankit`` -- and the
# ``gankit`` command, whose first Ctrl-C must not land in a traceback -- does not import
# torch before it is needed. ``gankit.Trainer is gankit.train.Trainer`` all the same.
_LAZY = {
    "Generator": "models",
    "Discriminator": "models",
    "Recipe": "presets",
    "RecipeSettings": "presets",
    "get_preset": "presets",
    "list_presets": "presets",
    "register_preset": "presets",
    "layer_table": "tables",
    "summary": "tables",
    "Trainer": "train",
    "MultiTrainer": "train",
    "export_generator": "train",
    "load_generator": "train",
    "load_checkpoint": "train",
}
_SUBMODULES = frozenset({
    "blocks", "cli", "constraints", "data", "errors", "init", "layers", "losses", "metrics",
    "models", "optim", "presets", "signals", "tables", "train",
})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'gankit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


__all__ = [
    "__version__",
    "GankitError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "TrainingError",
    "Generator",
    "Discriminator",
    "Recipe",
    "RecipeSettings",
    "get_preset",
    "list_presets",
    "register_preset",
    "layer_table",
    "summary",
    "Trainer",
    "MultiTrainer",
    "export_generator",
    "load_generator",
    "load_checkpoint",
]
