"""Exact conversions between the uint8 image cache and normalised float images.

The float images must be bitwise equal to torchvision's
``Compose([Resize(...), ToTensor(), Normalize((0.5,) * C, (0.5,) * C)])``. ``ToTensor``
computes ``u8.float().div(255)`` and ``Normalize`` computes ``sub(mean).div(std)``; on the
CPU we run exactly those operations in that order. CUDA turns a division by a scalar into a
multiplication by its reciprocal, which rounds differently for about half of the 256 byte
values, so off the CPU we look the values up in a 256-entry table computed on the CPU with
the same operations instead.
"""

from __future__ import annotations

import torch

__all__ = ["normalize_uint8", "denormalize", "rgb_to_gray_uint8"]

_LUTS: dict[torch.device, torch.Tensor] = {}


def _cpu_normalize(images: torch.Tensor) -> torch.Tensor:
    # In-place after the first (copying) op: same values as the out-of-place chain, less memory.
    return images.to(torch.float32).div_(255).sub_(0.5).div_(0.5)


def _lut(device: torch.device) -> torch.Tensor:
    lut = _LUTS.get(device)
    if lut is None:
        lut = _cpu_normalize(torch.arange(256, dtype=torch.uint8)).to(device)
        _LUTS[device] = lut
    return lut


def normalize_uint8(images: torch.Tensor) -> torch.Tensor:
    """Turns uint8 images in [0, 255] into float32 images in [-1, 1].

    The result is bitwise equal to torchvision's ``ToTensor()`` followed by
    ``Normalize(0.5, 0.5)`` on every device.

    Args:
        images: uint8 tensor of any shape, e.g. (C, H, W) or (B, C, H, W), on any device.

    Returns:
        A float32 tensor of the same shape and device with values ``(x / 255 - 0.5) / 0.5``.

    Example:
        >>> normalize_uint8(torch.tensor([0, 255], dtype=torch.uint8))
        tensor([-1.,  1.])
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize_uint8 expects a uint8 tensor, got {images.dtype}")
    if images.device.type == "cpu":
        return _cpu_normalize(images)
    return _lut_normalize(images)


def _lut_normalize(images: torch.Tensor) -> torch.Tensor:
    lut = _lut(images.device)
    flat = images.reshape(-1).to(torch.int32)
    return lut.index_select(0, flat).view(images.shape)


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Turns float images in [-1, 1] back into uint8 images (rounded, clamped).

    Args:
        images: float tensor with values nominally in [-1, 1].

    Returns:
        A uint8 tensor of the same shape; the inverse of :func:`normalize_uint8` on its outputs.

    Example:
        >>> x = torch.randint(0, 256, (3, 4, 4), dtype=torch.uint8)
        >>> bool((denormalize(normalize_uint8(x)) == x).all())
        True
    """
    return images.detach().float().mul(127.5).add(127.5).round().clamp(0, 255).to(torch.uint8)


def rgb_to_gray_uint8(images: torch.Tensor) -> torch.Tensor:
    """Converts uint8 RGB images (..., 3, H, W) to one channel exactly as PIL's ``convert('L')``.

    PIL uses the ITU-R 601-2 luma weights in 16-bit fixed point with rounding; we use the same
    integer arithmetic so a generated image matches what PIL would give for the same RGB file.

    Args:
        images: uint8 tensor whose third-from-last dimension has size 3.

    Returns:
        A uint8 tensor with that dimension of size 1.

    Example:
        >>> rgb_to_gray_uint8(torch.full((3, 2, 2), 255, dtype=torch.uint8)).shape
        torch.Size([1, 2, 2])
    """
    r, g, b = images.to(torch.int32).unbind(-3)
    gray = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16
    return gray.to(torch.uint8).unsqueeze(-3)
