"""Sample quality over training, side by side: which recipe gets good, which collapses.

Trains each preset of a list (default the report's two, ``dcgan_task1`` and
``wgan_task2``) on one dataset (default the built-in ``toy-faces``; any folder or dataset
name) for the same number of training images, over several seeds, and evaluates every
``--eval-every-images`` images with the Trainer's periodic evaluation
(``Trainer(eval_every=..., eval_metrics=...)``): SWD and MS-SSIM diversity (no network),
FID, KID and precision/recall with the offline ``tiny`` extractor (or InceptionV3 from a
local weights file). It writes

* ``quality.json``: every curve (metric against training images seen) per preset and seed,
  with gankit's version, the git commit, the machine, the settings, the seeds and the
  metrics' provenance;
* ``quality.png``: each metric against training images seen, one line per preset (mean
  over seeds, min-max band), and the sample grids (first seed) at each preset's best
  evaluation (by ``--best-by``, default SWD) and its last one;
* ``table.txt``: the table printed at the end (best, last, last/best, where the best was,
  and the collapse flag of every seed).

**Collapse flag.** For a metric curve ``v_0 .. v_n`` (one seed), let ``b`` be its best value
(lowest; highest for precision and recall) at evaluation ``i``, and call an evaluation
*worse* when it is more than ``--collapse-threshold`` (default 0.5, i.e. 50%) worse than
``b``: ``v > (1 + t) b`` (``v < b / (1 + t)`` for precision / recall). The seed is

* ``stable`` -- no evaluation after ``i`` is worse;
* ``oscillates`` -- one after ``i`` is worse, but a later one is back within the threshold;
* ``collapsed`` -- from the first worse evaluation after ``i`` to the end, every one is
  worse: the metric fell away from its best and did not recover.

The flag is ``-`` when the best is not positive (a relative threshold is then meaningless:
precision 0 throughout, or a negative unbiased KID). ``last/best`` is the last value over
the best (best over last for precision / recall), so
1 means the run ends at its best and larger is worse for every metric. MS-SSIM is treated
as lower-is-better (more diverse); the real data's own MS-SSIM is printed beside it.

Configurations (``--config``; every option below overrides them):

* ``cpu`` (default, ``make quality``): every preset at 32x32 (both report layouts have a
  32x32 form: dcgan_task1 one doubling fewer, wgan_task2 the ``TASK2_STAGES[32]`` stage
  list), ``base_channels`` 32 (half the report's width), fast mode (bf16 autocast +
  channels-last), 2 seeds, 163,840 training images per preset (16 epochs of 10,240 toy
  faces) evaluated every 20,480 images on 2,000 samples against 2,000 real images (a fixed
  random subset). About half an hour on 2 CPU cores for the two report presets.
* ``gpu``: the report's settings -- the presets' own defaults (64x64, width 64, the
  report's optimizers and batch sizes), faithful fp32, 51 epochs of the dataset, evaluated
  every 3 epochs on 10,000 samples against 10,000 real images, 3 seeds; same outputs. The
  extractor runs on the GPU; SWD and MS-SSIM run on the host CPU (the Trainer's periodic
  evaluation does not move them), which dominates an evaluation of 10,000 images.
* ``quick``: seconds, for tests (width 4, 512 training images, 64 samples).

The seeds of each preset train together as the members of one
:class:`gankit.train.MultiTrainer` (engine ``loop``: every member is bitwise the run of its
seed alone, so ``--no-sweep``, one run after another, gives the same numbers); a member's
``chunk_seconds`` / ``wall_seconds`` are its share (the sweep's time over the members).

Usage::

    python benchmarks/quality.py                                   # make quality
    python benchmarks/quality.py --config gpu --out runs/quality-gpu
    python benchmarks/quality.py --presets dcgan_task1,my_gan --import my_presets \\
        --data path/to/faces --extractor inception-v3 --inception-weights pt_inception.pth
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import gankit
from gankit.data import load_images
from gankit.errors import ConfigError, GankitError
from gankit.metrics import get_extractor, ms_ssim_diversity, sliced_wasserstein_distance
from gankit.presets import import_user_module

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the sibling provenance.py, also when this file is loaded by path
    sys.path.insert(0, str(HERE))
from provenance import git_commit, machine  # noqa: E402

#: What the Trainer evaluates, and the curves the table and figure show.
EVAL_METRICS = ("swd", "ms_ssim", "fid", "kid", "pr")
CURVES = ("swd", "fid", "kid_mean", "precision", "recall", "ms_ssim")
HIGHER_IS_BETTER = {"precision", "recall"}
LABELS = {
    "swd": "SWD x1e3 (mean of levels)",
    "fid": "FID",
    "kid_mean": "KID",
    "precision": "precision",
    "recall": "recall",
    "ms_ssim": "MS-SSIM of pairs (lower = more diverse)",
}
GRID = 6  # sample grids are GRID x GRID images
GRID_SEED = 12345  # latents of the sample grids (a private generator)

CONFIGS: dict[str, dict[str, Any]] = {
    "cpu": dict(device="cpu", image_size=32, base_channels=32, fast=True, seeds="0,1",
                num_images=10240, images=163_840, eval_every_images=20_480, eval_samples=2000,
                eval_reference=2000),
    "gpu": dict(device="cuda", image_size=None, base_channels=None, fast=False, seeds="0,1,2",
                num_images=10240, epochs=51, eval_every_epochs=3, eval_samples=10_000,
                eval_reference=10_000),
    "quick": dict(device="cpu", image_size=32, base_channels=4, fast=True, seeds="0,1",
                  num_images=256, images=512, eval_every_images=256, eval_samples=64,
                  eval_reference=128),
}


# ------------------------------------------------------------------------ where and what


def images_seen(step: int, num_images: int, batch_size: int) -> int:
    """Training images seen after ``step`` steps of shuffled epochs with a smaller last batch."""
    per_epoch = math.ceil(num_images / batch_size)
    epochs, rest = divmod(step, per_epoch)
    return epochs * num_images + min(rest * batch_size, num_images)


# ------------------------------------------------------------------------ the curves


def collapse_state(values: list[float], higher_is_better: bool, threshold: float) -> str:
    """``stable``, ``oscillates`` or ``collapsed`` (see the module docstring); ``-`` if undefined."""
    v = list(values)
    if not v or any(not math.isfinite(x) for x in v):
        return "-"
    best_i = int(np.argmax(v) if higher_is_better else np.argmin(v))
    best = v[best_i]
    if best <= 0:  # a relative threshold means nothing (precision 0; KID can be negative)
        return "-"

    def worse(x: float) -> bool:
        return x < best / (1 + threshold) if higher_is_better else x > best * (1 + threshold)

    after = v[best_i + 1 :]
    first = next((k for k, x in enumerate(after) if worse(x)), None)
    if first is None:
        return "stable"
    return "collapsed" if all(worse(x) for x in after[first:]) else "oscillates"


def stability_ratio(best: float, last: float, higher_is_better: bool) -> float:
    """last / best (best / last when higher is better): 1 = ends at its best, larger = worse."""
    num, den = (best, last) if higher_is_better else (last, best)
    if den == 0:
        return 1.0 if num == 0 else math.inf
    return num / den


def summarise(runs: list[dict[str, Any]], threshold: float) -> list[dict[str, Any]]:
    """One row per preset and metric: best / last of the mean curve, and each seed's flag."""
    rows = []
    for preset in dict.fromkeys(r["preset"] for r in runs):
        mine = [r for r in runs if r["preset"] == preset]
        x = mine[0]["images_seen"]
        for metric in CURVES:
            curves = np.array([[e[metric] for e in r["evals"]] for r in mine], dtype=float)
            mean = curves.mean(axis=0)
            hib = metric in HIGHER_IS_BETTER
            i = int(np.argmax(mean) if hib else np.argmin(mean))
            rows.append({
                "preset": preset,
                "metric": metric,
                "best": float(mean[i]),
                "last": float(mean[-1]),
                "last_over_best": stability_ratio(float(mean[i]), float(mean[-1]), hib),
                "best_at_images": int(x[i]),
                "best_at_step": int(mine[0]["evals"][i]["step"]),
                "mean_curve_flag": collapse_state(mean.tolist(), hib, threshold),
                "seed_flags": {str(r["seed"]): collapse_state(c.tolist(), hib, threshold)
                               for r, c in zip(mine, curves)},
            })
    return rows


def format_table(rows: list[dict[str, Any]], extras: dict[str, str]) -> str:
    """The printed table (plain text)."""
    head = ("preset", "metric", "best", "last", "last/best", "best at images", "best at step",
            "collapse flag per seed")
    lines = []
    for r in rows:
        flags = ", ".join(f"s{k}: {v}" for k, v in r["seed_flags"].items())
        ratio = "inf" if math.isinf(r["last_over_best"]) else f"{r['last_over_best']:.2f}"
        lines.append((r["preset"], r["metric"], f"{r['best']:.4g}", f"{r['last']:.4g}", ratio,
                      f"{r['best_at_images']:,}", str(r["best_at_step"]), flags))
    widths = [max(len(h), *(len(x[k]) for x in lines)) for k, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*x) for x in lines]
    out += [f"{k}: {v}" for k, v in extras.items()]
    return "\n".join(out)


# ------------------------------------------------------------------------ training


def parse_preset_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``"name[key=value;key=value]"``: a preset and overrides of its own.

    The whole text is the run's label in the table and the figure, so one preset can
    appear several times with different settings (an ablation, a sweep).

    Example:
        >>> parse_preset_spec("dcgan_task1[ema_half_life_images=10000;augment=diffaugment]")
        ('dcgan_task1', {'ema_half_life_images': 10000.0, 'augment': 'diffaugment'})
    """
    from gankit.presets import RecipeSettings

    name, sep, rest = spec.partition("[")
    if not sep:
        return spec.strip(), {}
    if not rest.endswith("]"):
        raise ConfigError(f"preset {spec!r}: write NAME[KEY=VALUE;KEY=VALUE]")
    overrides = {}
    for item in filter(None, (x.strip() for x in rest[:-1].split(";"))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"preset {spec!r}: {item!r} is not KEY=VALUE")
        overrides[key.strip()] = RecipeSettings.parse_value(key.strip(), value.strip())
    return name.strip(), overrides


def _to_uint8(images01: torch.Tensor) -> torch.Tensor:
    return (images01 * 255).round().clamp(0, 255).to(torch.uint8)


def run_one(preset: str, seed: int, data, reference: torch.Tensor, cfg: dict[str, Any],
            provenance: bool) -> dict[str, Any]:
    """Train one preset with one seed, evaluating periodically; the curves and sample grids."""
    return run_seeds(preset, [seed], data, reference, cfg, provenance)[0]


def run_seeds(preset: str, seeds: list[int], data, reference: torch.Tensor, cfg: dict[str, Any],
              provenance: bool, sweep: bool = False) -> list[dict[str, Any]]:
    """Train one preset with each seed, evaluating periodically; per seed the curves and grids.

    With ``sweep`` the seeds train together as the members of one
    :class:`gankit.train.MultiTrainer` (engine ``loop``: each member bitwise its solo run,
    so the results are the same; the seeds advance side by side, chunk by chunk); without,
    one :class:`gankit.Trainer` after another.
    """
    name, own = parse_preset_spec(preset)
    overrides = {k: v for k, v in (("image_size", cfg["image_size"]),
                                   ("base_channels", cfg["base_channels"])) if v is not None}
    overrides.update(cfg["sets"])
    overrides.update(own)
    with torch.random.fork_rng(devices=[]):
        settings = gankit.get_preset(name, **overrides).settings
    bs = settings.batch_size
    n = len(data.images)
    per_epoch = math.ceil(n / bs)  # steps; the last batch of an epoch may be smaller
    if cfg["eval_every_images"]:
        if cfg["eval_every_images"] % bs:
            raise ConfigError(
                f"{preset} trains in batches of {bs}, so --eval-every-images "
                f"({cfg['eval_every_images']}) must be a multiple of {bs}; use a multiple of 64 "
                "(every batch size of the report's presets divides it)"
            )
        every_steps = cfg["eval_every_images"] // bs
    else:
        every_steps = cfg["eval_every_epochs"] * per_epoch
    total_steps = cfg["images"] // bs if cfg["images"] else cfg["epochs"] * per_epoch
    if total_steps < every_steps or total_steps % every_steps:
        raise ConfigError(
            f"{preset}: the training length ({total_steps} steps of {bs}) must be a positive "
            f"multiple of the evaluation interval ({every_steps} steps); adjust --images or "
            "--eval-every-images"
        )
    n_evals = total_steps // every_steps
    fast = dict(precision="bf16", channels_last=True) if cfg["fast"] else {}
    options = dict(device=cfg["device"], progress=False, eval_every=every_steps, eval_samples=cfg["eval_samples"],
                   eval_metrics=EVAL_METRICS, eval_extractor=cfg["extractor_module"], eval_reference=reference,
                   **fast)
    def solo(seed: int):  # built just before it trains: its draws come from its own seed
        torch.manual_seed(seed)
        t = gankit.Trainer(gankit.get_preset(name, **overrides), data_seed=seed, **options)
        return t, [t]

    def together():
        multi = gankit.MultiTrainer(name, seeds=seeds, overrides=overrides, engine="loop", **options)
        return multi, multi.trainers

    groups = [together] if sweep else [lambda s=s: solo(s) for s in seeds]
    trainers: list[Any] = []
    state: dict[int, dict[str, Any]] = {}
    raw = False

    def evaluate_raw(trainer) -> None:
        from gankit.train.evaluation import evaluate_generator

        with torch.random.fork_rng(devices=[]):
            result = evaluate_generator(trainer.generator, reference, z_dim=settings.z_dim,
                                        metrics=EVAL_METRICS, num_samples=cfg["eval_samples"],
                                        extractor=cfg["extractor_module"], device=trainer.device)
        state[id(trainer)]["raw_evals"].append({"kind": "eval", "step": trainer.step, "epoch": trainer.epoch,
                                                **result.values, "generator": "raw"})
        state[id(trainer)]["raw_grids"].append(_to_uint8(trainer.sample(GRID * GRID, seed=GRID_SEED, ema=False)))

    for make in groups:
        runner, members = make()
        trainers.extend(members)
        # With --raw-too, a recipe with a generator EMA is also evaluated with its raw generator
        # (the same training run: the EMA only watches), which gives the EMA's ablation row free.
        raw = preset in cfg.get("raw_too", ()) and members[0].ema is not None
        for t in members:
            state[id(t)] = {"raw_evals": [], "raw_grids": [], "grids": [], "chunks": [], "wall": 0.0}
        for t in members:
            state[id(t)]["grids"].append(_to_uint8(t.sample(GRID * GRID, seed=GRID_SEED)))
            if raw:
                evaluate_raw(t)
        start = time.perf_counter()
        for k in range(1, n_evals + 1):
            t0 = time.perf_counter()
            runner.fit(data, epochs=10**9, max_steps=k * every_steps)  # evaluates at the end
            seconds = (time.perf_counter() - t0) / len(members)  # a member's share of the chunk
            for t in members:
                st = state[id(t)]
                st["chunks"].append(seconds)
                st["grids"].append(_to_uint8(t.sample(GRID * GRID, seed=GRID_SEED)))
                if raw:
                    evaluate_raw(t)
                print(f"  {preset} seed {seeds[trainers.index(t)]}: {images_seen(t.step, n, bs):,} images, "
                      f"swd {t.eval_history[-1]['swd']:.1f}, fid {t.eval_history[-1]['fid']:.3g}"
                      f" ({seconds:.0f} s)", flush=True)
        for t in members:
            state[id(t)]["wall"] = (time.perf_counter() - start) / len(members)
    outs = []
    for seed, trainer in zip(seeds, trainers):
        st = state[id(trainer)]
        evals = [dict(r) for r in trainer.eval_history]
        if [e["step"] for e in evals] != [k * every_steps for k in range(n_evals + 1)]:
            raise GankitError(f"unexpected evaluation steps {[e['step'] for e in evals]}")
        out = {
            "preset": preset,
            "seed": seed,
            "recipe": dataclasses.asdict(trainer.recipe.settings),
            "overrides": overrides,
            "batch_size": bs,
            "eval_every_steps": every_steps,
            "steps": trainer.step,
            "images_seen": [images_seen(e["step"], n, bs) for e in evals],
            "evals": evals,
            "wall_seconds": st["wall"],
            "chunk_seconds": st["chunks"],
            "grids": st["grids"],
            **({"trained_as": f"sweep member ({len(seeds)} seeds, engine loop)"} if sweep else {}),
        }
        if raw:
            out["raw_generator"] = {"evals": st["raw_evals"], "grids": st["raw_grids"]}
        if provenance and seed == seeds[0]:
            # One more evaluation, outside the curves, for the full protocol of the metrics.
            t0 = time.perf_counter()
            result = trainer.evaluate_now()
            out["eval_seconds"] = time.perf_counter() - t0
            prov = result.to_dict()
            prov.pop("values")
            out["provenance"] = prov
        outs.append(out)
    return outs


# ------------------------------------------------------------------------ the figure


def _grid_image(images: torch.Tensor) -> np.ndarray:
    n, c, h, w = images.shape
    g = images[: GRID * GRID].view(GRID, GRID, c, h, w).permute(0, 3, 1, 4, 2)
    img = g.reshape(GRID * h, GRID * w, c).numpy()
    return img[..., 0] if c == 1 else img


def plot(runs: list[dict[str, Any]], extras: dict[str, float], path: Path, title: str,
         best_by: str = "swd") -> Path:
    """Metric curves (mean and min-max band per preset) and best / last sample grids, one PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from PIL import Image

    presets = list(dict.fromkeys(r["preset"] for r in runs))
    # grids of the first seed of every preset whose grids were kept (a reused run may lack them)
    shown = [next(r for r in runs if r["preset"] == p) for p in presets]
    shown = [r for r in shown if r.get("grids")]
    per_row = 4  # presets per row of grids (two grids each)
    grid_rows = math.ceil(len(shown) / per_row)
    fig = Figure(figsize=(15, 6.5 + 0.4 * len(presets) + 3.2 * grid_rows), dpi=80, layout="constrained")
    if grid_rows:
        top, bottom = fig.subfigures(2, 1, height_ratios=[2.0, 1.15 * grid_rows])
    else:
        top, bottom = fig, None
    axes = top.subplots(2, 3).ravel()
    colours = matplotlib.colormaps["tab10"]
    for ax, metric in zip(axes, CURVES):
        plain = [p for p in presets if not p.endswith(" (raw G)")]
        for preset in presets:
            mine = [r for r in runs if r["preset"] == preset]
            x = np.array(mine[0]["images_seen"]) / 1000
            curves = np.array([[e[metric] for e in r["evals"]] for r in mine], dtype=float)
            raw = preset.endswith(" (raw G)")  # dashed, in the colour of its EMA run
            base = preset[: -len(" (raw G)")] if raw else preset
            colour = colours(plain.index(base) if base in plain else len(plain) % 10)
            ax.plot(x, curves.mean(axis=0), color=colour, marker="o", markersize=3,
                    linestyle="--" if raw else "-", label=f"{preset} (mean of {len(mine)})")
            ax.fill_between(x, curves.min(axis=0), curves.max(axis=0), color=colour, alpha=0.12 if raw else 0.2)
        if metric == "ms_ssim" and "real_ms_ssim" in extras:
            ax.axhline(extras["real_ms_ssim"], color="k", linestyle="--", linewidth=1,
                       label="real images")
        if metric == "swd" and "real_swd" in extras:
            ax.axhline(extras["real_swd"], color="k", linestyle="--", linewidth=1,
                       label="real vs real")
        if metric in ("swd", "fid", "kid_mean"):
            finite = [v for r in runs for e in r["evals"] for v in [e[metric]] if v > 0]
            if finite and max(finite) / min(finite) > 30:
                ax.set_yscale("log")
        ax.set_title(LABELS[metric], fontsize=10)
        ax.set_xlabel("training images seen (thousands)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0].legend(fontsize=8, loc="best")
    axes[-1].legend(fontsize=8, loc="best")
    top.suptitle(title, fontsize=11)
    if bottom is not None:
        grid_axes = np.atleast_2d(bottom.subplots(grid_rows, 2 * min(per_row, len(shown)))).ravel()
        for ax in grid_axes:
            ax.axis("off")
        for k, run in enumerate(shown):
            swd = [e["swd"] for e in run["evals"]]
            crit = [e[best_by] for e in run["evals"]]
            best = int(np.argmax(crit) if best_by in HIGHER_IS_BETTER else np.argmin(crit))
            name = LABELS[best_by].split(" (")[0]
            for j, (idx, what) in enumerate(((best, f"best {name}"), (len(swd) - 1, "last"))):
                ax = grid_axes[2 * k + j]
                grid = run["grids"][idx]
                ax.imshow(_grid_image(grid), cmap="gray" if grid.shape[1] == 1 else None)
                ax.set_title(f"{run['preset']} seed {run['seed']}: {what}\n"
                             f"{run['images_seen'][idx]:,} images, SWD {swd[idx]:.1f}", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    # A 256-colour palette keeps the figure small enough to commit with the docs.
    Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
        path, optimize=True)
    return path


# ------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Command-line options merged over the chosen configuration."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=sorted(CONFIGS), default="cpu",
                   help="cpu (default, make quality), gpu (the report's settings) or quick (a test)")
    p.add_argument("--quick", action="store_const", const="quick", dest="config",
                   help="same as --config quick")
    p.add_argument("--presets", default="dcgan_task1,wgan_task2", help="comma-separated preset names")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import a module first (it may register presets): a module name or the path "
                        "of a .py file; repeatable")
    p.add_argument("--data", default="toy-faces", help="folder of images or dataset name")
    p.add_argument("--num-images", type=int, help="dataset images to use (toy-faces: generated)")
    p.add_argument("--images", type=int, help="training images per preset and seed")
    p.add_argument("--epochs", type=int, help="... or epochs of the dataset")
    p.add_argument("--eval-every-images", type=int, help="evaluate every this many images")
    p.add_argument("--eval-every-epochs", type=int, help="... or every this many epochs")
    p.add_argument("--eval-samples", type=int, help="generated images per evaluation")
    p.add_argument("--eval-reference", type=int,
                   help="real images per evaluation (a fixed random subset of the dataset)")
    p.add_argument("--seeds", help="comma-separated seeds (weights, latents and data order)")
    p.add_argument("--image-size", type=int, help="image side for every preset")
    p.add_argument("--base-channels", type=int, help="network width for every preset")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="another recipe override for every preset (numbers parsed), repeatable")
    p.add_argument("--fast", dest="fast", action="store_true", default=None,
                   help="bf16 autocast + channels-last")
    p.add_argument("--faithful", dest="fast", action="store_false", help="fp32 (the default on GPU)")
    p.add_argument("--device", help="cpu, cuda, ...")
    p.add_argument("--extractor", default="tiny",
                   help="tiny (offline; NOT comparable to published numbers) or inception-v3")
    p.add_argument("--inception-weights", metavar="FILE", help="local InceptionV3 FID weights")
    p.add_argument("--collapse-threshold", type=float, default=0.5,
                   help="fraction worse than the best that counts as worse (default 0.5)")
    p.add_argument("--best-by", choices=CURVES, default="swd",
                   help="metric that picks the 'best' sample grid of the figure (default swd)")
    p.add_argument("--out", default="runs/quality", help="output folder (quality.json/png, table.txt)")
    p.add_argument("--raw-too", default="", metavar="PRESETS",
                   help="comma-separated presets (as written in --presets) with a generator EMA to "
                        "evaluate with their raw generator as well, as a row '<preset> (raw G)'")
    p.add_argument("--write-meta", metavar="FILE",
                   help="merge each plain preset's best and last SWD and FID (mean over seeds), with "
                        "provenance, into FILE (src/gankit/presets/measured.json: the presets' "
                        "meta['benchmarks'])")
    p.add_argument("--sweep", dest="sweep", action="store_true", default=True,
                   help="train each preset's seeds together as one sweep (default; gankit.MultiTrainer, "
                        "engine loop: every seed bitwise the run it is alone, side by side)")
    p.add_argument("--no-sweep", dest="sweep", action="store_false",
                   help="train the seeds one after another instead (the same numbers)")
    p.add_argument("--reuse", action="append", default=[], metavar="DIR",
                   help="an earlier output folder: its runs of the same preset, seed and settings "
                        "are taken from its quality.json (and grids.pt) instead of trained again; "
                        "repeatable")
    args = p.parse_args(argv)
    cfg = {"epochs": None, "eval_every_epochs": None, "images": None, "eval_every_images": None,
           **CONFIGS[args.config]}
    for key in ("num_images", "images", "epochs", "eval_every_images", "eval_every_epochs",
                "eval_samples", "eval_reference", "seeds", "image_size", "base_channels",
                "fast", "device"):
        value = getattr(args, key)
        if value is not None:
            cfg[key] = value
    if args.images is not None:
        cfg["epochs"] = None
    elif args.epochs is not None:
        cfg["images"] = None
    if args.eval_every_images is not None:
        cfg["eval_every_epochs"] = None
    elif args.eval_every_epochs is not None:
        cfg["eval_every_images"] = None
    sets = {}
    for item in args.sets:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set g_lr=2e-4")
        try:
            sets[key] = json.loads(raw)
        except json.JSONDecodeError:
            sets[key] = raw
    cfg["sets"] = sets
    try:
        cfg["seeds"] = [int(s) for s in str(cfg["seeds"]).split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {cfg['seeds']!r}: give comma-separated integers, e.g. 0,1") from None
    # commas inside NAME[...] belong to a value (a DiffAugment policy), not to the list
    cfg["presets"] = [s.strip() for s in re.split(r",(?![^\[]*\])", args.presets) if s.strip()]
    if not cfg["presets"] or not cfg["seeds"]:
        raise ConfigError("give at least one preset (--presets) and one seed (--seeds)")
    cfg.update(extractor=args.extractor, inception_weights=args.inception_weights,
               collapse_threshold=args.collapse_threshold, config=args.config,
               best_by=args.best_by,
               data=args.data, imports=args.imports, reuse=args.reuse,
               raw_too=[x.strip() for x in args.raw_too.split(",") if x.strip()],
               write_meta=args.write_meta, sweep=args.sweep)
    return args, cfg


#: The settings a reused run must share with this invocation.
SAME_RUN_KEYS = ("data", "num_images", "images", "epochs", "eval_every_images", "eval_every_epochs",
                 "eval_samples", "eval_reference", "image_size", "base_channels", "fast", "device",
                 "extractor", "inception_weights", "sets")


def run_provenance(run: dict[str, Any], doc: dict[str, Any]) -> tuple[str, str, str]:
    """``(commit, machine, date)`` of one run: its own folder's when it was reused, else this doc's.

    The commit is abbreviated and marked ``+dirty`` when the checkout had uncommitted changes;
    a date that folder did not record (runs written before it was kept) is ``"not recorded"``.
    """
    src = run.get("reused_from") or doc
    git = src.get("git") or {}
    commit = (git.get("commit") or "unknown")[:7] + ("+dirty" if git.get("dirty") else "")
    m = src.get("machine") or {}
    where = f"{m['cpu']}, {m['cores']} cores" if m.get("cpu") else "not recorded"
    return commit, where, src.get("date") or "not recorded"


def write_meta(path: Path, rows: list[dict[str, Any]], doc: dict[str, Any]) -> None:
    """Merge the measured figures of every plain preset of this run into ``path``.

    Each preset's figures name the commits, machines and dates of *its own* runs (a reused
    run keeps those of the folder it was trained in), not those of the whole invocation.
    """
    cfg = doc["settings"]
    runs = doc["runs"]
    try:
        measured = json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError as err:
        raise ConfigError(f"--write-meta {path}: not JSON ({err}); give the measured.json file") from None
    common = {
        "configuration": f"benchmarks/quality.py --config {cfg['config']} ({cfg['data']}, "
                         f"{cfg['image_size']}x{cfg['image_size']}, width {cfg['base_channels']}, "
                         f"{'bf16 fast mode' if cfg['fast'] else 'fp32'})",
        "training images": cfg["images"] or f"{cfg['epochs']} epochs",
        "seeds": ",".join(str(x) for x in cfg["seeds"]),
    }
    for preset in dict.fromkeys(r["preset"] for r in rows):
        if "[" in preset or "(" in preset:
            continue
        own = [run for run in runs if run["preset"] == preset]
        commits, machines, dates = (sorted(set(x)) for x in zip(*(run_provenance(run, doc) for run in own)))
        provenance = {**common, "machine": "; ".join(machines), "commit": ", ".join(commits),
                      "date": ", ".join(dates)}
        figures = []
        for r in rows:
            if r["preset"] != preset or r["metric"] not in ("swd", "fid"):
                continue
            name = "SWD x1e3" if r["metric"] == "swd" else f"FID ({cfg['extractor']} extractor)"
            steps = sorted({run["steps"] for run in own})
            for which in ("best", "last"):
                figures.append({"metric": f"{name}, {which} (mean over seeds)",
                                "value": float(f"{r[which]:.4g}"), **provenance,
                                "steps": ", ".join(str(x) for x in steps),
                                "extractor": cfg["extractor"] if r["metric"] == "fid" else "none (SWD)"})
        measured[preset] = {"figures": figures}
    path.write_text(json.dumps(measured, indent=1, sort_keys=True) + "\n")


def reusable_runs(folders: list[str], cfg: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """Runs of earlier output folders trained with this invocation's settings, by (preset, seed)."""
    found = {}
    for folder in folders:
        path = Path(folder) / "quality.json"
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"--reuse {folder}: cannot read {path} ({err}); give a folder "
                              "written by benchmarks/quality.py") from None
        theirs = doc.get("settings", {})
        differ = [k for k in SAME_RUN_KEYS if json.dumps(theirs.get(k), default=str)
                  != json.dumps(cfg.get(k), default=str)]
        if differ:
            raise ConfigError(f"--reuse {folder}: its runs used other settings ({', '.join(differ)}); "
                              "reuse only a folder of the same configuration")
        grids_file = Path(folder) / "grids.pt"
        grids = torch.load(grids_file, weights_only=True) if grids_file.exists() else {}
        for run in doc["runs"]:
            # a run that folder had itself reused keeps where it was trained; what it did not
            # record (runs reused before machine and date were kept) is that folder's
            origin = run.get("reused_from") or {}
            run = dict(run, grids=grids.get(f"{run['preset']}|{run['seed']}"),
                       reused_from={"folder": str(folder),
                                    **{k: origin.get(k) or doc.get(k) for k in ("git", "machine", "date")}})
            found[(run["preset"], int(run["seed"]))] = run
    return found


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the benchmark and writes quality.json, quality.png and table.txt.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The JSON document written (without the sample grids).
    """
    args, cfg = parse_args(argv)
    commit = git_commit()  # the code this run uses: read before it starts, not after
    run_date = time.strftime("%Y-%m-%d")
    for name in cfg["imports"]:
        import_user_module(name)
    known = set(gankit.list_presets())
    missing = [p for p in cfg["presets"] if parse_preset_spec(p)[0] not in known]
    if missing:
        raise ConfigError(f"unknown presets {missing}; registered: {', '.join(sorted(known))} "
                          "(add --import MODULE for presets of your own)")
    if str(cfg["device"]).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--config {cfg['config']} runs on {cfg['device']}, which this machine "
                          "lacks; use --device cpu or the cpu configuration")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extractor = get_extractor(cfg["extractor"], weights_path=cfg["inception_weights"],
                              device=cfg["device"])
    cfg["extractor_module"] = extractor
    if extractor.comparable_to_published:
        print(f"FID/KID/precision-recall: {extractor.name}, the standard InceptionV3 weights "
              "(FID comparable to published numbers at the same sample counts)")
    else:
        print(f"FID/KID/precision-recall use the OFFLINE extractor {extractor.name!r} (fixed random "
              "features): they compare these runs with each other, NOT with published numbers. "
              "SWD and MS-SSIM need no network.")

    sizes = {}
    for preset in cfg["presets"]:
        name, own = parse_preset_spec(preset)
        overrides = {k: cfg[k] for k in ("image_size", "base_channels") if cfg[k] is not None}
        s = gankit.get_preset(name, **{**overrides, **cfg["sets"], **own}).settings
        sizes[preset] = (s.image_size, s.channels)
    datasets = {key: load_images(cfg["data"], image_size=key[0], channels=key[1],
                                 num_images=cfg["num_images"], progress=False)
                for key in set(sizes.values())}
    # The evaluation reference: the same random subset of the dataset for every run.
    n_data = len(next(iter(datasets.values())).images)
    perm = torch.randperm(n_data, generator=torch.Generator().manual_seed(0))
    n_ref = min(cfg["eval_reference"] or n_data, n_data)
    references = {key: ds.images[perm[:n_ref].sort().values] for key, ds in datasets.items()}
    print(f"data: {cfg['data']}, {n_data:,} images ({n_ref:,} as the evaluation reference); presets "
          f"{', '.join(cfg['presets'])}; seeds {cfg['seeds']}; {cfg['config']} configuration",
          flush=True)

    earlier = reusable_runs(cfg["reuse"], cfg)
    started = time.perf_counter()
    runs = []
    for preset in cfg["presets"]:
        fresh = []
        for seed in cfg["seeds"]:
            if (preset, seed) in earlier:
                print(f"  {preset} seed {seed}: reused from {earlier[(preset, seed)]['reused_from']['folder']}",
                      flush=True)
                run = dict(earlier[(preset, seed)])
                raw = earlier.get((f"{preset} (raw G)", seed))
                if preset in cfg["raw_too"] and raw is not None:
                    run["raw_generator"] = {"evals": raw["evals"], "grids": raw.get("grids")}
                runs.append(run)
            else:
                fresh.append(seed)
        if not fresh:
            continue
        trained = not any("reused_from" not in r for r in runs)
        if cfg["sweep"]:
            runs.extend(run_seeds(preset, fresh, datasets[sizes[preset]], references[sizes[preset]], cfg,
                                  provenance=trained, sweep=True))
        else:
            for seed in fresh:
                runs.append(run_one(preset, seed, datasets[sizes[preset]], references[sizes[preset]], cfg,
                                    provenance=trained))
                trained = False
    for run in list(runs):  # --raw-too: the raw generator of an EMA recipe as a row of its own
        raw = run.pop("raw_generator", None)
        if raw is not None:
            runs.append({**{k: v for k, v in run.items() if k not in ("provenance", "eval_seconds")},
                         "preset": f"{run['preset']} (raw G)", **raw})
    # Reference levels: the real images' own MS-SSIM, and the SWD between the evaluation
    # reference and as many other real images (where the dataset has them).
    key = sizes[cfg["presets"][0]]
    real, ref = datasets[key].images, references[key]
    m = min(cfg["eval_samples"], len(ref), len(real) - n_ref) if len(real) > n_ref else 0
    extras = {"real_ms_ssim": ms_ssim_diversity(ref)}
    if m >= 1 and real.shape[-1] >= 16:
        other = real[perm[n_ref : n_ref + m].sort().values]
        extras["real_swd"] = sliced_wasserstein_distance(ref[:m], other)["swd"]
    total = time.perf_counter() - started
    rows = summarise(runs, cfg["collapse_threshold"])
    notes = {"real images' MS-SSIM": f"{extras['real_ms_ssim']:.4g}"}
    if "real_swd" in extras:
        notes[f"SWD of two disjoint real sets of {m}"] = f"{extras['real_swd']:.4g}"
    table = format_table(rows, {
        **notes,
        "collapse threshold": f"{cfg['collapse_threshold']:.0%} worse than the best",
        "extractor": f"{extractor.name} (comparable to published: {extractor.comparable_to_published})",
        "wall time": f"{total / 60:.1f} min on {machine()['cpu']}, {os.cpu_count()} cores"
                     + (f" ({sum('reused_from' in r for r in runs)} runs reused, not timed)"
                        if any("reused_from" in r for r in runs) else ""),
    })
    print(table)
    (out / "table.txt").write_text(table + "\n")
    first = next((r for r in runs if "provenance" in r), None)
    prov = first.pop("provenance") if first else None
    eval_seconds = first.pop("eval_seconds") if first else None
    torch.save({f"{r['preset']}|{r['seed']}": r["grids"] for r in runs if r.get("grids") is not None},
               out / "grids.pt")
    doc = {
        "benchmark": "benchmarks/quality.py",
        "gankit_version": gankit.__version__,
        "git": commit,
        "machine": machine(),
        "date": run_date,
        "command": [sys.executable, *(sys.argv if argv is None else ["benchmarks/quality.py", *argv])],
        "settings": {k: v for k, v in cfg.items() if k != "extractor_module"},
        "seeds": cfg["seeds"],
        "eval_metrics": list(EVAL_METRICS),
        "metric_provenance": prov,
        "seconds_per_evaluation": eval_seconds,
        "collapse_definition": __doc__.split("**Collapse flag.**")[1].split("Configurations")[0].strip(),
        "reference_levels": extras,
        "wall_seconds": total,
        "summary": rows,
        "runs": [{k: v for k, v in r.items() if k != "grids"} for r in runs],
    }
    (out / "quality.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    if cfg["write_meta"]:
        write_meta(Path(cfg["write_meta"]), rows, json.loads(json.dumps(doc, default=str)))
    title = (f"{', '.join(cfg['presets'])} on {cfg['data']} ({cfg['config']} configuration, "
             f"seeds {cfg['seeds']}); FID/KID/P-R: {extractor.name}")
    plot(runs, extras, out / "quality.png", title, cfg["best_by"])
    print(f"wrote {out / 'quality.json'}, {out / 'quality.png'} and {out / 'table.txt'}")
    return doc


if __name__ == "__main__":
    try:
        main()
    except GankitError as err:
        print(f"quality.py: error: {err}", file=sys.stderr)
        sys.exit(2)
