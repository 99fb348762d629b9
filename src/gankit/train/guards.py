"""Checks that refuse, before any training step, settings that cannot work.

* :func:`check_batchnorm_batches`: BatchNorm cannot train on batches of one image.
* :func:`check_network_memory`: networks too large for this machine's memory are refused
  before anything is allocated (they are built on the ``meta`` device to be counted).
* :func:`check_resume_settings` and :func:`resume_batch_index`: which settings may change
  when a run is resumed, and where in the epoch a run with another batch size goes on.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import torch

from ..errors import ConfigError

__all__ = [
    "RESUMABLE_SETTINGS",
    "check_batchnorm_batches",
    "check_network_memory",
    "available_memory",
    "check_resume_settings",
    "resume_batch_index",
]

#: Settings a resumed run may change. Any other change (the networks, the latent size, the
#: loss, the optimizers, the sample grid) is refused: the checkpoint does not fit it.
RESUMABLE_SETTINGS: frozenset[str] = frozenset(
    {"epochs", "batch_size", "g_lr", "d_lr", "clip_value", "n_critic", "gp_weight", "r1_gamma",
     "checkpoint_every"}
)


def check_batchnorm_batches(loader: Any, *, num_images: int | None = None, batch_size: int | None = None) -> None:
    """Refuse data whose every batch would hold one image, for networks with BatchNorm.

    Training BatchNorm in train mode on one image fails, so such a run would only skip
    batches. The number of images and the batch size are taken from the arguments, else
    from the loader (``num_images`` / ``dataset`` and ``batch_size``); an iterable of
    batches that says neither is not checked (its single-image batches are skipped with a
    warning).

    Args:
        loader: the batches (a :class:`~gankit.data.BatchLoader`, a ``DataLoader``, ...), or None.
        num_images: the number of images, if known.
        batch_size: the batch size, if known.

    Raises:
        ConfigError: when the batch size or the number of images is 1.
    """
    if num_images is None:
        num_images = getattr(loader, "num_images", None)
        if num_images is None and hasattr(loader, "dataset"):
            try:
                num_images = len(loader.dataset)
            except TypeError:
                num_images = None
    if batch_size is None:
        batch_size = getattr(loader, "batch_size", None)
    if batch_size == 1:
        raise ConfigError(
            "batch size 1 cannot train networks with BatchNorm (every batch would hold one image); "
            "use a batch size of 2 or more (--batch-size)."
        )
    if num_images == 1:
        raise ConfigError(
            "the data holds 1 image, and networks with BatchNorm cannot train on batches of one "
            "image; use at least 2 images."
        )


def available_memory() -> int | None:
    """Bytes of memory this process could still allocate, or None when unknown.

    Returns:
        ``MemAvailable`` of ``/proc/meminfo`` on Linux, else the free physical pages.
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def check_network_memory(preset: str, overrides: Mapping[str, Any], *, available: int | None = None) -> int:
    """Refuse settings whose networks cannot even be allocated here, before allocating them.

    The recipe is built on the ``meta`` device (no memory, torch's RNG untouched) and its
    parameters, buffers and sample latents are counted.

    Args:
        preset: the preset name.
        overrides: its settings.
        available: bytes of memory to compare with (default :func:`available_memory`).

    Returns:
        The bytes the networks' weights and the sample latents take.

    Raises:
        ConfigError: one line naming the settings, the size and the memory available.
    """
    from ..presets import recipe_from_name

    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            recipe = recipe_from_name(preset, **overrides)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 -- a builder that cannot run on meta: no estimate
        return 0
    tensors = [*recipe.generator.parameters(), *recipe.generator.buffers(),
               *recipe.discriminator.parameters(), *recipe.discriminator.buffers()]
    count = sum(t.numel() for t in tensors)
    need = sum(t.numel() * t.element_size() for t in tensors)
    need += recipe.settings.sample_grid**2 * recipe.settings.z_dim * 4
    available = available_memory() if available is None else available
    if available is not None and need > available:
        given = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "its default settings"
        raise ConfigError(
            f"{preset} with {given} has {count:,} parameters: {_size(need)} for the weights alone, "
            f"more than the {_size(available)} of memory available; use smaller settings."
        )
    return need


def check_resume_settings(saved: Any, now: Any) -> dict[str, tuple[Any, Any]]:
    """Compare the settings of a checkpoint with those of the resumed run.

    Args:
        saved: the checkpoint's :class:`~gankit.presets.RecipeSettings`.
        now: the resumed run's settings.

    Returns:
        ``{name: (old, new)}`` for every setting that changed (all in
        :data:`RESUMABLE_SETTINGS`).

    Raises:
        ConfigError: one line naming the first changed setting that cannot change on resume.
    """
    import dataclasses

    changed = {
        f.name: (getattr(saved, f.name), getattr(now, f.name))
        for f in dataclasses.fields(now)
        if getattr(saved, f.name) != getattr(now, f.name)
    }
    for name, (old, new) in changed.items():
        if name not in RESUMABLE_SETTINGS:
            raise ConfigError(
                f"cannot resume with {name}={new}: the checkpoint was trained with {name}={old}, and "
                f"{name} cannot change during a run (settings that can: "
                f"{', '.join(sorted(RESUMABLE_SETTINGS))}); drop --set {name}=... or start a new run."
            )
    return changed


def resume_batch_index(batch_index: int, old_batch_size: int, new_batch_size: int, num_batches: int) -> int:
    """Where in its epoch a resumed run goes on when the batch size or the data changed.

    The run goes on at the first batch that starts at or after the images the epoch has
    already used (``batch_index * old_batch_size``); when none is left, at the end of the
    epoch (which then closes). With the same batch size and data this is ``batch_index``.

    Args:
        batch_index: batches the checkpoint's epoch had consumed.
        old_batch_size: the checkpoint's batch size.
        new_batch_size: the resumed run's batch size.
        num_batches: batches per epoch of the resumed run.

    Returns:
        The batch index to resume at, ``0 <= index <= num_batches``.

    Example:
        >>> resume_batch_index(3, 8, 16, 10)   # 24 images used: go on at batch 2 (image 32)
        2
    """
    used = batch_index * old_batch_size
    return min(math.ceil(used / new_batch_size), num_batches)
