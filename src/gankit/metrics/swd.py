"""Sliced Wasserstein distance (SWD) between two image sets, as PGGAN's metric code defines it.

Karras et al. 2018 ("Progressive Growing of GANs", appendix D) compare the distributions of
local image patches at several scales; the released ``metrics/sliced_wasserstein.py`` fixes
the details, which this module follows:

1. Images are 8-bit (``[-1, 1]`` floats are mapped to ``[0, 255]`` and rounded, as PGGAN
   does before every metric).
2. Each image gets a Laplacian pyramid down to 16x16 (for 64x64 images: levels 64, 32, 16;
   the last level is the low-pass residual), built with ``cv2.pyrDown`` / ``cv2.pyrUp``'s
   5-tap binomial filter ``[1, 4, 6, 4, 1] / 16`` (separable; mirror borders, i.e.
   ``BORDER_REFLECT_101``; ``pyrUp`` inserts zeros and filters with 4x the kernel).
3. From every level of every image, 128 random 7x7 neighbourhoods (all channels) are the
   descriptors; their centres are uniform over the positions where the whole patch fits.
4. The descriptors of each set and level are normalised by that set's own per-channel
   mean and (population) standard deviation, and flattened to ``C * 49`` components.
5. 4 repeats of 128 random unit directions (512 in all): both sets are projected on each
   direction, the projections sorted, and the mean absolute difference of the sorted
   projections (the 1-D Wasserstein-1 distance of two equal-size samples) is averaged over
   descriptors, directions and repeats.
6. The distance of each level and their mean are reported multiplied by 1e3, as PGGAN
   prints them (``SWDx1e3_64``, ..., ``SWDx1e3_avg``); here ``swd_64``, ..., ``swd``.

What differs from the released code, and why (none of it changes the definition):

* Patch positions are pseudo-random numbers derived from ``(seed, image content, level,
  index)`` instead of one global random stream, so the value does not depend on the
  order of the images, ``swd(a, b) == swd(b, a)`` exactly at a fixed seed, and a set
  against itself uses the same positions (distance exactly 0). Repeated identical images
  still get independent positions (a duplicate counter enters the key).
* A channel whose descriptors are all equal (e.g. a generator that outputs a constant)
  is centred but not divided by its zero standard deviation, where the released code
  would produce NaN.
* Any channel count is accepted (PGGAN asserts RGB); descriptors then have ``C * 49``
  components.

Both sets must hold the same number of images (the sorted projections are compared
element by element). Published SWDs use 16384 images per set (PGGAN, MMGeneration);
values computed on other counts are comparable only among themselves.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> a = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    >>> b = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    >>> sorted(sliced_wasserstein_distance(a, b))
    ['swd', 'swd_16', 'swd_32']
    >>> sliced_wasserstein_distance(a, a)["swd"]
    0.0
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gankit.errors import ConfigError
from gankit.metrics.preprocess import normalize_images

__all__ = [
    "SWD_SETTINGS",
    "images_to_uint8",
    "swd_resolutions",
    "pyr_down",
    "pyr_up",
    "laplacian_pyramid",
    "patch_positions",
    "extract_descriptors",
    "normalize_descriptors",
    "random_directions",
    "sliced_wasserstein",
    "sliced_wasserstein_distance",
]

#: PGGAN's SWD protocol (``metrics/sliced_wasserstein.py``, class ``API``).
SWD_SETTINGS: dict[str, Any] = {
    "nhood_size": 7,
    "nhoods_per_image": 128,
    "dir_repeats": 4,
    "dirs_per_repeat": 128,
    "min_resolution": 16,
    "scale": 1e3,
}

# cv2.pyrDown's kernel, as a 1-D factor of the 5x5 [1 4 6 4 1]^T [1 4 6 4 1] / 256.
_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)
_MASK64 = (1 << 64) - 1


def images_to_uint8(images: Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> Tensor:
    """8-bit images, as PGGAN feeds its metrics: ``rint((x + 1) * 127.5)`` clipped to ``[0, 255]``.

    Args:
        images: ``(N, C, H, W)`` tensor; uint8 tensors are returned unchanged.
        value_range: Range of float images (``(-1, 1)`` for gankit generators).

    Returns:
        uint8 tensor of the same shape (on the CPU).

    Example:
        >>> images_to_uint8(torch.tensor([[[[-1.0, 0.0, 1.0]]]])).tolist()
        [[[[0, 128, 255]]]]
    """
    if isinstance(images, Tensor) and images.dtype == torch.uint8:
        return images.cpu()
    x = normalize_images(images, value_range)  # float32 in [-1, 1]
    # round-half-to-even, as np.rint in PGGAN's conversion
    return torch.round((x.cpu() + 1.0) * 127.5).clamp_(0, 255).to(torch.uint8)


def swd_resolutions(size: int, min_resolution: int = 16) -> list[int]:
    """Pyramid levels PGGAN uses for square images of side ``size``: halve while ``>= 16``.

    Args:
        size: Image side.
        min_resolution: Smallest level (16 in PGGAN).

    Returns:
        Sides of the levels, finest first (empty when ``size < min_resolution``).

    Example:
        >>> swd_resolutions(64), swd_resolutions(32), swd_resolutions(8)
        ([64, 32, 16], [32, 16], [])
    """
    out = []
    while size >= min_resolution:
        out.append(size)
        size //= 2
    return out


def _binomial_blur(x: Tensor, gain: float, stride: int) -> Tensor:
    """5-tap binomial filter (times ``gain``) with mirror borders, per channel, then subsampled.

    Separable, and written as weighted sums of shifted slices: for this one-channel 5-tap
    filter that is several times faster on the CPU than ``conv2d``.
    """
    n, c, h, w = x.shape
    k = [t * (gain**0.5 / 16.0) for t in _BINOMIAL]
    y = F.pad(x.reshape(n * c, 1, h, w), (2, 2, 2, 2), mode="reflect")[:, 0]
    cols = range(0, w, stride)
    y = sum(k[j] * y[:, :, j : j + w : stride] for j in range(5))  # along rows of pixels
    y = sum(k[j] * y[:, j : j + h : stride, :] for j in range(5))  # along columns
    return y.reshape(n, c, len(range(0, h, stride)), len(cols))


def pyr_down(images: Tensor) -> Tensor:
    """``cv2.pyrDown`` as PGGAN writes it: binomial filter, mirror borders, keep even pixels.

    Args:
        images: ``(N, C, H, W)`` float tensor with even ``H`` and ``W`` >= 4.

    Returns:
        ``(N, C, H / 2, W / 2)`` tensor.

    Example:
        >>> pyr_down(torch.ones(1, 1, 8, 8)).shape
        torch.Size([1, 1, 4, 4])
    """
    return _binomial_blur(images, 1.0, 2)


def pyr_up(images: Tensor) -> Tensor:
    """``cv2.pyrUp`` as PGGAN writes it: insert zeros, filter with 4x the kernel, mirror borders.

    Args:
        images: ``(N, C, H, W)`` float tensor with ``H, W >= 2``.

    Returns:
        ``(N, C, 2H, 2W)`` tensor.

    Example:
        >>> pyr_up(torch.ones(1, 1, 4, 4))[0, 0, 2:6, 2:6].unique().tolist()
        [1.0]
    """
    n, c, h, w = images.shape
    up = images.new_zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = images
    return _binomial_blur(up, 4.0, 1)


def laplacian_pyramid(images: Tensor, num_levels: int) -> list[Tensor]:
    """Laplacian pyramid: band-pass levels ``g_i - pyr_up(g_{i+1})``, then the low-pass ``g_last``.

    Args:
        images: ``(N, C, H, W)`` float tensor; ``H`` and ``W`` divisible by ``2 ** (num_levels - 1)``.
        num_levels: Number of levels (1: the images themselves).

    Returns:
        ``num_levels`` tensors, finest first.

    Example:
        >>> levels = laplacian_pyramid(torch.rand(2, 3, 32, 32), 2)
        >>> [tuple(t.shape[-2:]) for t in levels]
        [(32, 32), (16, 16)]
    """
    gauss = [images]
    for _ in range(1, num_levels):
        gauss.append(pyr_down(gauss[-1]))
    return [g - pyr_up(nxt) for g, nxt in zip(gauss[:-1], gauss[1:])] + [gauss[-1]]


def _image_keys(images_u8: Tensor, seed: int) -> np.ndarray:
    """One 64-bit key per image from (seed, content, how many equal images came before)."""
    arr = np.ascontiguousarray(images_u8.numpy())
    salt = str(int(seed)).encode()
    seen: dict[bytes, int] = {}
    keys = np.empty(arr.shape[0], dtype=np.uint64)
    for i in range(arr.shape[0]):
        digest = hashlib.blake2b(arr[i].tobytes(), digest_size=16, key=salt).digest()
        count = seen.get(digest, 0)
        seen[digest] = count + 1
        final = hashlib.blake2b(count.to_bytes(8, "little"), digest_size=8, key=digest).digest()
        keys[i] = int.from_bytes(final, "little")
    return keys


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (uint64 arithmetic wraps modulo 2**64)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def patch_positions(
    images_u8: Tensor,
    resolutions: list[int],
    nhoods_per_image: int = 128,
    nhood_size: int = 7,
    seed: int = 0,
) -> list[tuple[Tensor, Tensor]]:
    """Centres of the random neighbourhoods, per level: uniform where the whole patch fits.

    PGGAN draws ``np.random.randint(H, S - H)`` for rows and columns (``H = 7 // 2``). Here
    the draws come from splitmix64 keyed on ``(seed, image content, duplicate index)`` and
    the draw's index, so each image's positions do not depend on the other images.

    Args:
        images_u8: ``(N, C, S, S)`` uint8 images (they only key the draws).
        resolutions: Level sides, finest first (see :func:`swd_resolutions`).
        nhoods_per_image: Neighbourhoods per image and level.
        nhood_size: Side of a neighbourhood (odd).
        seed: Changes every position.

    Returns:
        Per level ``(rows, cols)``, each an int64 ``(N, nhoods_per_image)`` tensor.

    Example:
        >>> ys, xs = patch_positions(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), [16])[0]
        >>> ys.shape, int(ys.min()) >= 3, int(xs.max()) <= 12
        (torch.Size([2, 128]), True, True)
    """
    n = images_u8.shape[0]
    half = nhood_size // 2
    keys = _image_keys(images_u8, seed)
    per_level = 2 * nhoods_per_image
    counters = np.arange(1, len(resolutions) * per_level + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        state = keys[:, None] + counters[None, :] * np.uint64(0x9E3779B97F4A7C15)
        draws = _splitmix64(state)
    out = []
    for lvl, res in enumerate(resolutions):
        span = np.uint64(res - 2 * half)  # randint(half, res - half) has this many values
        block = draws[:, lvl * per_level : (lvl + 1) * per_level] % span
        pos = torch.from_numpy(block.astype(np.int64) + half).view(n, 2, nhoods_per_image)
        out.append((pos[:, 0].contiguous(), pos[:, 1].contiguous()))
    return out


def extract_descriptors(level: Tensor, rows: Tensor, cols: Tensor, nhood_size: int = 7) -> Tensor:
    """The ``nhood_size`` x ``nhood_size`` neighbourhoods (all channels) centred at the positions.

    Args:
        level: ``(N, C, H, W)`` pyramid level.
        rows: ``(N, P)`` int64 centre rows.
        cols: ``(N, P)`` int64 centre columns.
        nhood_size: Neighbourhood side (odd).

    Returns:
        ``(N * P, C, nhood_size, nhood_size)`` descriptors, image-major (image 0's first).
        As in PGGAN's index arithmetic, a patch's first spatial axis runs along the image
        columns and its second along the rows (the patch is transposed); this fixes which
        component each projection direction weights.

    Example:
        >>> lvl = torch.arange(16.0).view(1, 1, 4, 4)
        >>> extract_descriptors(lvl, torch.tensor([[1]]), torch.tensor([[2]]), 3)[0, 0].tolist()
        [[1.0, 5.0, 9.0], [2.0, 6.0, 10.0], [3.0, 7.0, 11.0]]
    """
    n, c, h, w = level.shape
    p = rows.shape[1]
    half = nhood_size // 2
    offs = torch.arange(-half, half + 1, device=level.device)
    r = rows.to(level.device)[:, :, None, None] + offs[None, None, :, None]
    q = cols.to(level.device)[:, :, None, None] + offs[None, None, None, :]
    idx = (r * w + q).reshape(n, 1, p * nhood_size * nhood_size).expand(n, c, -1)
    patches = torch.gather(level.reshape(n, c, h * w), 2, idx)
    patches = patches.view(n, c, p, nhood_size, nhood_size).permute(0, 2, 1, 4, 3)
    return patches.reshape(n * p, c, nhood_size, nhood_size)


def normalize_descriptors(desc: Tensor) -> Tensor:
    """Centres and scales descriptors per channel by their own mean and population std; flattens.

    Statistics are taken over descriptors and pixels (``axis=(0, 2, 3)``). A channel with
    zero spread is only centred.

    Args:
        desc: ``(M, C, k, k)`` descriptors of one set and level.

    Returns:
        ``(M, C * k * k)`` float32 tensor.

    Example:
        >>> d = normalize_descriptors(torch.tensor([[[[1.0]]], [[[3.0]]]]))
        >>> d.flatten().tolist()
        [-1.0, 1.0]
    """
    x = desc.to(torch.float32)
    # torch's CPU reductions use cascaded sums and Welford's variance: float32 here agrees
    # with a float64 computation to ~1e-7.
    var, mean = torch.var_mean(x, dim=(0, 2, 3), keepdim=True, correction=0)
    std = var.sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))
    return ((x - mean) / std).reshape(desc.shape[0], -1)


def random_directions(
    dim: int, repeats: int = 4, per_repeat: int = 128, generator: torch.Generator | None = None
) -> Tensor:
    """Random unit directions as PGGAN draws them: Gaussian columns divided by their norms.

    Args:
        dim: Descriptor components.
        repeats: Independent sets of directions.
        per_repeat: Directions per set.
        generator: CPU generator of the draws (``None``: seeded with 0).

    Returns:
        ``(repeats, dim, per_repeat)`` float32 tensor of unit columns.

    Example:
        >>> d = random_directions(5, 2, 3)
        >>> d.shape, torch.allclose(d.norm(dim=1), torch.ones(2, 3))
        (torch.Size([2, 5, 3]), True)
    """
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    dirs = torch.randn(repeats, dim, per_repeat, generator=gen, dtype=torch.float64)
    return (dirs / dirs.norm(dim=1, keepdim=True)).to(torch.float32)


def _sorted_rows(x: Tensor) -> Tensor:
    """Each row sorted ascending, in place when possible. On the CPU numpy's SIMD sort is
    several times faster than torch.sort for these (directions x descriptors) blocks."""
    if x.device.type == "cpu":
        x = x.contiguous()
        x.numpy().sort(axis=1)  # the tensor shares the array's memory
        return x
    return torch.sort(x, dim=1).values


def sliced_wasserstein(a: Tensor, b: Tensor, directions: Tensor) -> float:
    """Mean 1-D Wasserstein-1 distance of two equal-size descriptor sets over directions.

    For each set of directions: project both sets, sort each direction's projections,
    average ``|sorted_a - sorted_b|`` over descriptors and directions; then average the sets.

    Args:
        a: ``(M, D)`` normalised descriptors.
        b: ``(M, D)`` normalised descriptors (same ``M``).
        directions: ``(R, D, K)`` unit directions (see :func:`random_directions`).

    Returns:
        The distance (not yet multiplied by 1e3).

    Example:
        >>> x = torch.tensor([[0.0], [1.0]])
        >>> sliced_wasserstein(x, x + 2, torch.ones(1, 1, 1))
        2.0
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ConfigError(
            f"descriptor sets must have the same shape (M, D), got {tuple(a.shape)} and "
            f"{tuple(b.shape)}; use the same number of images in both sets"
        )
    results = []
    for dirs in directions.to(a.device):
        # (K, M): one row per direction, so each sort runs over contiguous memory.
        pa = _sorted_rows(dirs.T @ a.T)
        pb = _sorted_rows(dirs.T @ b.to(a.device).T)
        results.append(pa.sub_(pb).abs_().mean().to(torch.float64))
    return float(torch.stack(results).mean())


def _check_images(images: Tensor, what: str) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ConfigError(f"{what} must be a (N, C, H, W) image tensor, got {shape}")


def _set_descriptors(
    images_u8: Tensor,
    resolutions: list[int],
    settings: dict[str, Any],
    seed: int,
    device: torch.device,
    chunk: int,
) -> list[Tensor]:
    """Normalised descriptors of every level of one image set."""
    positions = patch_positions(
        images_u8, resolutions, settings["nhoods_per_image"], settings["nhood_size"], seed
    )
    per_level: list[list[Tensor]] = [[] for _ in resolutions]
    for start in range(0, images_u8.shape[0], chunk):
        batch = images_u8[start : start + chunk].to(device, torch.float32)
        for lvl, level in enumerate(laplacian_pyramid(batch, len(resolutions))):
            rows, cols = (p[start : start + chunk] for p in positions[lvl])
            desc = extract_descriptors(level, rows, cols, settings["nhood_size"])
            per_level[lvl].append(desc)
    return [normalize_descriptors(torch.cat(d)) for d in per_level]


def sliced_wasserstein_distance(
    images1: Tensor,
    images2: Tensor,
    *,
    value_range: tuple[float, float] = (-1.0, 1.0),
    seed: int = 0,
    nhood_size: int = 7,
    nhoods_per_image: int = 128,
    dir_repeats: int = 4,
    dirs_per_repeat: int = 128,
    min_resolution: int = 16,
    device: str | torch.device | None = None,
    chunk_size: int = 256,
) -> dict[str, float]:
    """SWD x 1e3 between two image sets at each pyramid level, and the mean over levels.

    Args:
        images1: ``(N, C, S, S)`` images: uint8, or floats in ``value_range``.
        images2: ``(N, C, S, S)`` images (same ``N``, ``C`` and ``S``).
        value_range: Range of float images (``(-1, 1)`` for gankit generators).
        seed: Seed of the patch positions and of the projection directions.
        nhood_size: Neighbourhood side (7 in PGGAN).
        nhoods_per_image: Neighbourhoods per image and level (128).
        dir_repeats: Sets of random directions (4).
        dirs_per_repeat: Directions per set (128).
        min_resolution: Coarsest level (16).
        device: Where to compute (default: the CPU).
        chunk_size: Images per pyramid / gather block (bounds memory; no effect on values).

    Returns:
        ``{"swd_<S>": ..., "swd_<S/2>": ..., ..., "swd": mean}``, each multiplied by 1e3.

    Raises:
        ConfigError: sets of different sizes or shapes, images smaller than
            ``min_resolution`` or not divisible down to it, or invalid settings.

    Example:
        >>> x = torch.rand(4, 3, 16, 16) * 2 - 1
        >>> sliced_wasserstein_distance(x, x)
        {'swd_16': 0.0, 'swd': 0.0}
    """
    _check_images(images1, "images1")
    _check_images(images2, "images2")
    if images1.shape != images2.shape:
        raise ConfigError(
            f"SWD compares sets of the same size and image shape, got {tuple(images1.shape)} "
            f"and {tuple(images2.shape)}; take the same number of images from each set"
        )
    n, _, h, w = images1.shape
    if h != w:
        raise ConfigError(f"SWD needs square images, got {h}x{w}; crop or resize them first")
    if nhood_size < 1 or nhood_size % 2 == 0 or min(nhoods_per_image, dir_repeats, dirs_per_repeat) < 1:
        raise ConfigError(
            f"SWD needs an odd nhood_size and positive counts, got nhood_size={nhood_size}, "
            f"nhoods_per_image={nhoods_per_image}, dir_repeats={dir_repeats}, "
            f"dirs_per_repeat={dirs_per_repeat}"
        )
    if min_resolution <= nhood_size or min_resolution < 8:
        raise ConfigError(
            f"min_resolution must be at least 8 and exceed nhood_size ({nhood_size}), got "
            f"{min_resolution}"
        )
    resolutions = swd_resolutions(h, min_resolution)
    if not resolutions:
        raise ConfigError(
            f"SWD needs images of at least {min_resolution}x{min_resolution} (its coarsest "
            f"pyramid level), got {h}x{w}; use larger images"
        )
    if h % (2 ** (len(resolutions) - 1)):
        raise ConfigError(
            f"SWD halves {h}x{w} images {len(resolutions) - 1} times (down to "
            f"{resolutions[-1]}), so the side must be divisible by {2 ** (len(resolutions) - 1)};"
            " resize the images to e.g. a power of two"
        )
    if n < 1:
        raise ConfigError("SWD needs at least one image per set")
    settings = {
        "nhood_size": nhood_size,
        "nhoods_per_image": nhoods_per_image,
        "dir_repeats": dir_repeats,
        "dirs_per_repeat": dirs_per_repeat,
    }
    dev = torch.device(device) if device is not None else torch.device("cpu")
    u1 = images_to_uint8(images1, value_range)
    u2 = images_to_uint8(images2, value_range)
    d1 = _set_descriptors(u1, resolutions, settings, seed, dev, chunk_size)
    d2 = _set_descriptors(u2, resolutions, settings, seed, dev, chunk_size)
    gen = torch.Generator().manual_seed(int(seed))
    out: dict[str, float] = {}
    for res, a, b in zip(resolutions, d1, d2):
        dirs = random_directions(a.shape[1], dir_repeats, dirs_per_repeat, gen)
        out[f"swd_{res}"] = sliced_wasserstein(a, b, dirs) * SWD_SETTINGS["scale"]
    out["swd"] = float(np.mean(list(out.values())))
    return out
