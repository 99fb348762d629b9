"""The batch type that travels from the data to the training step: images, optional labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ConfigError

__all__ = ["Batch", "as_batch"]


@dataclass
class Batch:
    """One batch of real data.

    Args:
        images: ``(N, C, H, W)`` float images in [-1, 1].
        labels: ``(N,)`` int64 class labels, or None for unlabeled data.

    Example:
        >>> b = as_batch((torch.zeros(2, 3, 4, 4), torch.tensor([0, 1])))
        >>> b.labels.tolist(), len(b)
        ([0, 1], 2)
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device, *, channels_last: bool = False) -> Batch:
        """The batch on ``device`` (images in channels-last layout when asked)."""
        images = self.images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = None if self.labels is None else self.labels.to(device, non_blocking=True)
        return Batch(images, labels)

    def split(self, parts: int) -> list[Batch]:
        """``parts`` consecutive micro-batches (for gradient accumulation)."""
        images = self.images.chunk(parts)
        labels = [None] * len(images) if self.labels is None else self.labels.chunk(parts)
        return [Batch(i, lab) for i, lab in zip(images, labels)]


def as_batch(obj: Any) -> Batch:
    """Read a batch as data loaders give it: a tensor, ``(images, labels)``, a dict or a Batch.

    Dicts are read at ``image``/``images``/``x`` and ``label``/``labels``/``y``. A tuple's
    second item is taken as labels when it is an integer tensor of one label per image.

    Args:
        obj: what the data yields.

    Returns:
        The :class:`Batch`.

    Raises:
        ConfigError: for anything else.
    """
    if isinstance(obj, Batch):
        return obj
    if isinstance(obj, torch.Tensor):
        return Batch(obj)
    images = labels = None
    if isinstance(obj, (list, tuple)) and obj and isinstance(obj[0], torch.Tensor):
        images = obj[0]
        labels = obj[1] if len(obj) > 1 else None
    elif isinstance(obj, dict):
        images = next((obj[k] for k in ("image", "images", "x") if isinstance(obj.get(k), torch.Tensor)), None)
        labels = next((obj[k] for k in ("label", "labels", "y") if k in obj), None)
    if images is None:
        raise ConfigError(
            f"a data batch must be an image tensor or an (images, labels) pair, got {type(obj).__name__}."
        )
    is_labels = (isinstance(labels, torch.Tensor) and not labels.is_floating_point()
                 and labels.dim() == 1 and labels.shape[0] == images.shape[0])
    return Batch(images, labels if is_labels else None)
