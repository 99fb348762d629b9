"""Several generator EMAs watching one training run: which half-life, ramp-up and BatchNorm handling samples best.

An EMA only watches the training (it never touches the networks or the random streams), so
one run of a preset in the quality benchmark's CPU configuration can carry any number of
them; at the chosen points each is evaluated -- as the benchmark does (2,000 samples
against the same 2,000 reference images, SWD and the offline FID) -- with its BatchNorm
statistics copied from the raw generator (StyleGAN2's way, gankit's default) and
recomputed on its own samples. The raw generator is evaluated too.

    python benchmarks/ema_probe.py --preset dcgan_task1_stable --seeds 0,1 \
        --variants 10000:0.05,10000:none,20000:none,40000:none --recompute 0,2048 \
        --out runs/ema-probe-stable.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

import gankit
from gankit.data import load_images
from gankit.metrics import get_extractor
from gankit.train import Callback, GeneratorEMA
from gankit.train.ema import recompute_batchnorm
from gankit.train.evaluation import evaluate_generator

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from provenance import git_commit, machine  # noqa: E402
from quality import CONFIGS, parse_preset_spec  # noqa: E402


def parse_variant(text: str) -> tuple[float, float | None]:
    half_life, _, rampup = text.partition(":")
    return float(half_life), None if rampup in ("", "none") else float(rampup)


class Watchers(Callback):
    """Folds the generator into EMAs of its own after every step (a trainer takes one GeneratorEMA)."""

    def __init__(self, emas: list[GeneratorEMA]) -> None:
        self.emas = emas

    def on_step_end(self, trainer, batch, logs) -> None:
        for ema in self.emas:
            ema.update(trainer.generator, batch_images=len(batch), step=trainer.step)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", required=True, help="NAME or NAME[KEY=VALUE;...]")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--variants", default="10000:0.05", help="HALF_LIFE:RAMPUP,... (RAMPUP 'none': no ramp-up)")
    p.add_argument("--recompute", default="0,2048", help="BatchNorm recompute sizes (0: copied statistics)")
    p.add_argument("--eval-at", default="163840", help="images at which to evaluate (multiples of 20,480 here)")
    p.add_argument("--swd-all", action="store_true",
                   help="SWD at the last point for every variant (default: the raw generator, the preset's "
                        "EMA and the recomputed-BatchNorm variants; FID for all at every point)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    cfg = CONFIGS["cpu"]
    name, own = parse_preset_spec(args.preset)
    overrides = {"image_size": cfg["image_size"], "base_channels": cfg["base_channels"], **own}
    settings = gankit.get_preset(name, **overrides).settings
    data = load_images("toy-faces", image_size=settings.image_size, channels=settings.channels,
                       num_images=cfg["num_images"], progress=False)
    perm = torch.randperm(len(data.images), generator=torch.Generator().manual_seed(0))
    reference = data.images[perm[: cfg["eval_reference"]].sort().values]
    extractor = get_extractor("tiny", device="cpu")
    variants = [parse_variant(v) for v in args.variants.split(",")]
    recompute = [int(r) for r in args.recompute.split(",")]
    eval_at = sorted(int(x) for x in args.eval_at.split(","))
    bs = settings.batch_size
    doc = {"preset": args.preset, "commit": git_commit(), "machine": machine(), "config": "cpu",
           "variants": args.variants, "recompute": recompute, "results": []}
    started = time.perf_counter()

    def evaluate(module, swd: bool) -> dict:
        # SWD costs ~20 s of 2,000 images on 2 cores against ~1.5 s for FID: only where asked
        metrics = ("swd", "fid") if swd else ("fid",)
        with torch.random.fork_rng(devices=[]):
            r = evaluate_generator(module, reference, z_dim=settings.z_dim, metrics=metrics,
                                   num_samples=cfg["eval_samples"], extractor=extractor, device="cpu")
        return {m: r.values[m] for m in metrics}

    for seed in (int(s) for s in args.seeds.split(",")):
        torch.manual_seed(seed)
        emas = [GeneratorEMA(half_life_images=h, rampup=r, name=f"probe{i}") for i, (h, r) in enumerate(variants)]
        t = gankit.Trainer(gankit.get_preset(name, **overrides), data_seed=seed, device="cpu", progress=False,
                           precision="bf16", channels_last=True, callbacks=[Watchers(emas)])
        for ema in emas:
            ema.attach(t)
        for images in eval_at:
            t.fit(data, epochs=10**9, max_steps=images // bs)
            last = images == eval_at[-1]
            row = {"seed": seed, "images": images, "raw": evaluate(t.generator, last)}
            if t.ema is not None:
                row["preset_ema"] = evaluate(t.ema.sampling_module(), last)
            for (h, r), ema in zip(variants, emas):
                for n in recompute:


                    net = ema.module if n == 0 else recompute_batchnorm(
                        copy.deepcopy(ema.module), z_dim=settings.z_dim, num_images=n, batch_size=bs)
                    row[f"h{int(h)}:r{r}:bn{n}"] = evaluate(net, last and (n > 0 or args.swd_all))
            print(json.dumps(row), flush=True)
            doc["results"].append(row)
    doc["wall_min"] = round((time.perf_counter() - started) / 60, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    return doc


if __name__ == "__main__":
    main()
