"""Gradient accumulation: a batch of 64 as 4 micro-batches of 16 -- the same update as one
batch of 64 (for networks without BatchNorm, whose statistics would see 16 images)."""

import argparse

from gankit import Trainer
from gankit.data import load_images
from gankit.models import dcgan_discriminator, dcgan_generator
from gankit.presets import Recipe, build_recipe, make_settings
from gankit.train import GANStep


def no_bn_dcgan(accumulate: int = 4, **overrides):
    """A DCGAN without BatchNorm; every batch split into ``accumulate`` micro-batches."""
    s = make_settings(dict(image_size=32, batch_size=64, loss="nonsaturating"), overrides)
    g = dcgan_generator(z_dim=s.z_dim, image_size=s.image_size, base_channels=s.base_channels, norm_layer=None)
    d = dcgan_discriminator(image_size=s.image_size, base_channels=s.base_channels, norm_layer=None)
    return Recipe("no_bn_dcgan", g, d, s, step=GANStep(s.loss, accumulate=accumulate))


def make_trainer(out, quick=False, accumulate=4, **options):
    recipe = build_recipe(no_bn_dcgan, accumulate=accumulate, base_channels=8 if quick else 32)
    return Trainer(recipe, out_dir=out, device="cpu", **options)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/grad_accumulation")
    parser.add_argument("--quick", action="store_true", help="a few steps on tiny networks")
    args = parser.parse_args()
    trainer = make_trainer(args.out, args.quick, progress=not args.quick)
    data = load_images("toy-faces", num_images=128 if args.quick else 4000, image_size=32)
    trainer.fit(data, max_steps=4 if args.quick else 2000)
    print("steps:", trainer.step, "micro-batches per step:", trainer.step_fn.accumulate)
