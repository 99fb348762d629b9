"""Sweep throughput on one GPU: task one's fast mode with K = 1, 4, 8, 16 members.

Each K runs in its own subprocess: a :class:`gankit.train.MultiTrainer` of K seeds of
``dcgan_task1`` (engine ``vmap``: the K generators and discriminators run as one batched
computation), bf16 autocast, channels-last, latents on the device; a first epoch of
``--warmup`` batches warms up, a second of ``--steps`` batches is timed. Also the solo
reference: one :class:`gankit.Trainer` in the same fast mode with and without CUDA graphs
(the graphs are the solo run's fastest form; a sweep cannot use them). The figure of
merit is member-images/s (K x batch x steps / seconds) against K = 1.

Usage (on a CUDA machine; ``benchmarks/gpu_check.sh`` runs it)::

    python benchmarks/sweep_gpu.py --out sweep_gpu.json            # K = 1, 4, 8, 16
    python benchmarks/sweep_gpu.py --ks 1,8 --steps 50 --engines vmap,loop
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def child(kind: str, k: int, engine: str, steps: int, warmup: int, preset: str) -> dict:
    from gankit import Trainer
    from gankit.presets import get_preset
    from gankit.train import MultiTrainer

    dev = torch.device("cuda")
    bs = get_preset(preset).batch_size
    gen = torch.Generator().manual_seed(0)
    warm = (torch.rand(bs * warmup, 3, 64, 64, generator=gen) * 2 - 1).to(dev)
    data = (torch.rand(bs * steps, 3, 64, 64, generator=gen) * 2 - 1).to(dev)
    fast = dict(precision="bf16", channels_last=True, latents="device", progress=False)
    if kind == "sweep":
        run = MultiTrainer(preset, seeds=range(k), device=dev, engine=engine, **fast)
    else:
        torch.manual_seed(0)
        run = Trainer(get_preset(preset), device=dev, cuda_graph=kind == "solo_graph", **fast)
        k = 1
    run.fit(warm, epochs=1)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    run.fit(data, epochs=2)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"kind": kind, "engine": engine if kind == "sweep" else None, "members": k, "batch_size": bs,
            "steps": steps, "seconds": round(seconds, 3), "member_images_per_s": round(k * bs * steps / seconds, 1),
            "peak_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ks", default="1,4,8,16", help="members per sweep")
    p.add_argument("--engines", default="vmap", help="comma list of vmap, loop")
    p.add_argument("--steps", type=int, default=100, help="timed steps (one epoch)")
    p.add_argument("--warmup", type=int, default=10, help="warm-up steps (the first epoch)")
    p.add_argument("--preset", default="dcgan_task1")
    p.add_argument("--timeout", type=float, default=240, help="seconds per configuration")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, k, engine = args.child
        print(json.dumps(child(kind, int(k), engine, args.steps, args.warmup, args.preset)))
        return 0
    if not torch.cuda.is_available():
        print("no CUDA device here: the sweep benchmark needs one", file=sys.stderr)
        return 1
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]))
    configs = [("solo", 1, "-"), ("solo_graph", 1, "-")]
    configs += [("sweep", int(k), e) for e in args.engines.split(",") for k in args.ks.split(",")]
    rows, failed = [], {}
    for kind, k, engine in configs:
        cmd = [sys.executable, __file__, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--preset", args.preset, "--child", kind, str(k), engine]
        try:
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            failed[f"{kind}/{engine}/K={k}"] = f"timed out after {args.timeout:.0f} s"
            continue
        if res.returncode:
            failed[f"{kind}/{engine}/K={k}"] = (res.stderr.strip().splitlines() or ["?"])[-1][:300]
            continue
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    k1 = {r["engine"]: r["member_images_per_s"] for r in rows if r["kind"] == "sweep" and r["members"] == 1}
    for r in rows:
        if r["kind"] == "sweep" and r["engine"] in k1:
            r["vs_k1"] = round(r["member_images_per_s"] / k1[r["engine"]], 2)
    report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "preset": args.preset,
              "steps": args.steps, "rows": rows, "failed": failed}
    print(f"\n{report['gpu']}, torch {report['torch']}, {args.preset} fast mode, {args.steps} timed steps")
    print(f"{'run':<12} {'engine':<7} {'K':>3} {'member img/s':>13} {'x K=1':>6} {'peak MB':>8}")
    for r in rows:
        print(f"{r['kind']:<12} {r['engine'] or '-':<7} {r['members']:>3} {r['member_images_per_s']:>13.1f} "
              f"{r.get('vs_k1', float('nan')):>6.2f} {r['peak_mem_mb']:>8.0f}")
    for what, err in failed.items():
        print(f"FAILED {what}: {err}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
