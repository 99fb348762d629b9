"""Loggers: where a :meth:`gankit.Trainer.fit` run reports what it measures.

``metrics.jsonl`` is always written (with an ``out_dir``); a logger sends the same values
to another tool. The :class:`~gankit.train.Trainer` calls, on the main process only:

* :meth:`Logger.log_hparams` once per ``fit`` (every setting of the recipe and the
  trainer's options),
* :meth:`Logger.log_metrics` with every logged value of every step (``loss_d``,
  ``loss_g``, ``d_real``, ... as they appear in ``metrics.jsonl``) and with every
  evaluation (names prefixed ``eval/``),
* :meth:`Logger.log_image` with every sample grid it renders (``samples``, a ``(3, H, W)``
  float tensor in ``[0, 1]``),
* :meth:`Logger.close` when ``fit`` returns or stops.

A logger for another tracker (Weights & Biases, MLflow, ...) overrides these four methods;
``examples/csv_logger.py`` writes CSV in a few lines. Attach loggers with
``Trainer(..., loggers=[...])``, or ``gankit train --tensorboard``.

Example:
    >>> class PrintLosses(Logger):
    ...     def log_metrics(self, metrics, step):
    ...         print(step, metrics.get("loss_d"))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer

__all__ = ["Logger", "TensorBoardLogger", "run_hparams"]


class Logger:
    """Base class of loggers; every method does nothing unless overridden."""

    def setup(self, trainer: Trainer) -> None:
        """Called when :meth:`~gankit.Trainer.fit` starts, before any other method of a fit.

        Args:
            trainer: the trainer (its ``out_dir``, ``recipe`` and ``step`` are set).
        """

    def log_hparams(self, hparams: dict[str, Any]) -> None:
        """Record the run's hyper-parameters (str, int, float, bool or None values)."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Record scalar values at a training step.

        Args:
            metrics: name -> value (NaN for a value a step did not compute, e.g. ``loss_g``
                on a critic-only step).
            step: the step the values belong to.
        """

    def log_image(self, tag: str, image: torch.Tensor, step: int) -> None:
        """Record an image, a ``(3, H, W)`` float tensor in ``[0, 1]`` on the CPU."""

    def close(self) -> None:
        """Flush and release what the logger holds (it may be used again by a later ``fit``)."""


def run_hparams(trainer: Trainer) -> dict[str, Any]:
    """The hyper-parameters of a trainer's run: the recipe's settings and the trainer's options.

    Args:
        trainer: the trainer.

    Returns:
        A flat dictionary with str, int, float, bool or None values.
    """
    from dataclasses import asdict

    out: dict[str, Any] = {"preset": trainer.recipe.name}
    for key, value in asdict(trainer.settings).items():
        out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
    out.update(device=str(trainer.device), precision=trainer.precision, channels_last=trainer.channels_last,
               compile=trainer.compiled, cuda_graph=trainer.cuda_graph, latents=trainer.latents_on,
               data_seed=trainer.data_seed)
    return out


class TensorBoardLogger(Logger):
    """Write scalars, sample grids and hyper-parameters as TensorBoard event files.

    Uses :class:`torch.utils.tensorboard.SummaryWriter` (the ``tensorboard`` package:
    ``pip install gankit[tensorboard]``). Every scalar keeps its name (``loss_d``,
    ``loss_g``, ``eval/fid``, ...); grids are under ``samples``; the hyper-parameters are
    in TensorBoard's HPARAMS tab. View with ``tensorboard --logdir runs/``.

    Args:
        log_dir: the folder of the event files; default ``OUT_DIR/tensorboard`` of the
            trainer (a trainer without ``out_dir`` then needs one given here).
        flush_secs: seconds between writes to disk.
    """

    def __init__(self, log_dir: str | os.PathLike | None = None, *, flush_secs: int = 30) -> None:
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.flush_secs = flush_secs
        self._writer = None
        _summary_writer()  # fail now, in one line, when tensorboard is missing

    def setup(self, trainer: Trainer) -> None:
        if self.log_dir is None:
            if trainer.out_dir is None:
                raise ConfigError("TensorBoardLogger() needs a log_dir when the trainer has no out_dir; "
                                  "give TensorBoardLogger(log_dir=...) or Trainer(out_dir=...).")
            self.log_dir = trainer.out_dir / "tensorboard"

    @property
    def writer(self):
        """The open :class:`~torch.utils.tensorboard.SummaryWriter` (opened on first use)."""
        if self._writer is None:
            if self.log_dir is None:
                raise ConfigError("TensorBoardLogger has no log_dir yet: give one, or attach it to a "
                                  "Trainer with an out_dir.")
            self._writer = _summary_writer()(log_dir=str(self.log_dir), flush_secs=self.flush_secs)
        return self._writer

    def log_hparams(self, hparams: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        values = {k: ("None" if v is None else v) for k, v in hparams.items()}
        for summary in hparams_summary(values, {}):
            self.writer.file_writer.add_summary(summary)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)

    def log_image(self, tag: str, image: torch.Tensor, step: int) -> None:
        self.writer.add_image(tag, image, step, dataformats="CHW")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _summary_writer():
    try:
        import tensorboard  # noqa: F401  -- torch.utils.tensorboard needs it
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("TensorBoard logging needs the tensorboard package: pip install "
                          "'gankit[tensorboard]' (or pip install tensorboard).") from None
    return SummaryWriter
