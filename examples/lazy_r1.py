"""Lazy R1 regularisation (StyleGAN2): the R1 penalty on every 16th discriminator step,
scaled by 16, with the non-saturating logistic loss, on the task-one networks."""

import argparse

from gankit import Trainer
from gankit.data import load_images
from gankit.presets import build_recipe, dcgan_task1
from gankit.regularizers import R1Penalty
from gankit.train import GANStep


def lazy_r1_task1(gamma: float = 1.0, every: int = 16, **overrides):
    """Task one's networks with the logistic loss and R1 every ``every`` D steps."""
    recipe = dcgan_task1(**overrides)
    recipe.step = GANStep("nonsaturating", regularizers=[R1Penalty(gamma, every=every)])
    return recipe


def make_trainer(out, quick=False, **options):
    size = dict(image_size=32, base_channels=8 if quick else 32, batch_size=16)
    recipe = build_recipe(lazy_r1_task1, every=4 if quick else 16, **size)
    return Trainer(recipe, out_dir=out, device="cpu", **options)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/lazy_r1")
    parser.add_argument("--quick", action="store_true", help="a few steps on tiny networks")
    args = parser.parse_args()
    trainer = make_trainer(args.out, args.quick, progress=not args.quick)
    data = load_images("toy-faces", num_images=64 if args.quick else 4000, image_size=32)
    trainer.fit(data, max_steps=8 if args.quick else 3000)
    print("r1 logged at steps:", [int(r["step"]) for r in trainer.history if "r1" in r][:8])
