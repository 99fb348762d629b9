"""MS-SSIM diversity: the mean multi-scale SSIM of random pairs of generated images.

Odena et al. (2017) and PGGAN (Karras et al. 2018) measure how varied a generator's
samples are by the average MS-SSIM (Wang et al. 2003) between random pairs of them:
1 means the pairs are identical (collapse), lower means more diverse. The MS-SSIM itself
is torchmetrics' ``multiscale_structural_similarity_index_measure`` (not rewritten here),
on 8-bit images scaled to ``[0, 1]`` (``data_range=1``), with its defaults: Gaussian
window of 11 pixels and sigma 1.5, ``k1=0.01``, ``k2=0.03``, negative terms clipped to 0
(``normalize="relu"``, as PGGAN's and MMGeneration's code clip them).

**Small images.** Wang's five scales halve the image four times; torchmetrics needs the
11-pixel window to fit at the coarsest scale, so its five standard weights
``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)`` work from 176x176 up. For smaller images
gankit keeps the standard window and drops the coarsest scales instead (it does not
shrink the window): it uses the most scales (at most 5) whose coarsest one is at least
as wide as the window, and the first that many weights renormalised to sum to 1.
That is 2 scales for 32x32 (32, 16), 3 for 64x64 (64, 32, 16), 4 for 128x128. Images
narrower than 22 pixels (two scales of an 11-pixel window) are refused. PGGAN's own
code instead shrinks the window at coarse scales; MS-SSIMs of small images are therefore
comparable only among runs that used the same settings, which the evaluation records.

Example:
    >>> import torch
    >>> same = torch.zeros(4, 3, 32, 32)
    >>> ms_ssim_diversity(same)
    1.0
    >>> ms_ssim_settings(64)["scales"]
    3
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gankit.errors import ConfigError
from gankit.metrics.swd import images_to_uint8

__all__ = ["MS_SSIM_BETAS", "ms_ssim_settings", "ms_ssim_diversity"]

#: Wang et al.'s five scale weights (torchmetrics' default ``betas``).
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _torchmetrics():
    """The torchmetrics module, or a one-line error saying how to install it."""
    try:
        import torchmetrics
        import torchmetrics.functional.image  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f"MS-SSIM uses torchmetrics, which is not installed ({err}); "
            "pip install 'gankit[metrics]' or drop 'ms_ssim'"
        ) from None
    return torchmetrics


def ms_ssim_settings(
    image_size: int | tuple[int, int], kernel_size: int = 11, sigma: float = 1.5
) -> dict[str, Any]:
    """The MS-SSIM settings gankit uses for images of a given size (see the module notes).

    Args:
        image_size: Side, or ``(H, W)``, of the images.
        kernel_size: Gaussian window side (odd; 11 is Wang's and torchmetrics' default).
        sigma: Gaussian window standard deviation (1.5).

    Returns:
        A dict with ``scales``, ``betas``, ``kernel_size``, ``sigma``, ``k1``, ``k2``,
        ``normalize``, ``data_range`` and ``implementation``: what is passed to torchmetrics.

    Raises:
        ConfigError: the images are too small for two scales of the window.

    Example:
        >>> s = ms_ssim_settings(32)
        >>> s["scales"], [round(b, 4) for b in s["betas"]]
        (2, [0.1356, 0.8644])
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    if kernel_size < 3 or kernel_size % 2 == 0:
        raise ConfigError(f"MS-SSIM kernel_size must be odd and >= 3, got {kernel_size}")
    side = min(int(h), int(w))
    scales = 0
    for n in range(1, len(MS_SSIM_BETAS) + 1):
        # the window fits at the coarsest scale, and torchmetrics' own size rule holds
        if side // 2 ** (n - 1) >= kernel_size and side // max(1, n - 1) ** 2 > kernel_size - 1:
            scales = n
    if scales < 2:
        need = 2 * kernel_size
        raise ConfigError(
            f"MS-SSIM needs images of at least {need}x{need} (two scales of its "
            f"{kernel_size}-pixel window), got {h}x{w}; use larger images or drop 'ms_ssim'"
        )
    betas = MS_SSIM_BETAS[:scales]
    total = sum(betas)
    return {
        "scales": scales,
        "betas": [b / total for b in betas],
        "kernel_size": kernel_size,
        "sigma": sigma,
        "k1": 0.01,
        "k2": 0.03,
        "normalize": "relu",
        "data_range": 1.0,
        "images": "8-bit, scaled to [0, 1]",
        "implementation": (
            f"torchmetrics {_torchmetrics().__version__} "
            "multiscale_structural_similarity_index_measure"
        ),
    }


def ms_ssim_diversity(
    images: Tensor,
    *,
    num_pairs: int | None = None,
    seed: int = 0,
    value_range: tuple[float, float] = (-1.0, 1.0),
    kernel_size: int = 11,
    sigma: float = 1.5,
    batch_size: int = 256,
) -> float:
    """Mean MS-SSIM over random disjoint pairs of images (lower = more diverse).

    The pairs are consecutive entries of a random permutation (``torch.randperm`` on a
    private generator seeded with ``seed``), so no image is used twice.

    Args:
        images: ``(N, C, H, W)`` images, uint8 or floats in ``value_range``; ``N >= 2``.
        num_pairs: Pairs to average (default and at most ``N // 2``).
        seed: Seed of the pairing.
        value_range: Range of float images (``(-1, 1)`` for gankit generators).
        kernel_size: Gaussian window side (see :func:`ms_ssim_settings`).
        sigma: Gaussian window standard deviation.
        batch_size: Pairs per torchmetrics call (bounds memory; no effect on the value).

    Returns:
        The mean MS-SSIM, in ``[0, 1]``.

    Raises:
        ConfigError: fewer than two images, more pairs than ``N // 2`` or images too small.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> noise = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
        >>> ms_ssim_diversity(noise) < 0.2
        True
    """
    tm = _torchmetrics()
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ConfigError(f"MS-SSIM diversity needs a (N, C, H, W) image tensor, got {shape}")
    n = images.shape[0]
    if n < 2:
        raise ConfigError(f"MS-SSIM diversity compares pairs of images; got {n} image(s)")
    pairs = n // 2 if num_pairs is None else int(num_pairs)
    if not 1 <= pairs <= n // 2:
        raise ConfigError(
            f"num_pairs must be between 1 and {n // 2} for {n} images (disjoint pairs), got "
            f"{num_pairs}; give more images or ask for fewer pairs"
        )
    s = ms_ssim_settings(tuple(images.shape[-2:]), kernel_size, sigma)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[: 2 * pairs]
    x = images_to_uint8(images, value_range)
    total = torch.zeros((), dtype=torch.float64)
    for start in range(0, pairs, batch_size):
        idx = perm[2 * start : 2 * min(pairs, start + batch_size)]
        a = x[idx[0::2]].to(torch.float32) / 255.0
        b = x[idx[1::2]].to(torch.float32) / 255.0
        values = tm.functional.image.multiscale_structural_similarity_index_measure(
            a,
            b,
            gaussian_kernel=True,
            sigma=s["sigma"],
            kernel_size=s["kernel_size"],
            reduction="none",
            data_range=s["data_range"],
            k1=s["k1"],
            k2=s["k2"],
            betas=tuple(s["betas"]),
            normalize=s["normalize"],
        )
        total += values.to(torch.float64).sum()
    return float(total / pairs)
