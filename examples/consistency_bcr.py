"""Balanced consistency regularisation (bCR, Zhao et al. 2020), written here in a few lines:
the discriminator should score an augmented image (flip + 2-pixel shift) as it scores the
image itself, for real and for generated images."""

import argparse

import torch

from gankit import Trainer
from gankit.data import load_images
from gankit.presets import build_recipe, dcgan_task1
from gankit.regularizers import Regularizer
from gankit.train import GANStep


def augment(x):
    return torch.roll(x.flip(-1), shifts=(2, 2), dims=(-2, -1))


class BalancedConsistency(Regularizer):
    """lambda_real * ||D(T(x)) - D(x)||^2 + lambda_fake * ||D(T(G(z))) - D(G(z))||^2."""

    def __call__(self, ctx):
        real = (ctx.score(augment(ctx.real)) - ctx.real_out.detach()).pow(2).mean()
        fake = (ctx.score(augment(ctx.fake)) - ctx.fake_out.detach()).pow(2).mean()
        return real + fake


def bcr_task1(weight: float = 10.0, **overrides):
    recipe = dcgan_task1(loss="nonsaturating", **overrides)
    recipe.step = GANStep(recipe.loss, regularizers=[BalancedConsistency("bcr", weight)])
    return recipe


def make_trainer(out, quick=False, **options):
    size = dict(image_size=32, base_channels=8 if quick else 32, batch_size=16)
    return Trainer(build_recipe(bcr_task1, **size), out_dir=out, device="cpu", **options)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/bcr")
    parser.add_argument("--quick", action="store_true", help="a few steps on tiny networks")
    args = parser.parse_args()
    trainer = make_trainer(args.out, args.quick, progress=not args.quick)
    data = load_images("toy-faces", num_images=64 if args.quick else 4000, image_size=32)
    trainer.fit(data, max_steps=8 if args.quick else 3000)
    print("last bcr:", trainer.history[-1]["bcr"])
