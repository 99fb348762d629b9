"""Two time-scale update rule (TTUR: D learns 4x faster) with cosine learning-rate
schedules after a warm-up, and a linearly decaying R1 weight -- all by step, all resumable."""

import argparse

from gankit import Trainer
from gankit.data import load_images
from gankit.presets import build_recipe, dcgan_task1
from gankit.regularizers import R1Penalty
from gankit.schedules import cosine, linear
from gankit.train import GANStep


def ttur_task1(**overrides):
    recipe = dcgan_task1(loss="hinge", g_optimizer="adam_ttur_g", d_optimizer="adam_ttur_d", **overrides)
    recipe.step = GANStep("hinge", regularizers=[R1Penalty(gamma=1.0)])
    return recipe


def make_trainer(out, quick=False, **options):
    size = dict(image_size=32, base_channels=8 if quick else 32, batch_size=16)
    steps = 8 if quick else 3000
    schedules = {"g.lr": cosine(1e-4, 1e-6, steps=steps, warmup=steps // 8),
                 "d.lr": cosine(4e-4, 4e-6, steps=steps, warmup=steps // 8),
                 "r1": linear(0.5, 0.05, steps=steps)}  # R1's weight = gamma / 2
    return Trainer(build_recipe(ttur_task1, **size), out_dir=out, device="cpu",
                   schedules=schedules, **options)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/ttur_cosine")
    parser.add_argument("--quick", action="store_true", help="a few steps on tiny networks")
    args = parser.parse_args()
    trainer = make_trainer(args.out, args.quick, progress=not args.quick)
    data = load_images("toy-faces", num_images=64 if args.quick else 4000, image_size=32)
    trainer.fit(data, max_steps=8 if args.quick else 3000)
    print("final lr G/D:", trainer.opt_g.param_groups[0]["lr"], trainer.opt_d.param_groups[0]["lr"])
