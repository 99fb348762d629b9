"""Self-describing exports: a Hub-style model folder, and ONNX.

``gankit export CKPT --format hub DIR`` writes a folder that describes itself::

    DIR/model.safetensors   the generator's weights (a gankit generator export)
    DIR/config.json         preset, overrides, latent size, image shape, classes, gankit version
    DIR/README.md           a model card: what it is, how it was trained, metrics with provenance
    DIR/samples.png         a grid of samples (seed 0), shown by the model card

:func:`gankit.load_generator` reads such a folder, or -- with the ``huggingface_hub``
package installed -- a Hub repository id holding one, resolved through the Hugging Face
cache (nothing is downloaded unless ``download=True``; ``HF_HUB_OFFLINE=1`` with a
filled cache works). Nothing is ever uploaded.

``gankit export CKPT --format onnx gen.onnx`` writes the generator as an ONNX graph with a
dynamic batch: input ``z`` of shape ``(batch, z_dim)``, output ``images`` of shape
``(batch, C, H, W)`` in the generator's range ([-1, 1] for tanh).
"""

from __future__ import annotations

import io
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..errors import CheckpointError, ConfigError
from .checkpoint import atomic_write_bytes

__all__ = ["export_hub", "load_hub_generator", "looks_like_repo_id", "export_onnx", "HUB_FORMAT", "HUB_FILES"]

#: ``config.json``'s ``format``.
HUB_FORMAT = "gankit-hub-generator"
#: The files of a Hub-style folder.
HUB_FILES = ("model.safetensors", "config.json", "README.md", "samples.png")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _is_hub_folder(folder: Path) -> bool:
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("format") == HUB_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _check_folder(folder: Path, overwrite: bool, inputs: list[Path]) -> None:
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file; give a folder for the hub export.")
    for inp in inputs:
        if inp.resolve().parent == folder.resolve() and inp.name in HUB_FILES:
            raise ConfigError(f"{folder} holds {inp.name}, which is being read; export into another folder.")
    if folder.is_dir() and any(folder.iterdir()):
        if not _is_hub_folder(folder):
            raise ConfigError(f"{folder} is not empty and is not a gankit hub export; gankit does not write "
                              "into other folders: choose a new or empty folder.")
        if not overwrite:
            raise ConfigError(f"{folder} already holds a gankit hub export; pass --overwrite to replace it "
                              "or choose another folder.")


def _metrics_section(ckpt: dict[str, Any]) -> list[str]:
    evals = ckpt.get("eval_history") or []
    if not evals:
        return ["No sample-quality evaluation was recorded during this run (train with `--eval-every N` "
                "to record one, or measure the export with `gankit eval`)."]
    last = evals[-1]
    skip = {"kind", "step", "epoch", "extractor", "comparable_to_published", "num_fake", "num_real",
            "reference", "generator"}
    values = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                       for k, v in last.items() if k not in skip)
    comparable = "comparable" if last.get("comparable_to_published") else "NOT comparable"
    return [
        f"Last evaluation during training, at step {last.get('step')} (epoch {last.get('epoch')}): {values}.",
        "",
        f"Provenance: extractor `{last.get('extractor')}` ({comparable} to published numbers), "
        f"{last.get('num_fake')} generated vs {last.get('num_real')} reference images "
        f"(`{last.get('reference')}`)" + (", averaged (EMA) generator" if last.get("generator") == "ema" else "")
        + f"; {len(evals)} evaluation(s) in the run.",
    ]


def _model_card(config: dict[str, Any], recipe, ckpt: dict[str, Any]) -> str:
    s = recipe.settings
    c, h, w = config["image_shape"]
    overrides = ", ".join(f"{k}={v!r}" for k, v in sorted(config["overrides"].items())) or "none"
    lines = [
        "---",
        "library_name: gankit",
        "tags:",
        "- gan",
        "- gankit",
        "- pytorch",
        "- unconditional-image-generation" if not config.get("num_classes") else "- image-generation",
        "---",
        "",
        f"# {config['preset']} generator",
        "",
        f"A GAN generator trained with [gankit](https://github.com/) {config['gankit_version']}: "
        f"{recipe.description or config['preset']}",
        "",
        f"It maps a latent `z` of shape `(n, {config['z_dim']})` (standard normal) to images of shape "
        f"`(n, {c}, {h}, {w})` in [-1, 1]"
        + (f", conditioned on {config['num_classes']} classes" if config.get("num_classes") else "") + ".",
        "",
        "## How it was trained",
        "",
        f"- preset: `{config['preset']}`, overrides: {overrides}",
        f"- loss `{s.loss}`, optimizers `{s.g_optimizer}` (G) / `{s.d_optimizer}` (D), batch {s.batch_size}, "
        f"n_critic {s.n_critic}",
        f"- stopped at step {config['step']}, epoch {config['epoch']}; weights: "
        + ("the averaged (EMA) generator" if config["ema"] else "the trained generator"),
        "",
        "## Metrics",
        "",
        *_metrics_section(ckpt),
        "",
        "## Samples",
        "",
        "![samples](samples.png)  ",
        f"{config['sample_grid']['n']} samples, latents `torch.randn(n, z_dim, "
        f"generator=torch.Generator().manual_seed({config['sample_grid']['seed']}))`.",
        "",
        "## Use",
        "",
        "```python",
        "import torch",
        "import gankit",
        "",
        'g = gankit.load_generator("path/to/this/folder")   # or a Hub repo id, with huggingface_hub',
        "with torch.no_grad():",
        "    images = g(torch.randn(16, g.z_dim))             # [-1, 1]",
        "```",
        "",
    ]
    return "\n".join(lines)


def export_hub(checkpoint: str | os.PathLike, folder: str | os.PathLike, *, ema: bool = True,
               overwrite: bool = False, num_samples: int = 16, seed: int = 0) -> Path:
    """Write a Hub-style model folder (weights, ``config.json``, model card, sample grid).

    Args:
        checkpoint: a training checkpoint (``.pt``).
        folder: the folder to write (new, empty, or a gankit hub export with ``overwrite``).
        ema: the averaged generator when the run had a :class:`~gankit.train.GeneratorEMA`.
        overwrite: replace an earlier hub export in ``folder``.
        num_samples: images in ``samples.png``.
        seed: seed of the sample grid's latents.

    Returns:
        The folder.

    Raises:
        ConfigError: when ``folder`` is not a place gankit may write.
        CheckpointError: for a missing or damaged checkpoint.
    """
    from .export import export_generator, generate, generator_from_checkpoint
    from .outputs import save_grid

    out = Path(folder)
    _check_folder(out, overwrite, [Path(checkpoint)])
    generator, recipe, ckpt = generator_from_checkpoint(checkpoint, ema=ema)
    z_dim = recipe.settings.z_dim
    out_shape = list(getattr(generator, "out_shape", (recipe.channels, recipe.image_size, recipe.image_size)))
    num_classes = getattr(generator, "num_classes", None)
    from .ema import ema_weights

    has_ema = bool(ema) and ema_weights(ckpt) is not None
    config = {
        "format": HUB_FORMAT,
        "gankit_version": __version__,
        "preset": recipe.name,
        "builder": getattr(recipe, "builder", None),
        "overrides": dict(recipe.overrides),
        "z_dim": z_dim,
        "image_shape": out_shape,
        "num_classes": num_classes,
        "step": int(ckpt["step"]),
        "epoch": int(ckpt.get("epoch", 0)),
        "ema": has_ema,
        "weights": "model.safetensors",
        "sample_grid": {"file": "samples.png", "n": num_samples, "seed": seed},
    }
    out.mkdir(parents=True, exist_ok=True)
    export_generator(generator, recipe, out / "model.safetensors")
    z = torch.randn(num_samples, z_dim, generator=torch.Generator().manual_seed(seed))
    images = generate(generator, z)
    save_grid(((images + 1) / 2).clamp(0, 1), out / "samples.png", max(1, round(num_samples**0.5)))
    atomic_write_bytes(out / "config.json",
                       lambda f: f.write((json.dumps(config, indent=2, default=str) + "\n").encode()))
    card = _model_card(config, recipe, ckpt)
    atomic_write_bytes(out / "README.md", lambda f: f.write(card.encode()))
    return out


def looks_like_repo_id(text: str) -> bool:
    """Whether ``text`` reads as a Hub repository id (``owner/name``) rather than a path."""
    return bool(_REPO_ID.match(text)) and not Path(text).exists()


def _snapshot(repo_id: str, *, download: bool, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
        try:
            from huggingface_hub.errors import LocalEntryNotFoundError
        except ImportError:  # huggingface_hub < 0.23
            from huggingface_hub.utils import LocalEntryNotFoundError
    except ImportError:
        raise CheckpointError(f"{repo_id} is not a local file or folder; loading a Hub repository id needs "
                              "huggingface_hub: pip install 'gankit[hub]'.") from None
    try:
        path = snapshot_download(repo_id, revision=revision, local_files_only=not download,
                                 allow_patterns=["config.json", "model.safetensors", "README.md", "samples.png"])
    except LocalEntryNotFoundError:
        raise CheckpointError(f"{repo_id} is not in the Hugging Face cache; pass download=True to fetch it, "
                              "or check the path.") from None
    except Exception as err:  # noqa: BLE001 -- network and repository errors of huggingface_hub
        raise CheckpointError(f"cannot get {repo_id} from the Hugging Face Hub: {type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}") from None
    return Path(path)


def load_hub_generator(source: str | os.PathLike, device: str | torch.device = "cpu", *,
                       download: bool = False, revision: str | None = None) -> torch.nn.Module:
    """Load the generator of a Hub-style folder, or of a Hub repository id through the HF cache.

    Args:
        source: a folder written by :func:`export_hub`, or ``"owner/name"``.
        device: where to put the generator.
        download: allow ``huggingface_hub`` to download a repository missing from the cache.
        revision: a branch, tag or commit of the repository (default: ``main``).

    Returns:
        The generator in eval mode.

    Raises:
        CheckpointError: for a folder that is not a gankit hub export, or a repository that
            cannot be resolved.
    """
    from .export import load_generator

    folder = Path(source)
    if not folder.is_dir():
        folder = _snapshot(str(source), download=download, revision=revision)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{source} has no config.json: not a gankit hub export (write one with "
                              "'gankit export CKPT --format hub DIR').") from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {folder / 'config.json'}: {err}") from None
    if not isinstance(config, dict) or config.get("format") != HUB_FORMAT:
        raise CheckpointError(f"{source} is not a gankit hub export (config.json format is not {HUB_FORMAT!r}).")
    weights = folder / str(config.get("weights", "model.safetensors"))
    return load_generator(weights, device=device)


def export_onnx(generator: torch.nn.Module, path: str | os.PathLike, *, z_dim: int | None = None,
                opset_version: int = 17) -> Path:
    """Write a generator as ONNX with a dynamic batch (input ``z``, output ``images``), atomically.

    Args:
        generator: the generator (exported in eval mode; its mode is restored).
        path: the ``.onnx`` file.
        z_dim: latent size (default ``generator.z_dim``).
        opset_version: the ONNX opset.

    Returns:
        The path written.
    """
    z_dim = z_dim or generator.z_dim
    was_training = generator.training
    generator.eval()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(generator, (torch.zeros(2, z_dim),), buf, input_names=["z"],
                              output_names=["images"], dynamic_axes={"z": {0: "batch"}, "images": {0: "batch"}},
                              opset_version=opset_version, dynamo=False)
    finally:
        generator.train(was_training)
    data = buf.getvalue()
    return atomic_write_bytes(path, lambda f: f.write(data))
