"""A dataset held as one uint8 tensor, normalised to [-1, 1] on access."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from gankit.data.convert import normalize_uint8

__all__ = ["ImageTensorDataset"]


class ImageTensorDataset(Dataset[torch.Tensor]):
    """Images stored as a uint8 tensor (N, C, H, W); items are float images in [-1, 1].

    Items equal torchvision's ``ToTensor()`` + ``Normalize(0.5, 0.5)`` bitwise. For training,
    :class:`gankit.data.BatchLoader` is much faster than a ``DataLoader`` over this dataset.

    Args:
        images: uint8 tensor (N, C, H, W) with C in {1, 3}.
        source: Where the images came from (folder, dataset name), for messages.
        files: Optional source file name of each image.
        labels: Optional int64 class label of each image (class sub-folders, a dataset's
            targets, the hair of ``toy-faces``); None for unlabeled data.
        classes: Optional class names, ``classes[k]`` the name of label ``k``.

    Attributes:
        images: The uint8 tensor.
        source: The source description.
        files: The source file names (empty when unknown).
        labels: The labels, or None (items stay images: read labels here).
        classes: The class names (empty when unknown or unlabeled).

    Example:
        >>> ds = ImageTensorDataset(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
        >>> len(ds), ds[0].shape, ds[0].min().item()
        (2, torch.Size([3, 8, 8]), -1.0)
    """

    def __init__(self, images: torch.Tensor, *, source: str = "",
                 files: Sequence[str] | None = None, labels: torch.Tensor | None = None,
                 classes: Sequence[str] | None = None) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
            raise TypeError("ImageTensorDataset needs a uint8 tensor of shape (N, C, H, W)")
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"ImageTensorDataset needs shape (N, C, H, W) with C 1 or 3, "
                             f"got {tuple(images.shape)}")
        if files is not None and len(files) not in (0, len(images)):
            raise ValueError(f"got {len(files)} file names for {len(images)} images")
        if labels is not None:
            labels = torch.as_tensor(labels)
            if labels.is_floating_point() or labels.dim() != 1 or len(labels) != len(images):
                raise ValueError(f"labels must be one integer per image ({len(images)}), got "
                                 f"{tuple(labels.shape)} {labels.dtype}")
            labels = labels.long()
        self.images = images
        self.source = source
        self.files = list(files or [])
        self.labels = labels
        self.classes = list(classes or [])

    @property
    def num_classes(self) -> int:
        """Number of classes (0 for unlabeled data): the class names, or the largest label + 1."""
        if self.labels is None:
            return 0
        return max(len(self.classes), int(self.labels.max()) + 1 if len(self.labels) else 0)

    def __len__(self) -> int:
        """Number of images."""
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        """The image at ``index`` as float32 (C, H, W) in [-1, 1]."""
        return normalize_uint8(self.images[index])

    @property
    def channels(self) -> int:
        """Channels per image (1 or 3)."""
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        """Side length of the (square) images."""
        return self.images.shape[-1]

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        extra = f", classes={self.num_classes}" if self.labels is not None else ""
        return f"ImageTensorDataset(source={self.source!r}, n={n}, shape=({c}, {h}, {w}){extra})"
