"""The R3GAN objective (Huang et al. 2024) on the report's task-one networks:
the relativistic pairing loss (RpGAN) plus zero-centred R1 and R2 penalties."""

import argparse

from gankit import Trainer
from gankit.data import load_images
from gankit.presets import build_recipe, dcgan_task1
from gankit.regularizers import R1Penalty, R2Penalty
from gankit.train import GANStep


def r3gan_task1(gamma: float = 0.1, **overrides):
    """Task one's networks, RpGAN + R1 + R2, Adam betas (0, 0.99) as R3GAN trains."""
    recipe = dcgan_task1(g_optimizer="adam_r3gan", d_optimizer="adam_r3gan", **overrides)
    recipe.step = GANStep("rpgan", regularizers=[R1Penalty(gamma), R2Penalty(gamma)])
    return recipe


def make_trainer(out, quick=False, **options):
    size = dict(image_size=32, base_channels=8 if quick else 32, batch_size=16)
    return Trainer(build_recipe(r3gan_task1, **size), out_dir=out, device="cpu", **options)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/r3gan_task1")
    parser.add_argument("--quick", action="store_true", help="a few steps on tiny networks")
    args = parser.parse_args()
    trainer = make_trainer(args.out, args.quick, progress=not args.quick)
    data = load_images("toy-faces", num_images=64 if args.quick else 4000, image_size=32)
    trainer.fit(data, max_steps=8 if args.quick else 3000)
    print("logged:", ", ".join(k for k in trainer.history[-1] if k not in ("step", "epoch")))
