"""Training: the :class:`Trainer`, checkpoints and generator export."""

from .batch import Batch, as_batch
from .callbacks import Callback, TraceLog, tensor_digest
from .checkpoint import atomic_save, load_checkpoint
from .ema import GeneratorEMA
from .export import export_generator, load_generator
from .loggers import Logger, TensorBoardLogger
from .multi import MultiTrainer, extract_member, load_sweep
from .seeding import seed_everything
from .step import ACGANStep, GANStep, StepContext, StepSchedule
from .trainer import Trainer, resolve_device

__all__ = ["Trainer", "resolve_device", "atomic_save", "load_checkpoint", "export_generator", "load_generator",
           "seed_everything", "Batch", "as_batch", "Callback", "TraceLog",
           "tensor_digest", "Logger", "TensorBoardLogger", "GANStep", "ACGANStep", "StepContext", "StepSchedule",
           "GeneratorEMA", "MultiTrainer", "extract_member", "load_sweep"]
