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

from ._version import __version__
from .errors import CheckpointError, ConfigError, DataError, GankitError, TrainingError
from .models import Discriminator, Generator
from .presets import Recipe, RecipeSettings, get_preset, list_presets, register_preset
from .tables import layer_table, summary
from .train import Trainer, export_generator, load_checkpoint, load_generator

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
    "export_generator",
    "load_generator",
    "load_checkpoint",
]
