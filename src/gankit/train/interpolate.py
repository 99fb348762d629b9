"""Latent interpolation: paths between seeded latents, as a grid and as an animated GIF.

Row ``r`` of an interpolation walks from latent ``z[2r]`` to ``z[2r + 1]``, where
``z = torch.randn(2 * rows, z_dim, generator=torch.Generator().manual_seed(seed))`` -- the
latents ``gankit sample --n 2*rows --seed SEED`` draws, so the first and last image of
each row are those samples. ``slerp`` follows the great circle (the path that keeps a
Gaussian latent's norm typical), ``lerp`` the straight line.

Example:
    >>> z = interpolation_latents(4, rows=2, steps=5, seed=0)
    >>> z.shape
    torch.Size([10, 4])
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import ConfigError

__all__ = ["slerp", "lerp", "interpolation_latents", "interpolate", "save_gif", "METHODS"]

#: The interpolation methods; ``both`` puts a lerp row under every slerp row.
METHODS = ("slerp", "lerp", "both")


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation ``(1 - t) z0 + t z1`` for every ``t`` (a 1-d tensor): ``(len(t), D)``."""
    t = t.reshape(-1, 1).to(z0.dtype)
    return (1 - t) * z0 + t * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two latents for every ``t`` (a 1-d tensor): ``(len(t), D)``.

    Falls back to :func:`lerp` for (nearly) parallel latents.
    """
    t = t.reshape(-1, 1).to(z0.dtype)
    cos = torch.dot(z0, z1) / (z0.norm() * z1.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1, 1))
    if float(omega.sin().abs()) < 1e-6:
        return lerp(z0, z1, t)
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def interpolation_latents(z_dim: int, *, rows: int = 4, steps: int = 8, seed: int = 0,
                          method: str = "slerp") -> torch.Tensor:
    """The latents of an interpolation grid: ``rows`` paths of ``steps`` latents, row by row.

    Args:
        z_dim: latent size.
        rows: number of endpoint pairs (``both``: two rows per pair).
        steps: latents per path, endpoints included (>= 2).
        seed: seed of the endpoints (``torch.randn(2 * rows, z_dim)`` from a generator
            seeded with it).
        method: ``slerp``, ``lerp`` or ``both``.

    Returns:
        ``(rows * steps, z_dim)`` latents (twice as many rows with ``both``); the first and
        last latent of each path are exactly the endpoints.
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    if rows < 1 or steps < 2:
        raise ConfigError(f"an interpolation needs rows >= 1 and steps >= 2, got rows={rows}, steps={steps}.")
    ends = torch.randn(2 * rows, z_dim, generator=torch.Generator().manual_seed(seed))
    t = torch.linspace(0, 1, steps)
    out = []
    for r in range(rows):
        z0, z1 = ends[2 * r], ends[2 * r + 1]
        for fn in {"slerp": (slerp,), "lerp": (lerp,), "both": (slerp, lerp)}[method]:
            path = fn(z0, z1, t)
            path[0], path[-1] = z0, z1  # exactly the endpoints
            out.append(path)
    return torch.cat(out)


def interpolate(generator: torch.nn.Module, *, rows: int = 4, steps: int = 8, seed: int = 0,
                method: str = "slerp", device: str | torch.device = "cpu") -> torch.Tensor:
    """Images along latent paths (see :func:`interpolation_latents`), in ``[0, 1]``.

    Args:
        generator: maps ``(n, z_dim)`` latents to images in [-1, 1] (``generator.z_dim``).
        rows, steps, seed, method: as :func:`interpolation_latents`.
        device: where the generator runs.

    Returns:
        ``(rows * steps, C, H, W)`` float images on the CPU, row by row (a grid with
        ``nrow=steps``).
    """
    from .export import generate

    z = interpolation_latents(generator.z_dim, rows=rows, steps=steps, seed=seed, method=method)
    return ((generate(generator, z, device=device) + 1) / 2).clamp(0, 1)


def save_gif(images: torch.Tensor, path: str | os.PathLike, *, steps: int, duration_ms: int = 120) -> Path:
    """An animated GIF of an interpolation: frame ``k`` shows image ``k`` of every path.

    The animation runs forth and back and loops.

    Args:
        images: ``(paths * steps, C, H, W)`` in ``[0, 1]``, as :func:`interpolate` returns.
        path: the ``.gif`` file (written atomically).
        steps: images per path.
        duration_ms: milliseconds per frame.

    Returns:
        The path written.
    """
    import io

    from PIL import Image
    from torchvision.utils import make_grid

    from .checkpoint import atomic_write_bytes

    paths = images.shape[0] // steps
    by_path = images.reshape(paths, steps, *images.shape[1:])
    ncol = max(1, round(paths**0.5))
    frames = []
    for k in [*range(steps), *range(steps - 2, 0, -1)]:
        grid = make_grid(by_path[:, k], nrow=ncol)
        array = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
        frames.append(Image.fromarray(array))
    buf = io.BytesIO()
    frames[0].save(buf, format="gif", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    data = buf.getvalue()
    return atomic_write_bytes(path, lambda f: f.write(data))
