"""Image plumbing for metrics: value ranges, channels, named resizers and batching.

gankit's convention for images entering a feature extractor is float ``(N, C, H, W)``
in ``[-1, 1]`` (what gankit generators produce through ``tanh``) with ``C`` 1 or 3.
:func:`normalize_images` maps other ranges (``(0, 1)``, uint8 ``[0, 255]``) onto it.

Resizers are named, so a metric result can say exactly how images were resized:

* ``bilinear-antialias`` -- ``F.interpolate(mode="bilinear", antialias=True)``.
* ``bicubic-antialias`` -- ``F.interpolate(mode="bicubic", antialias=True)``, clamped.
* ``nearest`` -- ``F.interpolate(mode="nearest-exact")``.
* ``none`` -- no resizing (the extractor accepts any size).

Example:
    >>> import torch
    >>> x = normalize_images(torch.zeros(2, 1, 8, 8), value_range=(0.0, 1.0))
    >>> tuple(resize_images(to_rgb(x), 16, "bilinear-antialias").shape), float(x.min())
    ((2, 3, 16, 16), -1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gankit.errors import ConfigError, DataError

__all__ = [
    "RESIZERS",
    "normalize_images",
    "to_rgb",
    "resize_images",
    "iter_image_batches",
    "ImageSource",
]

RESIZERS = ("bilinear-antialias", "bicubic-antialias", "nearest", "none")

#: What metrics accept as images: a tensor, an iterable of batches (or of ``(images, ...)``
#: tuples, as a DataLoader yields), or a callable ``fn(batch_size) -> images`` (a sampler).
ImageSource = Tensor | Iterable[Any] | Callable[[int], Tensor]


def normalize_images(images: Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> Tensor:
    """Maps images to float32 in ``[-1, 1]``.

    Args:
        images: ``(N, C, H, W)`` tensor; uint8 tensors are taken as ``[0, 255]`` whatever
            ``value_range`` says.
        value_range: ``(low, high)`` of the float input, e.g. ``(-1, 1)`` or ``(0, 1)``.

    Returns:
        Float32 tensor in ``[-1, 1]`` (values outside the range are clamped).

    Example:
        >>> normalize_images(torch.tensor([[[[0, 255]]]], dtype=torch.uint8)).tolist()
        [[[[-1.0, 1.0]]]]
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise DataError(f"images must be a (N, C, H, W) tensor, got {shape}")
    if images.dtype == torch.uint8:
        low, high = 0.0, 255.0
    else:
        low, high = float(value_range[0]), float(value_range[1])
        if not high > low:
            raise ConfigError(f"value_range must be (low, high) with high > low, got {value_range}")
    x = images.float()
    if (low, high) != (-1.0, 1.0):
        x = (x - low) * (2.0 / (high - low)) - 1.0
    return x.clamp(-1.0, 1.0)


def to_rgb(images: Tensor) -> Tensor:
    """Repeats a single channel to three; passes three-channel images through.

    Args:
        images: ``(N, C, H, W)`` with ``C`` 1 or 3.

    Returns:
        ``(N, 3, H, W)`` tensor.

    Example:
        >>> to_rgb(torch.zeros(1, 1, 2, 2)).shape
        torch.Size([1, 3, 2, 2])
    """
    if images.shape[1] == 3:
        return images
    if images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    raise DataError(
        f"images have {images.shape[1]} channels; feature extractors take 1 (grey) or 3 (RGB)"
    )


def resize_images(images: Tensor, size: int | None, resizer: str) -> Tensor:
    """Resizes images to ``size x size`` with a named resizer.

    Args:
        images: ``(N, C, H, W)`` float images in ``[-1, 1]``.
        size: Target side; ``None`` leaves images as they are.
        resizer: One of :data:`RESIZERS`.

    Returns:
        The resized images (the input itself when the size already matches).

    Example:
        >>> resize_images(torch.zeros(1, 3, 4, 4), 8, "nearest").shape
        torch.Size([1, 3, 8, 8])
    """
    if resizer not in RESIZERS:
        raise ConfigError(f"unknown resizer {resizer!r}; choose one of {', '.join(RESIZERS)}")
    if size is None or resizer == "none" or tuple(images.shape[-2:]) == (size, size):
        return images
    if resizer == "nearest":
        return F.interpolate(images, size=(size, size), mode="nearest-exact")
    mode = resizer.split("-")[0]
    out = F.interpolate(images, size=(size, size), mode=mode, align_corners=False, antialias=True)
    # Bicubic overshoots at edges; keep the documented [-1, 1] range.
    return out.clamp(-1.0, 1.0) if mode == "bicubic" else out


def _first_tensor(item: Any) -> Tensor:
    """The image tensor of a batch: the batch itself or the first entry of a tuple / dict."""
    if isinstance(item, Tensor):
        return item
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], Tensor):
        return item[0]
    if isinstance(item, dict):
        for key in ("image", "images", "img"):
            if isinstance(item.get(key), Tensor):
                return item[key]
    raise DataError(
        f"cannot find images in a batch of type {type(item).__name__}; yield tensors or "
        "(images, labels) tuples"
    )


def _sample(sampler: Callable[[int], Tensor], n: int) -> Tensor:
    # Metrics never backpropagate into the generator; no_grad keeps sampling cheap.
    with torch.no_grad():
        return sampler(n)


def iter_image_batches(
    source: ImageSource, batch_size: int = 64, num_samples: int | None = None
) -> Iterator[Tensor]:
    """Yields image batches from a tensor, an iterable of batches or a sampler.

    Args:
        source: ``(N, C, H, W)`` tensor, iterable of batches (a batch may be a tensor, a
            ``(images, labels)`` tuple or a dict with an ``"image"`` key; a single
            ``(C, H, W)`` image counts as a batch of one), or ``fn(n) -> (n, C, H, W)``.
        batch_size: Rows per batch for tensors and samplers.
        num_samples: Stop after exactly this many images; required for samplers.

    Yields:
        ``(n, C, H, W)`` tensors whose sizes add up to ``num_samples`` (or to everything).

    Raises:
        DataError: the source runs out before ``num_samples`` images.

    Example:
        >>> [b.shape[0] for b in iter_image_batches(torch.zeros(5, 3, 2, 2), 2)]
        [2, 2, 1]
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if num_samples is not None and num_samples < 1:
        raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
    if isinstance(source, Tensor):
        batches: Iterable[Any] = torch.split(source[:num_samples], batch_size)
    elif callable(source):
        if num_samples is None:
            raise ConfigError("sampling from a generator needs num_samples (e.g. 10000)")
        batches = (
            _sample(source, min(batch_size, num_samples - i))
            for i in range(0, num_samples, batch_size)
        )
    else:
        batches = source
    seen = 0
    for item in batches:
        images = _first_tensor(item)
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if num_samples is not None:
            images = images[: num_samples - seen]
        if images.shape[0] == 0:
            continue
        seen += images.shape[0]
        yield images
        if num_samples is not None and seen >= num_samples:
            return
    if num_samples is not None and seen < num_samples:
        raise DataError(
            f"the image source ran out after {seen} images but num_samples={num_samples}; "
            "lower num_samples or give more images"
        )
