"""Training: the :class:`Trainer`, checkpoints and generator export."""

from .checkpoint import atomic_save, load_checkpoint
from .export import export_generator, load_generator
from .trainer import Trainer, resolve_device

__all__ = ["Trainer", "resolve_device", "atomic_save", "load_checkpoint", "export_generator", "load_generator"]
