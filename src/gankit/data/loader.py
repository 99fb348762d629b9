"""Fast, resumable batches straight from a uint8 image tensor."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from typing import Any

import torch

from gankit.data.convert import normalize_uint8
from gankit.data.dataset import ImageTensorDataset
from gankit.errors import DataError

__all__ = ["BatchLoader", "SHUFFLES", "dataloader_epoch_seed", "check_float_range"]

#: The batch orders a :class:`BatchLoader` (and a recipe's ``shuffle`` setting) knows.
SHUFFLES = ("seeded", "dataloader", "none")

# Keep the whole uint8 cache on the GPU when it takes at most this share of free memory.
_DEVICE_SHARE = 0.25


def dataloader_epoch_seed() -> int:
    """Take the two draws an epoch of ``DataLoader(shuffle=True)`` takes from torch's global RNG.

    Creating a ``DataLoader`` iterator draws the workers' base seed (one int64, with or
    without workers); fetching its first batch makes ``RandomSampler`` draw its own seed
    (a second int64), from which the epoch's order is ``torch.randperm(n, generator=g)``.
    Both draws happen before the first batch is returned, so before the loop's latents.

    Returns:
        The ``RandomSampler`` seed of the epoch (the base seed is drawn and discarded).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> seed = dataloader_epoch_seed()
        >>> _ = torch.manual_seed(0)
        >>> loader = torch.utils.data.DataLoader(range(5), shuffle=True)
        >>> [int(b) for b in loader] == torch.randperm(
        ...     5, generator=torch.Generator().manual_seed(seed)).tolist()
        True
    """
    torch.empty((), dtype=torch.int64).random_()  # _BaseDataLoaderIter's base seed
    return int(torch.empty((), dtype=torch.int64).random_().item())  # RandomSampler's seed


# Float images must be normalised to [-1, 1]; a little slack for rounding in user pipelines.
_RANGE_SLACK = 1e-3


def check_float_range(images: torch.Tensor) -> None:
    """Refuse float images that are not in [-1, 1] (or hold NaN or infinity).

    Data in [0, 255] or [0, 1] scaled twice would otherwise train silently on the wrong
    range. The whole tensor is checked in one pass (min and max).

    Args:
        images: float images (N, C, H, W).

    Raises:
        DataError: one line with the range found and how to convert.

    Example:
        >>> check_float_range(torch.zeros(1, 3, 2, 2))
        >>> check_float_range(torch.full((1, 3, 2, 2), 255.0))  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        gankit.errors.DataError: float images must be in [-1, 1], ...
    """
    lo, hi = torch.aminmax(images.detach())
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise DataError("float images hold NaN or infinite values; clean the data (float images "
                        "must be finite and in [-1, 1])")
    if lo < -1 - _RANGE_SLACK or hi > 1 + _RANGE_SLACK:
        hint = ("they look like [0, 255]: use x / 127.5 - 1, or pass the uint8 images"
                if hi > 2 else "rescale them to [-1, 1]")
        raise DataError(f"float images must be in [-1, 1], got values in [{lo:.4g}, {hi:.4g}]; "
                        f"{hint}")


def _epoch_seed(seed: int, epoch: int) -> int:
    digest = hashlib.sha256(f"gankit-batches:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class BatchLoader:
    """Shuffled float batches (B, C, H, W) in [-1, 1] from uint8 images, resumable mid-epoch.

    With ``shuffle="seeded"`` (or True, the default) the order of epoch ``e`` depends only
    on ``(seed, e)``: it comes from a private ``torch.Generator``, so torch's global random
    state is neither used nor changed. With ``shuffle="dataloader"`` each epoch takes from
    torch's global generator exactly the draws that ``DataLoader(dataset, batch_size,
    shuffle=True)`` takes (see :func:`dataloader_epoch_seed`) and uses the same permutation,
    so a loop that draws its latents after it sees the random numbers the original loop
    sees; the epoch's sampler seed is part of :meth:`state_dict`, so resuming mid-epoch
    continues the same order without drawing again. ``shuffle="none"`` (or False) keeps
    the order 0..N-1. Each
    batch is gathered as uint8 and converted to float (on ``device`` when given), bitwise
    equal to torchvision's ``ToTensor`` + ``Normalize(0.5, 0.5)``.

    Iterating runs the current epoch from its current batch, then moves on to the next
    epoch, so ``for batch in loader`` in a loop sees a new order each epoch. ``set_epoch``
    or ``iter_from`` choose where to start, and ``state_dict``/``load_state_dict`` save and
    restore the position for resuming from a checkpoint.

    Args:
        data: An :class:`ImageTensorDataset` or a uint8 tensor (N, C, H, W).
        batch_size: Images per batch.
        shuffle: ``"seeded"``/True, ``"dataloader"`` or ``"none"``/False (see above).
        seed: Seed of the per-epoch permutations (``"seeded"`` only).
        drop_last: Drop the last, smaller batch.
        device: Where batches are returned (default: where ``data`` is).
        pin_memory: Copy batches through pinned memory for faster asynchronous transfer to
            CUDA; default: when ``device`` is CUDA and the images stay on the CPU.
        keep_on_device: Move all images to ``device`` once (default: for CUDA when they take
            at most a quarter of its free memory).
        labels: Also yield labels: a ``(N,)`` integer tensor, or True for the dataset's own
            (:attr:`ImageTensorDataset.labels`); batches are then ``(images, labels)`` pairs.
            None/False (the default): batches are image tensors.

    Example:
        >>> images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
        >>> loader = BatchLoader(images, 4, seed=1)
        >>> len(loader), [tuple(b.shape) for b in loader]
        (3, [(4, 3, 8, 8), (4, 3, 8, 8), (2, 3, 8, 8)])
    """

    def __init__(
        self,
        data: ImageTensorDataset | torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool | str = True,
        seed: int = 0,
        drop_last: bool = False,
        device: torch.device | str | None = None,
        pin_memory: bool | None = None,
        keep_on_device: bool | None = None,
        labels: torch.Tensor | bool | None = None,
    ) -> None:
        images = data.images if isinstance(data, ImageTensorDataset) else data
        if labels is True:
            labels = getattr(data, "labels", None)
            if labels is None:
                raise DataError("labels=True but the data has no labels; load it with labels "
                                "(class sub-folders, load_images(..., labels=True))")
        elif labels is False:
            labels = None
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or not (
            images.dtype == torch.uint8 or images.is_floating_point()
        ):
            raise TypeError("BatchLoader needs an ImageTensorDataset, a uint8 tensor (N, C, H, W) "
                            "or a float tensor (N, C, H, W) already in [-1, 1]")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        n = images.shape[0]
        if n == 0:
            raise DataError("the dataset has no images; check the image folder or dataset")
        if images.is_floating_point():
            check_float_range(images)
        if drop_last and batch_size > n:
            raise DataError(f"the dataset has {n} images, fewer than batch_size {batch_size} "
                            "with drop_last=True; use a smaller batch or more images")
        if isinstance(shuffle, bool):
            shuffle = "seeded" if shuffle else "none"
        if shuffle not in SHUFFLES:
            raise ValueError(f"shuffle must be one of {', '.join(SHUFFLES)} (or a bool), "
                             f"got {shuffle!r}")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._sampler_seed: tuple[int, int] | None = None  # (epoch, seed), "dataloader" only
        self.seed = seed
        self.drop_last = drop_last
        self.device = torch.device(device) if device is not None else images.device
        if keep_on_device is None:
            keep_on_device = self.device.type == "cuda" and _fits_on(images, self.device)
        if keep_on_device and images.device != self.device:
            images = images.to(self.device)
        self.images = images
        if labels is not None:
            labels = torch.as_tensor(labels)
            if labels.is_floating_point() or labels.dim() != 1 or len(labels) != n:
                raise DataError(f"labels must be one integer per image ({n}), got {tuple(labels.shape)}")
            labels = labels.long().to(images.device)
        self.labels = labels
        on_host = images.device.type == "cpu"
        if pin_memory is None:
            pin_memory = on_host and self.device.type == "cuda"
        self.pin_memory = bool(pin_memory) and on_host and self.device.type != "cpu"
        self._epoch = 0
        self._batch = 0

    def __len__(self) -> int:
        """Batches per epoch."""
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_images(self) -> int:
        """Number of images in the data."""
        return self.images.shape[0]

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from."""
        return self._epoch

    @property
    def batch_index(self) -> int:
        """Index within its epoch of the next batch."""
        return self._batch

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Chooses where the next iteration starts.

        Args:
            epoch: Epoch number (any integer >= 0); fixes the order with ``seed``.
            start_batch: First batch to yield, 0 <= start_batch <= len(self).

        Example:
            >>> loader.set_epoch(3, start_batch=10)  # doctest: +SKIP
        """
        if epoch < 0 or not 0 <= start_batch <= len(self):
            # DataError is a ValueError: one line, also when a resumed run's data changed.
            raise DataError(f"cannot start epoch {epoch} at batch {start_batch}: this data has "
                            f"{len(self)} batches of {self.batch_size} of {self.num_images} images "
                            "(need epoch >= 0 and 0 <= start_batch <= batches); a checkpoint of "
                            "other data or another batch size? Resume with the same data and batch "
                            "size")
        self._epoch, self._batch = epoch, start_batch

    def permutation(self, epoch: int) -> torch.Tensor:
        """The order of the images in an epoch.

        Args:
            epoch: Epoch number.

        Returns:
            int64 CPU tensor: a permutation of ``0..N-1`` (the identity without shuffle).

        Example:
            >>> BatchLoader(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), 2, shuffle=False
            ...             ).permutation(0)
            tensor([0, 1, 2, 3])
        """
        n = self.images.shape[0]
        if self.shuffle == "none":
            return torch.arange(n)
        if self.shuffle == "dataloader":
            if self._sampler_seed is None or self._sampler_seed[0] != epoch:
                raise DataError(f"the order of epoch {epoch} is drawn from torch's global RNG "
                                "when the epoch starts; iterate the loader from the epoch's "
                                "first batch, or restore a state_dict saved in that epoch")
            seed = self._sampler_seed[1]
        else:
            seed = _epoch_seed(self.seed, epoch)
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))

    def iter_from(self, start_batch: int, epoch: int | None = None) -> Iterator[torch.Tensor]:
        """Iterates an epoch starting at batch ``start_batch`` (for resuming mid-epoch).

        Args:
            start_batch: First batch to yield.
            epoch: Epoch to run; default the current one.

        Returns:
            An iterator over batches ``start_batch .. len(self) - 1`` of that epoch.

        Example:
            >>> tail = list(loader.iter_from(5, epoch=2))  # doctest: +SKIP
        """
        self.set_epoch(self._epoch if epoch is None else epoch, start_batch)
        return iter(self)

    def __iter__(self) -> Iterator[Any]:
        """Yields the rest of the current epoch, then advances to the next epoch."""
        return self._run(self._epoch, self._batch)

    def _run(self, epoch: int, start: int) -> Iterator[torch.Tensor]:
        if self.shuffle == "dataloader" and start == 0:
            self._sampler_seed = (epoch, dataloader_epoch_seed())
        order = self.permutation(epoch)
        if self.images.device.type != "cpu":
            order = order.to(self.images.device)
        count = len(self)
        for index in range(start, count):
            rows = order[index * self.batch_size:(index + 1) * self.batch_size]
            batch = self._gather(rows)
            if self.labels is not None:
                batch = (batch, self.labels.index_select(0, rows).to(self.device))
            # The position moves before the batch is handed over: a checkpoint taken after
            # using it resumes at the following batch (or at the next epoch).
            if index + 1 < count:
                self._epoch, self._batch = epoch, index + 1
            else:
                self._epoch, self._batch = epoch + 1, 0
            yield batch
        if start >= count:
            self._epoch, self._batch = epoch + 1, 0

    def _gather(self, rows: torch.Tensor) -> torch.Tensor:
        if self.pin_memory:
            shape = (rows.shape[0], *self.images.shape[1:])
            staging = torch.empty(shape, dtype=self.images.dtype, pin_memory=True)
            torch.index_select(self.images, 0, rows, out=staging)
            batch = staging.to(self.device, non_blocking=True)
        else:
            batch = self.images.index_select(0, rows).to(self.device)
        # float images are taken as already normalised; uint8 ones are normalised here
        return batch if batch.is_floating_point() else normalize_uint8(batch)

    def state_dict(self) -> dict[str, Any]:
        """The position to resume from, for checkpoints.

        Returns:
            ``{"seed", "epoch", "batch", "num_images", "batch_size", "shuffle",
            "sampler_seed"}`` (``sampler_seed``: ``[epoch, seed]`` of the current
            ``"dataloader"`` epoch, or None).

        Example:
            >>> loader.load_state_dict(loader.state_dict())  # doctest: +SKIP
        """
        return {"seed": self.seed, "epoch": self._epoch, "batch": self._batch,
                "num_images": self.num_images, "batch_size": self.batch_size,
                "shuffle": self.shuffle,
                "sampler_seed": None if self._sampler_seed is None else list(self._sampler_seed)}

    def set_sampler_seed(self, epoch: int, seed: int) -> None:
        """Fix the ``"dataloader"`` order of ``epoch`` (as if the epoch had drawn ``seed``).

        Args:
            epoch: the epoch.
            seed: its ``RandomSampler`` seed (see :func:`dataloader_epoch_seed`).
        """
        self._sampler_seed = (int(epoch), int(seed))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a position saved by :meth:`state_dict` (also the seed).

        Args:
            state: A dict from :meth:`state_dict`.

        Raises:
            DataError: When it was saved for a different number of images or batch size, so
                the same batches cannot be reproduced.
        """
        if (state.get("num_images"), state.get("batch_size")) != (self.num_images,
                                                                  self.batch_size):
            raise DataError(f"the saved data position is for {state.get('num_images')} images "
                            f"in batches of {state.get('batch_size')}, but this loader has "
                            f"{self.num_images} in batches of {self.batch_size}; use the same "
                            "dataset and batch size to resume")
        self.seed = int(state["seed"])
        sampler = state.get("sampler_seed")
        self._sampler_seed = None if sampler is None else (int(sampler[0]), int(sampler[1]))
        self.set_epoch(int(state["epoch"]), int(state["batch"]))


def _fits_on(images: torch.Tensor, device: torch.device) -> bool:
    if images.device == device:
        return True
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except (RuntimeError, AssertionError):
        return False
    return images.numel() * images.element_size() <= _DEVICE_SHARE * free
