"""The ``gankit`` command line (also ``python -m gankit``).

Every error a user can cause is printed as one line on stderr with a non-zero exit
status; tracebacks are kept for bugs. SIGINT (Ctrl-C), SIGTERM and SIGHUP end the command
with one line and the status ``128 + signal number``, from the first moment (the command
installs its handlers before importing torch). Only ``--import`` loads code from the
current folder (or the ``.py`` file it names), and only the module it names: no folder is
put on the import path.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import DiskFullError, GankitError

__all__ = ["main", "build_parser"]

#: The most images ``gankit sample`` puts in one grid.
MAX_SAMPLES = 10_000
_SEED_LIMIT = 2**64

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
    from .train.guards import check_network_memory

    overrides = _parse_sets(args.set)
    check_network_memory(args.preset, overrides)
    recipe = get_preset(args.preset, **overrides)
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
    """Import the modules given with --import (they may register presets): names or .py paths.

    See :func:`gankit.presets.import_user_module`.
    """
    from .presets import import_user_module

    for name in names or ():
        import_user_module(name)


def _csv(text: str) -> list[str]:
    """``"fid, KID"`` -> ``["fid", "kid"]``."""
    return [m.strip().lower() for m in text.split(",") if m.strip()]


def _say(*args) -> None:
    """Print on the main process only (rank 0 under torchrun)."""
    if os.environ.get("RANK", "0") == "0":
        print(*args)


def _check_seed(seed: int | None, option: str = "--seed") -> None:
    from .errors import ConfigError

    if seed is not None and not 0 <= seed < _SEED_LIMIT:
        raise ConfigError(f"{option} must be between 0 and {_SEED_LIMIT - 1}, got {seed}.")


def _check_positive(value: int | None, option: str) -> None:
    from .errors import ConfigError

    if value is not None and value < 1:
        raise ConfigError(f"{option} must be a positive integer, got {value}.")


def _checkpoint_step(path: Path) -> str:
    """`` (step N)`` for a checkpoint, read lazily; empty when it cannot be read."""
    import torch

    try:
        step = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"]
    except Exception:  # noqa: BLE001 -- only a nicety in an error message
        return ""
    return f" (step {step})" if isinstance(step, int) else ""


def _name_intact_checkpoint(err: DiskFullError, out: Path, resume: str | None) -> None:
    """Complete a disk-full error of a run with the checkpoint that is still good."""
    last = out / "checkpoints" / "last.pt"
    good = last if last.is_file() else (Path(resume) if resume else None)
    if good is None:
        err.hint = "no checkpoint had been written yet: free some space and start the run again"
        return
    err.intact = [f"the previous checkpoint {good}{_checkpoint_step(good)}"]
    err.hint = f"free some space and resume with --resume {good}"


def _settings_of(preset: str, overrides: dict):
    """The settings of a preset with overrides, without building real networks."""
    import torch

    from .presets import recipe_from_name

    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return recipe_from_name(preset, **overrides).settings


def _cmd_train(args: argparse.Namespace) -> int:
    from .train.guards import check_network_memory, check_resume_settings

    _check_seed(args.seed)
    _check_positive(args.max_steps, "--max-steps")
    overrides = {**_config_overrides(args), **_parse_sets(args.set)}
    overrides.update({k: v for k, v in (("batch_size", args.batch_size), ("epochs", args.epochs)) if v is not None})
    if args.out == "":
        from .errors import ConfigError

        raise ConfigError("--out is empty; give a folder for the run's files (default runs/PRESET).")
    out = Path(args.out) if args.out is not None else _default_out(args)
    ckpt, changed = None, {}
    if args.resume is not None:
        from .errors import CheckpointError
        from .train.checkpoint import load_checkpoint

        ckpt = load_checkpoint(args.resume)
        if args.preset not in (ckpt["preset"], ckpt.get("builder")):
            raise CheckpointError(
                f"{args.resume} was written by preset {ckpt['preset']!r}, not {args.preset!r}; "
                f"resume it with 'gankit train {ckpt['preset']} --resume {args.resume}'."
            )
        # Resume with the settings the run was trained with; options given now win.
        saved = {**ckpt["overrides"]}
        overrides = {**saved, **overrides}
        try:
            old_settings = _settings_of(args.preset, saved)
        except GankitError as err:
            raise CheckpointError(f"cannot rebuild the recipe of {args.resume}: {err}") from None
        changed = check_resume_settings(old_settings, _settings_of(args.preset, overrides))
        if changed:
            _say("resuming with changed settings: "
                 + ", ".join(f"{k}={new} (was {old})" for k, (old, new) in changed.items()))
    check_network_memory(args.preset, overrides)  # before any network is allocated
    run = _open_run_folder(args, out)
    try:
        return _train(args, out, overrides, ckpt, changed, run)
    except DiskFullError as err:
        _name_intact_checkpoint(err, out, args.resume)
        raise
    except BaseException:
        if run is not None:  # refused before training wrote anything: leave no trace
            run.abandon()
        raise
    finally:
        if run is not None:
            run.close()


def _default_out(args: argparse.Namespace) -> Path:
    """``runs/PRESET``; when resuming a checkpoint of a run folder (``RUN/checkpoints/x.pt``), ``RUN``."""
    if args.resume is not None:
        resume = Path(args.resume)
        if resume.parent.name == "checkpoints":
            return resume.parent.parent
    return Path(f"runs/{args.preset}")


def _config_overrides(args: argparse.Namespace) -> dict:
    """The settings of ``--config FILE`` that differ from the preset's (sets ``args.preset``)."""
    from .errors import ConfigError

    if args.config is None:
        if args.preset is None:
            raise ConfigError("give a PRESET (see 'gankit presets') or --config FILE (see 'gankit config').")
        return {}
    from dataclasses import asdict

    from .recipefile import preset_settings, read_recipe_file

    file_preset, settings = read_recipe_file(args.config)
    if args.preset is None:
        if file_preset is None:
            raise ConfigError(f"{args.config} names no preset (preset = \"...\"); add one or give PRESET.")
        args.preset = file_preset
    elif file_preset is not None and file_preset != args.preset:
        raise ConfigError(f"{args.config} is a recipe of {file_preset!r}, not {args.preset!r}; drop PRESET "
                          "or give the file of that preset.")
    base = asdict(preset_settings(args.preset))
    changed = {k: v for k, v in settings.items() if base[k] != v}
    try:
        preset_settings(args.preset, changed)
    except ConfigError as err:
        raise ConfigError(f"{args.config}: {err}") from None
    return changed


def _cmd_config(args: argparse.Namespace) -> int:
    from .presets import list_presets
    from .recipefile import recipe_toml

    overrides = _parse_sets(args.set)
    target = Path(args.target)
    if target.suffix in (".pt", ".pth") or target.is_file():
        from .train.checkpoint import load_checkpoint

        ckpt = load_checkpoint(target)
        preset = ckpt["preset"]
        if preset not in list_presets() and ckpt.get("builder"):
            preset = ckpt["builder"]
        overrides = {**ckpt["overrides"], **overrides}
    else:
        preset = args.target
    sys.stdout.write(recipe_toml(preset, overrides))
    return 0


def _open_run_folder(args: argparse.Namespace, out: Path):
    """Lock and prepare the run folder (rank 0 only; the other ranks write nothing)."""
    from .train.rundir import RunFolder

    if os.environ.get("RANK", "0") != "0":
        return None
    run = RunFolder.open(out, preset=args.preset, resume=args.resume, overwrite=args.overwrite)
    if run.removed:
        _say(f"replaced the old run in {out} ({len(run.removed)} of its files removed)")
    return run


def _train(args, out, overrides, ckpt, changed, run) -> int:
    import torch

    from .data import load_images
    from .presets import recipe_from_name
    from .train import TraceLog, Trainer, seed_everything
    from .train.distributed import main_process_first
    from .train.guards import check_batchnorm_batches, resume_batch_index

    # seed-first: the seed fixes the initial weights too; original: the report's notebook
    # order (build the networks, then seed, then data and z_sample)
    if args.seed_order == "seed-first":
        torch.manual_seed(args.seed)
    recipe = recipe_from_name(args.preset, **overrides)
    if args.init_generator or args.init_discriminator:
        recipe.load_weights(generator=args.init_generator, discriminator=args.init_discriminator)
    if args.seed_order == "original":
        seed_everything(args.seed)
    callbacks = [TraceLog(args.trace)] if args.trace else []
    options = dict(
        callbacks=callbacks,
        grid_every_steps=args.grid_every_steps,
        checkpoint_every_steps=args.checkpoint_every_steps,
        keep_last=args.keep_last,
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
    if args.tensorboard:
        from .train import TensorBoardLogger

        options["loggers"] = [TensorBoardLogger(out / "tensorboard")]
    trainer = Trainer(recipe, **options)
    if ckpt is not None:
        fresh_lrs = [[g["lr"] for g in opt.param_groups] for opt in (trainer.opt_g, trainer.opt_d)]
        trainer.load_state_dict(ckpt, source=args.resume)
        # The optimizers come back with the learning rates they were saved with: apply the
        # ones asked for now.
        for opt, key, lrs in zip((trainer.opt_g, trainer.opt_d), ("g_lr", "d_lr"), fresh_lrs):
            if key in changed:
                for group, lr in zip(opt.param_groups, lrs):
                    group["lr"] = lr
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
            root=args.data_root,
            progress=not args.no_progress and trainer.is_main,
            file_order=args.file_order,
            **({"labels": True} if trainer.num_classes else {}),
        )
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for net in (recipe.generator, recipe.discriminator)
           for m in net.modules()):
        check_batchnorm_batches(None, num_images=len(data), batch_size=recipe.batch_size)
    if ckpt is not None:
        # Another batch size (or other data): go on at the same place in the epoch's images.
        old_batch_size = changed.get("batch_size", (recipe.batch_size,))[0]
        num_batches = -(-len(data) // recipe.batch_size)
        index = resume_batch_index(trainer.batch_index, old_batch_size, recipe.batch_size, num_batches)
        if index != trainer.batch_index:
            _say(f"epoch {trainer.epoch + 1} goes on at batch {index} of {num_batches} (it had "
                 f"used {trainer.batch_index} batches of {old_batch_size} images)")
            trainer.batch_index = index
    _say(f"training {recipe.name} on {args.data} ({len(data)} images) on {trainer.device}; "
         f"batch {recipe.batch_size}, {recipe.epochs} epochs" + (f", at most {args.max_steps} steps" if args.max_steps else ""))
    trainer.fit(data, max_steps=args.max_steps)
    _say(f"done: {trainer.step} steps, {trainer.epoch} epochs, {trainer.g_steps} generator steps")
    for name, path in trainer.artifacts.items():
        _say(f"  {name.replace('_', ' ')}: {path}")
    _say(f"  metrics log: {out / 'metrics.jsonl'}")
    _say(f"  checkpoint: {out / 'checkpoints' / 'last.pt'}")
    return 0


def _sweep_sets(items: Sequence[str] | None) -> tuple[dict, dict]:
    """``--set key=v`` (every member) and ``--set key=v1,v2`` (one member per value)."""
    from .errors import ConfigError
    from .presets import RecipeSettings

    fixed, grid = {}, {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value or key=v1,v2,..., got {item!r} (e.g. --set g_lr=1e-4,2e-4).")
        values = [RecipeSettings.parse_value(key, v.strip()) for v in value.split(",")]
        if key in fixed or key in grid:
            raise ConfigError(f"--set {key} is given twice; give its values once (--set {key}=v1,v2).")
        if len(values) == 1:
            fixed[key] = values[0]
        else:
            grid[key] = values
    return fixed, grid


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .train.guards import check_network_memory
    from .train.multi import MultiTrainer, parse_seeds

    seeds = parse_seeds(args.seeds)
    _check_positive(args.max_steps, "--max-steps")
    fixed, grid = _sweep_sets(args.set)
    fixed.update({k: v for k, v in (("batch_size", args.batch_size), ("epochs", args.epochs)) if v is not None})
    if args.out == "":
        raise ConfigError("--out is empty; give a folder for the sweep's files (default runs/sweep-PRESET).")
    out = Path(args.out) if args.out is not None else Path(f"runs/sweep-{args.preset}")
    if out.is_file():
        raise ConfigError(f"--out {out} is a file; give a folder.")
    if (out / "sweep.pt").exists() and not (args.resume or args.overwrite):
        raise ConfigError(f"{out} holds a sweep; continue it with --resume {out / 'sweep.pt'}, replace it with "
                          "--overwrite, or choose another --out.")
    if out.is_dir() and not (out / "sweep.pt").exists():
        foreign = [p.name for p in out.iterdir() if not (p / "gankit-run.json").exists()
                   and p.name not in ("summary.json", "summary.txt", "spread.png")]
        if foreign:
            raise ConfigError(f"--out {out} is not empty and is not a sweep's folder (it holds {foreign[0]}); "
                              "choose an empty or new folder.")
    check_network_memory(args.preset, fixed)
    options = dict(precision=args.precision, channels_last=args.channels_last, latents=args.latents,
                   progress=False, grid_every_steps=args.grid_every_steps,
                   checkpoint_every_steps=args.checkpoint_every_steps)
    if args.eval_every:
        options.update(eval_every=args.eval_every, eval_samples=args.eval_samples,
                       eval_metrics=_csv(args.eval_metrics), eval_extractor=args.eval_extractor)
    sweep = MultiTrainer(args.preset, seeds=seeds, overrides=fixed, grid=grid, engine=args.engine,
                         out_dir=out, device=args.device, **options)
    if args.resume:
        sweep.resume(args.resume)
    from .train.rundir import RunFolder

    runs = []
    try:
        for m in sweep.members:
            own = out / m.name / "checkpoints" / "last.pt"  # what the member's folder holds of its run
            resume = (str(own) if own.exists() else args.resume) if args.resume else None
            runs.append(RunFolder.open(out / m.name, preset=args.preset, resume=resume, overwrite=args.overwrite))
        _say(f"sweep of {args.preset}: {len(sweep.all_members)} members ({', '.join(m.name for m in sweep.all_members)})"
             f" on {sweep.device}, engine {sweep.engine}" + (f", at most {args.max_steps} steps" if args.max_steps else ""))
        t0 = time.perf_counter()
        sweep.fit(args.data, epochs=args.epochs, max_steps=args.max_steps, num_images=args.num_images)
        _say(f"done in {time.perf_counter() - t0:.1f} s: {sweep.trainers[0].step if sweep.trainers else 0} steps per member")
    finally:
        for run in runs:
            run.close()
    if sweep.rank == 0:
        _say((out / "summary.txt").read_text().rstrip())
        _say(f"  summary: {out / 'summary.json'}, {out / 'summary.txt'}")
        _say(f"  spread figure: {out / 'spread.png'}")
        _say(f"  sweep checkpoint: {out / 'sweep.pt'} (one member as a checkpoint: gankit extract)")
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from .train.multi import extract_member

    path = extract_member(args.sweep, args.member, args.out, overwrite=args.overwrite)
    _say(f"wrote member {args.member} of {args.sweep} to {path} (an ordinary checkpoint)")
    return 0


def _single_output(args: argparse.Namespace, out: str, kind: str, option: str = "--out") -> Path:
    from .train.rundir import check_output_file

    return check_output_file(out, kind=kind, inputs=[args.checkpoint], overwrite=args.overwrite, option=option)


def _write_single(args: argparse.Namespace, path: Path, write):
    """Run ``write()``; a full disk names the output and says what is intact."""
    existed = path.exists()
    try:
        return write()
    except DiskFullError as err:
        err.intact = [str(args.checkpoint)] + ([f"the previous {path}"] if existed else [])
        raise


def _cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from .errors import ConfigError
    from .train import load_generator, resolve_device
    from .train.export import generate
    from .train.outputs import save_grid

    if not 1 <= args.n <= MAX_SAMPLES:
        raise ConfigError(f"--n must be between 1 and {MAX_SAMPLES:,} (one grid image), got {args.n}.")
    _check_positive(args.nrow, "--nrow")
    _check_seed(args.seed)
    out = _single_output(args, args.out, "png")
    device = resolve_device(args.device)
    g = load_generator(args.checkpoint, device=device, ema=not args.raw)
    gen = torch.Generator().manual_seed(args.seed) if args.seed is not None else None
    n, labels, what = _sample_classes(args, g)
    images = generate(g, torch.randn(n, g.z_dim, generator=gen), device=device, labels=labels)
    nrow = args.per_class or args.nrow or max(1, round(n**0.5))
    path = _write_single(args, out, lambda: save_grid(((images + 1) / 2).clamp(0, 1), out, nrow))
    print(f"wrote {n} samples{what} to {path}")
    return 0


def _sample_classes(args: argparse.Namespace, g) -> tuple[int, object, str]:
    """``(number of images, labels, description)`` for ``--class`` / ``--per-class``."""
    import torch

    from .errors import ConfigError
    from .train.export import class_index, sample_labels

    k = int(getattr(g, "num_classes", 0) or 0)
    if (args.class_ is not None or args.per_class) and not k:
        raise ConfigError("this generator is unconditional: --class and --per-class need a class-conditional one.")
    if args.class_ is not None and args.per_class:
        raise ConfigError("give --class (one class) or --per-class (a row per class), not both.")
    if args.per_class:
        _check_positive(args.per_class, "--per-class")
        if args.per_class * k > MAX_SAMPLES:
            raise ConfigError(f"--per-class {args.per_class} x {k} classes is more than {MAX_SAMPLES:,} images.")
        labels = torch.arange(k).repeat_interleave(args.per_class)
        return len(labels), labels, f" ({args.per_class} per class, one row per class)"
    if args.class_ is not None:
        c = class_index(g, args.class_)
        names = getattr(g, "class_names", None) or []
        shown = f"{c} ({names[c]})" if c < len(names) else str(c)
        return args.n, sample_labels(g, args.n, c), f" of class {shown}"
    return args.n, sample_labels(g, args.n), ""


def _cmd_export(args: argparse.Namespace) -> int:
    from .train import export_generator
    from .train.export import generator_from_checkpoint

    if args.format != "safetensors":
        return _export_format(args)
    out = _single_output(args, args.dest or args.out, "generator")
    generator, recipe, ckpt = generator_from_checkpoint(args.checkpoint, ema=not args.raw)
    path = _write_single(args, out, lambda: export_generator(generator, recipe, out))
    print(f"wrote the generator of {recipe.name} (step {ckpt['step']}) to {path}")
    return 0


def _export_format(args: argparse.Namespace) -> int:
    """``gankit export CKPT --format hub DIR`` and ``--format onnx FILE``."""
    from .errors import ConfigError
    from .train.export import generator_from_checkpoint
    from .train.hub import export_hub, export_onnx

    dest = args.dest or (None if args.out == "generator.safetensors" else args.out)
    if dest is None:
        raise ConfigError(f"--format {args.format} needs a destination: gankit export CKPT --format {args.format} "
                          + ("DIR" if args.format == "hub" else "gen.onnx") + ".")
    if args.format == "hub":
        folder = export_hub(args.checkpoint, dest, ema=not args.raw, overwrite=args.overwrite)
        print(f"wrote a hub-style folder to {folder} (model.safetensors, config.json, README.md, samples.png)")
        return 0
    out = Path(dest)
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it or choose another file.")
    if out.resolve() == Path(args.checkpoint).resolve():
        raise ConfigError(f"{out} is the checkpoint being read; choose another file.")
    generator, recipe, ckpt = generator_from_checkpoint(args.checkpoint, ema=not args.raw)
    export_onnx(generator, out, z_dim=recipe.settings.z_dim)
    print(f"wrote the generator of {recipe.name} (step {ckpt['step']}) to {out} (ONNX, input z: (batch, "
          f"{recipe.settings.z_dim}), dynamic batch)")
    return 0


def _cmd_interpolate(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .train import load_generator, resolve_device
    from .train.interpolate import interpolate, save_gif
    from .train.outputs import save_grid

    _check_seed(args.seed)
    _check_positive(args.rows, "--rows")
    if args.steps < 2:
        raise ConfigError(f"--steps must be >= 2 (the two ends included), got {args.steps}.")
    out = _single_output(args, args.out, "png")
    gif = None
    if not args.no_gif:
        gif = Path(args.gif) if args.gif else out.with_suffix(".gif")
        if gif.exists() and not args.overwrite:
            raise ConfigError(f"{gif} exists; pass --overwrite to replace it, --gif FILE, or --no-gif.")
    device = resolve_device(args.device)
    g = load_generator(args.checkpoint, device=device, ema=not args.raw)
    images = interpolate(g, rows=args.rows, steps=args.steps, seed=args.seed, method=args.method, device=device)
    _write_single(args, out, lambda: save_grid(images, out, args.steps))
    paths = images.shape[0] // args.steps
    print(f"wrote {paths} {args.method} paths of {args.steps} images to {out}")
    if gif is not None:
        _write_single(args, gif, lambda: save_gif(images, gif, steps=args.steps))
        print(f"wrote the animation to {gif}")
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
    _check_seed(args.seed)
    json_out = _single_output(args, args.json, "json", option="--json") if args.json is not None else None
    device = resolve_device(args.device)
    generator = load_generator(args.checkpoint, device=device, ema=not args.raw)  # a .pt or an export
    channels, image_size, _ = generator.out_shape
    if args.per_class:
        return _eval_per_class(args, generator, metrics, device, json_out)
    data = load_images(args.data, image_size=image_size, channels=channels, num_images=args.num_reference,
                       root=args.data_root, progress=not args.no_progress)
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
    _warn_small_samples(result)
    print(result)
    if json_out is not None:
        from .train.checkpoint import atomic_write_bytes

        _write_single(args, json_out,
                      lambda: atomic_write_bytes(json_out, lambda f: f.write(result.to_json().encode() + b"\n")))
        print(f"wrote {json_out}")
    return 0


def _eval_per_class(args: argparse.Namespace, generator, metrics, device, json_out) -> int:
    """``gankit eval --per-class``: intra-class metrics and the conditional accuracy."""
    import json

    from .data import load_images
    from .errors import ConfigError
    from .metrics import conditional_accuracy, per_class_evaluate, train_label_classifier

    k = int(getattr(generator, "num_classes", 0) or 0)
    if not k:
        raise ConfigError("--per-class needs a class-conditional generator; this one is unconditional.")
    channels, image_size, _ = generator.out_shape
    data = load_images(args.data, image_size=image_size, channels=channels, num_images=args.num_reference,
                       progress=not args.no_progress, labels=True)
    if data.num_classes > k:
        raise ConfigError(f"the reference data has {data.num_classes} classes, the generator {k}; evaluate on its data.")
    names = list(generator.class_names or data.classes or [])
    per_class = max(2, args.num_samples // k)
    result = per_class_evaluate(generator, data.images, data.labels, metrics=metrics, num_per_class=per_class,
                                seed=args.seed, device=device, class_names=names or None, extractor=args.extractor)
    print(result)
    clf = train_label_classifier(data.images, data.labels, num_classes=k, seed=args.seed)
    acc = conditional_accuracy(generator, clf, num_per_class=per_class, seed=args.seed, device=device)
    print(acc)
    if json_out is not None:
        from .train.checkpoint import atomic_write_bytes

        text = json.dumps({"per_class": result.to_dict(), "conditional_accuracy": acc.to_dict()}, indent=2)
        _write_single(args, json_out, lambda: atomic_write_bytes(json_out, lambda f: f.write(text.encode() + b"\n")))
        print(f"wrote {json_out}")
    return 0


def _warn_small_samples(result) -> None:
    """Say so when FID/KID rest on fewer images than the extractor has feature dimensions."""
    dim = (getattr(result, "extractor_info", None) or {}).get("feature_dim")
    few = min(result.num_real, result.num_fake)
    if isinstance(dim, int) and few <= dim:
        print(
            f"gankit: warning: {result.num_fake} generated and {result.num_real} reference images are too "
            f"few for a reliable FID or KID: the {dim} features of {result.extractor} need more than "
            f"{dim} images on each side for a non-singular covariance (published FIDs use 50000); "
            "use --num-samples and --num-reference above that.",
            file=sys.stderr,
        )


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
        help="import a module first (e.g. one that registers your own presets): a module name or the "
             "path of a .py file; repeatable",
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
    p.add_argument("preset", nargs="?", help="a registered preset name (see 'gankit presets'), or a recipe "
                                             "builder 'module:function' (e.g. with --import); with --config: "
                                             "the file's")
    p.add_argument("--config", metavar="FILE",
                   help="a recipe file (gankit config PRESET > FILE); options given here override it")
    p.add_argument("--data", default="toy-faces",
                   help="image folder, 'toy-faces' (built in, default), or a dataset name: cifar10, mnist, celeba, lsun:CATEGORY, imagefolder:PATH")
    p.add_argument("--epochs", type=int, help="epochs (default: the preset's)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in total")
    p.add_argument("--batch-size", type=int, help="batch size (default: the preset's)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--out", help="output folder (default: runs/PRESET; with --resume RUN/checkpoints/X.pt: RUN)")
    p.add_argument("--resume", metavar="CKPT", help="continue from a checkpoint of this preset")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run an --out folder holds (only that run's files are removed)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, latents and shuffling (default 0)")
    p.add_argument("--seed-order", choices=["seed-first", "original"], default="seed-first",
                   help="seed-first (default): seed, then build (the seed fixes the initial weights); "
                        "original: build, then seed, then data and z_sample, as the report's notebook "
                        "(initial weights not fixed by the seed: load them with --init-generator/"
                        "--init-discriminator to replay a run)")
    p.add_argument("--init-generator", metavar="PTH", help="initial generator weights (a saved state dict)")
    p.add_argument("--init-discriminator", metavar="PTH", help="initial discriminator weights (a saved state dict)")
    p.add_argument("--file-order", choices=["sorted", "listing"], default="sorted",
                   help="order of a folder's files: sorted (default, the same everywhere) or listing "
                        "(the file system's, as the report's glob.glob; breaks equality across copies)")
    p.add_argument("--trace", metavar="FILE", help="write each step's batch and latent digests (JSON lines)")
    p.add_argument("--grid-every-steps", type=int, metavar="N", help="also write the sample grid every N steps")
    p.add_argument("--checkpoint-every-steps", type=int, metavar="N", help="also save a checkpoint every N steps")
    p.add_argument("--keep-last", type=int, metavar="K", help="keep only the newest K periodic checkpoints")
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
    p.add_argument("--data-root", metavar="DIR",
                   help="where standard datasets (cifar10, mnist, ...) are stored (default: the gankit cache)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log scalars, sample grids and settings to OUT/tensorboard (needs tensorboard)")
    p.add_argument("--eval-every", type=int, metavar="N", help="measure sample quality every N steps")
    p.add_argument("--eval-every-epochs", type=int, metavar="N", help="... or every N epochs")
    p.add_argument("--eval-samples", type=int, default=1000, help="generated images per evaluation (1000)")
    p.add_argument("--eval-metrics", default="fid",
                   help="comma-separated: fid, kid, pr, is, swd, ms_ssim (default fid)")
    p.add_argument("--eval-extractor", default="tiny",
                   help="tiny (offline, NOT comparable to published FIDs; default) or inception-v3")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "sweep",
        help="train K seeds and/or settings of a preset together, each as if alone",
        epilog="examples:\n  gankit sweep dcgan_task1 --seeds 0-3 --max-steps 500\n"
               "  gankit sweep wgan_task2 --seeds 0,1 --set d_lr=5e-5,1e-4 --out runs/sweep-lr\n"
               "  gankit extract runs/sweep-lr/sweep.pt --member seed1-d_lr=5e-05 --out seed1.pt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("preset", help="a registered preset name (see 'gankit presets')")
    p.add_argument("--seeds", default="0", help="seeds: 0-7, 0,3,5 or 0-1,10 (default 0)")
    p.add_argument("--set", action="append", metavar="KEY=V[,V2,...]",
                   help="a setting for every member (KEY=V) or one member per value (KEY=V1,V2); repeatable")
    p.add_argument("--engine", choices=["auto", "loop", "vmap"], default="auto",
                   help="auto (default: vmap on CUDA, loop elsewhere), loop (bitwise solo runs) or vmap "
                        "(members' networks batched)")
    p.add_argument("--data", default="toy-faces", help="as gankit train --data (loaded once, shared)")
    p.add_argument("--num-images", type=int, help="use at most this many images")
    p.add_argument("--epochs", type=int, help="epochs (default: the preset's)")
    p.add_argument("--max-steps", type=int, help="stop every member after this many steps")
    p.add_argument("--batch-size", type=int, help="batch size (default: the preset's)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--out", help="the sweep folder (default runs/sweep-PRESET); one run folder per member inside")
    p.add_argument("--resume", metavar="SWEEP_PT", help="continue a sweep from its sweep.pt")
    p.add_argument("--overwrite", action="store_true", help="replace the sweep an --out folder holds")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="as gankit train")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format (fast mode)")
    p.add_argument("--latents", choices=["cpu", "device"], default="cpu", help="as gankit train")
    p.add_argument("--grid-every-steps", type=int, metavar="N", help="also write each member's grid every N steps")
    p.add_argument("--checkpoint-every-steps", type=int, metavar="N", help="also save each member every N steps")
    p.add_argument("--eval-every", type=int, metavar="N", help="measure each member's sample quality every N steps")
    p.add_argument("--eval-samples", type=int, default=1000, help="generated images per evaluation (1000)")
    p.add_argument("--eval-metrics", default="fid", help="comma-separated, as gankit train (default fid)")
    p.add_argument("--eval-extractor", default="tiny", help="tiny (offline; default) or inception-v3")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("extract", help="write one member of a sweep checkpoint as an ordinary checkpoint")
    p.add_argument("sweep", help="the sweep's sweep.pt")
    p.add_argument("--member", required=True, help="the member's name (e.g. seed3) or index")
    p.add_argument("--out", required=True, help="the .pt file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser(
        "config",
        help="print every setting of a preset or checkpoint as a commented TOML recipe file",
        epilog="examples:\n  gankit config dcgan_task1 --set batch_size=32 > run.toml\n"
               "  gankit train --config run.toml --set epochs=5\n"
               "  gankit config runs/demo/checkpoints/last.pt     # the settings a run was trained with",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", help="a preset name, or a training checkpoint (.pt)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable)")
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser("sample", help="write a grid of samples from a checkpoint or export",
                       epilog="example:\n  gankit sample runs/demo/checkpoints/last.pt --n 64 --out grid.png --seed 1",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a checkpoint (.pt) or a generator export (.safetensors)")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--out", default="samples.png", help="PNG file to write (default samples.png)")
    p.add_argument("--seed", type=int, help="seed of the latents (default: random)")
    p.add_argument("--nrow", type=int, help="images per row (default: square-ish)")
    p.add_argument("--class", dest="class_", metavar="CLASS",
                   help="class-conditional generators: sample this class (an index or a class name)")
    p.add_argument("--per-class", type=int, metavar="N",
                   help="class-conditional generators: a grid of N images per class, one row per class")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    p.add_argument("--raw", action="store_true",
                   help="from a checkpoint of a run with a generator EMA: the raw generator, not the average")
    p.add_argument("--overwrite", action="store_true", help="replace an --out file that gankit did not write")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("export", help="export a checkpoint's generator to .safetensors",
                       epilog="examples:\n  gankit export runs/demo/checkpoints/last.pt --out generator.safetensors\n"
                              "  gankit export runs/demo/checkpoints/last.pt --format hub my-gan/\n"
                              "  gankit export runs/demo/checkpoints/last.pt --format onnx gen.onnx",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a training checkpoint (.pt)")
    p.add_argument("dest", nargs="?", help="where to write (the same as --out): a file, or a folder for --format hub")
    p.add_argument("--out", default="generator.safetensors", help="file to write")
    p.add_argument("--format", choices=["safetensors", "hub", "onnx"], default="safetensors",
                   help="safetensors (default): the weights and preset; hub: a folder with weights, config.json, "
                        "a model card and a sample grid; onnx: an ONNX graph with a dynamic batch (needs onnx)")
    p.add_argument("--raw", action="store_true",
                   help="from a checkpoint of a run with a generator EMA: the raw generator, not the average")
    p.add_argument("--overwrite", action="store_true", help="replace an --out file that gankit did not write")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "interpolate",
        help="write rows of latent interpolations (slerp/lerp between seeded latents) as a PNG and a GIF",
        epilog="examples:\n  gankit interpolate runs/demo/checkpoints/last.pt --out interp.png --seed 1\n"
               "  gankit interpolate generator.safetensors --method both --rows 3 --steps 10 --out interp.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a checkpoint (.pt), a generator export (.safetensors) or a hub folder")
    p.add_argument("--out", default="interp.png", help="PNG grid to write, one path per row (default interp.png)")
    p.add_argument("--gif", metavar="FILE", help="the animation (default: --out with .gif)")
    p.add_argument("--no-gif", action="store_true", help="write the PNG only")
    p.add_argument("--rows", type=int, default=4, help="endpoint pairs (default 4)")
    p.add_argument("--steps", type=int, default=8, help="images per path, both ends included (default 8)")
    p.add_argument("--method", choices=["slerp", "lerp", "both"], default="slerp",
                   help="slerp (default), lerp, or both (a lerp row under each slerp row)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the endpoints: the latents of 'gankit sample --n 2*ROWS --seed S' (default 0)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    p.add_argument("--raw", action="store_true",
                   help="from a checkpoint of a run with a generator EMA: the raw generator, not the average")
    p.add_argument("--overwrite", action="store_true", help="replace output files that gankit did not write")
    p.set_defaults(func=_cmd_interpolate)

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
    p.add_argument("--data-root", metavar="DIR",
                   help="where standard datasets are stored (default: the gankit cache)")
    p.add_argument("--metrics", default="fid,kid",
                   help="comma-separated: fid, kid, is, pr, swd, ms_ssim (default fid,kid)")
    p.add_argument("--num-samples", type=int, default=1000, help="generated images (default 1000)")
    p.add_argument("--num-reference", type=int, help="reference images (default: all)")
    p.add_argument("--extractor", default="tiny",
                   help="tiny (offline, NOT comparable to published FIDs; default) or inception-v3")
    p.add_argument("--inception-weights", metavar="FILE", help="local InceptionV3 FID weights file")
    p.add_argument("--raw", action="store_true",
                   help="from a checkpoint of a run with a generator EMA: the raw generator, not the average")
    p.add_argument("--download-weights", action="store_true", help="allow downloading InceptionV3 weights")
    p.add_argument("--seed", type=int, default=0, help="seed of the latents (default 0)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    p.add_argument("--json", metavar="FILE", help="also write the result with its provenance as JSON")
    p.add_argument("--per-class", action="store_true",
                   help="class-conditional generators: the metrics class by class (intra-class) and the "
                        "conditional accuracy (a classifier trained on the labelled --data)")
    p.add_argument("--overwrite", action="store_true", help="replace a --json file that gankit did not write")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments (without the program name); ``sys.argv[1:]`` when None.

    Returns:
        The exit status: 0 on success, 2 for a user error, ``128 + N`` when stopped by
        signal N (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP).
    """
    from .signals import Interrupted, exit_on_signals

    try:
        with exit_on_signals():  # before anything slow: an early Ctrl-C is one line too
            parser = build_parser()
            args, extra = parser.parse_known_args(argv)
            if extra and getattr(args, "command", None) == "export" and args.dest is None and len(extra) == 1 \
                    and not extra[0].startswith("-"):
                args.dest = extra[0]  # `gankit export CKPT --format hub DIR`: DIR after the options
            elif extra:
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            if not getattr(args, "func", None):
                parser.print_help()
                return 2
            _import_user_modules(args.imports)
            return int(args.func(args) or 0)
    except GankitError as err:  # DiskFullError too: one line naming the file
        print(f"gankit: error: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(f"gankit: {stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt as stop:
        print(f"gankit: {stop or 'interrupted'}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `gankit summary dcgan_task1 | head`: not an error
        sys.stdout = None
        return 0
    except OSError as err:  # e.g. an output folder that cannot be written
        from .train.checkpoint import is_disk_full

        if is_disk_full(err):
            print(f"gankit: error: {DiskFullError(err.filename or '?')}", file=sys.stderr)
            return 2
        print(f"gankit: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
