"""Export a generator alone to ``.safetensors`` and load it back for sampling."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .._version import __version__
from ..errors import CheckpointError, ConfigError
from ..presets import Recipe, get_preset
from .checkpoint import atomic_write_bytes, clean_message
from .ema import ema_weights

__all__ = ["export_generator", "load_generator", "generator_from_checkpoint", "generate", "sample_labels", "class_index"]

FORMAT = "gankit-generator"


@torch.no_grad()
def generate(
    generator: torch.nn.Module, z: torch.Tensor, *, device: str | torch.device = "cpu", batch_size: int = 256,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run a generator on latents in chunks, in eval mode (its previous mode is restored).

    Args:
        generator: maps ``(n, z_dim)`` latents to images.
        z: the latents (any device; each chunk is moved to ``device``).
        device: where the generator runs.
        batch_size: latents per forward pass.
        labels: ``(n,)`` classes for a class-conditional generator (passed as ``labels=``).

    Returns:
        The images as float32 on the CPU, in the generator's output range ([-1, 1] for tanh).
    """
    was_training = generator.training
    generator.eval()
    try:
        if labels is None:
            return torch.cat([generator(c.to(device)).float().cpu() for c in z.split(batch_size)])
        if len(labels) != len(z):
            raise ConfigError(f"got {len(labels)} labels for {len(z)} latents; give one label per image.")
        return torch.cat([generator(c.to(device), labels=y.to(device)).float().cpu()
                          for c, y in zip(z.split(batch_size), labels.split(batch_size))])
    finally:
        generator.train(was_training)


def class_index(generator: torch.nn.Module, label: int | str) -> int:
    """The index of one class of a conditional generator, from an index or a class name.

    Args:
        generator: a class-conditional generator (``num_classes`` > 0).
        label: a class index, its text (``"3"``), or a class name (``generator.class_names``).

    Returns:
        The index.

    Raises:
        ConfigError: for an unconditional generator, or an unknown class (naming the valid ones).
    """
    k = int(getattr(generator, "num_classes", 0) or 0)
    if not k:
        raise ConfigError("this generator is unconditional: it has no classes to choose from.")
    names = list(getattr(generator, "class_names", None) or [])
    if isinstance(label, str):
        if label in names:
            return names.index(label)
        if not label.strip().lstrip("-").isdigit():
            known = f"one of {', '.join(names)}" if names else f"an index 0..{k - 1} (this generator has no class names)"
            raise ConfigError(f"unknown class {label!r}; give {known}.")
        label = int(label)
    if isinstance(label, bool) or not 0 <= int(label) < k:
        raise ConfigError(f"class {label!r} is out of range; this generator has classes 0..{k - 1}.")
    return int(label)


def sample_labels(generator: torch.nn.Module, n: int, labels=None) -> torch.Tensor | None:
    """The ``(n,)`` classes to sample a generator with: None for an unconditional one.

    Args:
        generator: the generator.
        n: number of images.
        labels: one class (index or name) for all, ``n`` of them, or None for the classes
            in turn (``i % num_classes``).

    Returns:
        An int64 tensor, or None for an unconditional generator (which refuses labels).
    """
    from .trainer import _unwrap

    net = _unwrap(generator)
    k = int(getattr(net, "num_classes", 0) or 0)
    if not k:
        if labels is not None:
            raise ConfigError("this generator is unconditional: it takes no labels.")
        return None
    if labels is None:
        return torch.arange(n) % k
    if isinstance(labels, (int, str)):
        return torch.full((n,), class_index(net, labels), dtype=torch.long)
    y = torch.as_tensor([class_index(net, int(v)) for v in torch.as_tensor(labels).reshape(-1).tolist()])
    if len(y) != n:
        raise ConfigError(f"got {len(y)} labels for {n} images; give one class or one per image.")
    return y


def export_generator(generator: torch.nn.Module, recipe: Recipe, path: str | os.PathLike) -> Path:
    """Write a generator's weights and its preset to a ``.safetensors`` file, atomically.

    Args:
        generator: the trained generator.
        recipe: its recipe (the preset name and overrides are stored as metadata).
        path: the file to write.

    Returns:
        The path written.
    """
    tensors = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    meta = {
        "format": FORMAT,
        "preset": recipe.name,
        "overrides": json.dumps(recipe.overrides),
        "z_dim": str(recipe.settings.z_dim),
        "gankit_version": __version__,
    }
    k = int(getattr(generator, "num_classes", 0) or 0)
    if k:  # a conditional generator keeps its classes (unconditional exports are unchanged)
        meta["num_classes"] = str(k)
        meta["class_names"] = json.dumps(list(getattr(generator, "class_names", None) or []))
    return atomic_write_bytes(path, lambda f: f.write(save(tensors, metadata=meta)))


def generator_from_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", *,
                              ema: bool = True):
    """Rebuild the generator stored in a training checkpoint.

    Args:
        path: a checkpoint written by :meth:`gankit.Trainer.save`.
        device: where to put the generator.
        ema: use the averaged generator's weights when the run had a
            :class:`~gankit.train.GeneratorEMA` (False: the raw generator's).

    Returns:
        ``(generator, recipe, checkpoint)``: the generator in eval mode, the rebuilt recipe
        and the checkpoint dictionary. torch's global RNG is left as it was.

    Raises:
        CheckpointError: for a missing, truncated or foreign file.
    """
    from ..presets import rebuild_recipe
    from .checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)  # every field checked: preset and overrides are well-typed
    try:
        with torch.random.fork_rng(devices=[]):
            recipe = rebuild_recipe(ckpt, source=str(path))
        averaged = ema_weights(ckpt) if ema else None
        recipe.generator.load_state_dict(ckpt["generator"] if averaged is None else averaged)
        names = ckpt.get("class_names")
        if isinstance(names, list) and names and getattr(recipe.generator, "num_classes", 0):
            recipe.generator.class_names = [str(n) for n in names]
    except (ConfigError, RuntimeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"{path} does not fit its preset {ckpt['preset']!r}: {clean_message(err, 120)}"
        ) from None
    return recipe.generator.to(device).eval(), recipe, ckpt


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu", *,
                   ema: bool = True, download: bool = False) -> torch.nn.Module:
    """Rebuild a generator, in eval mode, from an export or a training checkpoint.

    ``.safetensors`` files are read as written by :func:`export_generator`; a folder as
    written by ``gankit export --format hub`` (:func:`gankit.train.hub.export_hub`); an
    ``owner/name`` that is no local path as a Hugging Face Hub repository holding such a
    folder, through the Hugging Face cache (needs ``huggingface_hub``); any other file is
    read as a training checkpoint (``weights_only``, see
    :func:`~gankit.train.load_checkpoint`) and only its generator is kept.

    torch's global RNG is left as it was (building the network draws default weights
    that are then replaced).

    Args:
        path: a ``.safetensors`` export, or a ``.pt`` training checkpoint.
        device: where to put the generator.
        ema: from a training checkpoint, the averaged generator when the run had a
            :class:`~gankit.train.GeneratorEMA` (False: the raw one); an export holds the
            weights it was exported with.
        download: for a Hub repository id missing from the cache, let ``huggingface_hub``
            download it (off by default: nothing is downloaded).

    Returns:
        The generator, in eval mode; ``generator.z_dim`` is its latent size.

    Raises:
        CheckpointError: for a missing, corrupt or foreign file.

    Example:
        >>> # g = load_generator("generator.safetensors"); g(torch.randn(16, g.z_dim))
    """
    p = Path(path)
    if p.is_dir() or (not p.exists() and p.suffix not in (".pt", ".pth", ".safetensors")):
        from .hub import load_hub_generator, looks_like_repo_id

        if p.is_dir() or looks_like_repo_id(str(path)):
            return load_hub_generator(path, device, download=download)
    if not p.is_file():
        raise CheckpointError(f"generator file {p} does not exist; check the path.")
    if p.suffix != ".safetensors":
        return generator_from_checkpoint(p, device, ema=ema)[0]
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError, TypeError) as err:
        raise CheckpointError(f"cannot read {p} as safetensors ({clean_message(err, 100)}); export it again.") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a gankit generator export; write one with 'gankit export'.")
    preset, overrides = _export_recipe(p, meta)
    try:
        with torch.random.fork_rng(devices=[]):
            recipe = get_preset(preset, **overrides)
        generator = recipe.generator
        generator.load_state_dict(tensors)
        names = json.loads(meta.get("class_names", "[]"))
        if names and getattr(generator, "num_classes", 0):
            generator.class_names = [str(n) for n in names]
    except (ConfigError, RuntimeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{p} does not fit its preset {preset!r}: {clean_message(err, 120)}") from None
    return generator.to(device).eval()


def _export_recipe(p: Path, meta: dict[str, str]) -> tuple[str, dict]:
    """The preset name and overrides recorded in an export's metadata, checked."""
    preset = meta.get("preset")
    if not preset:
        raise CheckpointError(f"{p} names no preset in its metadata; export it again with 'gankit export'.")
    try:
        overrides = json.loads(meta.get("overrides", "{}"))
    except ValueError:
        raise CheckpointError(
            f"{p} has damaged metadata (its overrides are not JSON); export it again with 'gankit export'."
        ) from None
    if not isinstance(overrides, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, int, float, bool, type(None))) for k, v in overrides.items()
    ):
        raise CheckpointError(
            f"{p} has damaged metadata (its overrides are not a dictionary of settings); export it "
            "again with 'gankit export'."
        )
    return preset, overrides
