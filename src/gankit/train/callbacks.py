"""Callbacks: objects that watch a :meth:`gankit.Trainer.fit` run and write what they see.

A callback subclasses :class:`Callback` and overrides the events it needs; every event
receives the trainer, whose public attributes (``step``, ``epoch``, ``generator``,
``step_latents``, ``history``, ...) describe where training stands. A callback that keeps
state returns it from :meth:`Callback.state_dict`; the trainer saves it in every checkpoint
under the callback's ``name`` and gives it back to :meth:`Callback.load_state_dict` on resume.

Example:
    >>> class CountSteps(Callback):
    ...     name = "count_steps"
    ...     def __init__(self):
    ...         self.seen = 0
    ...     def on_step_end(self, trainer, batch, logs):
    ...         self.seen += 1
    ...     def state_dict(self):
    ...         return {"seen": self.seen}
    ...     def load_state_dict(self, state):
    ...         self.seen = state["seen"]
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer

__all__ = ["Callback", "TraceLog", "tensor_digest"]


class Callback:
    """Base class of trainer callbacks; every event does nothing unless overridden.

    Attributes:
        name: the callback's slot in checkpoints (unique among a trainer's callbacks).
    """

    name: str = "callback"

    def on_fit_start(self, trainer: Trainer) -> None:
        """Called when :meth:`~gankit.Trainer.fit` starts (also when it resumes)."""

    def on_epoch_start(self, trainer: Trainer) -> None:
        """Called before the first batch of every epoch (``trainer.epoch`` is its index)."""

    def on_step_end(self, trainer: Trainer, batch: Any, logs: dict[str, Any]) -> None:
        """Called after every training step.

        Args:
            trainer: the trainer (``trainer.step`` already counts this step;
                ``trainer.step_latents`` holds the latents the step drew, in order).
            batch: the real batch the step used (a :class:`~gankit.train.Batch`).
            logs: the step's logged values (0-d tensors on the device, or None).
        """

    def on_epoch_end(self, trainer: Trainer) -> None:
        """Called after the last batch of every epoch (``trainer.epoch`` counts it)."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """Called when :meth:`~gankit.Trainer.fit` returns or stops."""

    def state_dict(self) -> dict[str, Any]:
        """The callback's state for checkpoints (tensors and Python primitives)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes (equal digests: bitwise equal tensors).

    Args:
        tensor: any tensor (moved to the CPU and made contiguous first).

    Returns:
        The hex digest.

    Example:
        >>> tensor_digest(torch.zeros(2)) == tensor_digest(torch.zeros(2))
        True
    """
    t = tensor.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}:{tuple(t.shape)}:".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class TraceLog(Callback):
    """Write one JSON line per step: the digests of its real batch and of every latent batch.

    Two runs with equal traces saw bitwise the same data and random latents, step for step;
    comparing a gankit run's trace with one computed in the original code
    (:func:`tensor_digest` of each batch and each ``torch.randn`` result) shows where two runs
    part. ``gankit train --trace FILE`` attaches it.

    Args:
        path: the ``.jsonl`` file (appended to; a resumed run continues it).
    """

    name = "trace"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def on_step_end(self, trainer: Trainer, batch: Any, logs: dict[str, Any]) -> None:
        if not trainer.is_main:
            return
        record = {"step": trainer.step, "epoch": trainer.epoch,
                  "batch": tensor_digest(batch.images),
                  "latents": [tensor_digest(z) for z in trainer.step_latents]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
