"""The ``gankit`` command line (also ``python -m gankit``).

Every error a user can cause is printed as one line on stderr with a non-zero exit
status; tracebacks are kept for bugs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import GankitError

__all__ = ["main", "build_parser"]

EPILOG = """examples:
  gankit presets
  gankit summary dcgan_task1
  gankit train dcgan_task1 --data toy-faces --max-steps 300 --out runs/demo
  gankit train wgan_task2 --data path/to/faces --epochs 5 --set clip_value=0.02
  gankit train dcgan_task1 --data toy-faces --resume runs/demo/checkpoints/last.pt --max-steps 600
  gankit sample runs/demo/checkpoints/last.pt --n 64 --out grid.png --seed 1
  gankit export runs/demo/checkpoints/last.pt --out generator.safetensors
  gankit eval runs/demo/checkpoints/last.pt --data toy-faces --metrics fid,kid
"""

TRAIN_EPILOG = """examples:
  gankit train dcgan_task1                                   # the report's settings on toy-faces
  gankit train dcgan_task1 --data faces/ --epochs 51 --out runs/task1
  gankit train wgan_task2 --data cifar10 --set image_size=64 --batch-size 64
  gankit train dcgan_task1 --precision bf16 --channels-last  # fast mode (other numerics)
  gankit train dcgan_task1 --device cuda --precision bf16 --channels-last --cuda-graph --latents device
  gankit train dcgan_task1 --resume runs/task1/checkpoints/last.pt
  torchrun --standalone --nproc_per_node=4 -m gankit train dcgan_task1 --data faces/
"""


def _cmd_presets(args: argparse.Namespace) -> int:
    from .presets import list_presets, preset_description

    names = list_presets(args.pattern)
    width = max((len(n) for n in names), default=0)
    for name in names:
        print(f"{name:<{width}}  {preset_description(name)}")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from .presets import get_preset
    from .tables import summary

    recipe = get_preset(args.preset, **_parse_sets(args.set))
    print(f"{recipe.name}: {recipe.description}")
    print("\nGenerator")
    summary(recipe.generator, (recipe.z_dim,))
    print("\nDiscriminator")
    summary(recipe.discriminator, (recipe.channels, recipe.image_size, recipe.image_size))
    print("\nSettings")
    for line in recipe.summary_lines():
        print(f"  {line}")
    return 0


def _import_user_modules(names: Sequence[str] | None) -> None:
    """Import the modules given with --import (they may register presets)."""
    import importlib

    from .errors import ConfigError

    sys.path.insert(0, os.getcwd())  # so a mypresets.py beside the user works
    for name in names or ():
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"--import {name}: {err}; give an importable module name.") from None


def _csv(text: str) -> list[str]:
    """``"fid, KID"`` -> ``["fid", "kid"]``."""
    return [m.strip().lower() for m in text.split(",") if m.strip()]


def _say(*args) -> None:
    """Print on the main process only (rank 0 under torchrun)."""
    if os.environ.get("RANK", "0") == "0":
        print(*args)


def _prepare_out(out: Path, *, resuming: bool, overwrite: bool) -> None:
    """Refuse to mix a new run into a folder that holds another run's files."""
    from .errors import ConfigError

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder.")
    existing = [p for p in (out / "metrics.jsonl", out / "checkpoints" / "last.pt") if p.exists()]
    if existing and not resuming:
        if not overwrite:
            raise ConfigError(
                f"{out} already holds a run ({existing[0].name}); resume it with --resume "
                f"{out / 'checkpoints' / 'last.pt'}, choose another --out, or pass --overwrite."
            )
        if os.environ.get("RANK", "0") == "0":
            (out / "metrics.jsonl").unlink(missing_ok=True)


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from .data import load_images
    from .presets import get_preset
    from .train import Trainer
    from .train.distributed import main_process_first

    overrides = _parse_sets(args.set)
    overrides.update({k: v for k, v in (("batch_size", args.batch_size), ("epochs", args.epochs)) if v is not None})
    out = Path(args.out or f"runs/{args.preset}")
    _prepare_out(out, resuming=args.resume is not None, overwrite=args.overwrite)
    ckpt = None
    if args.resume:
        from .errors import CheckpointError
        from .train.checkpoint import load_checkpoint

        ckpt = load_checkpoint(args.resume)
        if ckpt["preset"] != args.preset:
            raise CheckpointError(
                f"{args.resume} was written by preset {ckpt['preset']!r}, not {args.preset!r}; "
                f"resume it with 'gankit train {ckpt['preset']} --resume {args.resume}'."
            )
        # Resume with the settings the run was trained with; options given now win.
        changed = {k: v for k, v in overrides.items() if k not in ckpt["overrides"] or ckpt["overrides"][k] != v}
        overrides = {**ckpt["overrides"], **overrides}
        if changed:
            _say(f"resuming with changed settings: {', '.join(f'{k}={v}' for k, v in changed.items())}")
    torch.manual_seed(args.seed)
    recipe = get_preset(args.preset, **overrides)
    options = dict(
        device=args.device,
        out_dir=out,
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        cuda_graph=args.cuda_graph,
        latents=args.latents,
        data_seed=args.seed,
        progress=not args.no_progress,
    )
    if args.sync_batchnorm:
        options["sync_batchnorm"] = True
    if args.eval_every or args.eval_every_epochs:
        options.update(
            eval_every=args.eval_every,
            eval_every_epochs=args.eval_every_epochs,
            eval_samples=args.eval_samples,
            eval_metrics=_csv(args.eval_metrics),
            eval_extractor=args.eval_extractor,
        )
    trainer = Trainer(recipe, **options)
    if ckpt is not None:
        trainer.load_state_dict(ckpt, source=args.resume)
        _say(f"resumed {args.resume} at epoch {trainer.epoch}, step {trainer.step}")
    with main_process_first(trainer.dist):  # under torchrun rank 0 fills the cache first
        data = load_images(
            args.data,
            image_size=recipe.image_size,
            channels=recipe.channels,
            recursive=args.recursive,
            center_crop=args.center_crop,
            num_images=args.num_images,
            download=args.download,
            progress=not args.no_progress and trainer.is_main,
        )
    _say(f"training {recipe.name} on {args.data} ({len(data)} images) on {trainer.device}; "
         f"batch {recipe.batch_size}, {recipe.epochs} epochs" + (f", at most {args.max_steps} steps" if args.max_steps else ""))
    try:
        trainer.fit(data, max_steps=args.max_steps)
    except KeyboardInterrupt as stop:
        print(f"gankit: {stop or 'interrupted'}", file=sys.stderr)
        return 130
    _say(f"done: {trainer.step} steps, {trainer.epoch} epochs, {trainer.g_steps} generator steps")
    for name, path in trainer.artifacts.items():
        _say(f"  {name.replace('_', ' ')}: {path}")
    _say(f"  metrics log: {out / 'metrics.jsonl'}")
    _say(f"  checkpoint: {out / 'checkpoints' / 'last.pt'}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from .errors import ConfigError
    from .train import load_generator, resolve_device
    from .train.export import generate
    from .train.outputs import save_grid

    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}.")
    device = resolve_device(args.device)
    g = load_generator(args.checkpoint, device=device)
    gen = torch.Generator().manual_seed(args.seed) if args.seed is not None else None
    images = generate(g, torch.randn(args.n, g.z_dim, generator=gen), device=device)
    nrow = args.nrow or max(1, round(args.n**0.5))
    path = save_grid(((images + 1) / 2).clamp(0, 1), args.out, nrow)
    print(f"wrote {args.n} samples to {path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .train import export_generator
    from .train.export import generator_from_checkpoint

    generator, recipe, ckpt = generator_from_checkpoint(args.checkpoint)
    path = export_generator(generator, recipe, args.out)
    print(f"wrote the generator of {recipe.name} (step {ckpt['step']}) to {path}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .data import load_images
    from .errors import ConfigError
    from .train import resolve_device
    from .train.evaluation import dataset_id, evaluate_generator
    from .train.export import load_generator

    metrics = _csv(args.metrics)
    if args.num_samples < 2:
        raise ConfigError(f"--num-samples must be >= 2, got {args.num_samples}.")
    device = resolve_device(args.device)
    generator = load_generator(args.checkpoint, device=device)  # a .pt checkpoint or an export
    channels, image_size, _ = generator.out_shape
    data = load_images(args.data, image_size=image_size, channels=channels, num_images=args.num_reference,
                       progress=not args.no_progress)
    result = evaluate_generator(
        generator,
        data.images,
        z_dim=generator.z_dim,
        metrics=metrics,
        num_samples=args.num_samples,
        extractor=args.extractor,
        seed=args.seed,
        device=device,
        reference_id=dataset_id(data.images, args.data),
        weights_path=args.inception_weights,
        download=args.download_weights,
    )
    print(result)
    if args.json:
        from .train.checkpoint import atomic_write_bytes

        atomic_write_bytes(args.json, lambda f: f.write(result.to_json().encode() + b"\n"))
        print(f"wrote {args.json}")
    return 0


def _parse_sets(items: Sequence[str] | None) -> dict:
    """Turn ``["key=value", ...]`` into typed recipe overrides."""
    from .errors import ConfigError
    from .presets import RecipeSettings

    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r} (e.g. --set batch_size=32).")
        out[key.strip()] = RecipeSettings.parse_value(key.strip(), value)
    return out


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``gankit`` command.

    Returns:
        The :class:`argparse.ArgumentParser` with one sub-command per action.
    """
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="gankit",
        description="Composable, exact and fast GANs for PyTorch.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gankit {__version__}")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        metavar="MODULE",
        help="import a module first (e.g. one that registers your own presets); repeatable",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("presets", help="list the registered presets")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'dcgan*'")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser(
        "summary",
        help="print a preset's layer tables and settings",
        epilog="example:\n  gankit summary wgan_task2 --set base_channels=32",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("preset", help="a registered preset name (see 'gankit presets')")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser(
        "train",
        help="train a preset",
        description="Train a preset. Unset options keep the preset's values.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("preset", help="a registered preset name (see 'gankit presets')")
    p.add_argument("--data", default="toy-faces",
                   help="image folder, 'toy-faces' (built in, default), or a dataset name: cifar10, mnist, celeba, lsun:CATEGORY, imagefolder:PATH")
    p.add_argument("--epochs", type=int, help="epochs (default: the preset's)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in total")
    p.add_argument("--batch-size", type=int, help="batch size (default: the preset's)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--out", help="output folder (default: runs/PRESET)")
    p.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint of this preset")
    p.add_argument("--overwrite", action="store_true", help="start a new run in an --out that holds one")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, latents and shuffling (default 0)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable)")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="fp32 is faithful (default); bf16/fp16 autocast is faster with other numerics")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format (fast mode)")
    p.add_argument("--compile", action="store_true", help="torch.compile G and D (fast mode)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="capture the whole step in CUDA graphs and replay it (fast mode, CUDA only)")
    p.add_argument("--latents", choices=["cpu", "device"], default="cpu",
                   help="draw latents on the CPU generator (faithful, default) or on the device")
    p.add_argument("--sync-batchnorm", action="store_true", help="synchronise BatchNorm across ranks (torchrun)")
    p.add_argument("--recursive", action="store_true", help="also read images in subfolders")
    p.add_argument("--center-crop", action="store_true", help="keep aspect ratio: resize, then center-crop")
    p.add_argument("--num-images", type=int, help="use at most this many images")
    p.add_argument("--download", action="store_true", help="let torchvision download a standard dataset")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--eval-every", type=int, metavar="N", help="measure sample quality every N steps")
    p.add_argument("--eval-every-epochs", type=int, metavar="N", help="... or every N epochs")
    p.add_argument("--eval-samples", type=int, default=1000, help="generated images per evaluation (1000)")
    p.add_argument("--eval-metrics", default="fid",
                   help="comma-separated: fid, kid, pr, is, swd, ms_ssim (default fid)")
    p.add_argument("--eval-extractor", default="tiny",
                   help="tiny (offline, NOT comparable to published FIDs; default) or inception-v3")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("sample", help="write a grid of samples from a checkpoint or export",
                       epilog="example:\n  gankit sample runs/demo/checkpoints/last.pt --n 64 --out grid.png --seed 1",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a checkpoint (.pt) or a generator export (.safetensors)")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--out", default="samples.png", help="PNG file to write (default samples.png)")
    p.add_argument("--seed", type=int, help="seed of the latents (default: random)")
    p.add_argument("--nrow", type=int, help="images per row (default: square-ish)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("export", help="export a checkpoint's generator to .safetensors",
                       epilog="example:\n  gankit export runs/demo/checkpoints/last.pt --out generator.safetensors",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a training checkpoint (.pt)")
    p.add_argument("--out", default="generator.safetensors", help="file to write")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "eval",
        help="measure sample quality (FID, KID, IS, precision/recall, SWD, MS-SSIM) of a checkpoint",
        epilog="examples:\n"
        "  gankit eval runs/demo/checkpoints/last.pt --data toy-faces --metrics fid,kid\n"
        "  gankit eval g.safetensors --data faces/ --extractor inception-v3 "
        "--inception-weights pt_inception-2015-12-05-6726825d.pth --json fid.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a checkpoint (.pt) or a generator export (.safetensors)")
    p.add_argument("--data", default="toy-faces", help="reference images: folder or dataset name")
    p.add_argument("--metrics", default="fid,kid",
                   help="comma-separated: fid, kid, is, pr, swd, ms_ssim (default fid,kid)")
    p.add_argument("--num-samples", type=int, default=1000, help="generated images (default 1000)")
    p.add_argument("--num-reference", type=int, help="reference images (default: all)")
    p.add_argument("--extractor", default="tiny",
                   help="tiny (offline, NOT comparable to published FIDs; default) or inception-v3")
    p.add_argument("--inception-weights", metavar="FILE", help="local InceptionV3 FID weights file")
    p.add_argument("--download-weights", action="store_true", help="allow downloading InceptionV3 weights")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    p.add_argument("--json", metavar="FILE", help="also write the result with its provenance as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments (without the program name); ``sys.argv[1:]`` when None.

    Returns:
        The exit status: 0 on success, 2 for a user error, 130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        _import_user_modules(args.imports)
        return int(args.func(args) or 0)
    except GankitError as err:
        print(f"gankit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gankit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `gankit summary dcgan_task1 | head`: not an error
        sys.stdout = None
        return 0
    except OSError as err:  # e.g. an output folder that cannot be written
        print(f"gankit: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
