"""Training throughput: the plain SPEC.md loop vs gankit's faithful default vs its fast mode.

Every measurement runs in its own subprocess (so peak memory is its own and nothing
warm carries over), alternating the configurations over ``--repeats`` rounds; the
median is reported. Two parts:

1. **Step throughput** on in-memory batches (images/s, peak memory) for each preset at
   its own batch size: (a) ``baseline`` -- ``benchmarks/baseline.py``, a plain
   transcription of SPEC.md's loop; (b) ``faithful`` -- ``gankit.Trainer`` defaults
   (numerically identical to the baseline); (c) ``fast`` -- bf16 autocast and
   channels-last (plus ``torch.compile`` with ``--compile``; on CUDA also latents on the
   device and the whole step captured in CUDA graphs); ``fast_nograph`` (CUDA) is fast
   mode without the graphs, for comparison.
2. **End-to-end epochs over a JPEG folder** (task one, faithful and fast): the baseline's
   DataLoader (4 worker processes, as the original code) decodes every JPEG every epoch;
   gankit decodes the folder once into its cache, so epochs after the first cost no
   decoding. Images/s after the first epoch is the steady-state figure.

Usage::

    python benchmarks/bench_train.py --out benchmarks/results.json          # make bench
    python benchmarks/bench_train.py --device cuda --compile --out cuda.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the sibling provenance.py, also when this file is loaded by path
    sys.path.insert(0, str(HERE))
from provenance import machine  # noqa: E402

TASK = {"dcgan_task1": 1, "wgan_task2": 2}
BASELINE_WORKERS = 4  # the ML2020 baseline's DataLoader(num_workers=4)


def fast_options(dev: torch.device, compile_: bool = False, graph: bool = True) -> dict:
    """gankit's fast mode as benchmarked: bf16 autocast, channels-last (+ compile);
    on CUDA also latents on the device and the whole step in CUDA graphs."""
    cuda = dev.type == "cuda"
    return dict(precision="bf16", channels_last=True, compile=compile_,
                cuda_graph=cuda and graph and not compile_, latents="device" if cuda else "cpu")


def _peak(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- children


def child_steps(mode: str, preset: str, device: str, steps: int, compile_: bool) -> dict:
    """Time ``steps`` training steps of one configuration (after warm-up)."""
    dev = torch.device(device)
    from gankit import Trainer
    from gankit.presets import get_preset

    bs = get_preset(preset).batch_size
    gen = torch.Generator().manual_seed(0)
    data = torch.rand(bs * 4, 3, 64, 64, generator=gen) * 2 - 1
    if mode == "baseline":
        sys.path.insert(0, str(HERE))
        from baseline import run_baseline

        out = run_baseline(TASK[preset], bs, steps, device, data=data)
        return {"images_per_s": out["images_per_s"], "peak_mem_bytes": out["peak_mem_bytes"]}
    options = fast_options(dev, compile_, graph=mode != "fast_nograph") if mode.startswith("fast") else {}
    torch.manual_seed(0)
    trainer = Trainer(get_preset(preset), device=dev, progress=False, **options)
    batches = [b.to(dev) for b in data.split(bs)]
    n_critic = trainer.settings.n_critic
    warmup = n_critic * 2 + 1  # reach a G step
    if compile_ and mode.startswith("fast"):
        warmup = max(warmup, 5)
    if trainer.cuda_graph:  # both step variants warmed up, captured and replayed once
        warmup = (trainer._graphs.warmup + 2) * n_critic
    for i in range(warmup):
        trainer.train_step(batches[i % len(batches)])
    _sync(dev)
    t0 = time.perf_counter()
    for i in range(steps):
        out = trainer.train_step(batches[i % len(batches)])
    float(out["loss_d"])  # wait for the device
    seconds = time.perf_counter() - t0
    return {"images_per_s": steps * bs / seconds, "peak_mem_bytes": _peak(dev)}


def child_sweep(mode: str, preset: str, device: str, steps: int, k: int, engine: str) -> dict:
    """Time ``steps`` steps of a sweep of ``k`` members (``k=0``: one plain Trainer.fit), both
    through ``fit``: a first epoch of ``2 * n_critic + 1`` batches warms up, the second epoch
    of ``steps`` batches is timed; returns member-images per second."""
    dev = torch.device(device)
    from gankit import Trainer
    from gankit.presets import get_preset
    from gankit.train import MultiTrainer

    bs = get_preset(preset).batch_size
    warmup = get_preset(preset).n_critic * 2 + 1
    gen = torch.Generator().manual_seed(0)
    warm = torch.rand(bs * warmup, 3, 64, 64, generator=gen) * 2 - 1  # epoch 1: the warm-up
    data = torch.rand(bs * steps, 3, 64, 64, generator=gen) * 2 - 1  # epoch 2: timed
    options = fast_options(dev, graph=False) if mode == "fast" else {}
    if k == 0:
        torch.manual_seed(0)
        run = Trainer(get_preset(preset), device=dev, progress=False, **options)
        members = 1
    else:
        run = MultiTrainer(preset, seeds=range(k), device=dev, engine=engine, progress=False, **options)
        members = k
    run.fit(warm, epochs=1)
    _sync(dev)
    t0 = time.perf_counter()
    run.fit(data, epochs=2)
    _sync(dev)
    seconds = time.perf_counter() - t0
    return {"images_per_s": members * steps * bs / seconds, "peak_mem_bytes": _peak(dev)}


def _write_jpegs(folder: Path, n: int, size: int = 96) -> None:
    from PIL import Image

    from gankit.data import generate_toy_faces

    faces = generate_toy_faces(n, size, seed=0)
    for i, img in enumerate(faces.permute(0, 2, 3, 1).numpy()):
        Image.fromarray(img).save(folder / f"{i + 1}.jpg", quality=90)


def child_e2e(mode: str, folder: str, epochs: int, device: str) -> dict:
    """Epoch times over a JPEG folder, counting image decodes per epoch."""
    from PIL import Image

    dev = torch.device(device)
    decodes = {"n": 0}
    original_open = Image.open

    def counting_open(*args, **kwargs):
        decodes["n"] += 1
        return original_open(*args, **kwargs)

    Image.open = counting_open
    files = sorted(Path(folder).glob("*.jpg"))
    result = {"epoch_seconds": [], "epoch_decodes": []}
    if mode == "baseline":
        sys.path.insert(0, str(HERE.parent / "tests"))
        from torchvision import transforms

        import spec_reference as ref

        tf = transforms.Compose([transforms.Resize((64, 64)), transforms.ToTensor(),
                                 transforms.Normalize((0.5,) * 3, (0.5,) * 3)])

        import multiprocessing as mp

        counter = mp.Value("i", 0)  # decodes happen in the worker processes

        class FaceDataset(torch.utils.data.Dataset):  # as the original code reads faces/
            def __len__(self):
                return len(files)

            def __getitem__(self, i):
                with counter.get_lock():
                    counter.value += 1
                return tf(Image.open(files[i]).convert("RGB"))

        g, d = ref.build_task1(0)
        g, d = g.to(dev), d.to(dev)
        opt_g = torch.optim.Adam(g.parameters(), lr=1e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(d.parameters(), lr=1e-4, betas=(0.5, 0.999))
        # The original code's loader: shuffled, batch 64, decoding in 4 worker processes.
        loader = torch.utils.data.DataLoader(FaceDataset(), batch_size=64, shuffle=True,
                                             num_workers=BASELINE_WORKERS)
        result["setup_seconds"] = 0.0
        result["num_workers"] = BASELINE_WORKERS
        for _ in range(epochs):
            counter.value = 0
            t0 = time.perf_counter()
            for x in loader:
                ref.task1_train_step(g, d, opt_g, opt_d, x.to(dev))
            _sync(dev)
            result["epoch_seconds"].append(time.perf_counter() - t0)
            result["epoch_decodes"].append(counter.value)
        return result
    from gankit import Trainer
    from gankit.data import load_images
    from gankit.presets import get_preset

    t0 = time.perf_counter()
    data = load_images(folder, progress=False, num_workers=1)
    result["setup_seconds"] = time.perf_counter() - t0
    result["setup_decodes"] = decodes["n"]
    torch.manual_seed(0)
    options = fast_options(dev) if mode == "fast" else {}
    trainer = Trainer(get_preset("dcgan_task1"), device=dev, progress=False, **options)
    for e in range(epochs):
        decodes["n"] = 0
        t0 = time.perf_counter()
        trainer.fit(data, epochs=e + 1)
        _sync(dev)
        result["epoch_seconds"].append(time.perf_counter() - t0)
        result["epoch_decodes"].append(decodes["n"])
    return result


# --------------------------------------------------------------------------- driver


def _run_child(args: list[str], env: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:  # reported, and the other configurations still run
        print(f"benchmark child {args} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement (0: end to end only)")
    p.add_argument("--repeats", type=int, default=3, help="alternating rounds; the median is kept")
    p.add_argument("--presets", default="dcgan_task1,wgan_task2")
    p.add_argument("--modes", default="baseline,faithful,fast",
                   help="comma list of baseline, faithful, fast, fast_nograph")
    p.add_argument("--compile", action="store_true", help="fast mode also uses torch.compile")
    p.add_argument("--e2e-images", type=int, default=1280, help="JPEGs in the end-to-end folder (0: skip)")
    p.add_argument("--e2e-epochs", type=int, default=2)
    p.add_argument("--sweep-k", type=int, default=0,
                   help="also time a sweep of K members (MultiTrainer) against one Trainer.fit, faithful and fast")
    p.add_argument("--sweep-engines", default="loop,vmap", help="the sweep engines timed (loop, vmap)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        kind, *rest = args.child
        if kind == "steps":
            mode, preset = rest
            res = child_steps(mode, preset, args.device, args.steps, args.compile)
        elif kind == "sweep":
            mode, preset, k, engine = rest
            res = child_sweep(mode, preset, args.device, args.steps, int(k), engine)
        else:
            mode, folder = rest
            res = child_e2e(mode, folder, args.e2e_epochs, args.device)
        print(json.dumps(res))
        return 0

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]))
    common = ["--device", args.device, "--steps", str(args.steps)] + (["--compile"] if args.compile else [])
    presets, modes = args.presets.split(","), args.modes.split(",")
    samples: dict[tuple[str, str], list[dict]] = {}
    if args.steps == 0:  # end-to-end part only
        presets = []
    for _ in range(args.repeats):
        for preset in presets:
            for mode in modes:
                r = _run_child([*common, "--child", "steps", mode, preset], env)
                samples.setdefault((preset, mode), []).append(r)
    sweep_cfgs = [("fit", 0)] + [(f"sweep-{e}", args.sweep_k) for e in args.sweep_engines.split(",")] \
        if args.sweep_k else []
    sweep_samples: dict[tuple[str, str, str], list[dict]] = {}
    for _ in range(args.repeats if sweep_cfgs else 0):
        for preset in presets:
            for mode in ("faithful", "fast"):
                for name, k in sweep_cfgs:
                    engine = name.split("-", 1)[1] if k else "loop"
                    r = _run_child([*common, "--child", "sweep", mode, preset, str(k), engine], env)
                    sweep_samples.setdefault((preset, mode, name), []).append(r)
    rows, failed = [], {}
    sweep_rows = []
    for key, runs in sweep_samples.items():
        failed.update({"/".join(key): r["error"] for r in runs if "error" in r})
        sweep_samples[key] = [r for r in runs if "error" not in r]
    for (preset, mode, name), runs in sweep_samples.items():
        solo = sweep_samples.get((preset, mode, "fit"))
        if not runs or not solo:
            continue
        ips = statistics.median(r["images_per_s"] for r in runs)
        solo_ips = statistics.median(r["images_per_s"] for r in solo)
        sweep_rows.append({"preset": preset, "mode": mode, "run": name, "members": args.sweep_k if name != "fit" else 1,
                           "member_images_per_s": round(ips, 2),
                           "member_images_per_s_all": [round(r["images_per_s"], 2) for r in runs],
                           "vs_solo_fit": round(ips / solo_ips, 3),
                           "peak_mem_mb": round(max(r["peak_mem_bytes"] for r in runs) / 2**20, 1)})
    for key, runs in samples.items():
        failed.update({f"{key[0]}/{key[1]}": r["error"] for r in runs if "error" in r})
        samples[key] = [r for r in runs if "error" not in r]
    for preset in presets:
        base = statistics.median(r["images_per_s"] for r in samples.get((preset, "baseline"), [])) \
            if samples.get((preset, "baseline")) else None
        for mode in modes:
            runs = samples[(preset, mode)]
            if not runs:
                continue
            ips = statistics.median(r["images_per_s"] for r in runs)
            rows.append({
                "preset": preset, "mode": mode, "batch_size": _batch(preset),
                "images_per_s": round(ips, 2),
                "images_per_s_all": [round(r["images_per_s"], 2) for r in runs],
                "vs_baseline": round(ips / base, 3) if base else None,
                "peak_mem_mb": round(max(r["peak_mem_bytes"] for r in runs) / 2**20, 1),
            })
    e2e = {}
    if args.e2e_images:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "faces"
            folder.mkdir()
            _write_jpegs(folder, args.e2e_images)
            e2e_env = dict(env, GANKIT_CACHE_DIR=str(Path(tmp) / "cache"))
            e2e_args = ["--device", args.device, "--e2e-epochs", str(args.e2e_epochs)]
            for mode in ("baseline", "faithful", "fast"):
                e2e[mode] = _run_child([*e2e_args, "--child", "e2e", mode, str(folder)], e2e_env)
            # a second gankit run reuses the cache: no decoding at all
            e2e["faithful_cached"] = _run_child([*e2e_args, "--child", "e2e", "faithful", str(folder)], e2e_env)
            failed.update({f"e2e/{m}": r["error"] for m, r in e2e.items() if "error" in r})
            e2e = {m: r for m, r in e2e.items() if "error" not in r}
            for r in e2e.values():  # steady state: the epochs after the first
                later = r["epoch_seconds"][1:] or r["epoch_seconds"]
                r["images_per_s_after_first_epoch"] = round(args.e2e_images * len(later) / sum(later), 2)
            base = e2e.get("baseline", {}).get("images_per_s_after_first_epoch")
            for r in e2e.values():
                r["vs_baseline"] = round(r["images_per_s_after_first_epoch"] / base, 3) if base else None
    report = {"machine": machine(), "device": args.device, "steps": args.steps, "repeats": args.repeats,
              "compile": args.compile, "throughput": rows, "sweep": sweep_rows, "end_to_end": e2e,
              "e2e_images": args.e2e_images, "failed": failed}
    print(format_report(report))
    for what, err in failed.items():
        print(f"FAILED {what}: {err}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.out}")
    return 1 if failed else 0


def _batch(preset: str) -> int:
    return 64 if preset == "dcgan_task1" else 32


def format_sweep(report: dict) -> str:
    """The sweep table of a report (docs/sweeps.rst includes it as results-sweep-cpu.txt)."""
    m = report["machine"]
    lines = [f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}, device {report['device']}",
             f"{report['steps']} timed steps, median of {report['repeats']} runs",
             "member-images/s through fit; x solo: per member against one Trainer.fit",
             f"{'preset':<12} {'mode':<9} {'run':<12} {'K':>3} {'member img/s':>13} {'x solo':>7} {'peak MB':>9}"]
    for r in report["sweep"]:
        lines.append(f"{r['preset']:<12} {r['mode']:<9} {r['run']:<12} {r['members']:>3} "
                     f"{r['member_images_per_s']:>13.1f} {r['vs_solo_fit']:>7.2f} {r['peak_mem_mb']:>9.0f}")
    return "\n".join(lines) + "\n"


def format_report(report: dict) -> str:
    """The human-readable table of a report."""
    m = report["machine"]
    lines = [f"machine: {m['cpu']} ({m['cores']} cores, {m['torch_threads']} torch threads)"
             + (f", GPU {m['gpu']}" if m.get("gpu") else "") + f"; torch {m['torch']}; device {report['device']}",
             f"{report['steps']} timed steps per run, median of {report['repeats']} runs",
             "",
             f"{'preset':<12} {'mode':<12} {'batch':>5} {'images/s':>10} {'x baseline':>10} {'peak MB':>9}"]
    for r in report["throughput"]:
        ratio = f"{r['vs_baseline']:.2f}" if r["vs_baseline"] else "-"
        lines.append(f"{r['preset']:<12} {r['mode']:<12} {r['batch_size']:>5} {r['images_per_s']:>10.1f} "
                     f"{ratio:>10} {r['peak_mem_mb']:>9.0f}")
    if report.get("sweep"):
        lines += ["", format_sweep(report)]
    if report["end_to_end"]:
        lines += ["", f"end to end, task one, {report['e2e_images']} JPEGs (96x96), batch 64 "
                      f"(baseline: the original DataLoader, {BASELINE_WORKERS} workers):"]
        for mode, r in report["end_to_end"].items():
            secs = ", ".join(f"{s:.1f}" for s in r["epoch_seconds"])
            lines.append(f"  {mode:<16} {r['images_per_s_after_first_epoch']:7.1f} images/s after epoch 1 "
                         f"(x{r['vs_baseline'] or float('nan'):.2f}); setup {r['setup_seconds']:.1f} s "
                         f"({r.get('setup_decodes', 0)} decodes); epochs {secs} s; "
                         f"decodes per epoch {r['epoch_decodes']}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
