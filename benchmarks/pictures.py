"""The pictures of the docs, from real runs: ``make pictures``.

Trains the report's two presets briefly on the built-in ``toy-faces`` with the ``gankit``
command line, and writes into ``docs/images/``:

* ``dcgan_task1-samples.png``, ``wgan_task2-samples.png``: ``gankit sample`` grids (64
  images, seed 0) of the last checkpoint of each run;
* ``dcgan_task1-loss.png``, ``wgan_task2-loss.png``: the losses and the other logged values
  of each run's ``metrics.jsonl`` against the step (every step, light, and a running mean);
* ``interpolation.png``: ``gankit interpolate`` on the ``dcgan_task1`` checkpoint;
* ``pictures.json``: the machine (``/proc/cpuinfo`` model name, cores, torch threads),
  torch, Python and gankit versions, the git commit (read before the runs start), every
  command as run, the settings, the wall seconds of each command and of the whole run, and
  each picture's size (bytes, pixels) and SHA-256.

Configuration (every preset at 32x32, ``base_channels`` 32, seed 0, fp32):

* ``dcgan_task1``: 2,000 steps, Adam at 2e-4 for both networks (the DCGAN paper's rate,
  as ``make demo``: faces within these steps on a CPU);
* ``wgan_task2``: 4,000 steps (800 generator steps) with the preset's own SGD at 1e-4
  and clipping 0.01 -- which draws no faces in this budget (the quality benchmark's finding,
  docs/benchmarks.rst), and the picture shows it.

The commands run in this process (:func:`gankit.cli.main`) with ``--threads`` torch threads
(default 1: the result does not depend on the machine's core count, and small convolutions
gain little from a second thread). The run folders go to ``--work`` (default
``runs/pictures``). ``--quick`` (a test) trains a few steps of width-4 networks on 160 toy
faces and needs ``--out``, so that it never replaces the committed pictures.

Usage::

    python benchmarks/pictures.py                       # make pictures (~10 min on 2 CPU cores)
    python benchmarks/pictures.py --quick --out /tmp/pictures
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # the sibling provenance.py, also when this file is loaded by path
    sys.path.insert(0, str(HERE))
from provenance import git_commit, machine  # noqa: E402

IMAGES = ROOT / "docs" / "images"

#: The five pictures, in the order they are written.
PICTURES = (
    "dcgan_task1-samples.png",
    "dcgan_task1-loss.png",
    "interpolation.png",
    "wgan_task2-samples.png",
    "wgan_task2-loss.png",
)
#: No committed picture may be larger (the docs' test checks it too).
MAX_BYTES = 256 * 1024

#: The runs: preset -> (steps, --set overrides, extra train options).
CONFIGS: dict[str, dict[str, Any]] = {
    "full": {
        "runs": {
            "dcgan_task1": (2000, ["image_size=32", "base_channels=32", "g_lr=2e-4", "d_lr=2e-4"]),
            "wgan_task2": (4000, ["image_size=32", "base_channels=32"]),
        },
        "train_options": [],
        "samples": (64, 8),  # images, per row
        "interpolate": (4, 8),  # rows, steps
        "smooth": 50,  # steps of the running mean in the loss figures
    },
    "quick": {
        "runs": {
            "dcgan_task1": (3, ["image_size=32", "base_channels=4", "g_lr=2e-4", "d_lr=2e-4"]),
            "wgan_task2": (10, ["image_size=32", "base_channels=4"]),
        },
        # 160 images: five batches of 32 per epoch, so wgan_task2's generator steps too
        "train_options": ["--num-images", "160"],
        "samples": (16, 4),
        "interpolate": (2, 4),
        "smooth": 2,
    },
}


# ------------------------------------------------------------------------ where and what


def shown(path: Path) -> str:
    """``path`` relative to the checkout when it lies inside it (as the commands are recorded)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def picture_info(path: Path) -> dict[str, Any]:
    """Size in bytes and pixels, and the SHA-256 of a PNG."""
    from PIL import Image

    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        fmt = img.format
    return {"bytes": len(data), "width": width, "height": height, "format": fmt,
            "sha256": hashlib.sha256(data).hexdigest()}


# ------------------------------------------------------------------------ the loss figure


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The step records of a run's ``metrics.jsonl`` (evaluation records left out)."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            if "kind" not in rec:
                rec.pop("seconds", None)  # the wall clock, not a logged value
                records.append(rec)
    return records


def running_mean(values: list[float], window: int) -> list[float]:
    """The mean of the last ``window`` values at each position (fewer at the start).

    Example:
        >>> running_mean([1.0, 3.0, 5.0, 7.0], 2)
        [1.0, 2.0, 4.0, 6.0]
    """
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_losses(records: list[dict[str, float]], path: Path, title: str, smooth: int) -> Path:
    """The logged values against the step, one panel per group, as a small PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from PIL import Image

    from gankit.train.outputs import loss_curve_panels

    labels = {"loss_d": "loss D", "loss_g": "loss G", "d_real": "D(x)", "d_fake": "D(G(z))"}
    panels = loss_curve_panels(records) or [("loss", [])]
    fig = Figure(figsize=(4.6 * len(panels), 3.3), dpi=80, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colours = matplotlib.colormaps["tab10"]
    for ax, (ylabel, names) in zip(axes, panels):
        for k, name in enumerate(names):
            pts = [(r["step"], r[name]) for r in records
                   if r.get(name) is not None and math.isfinite(r[name])]
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, color=colours(k), alpha=0.25, linewidth=0.6)
            ax.plot(xs, running_mean(list(ys), smooth), color=colours(k), linewidth=1.4,
                    label=labels.get(name, name))
        ax.set_xlabel("step", fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if names:
            ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"{title}\nlight: every logged value; dark: running mean of the last {smooth}",
                 fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    # A 256-colour palette keeps the figure small enough to commit with the docs.
    Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
        path, optimize=True)
    return path


# ------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a few steps of tiny networks (a test); needs --out")
    p.add_argument("--out", type=Path, help="folder of the pictures and pictures.json (default docs/images)")
    p.add_argument("--work", type=Path, help="folder of the training runs (default runs/pictures, "
                                             "with --quick OUT/runs)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--device", default="cpu", help="device of every command (default cpu)")
    args = p.parse_args(argv)
    if args.quick and args.out is None:
        p.error("--quick needs --out (it must not replace the committed pictures in docs/images)")
    if args.threads < 1:
        p.error(f"--threads must be a positive integer, got {args.threads}")
    return args


def run_command(argv: list[str], log: list[dict[str, Any]]) -> None:
    """Run ``gankit ARGV`` in this process; record it and its wall time."""
    from gankit.cli import main

    text = "gankit " + shlex.join(argv)
    print(f"$ {text}", flush=True)
    start = time.perf_counter()
    rc = main(argv)
    seconds = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"pictures: {text} exited with status {rc}")
    log.append({"command": text, "seconds": round(seconds, 1)})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    import torch

    cfg = CONFIGS["quick" if args.quick else "full"]
    out = (args.out or IMAGES).resolve()
    work = (args.work or (out / "runs" if args.quick else ROOT / "runs" / "pictures")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    here, threads = Path.cwd(), torch.get_num_threads()
    torch.set_num_threads(args.threads)
    os.chdir(ROOT)  # the commands name paths relative to the checkout, as recorded
    try:
        return _make(args, cfg, out, work, start)
    finally:  # main() may run inside another program (the tests)
        os.chdir(here)
        torch.set_num_threads(threads)


def _make(args: argparse.Namespace, cfg: dict[str, Any], out: Path, work: Path, start: float) -> int:
    doc: dict[str, Any] = {
        "made_by": "benchmarks/pictures.py" + (" --quick" if args.quick else ""),
        "machine": machine(),  # after set_num_threads(args.threads)
        "git": git_commit(),  # the code these runs use: read before they start
        "device": args.device,
        "data": "toy-faces",
        "seed": 0,
    }
    import gankit

    doc["gankit"] = gankit.__version__
    commands: list[dict[str, Any]] = []
    runs: dict[str, Any] = {}
    ckpt: dict[str, Path] = {}
    for preset, (steps, sets) in cfg["runs"].items():
        folder = work / preset
        train = ["train", preset, "--data", "toy-faces", "--max-steps", str(steps)]
        for item in sets:
            train += ["--set", item]
        train += [*cfg["train_options"], "--seed", "0", "--device", args.device,
                  "--out", shown(folder), "--overwrite", "--no-progress"]
        run_command(train, commands)
        ckpt[preset] = folder / "checkpoints" / "last.pt"
        n, nrow = cfg["samples"]
        run_command(["sample", shown(ckpt[preset]), "--n", str(n), "--nrow", str(nrow), "--seed", "0",
                     "--device", args.device, "--out", shown(out / f"{preset}-samples.png"), "--overwrite"],
                    commands)
        records = read_metrics(folder / "metrics.jsonl")
        last = records[-1]
        settings = ", ".join(sets)
        plot_losses(records, out / f"{preset}-loss.png",
                    f"{preset} on toy-faces: {steps:,} steps ({settings}, seed 0)", cfg["smooth"])
        runs[preset] = {
            "steps": steps,
            "settings": sets,
            "train_seconds": commands[-2]["seconds"],
            "last_record": last,
        }
        if preset == "dcgan_task1":
            rows, isteps = cfg["interpolate"]
            run_command(["interpolate", shown(ckpt[preset]), "--rows", str(rows), "--steps", str(isteps),
                         "--seed", "0", "--device", args.device, "--out", shown(out / "interpolation.png"),
                         "--no-gif", "--overwrite"], commands)
    doc["runs"] = runs
    doc["commands"] = commands
    doc["pictures"] = {name: picture_info(out / name) for name in PICTURES}
    doc["wall_seconds"] = round(time.perf_counter() - start, 1)
    (out / "pictures.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    for name, info in doc["pictures"].items():
        print(f"{name}: {info['width']}x{info['height']}, {info['bytes'] / 1024:.1f} KB")
        if info["bytes"] > MAX_BYTES:
            raise SystemExit(f"pictures: {name} is {info['bytes']:,} bytes, over {MAX_BYTES:,}")
    m = doc["machine"]
    print(f"wall time: {doc['wall_seconds'] / 60:.1f} min on {m['cpu']}, {m['cores']} cores, "
          f"{m['torch_threads']} torch thread(s); wrote {shown(out / 'pictures.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
