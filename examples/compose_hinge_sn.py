"""Compose a new GAN from gankit's blocks: a spectral-norm critic trained with the hinge loss.

The generator is DCGAN-shaped (latent projection to 4x4, transposed convolutions that
double the side); the critic has no BatchNorm, spectral norm on every layer and a raw
score head. It trains with the hinge loss and the two-timescale Adam presets of SAGAN.
The builder is registered as a preset, so ``get_preset``, ``--set``-style overrides,
checkpoints and ``Trainer.load`` work for it as for the built-in ones.

Run it from the repository root::

    python examples/compose_hinge_sn.py            # 64x64 toy faces, batch 64, 20 epochs
    python examples/compose_hinge_sn.py --quick    # a tiny run that takes seconds
    GANKIT_EXAMPLES_QUICK=1 python examples/compose_hinge_sn.py   # the same as --quick

It writes into ``--out`` (default ``runs/compose_hinge_sn``) what every Trainer writes, plus
``samples_seed0.png`` (16 samples drawn with a private seed).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import torch
from torchvision.utils import save_image

import gankit
from gankit.blocks import (
    ConvHead,
    LatentProjection,
    OutputConv,
    downsampling_stack,
    upsampling_stack,
)
from gankit.constraints import spectral_norm_, weight_spectral_norms
from gankit.data import load_images
from gankit.models import Discriminator, Generator
from gankit.presets import Recipe, make_settings, register_preset


@register_preset
def hinge_sn_dcgan(**overrides) -> Recipe:
    """DCGAN-style generator, spectral-norm critic, hinge loss, TTUR Adam (example)."""
    # Only what differs from RecipeSettings' defaults; overrides are checked by name.
    # (For WGAN-GP instead: loss="wasserstein", gp_weight=10.0, n_critic=5 and the
    # "adam_wgan_gp" optimizer preset for both networks, without spectral norm.)
    s = make_settings(
        dict(loss="hinge", g_optimizer="adam_ttur_g", d_optimizer="adam_ttur_d",
             batch_size=64, epochs=20, spectral_norm=True),
        overrides,
    )
    n = int(math.log2(s.image_size // 4))  # doublings from 4x4 to the image size
    widths = [s.base_channels * 2 ** (n - 1 - i) for i in range(n)]  # 64x64: 8b, 4b, 2b, b

    generator = Generator(
        # Linear -> BatchNorm1d -> ReLU, then a reshape to (widths[0], 4, 4) in forward.
        LatentProjection(s.z_dim, widths[0], 4, norm_layer="batch"),
        # ConvTranspose2d(k4, s2, p1) -> BatchNorm2d -> ReLU per stage; the output layer
        # doubles the side once more and maps to the image channels with a tanh.
        upsampling_stack(widths, kernel_size=4, stride=2, padding=1,
                         output=OutputConv(s.channels, 4, 2, 1, act_layer="tanh"),
                         input_size=4),
        init="dcgan",
    )
    critic = Discriminator(
        # Conv2d(k4, s2, p1) -> LeakyReLU(0.2) per stage, no normalisation (spectral norm
        # does the regularising), down to (widths[0], 4, 4).
        downsampling_stack([s.channels, *reversed(widths)], kernel_size=4, stride=2,
                           padding=1, norm_layer=None, act_layer="leaky_relu",
                           input_size=s.image_size),
        ConvHead(widths[0], 4, sigmoid=False),  # one raw score per image: the hinge wants logits
        image_shape=(s.channels, s.image_size, s.image_size),
    )
    if s.spectral_norm:  # a custom builder applies this setting itself
        spectral_norm_(critic)
    return Recipe("hinge_sn_dcgan", generator, critic, s, dict(overrides),
                  "DCGAN-style G, spectral-norm critic, hinge loss")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a GAN composed from gankit's blocks.")
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("GANKIT_EXAMPLES_QUICK") == "1",
                        help="tiny settings that finish in seconds (env GANKIT_EXAMPLES_QUICK=1)")
    parser.add_argument("--out", default="runs/compose_hinge_sn", help="output folder")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and latents")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.quick:
        overrides = dict(image_size=32, base_channels=8, batch_size=16, epochs=2,
                         checkpoint_every=1)
        num_images = 32
    else:
        overrides, num_images = {}, None

    torch.manual_seed(args.seed)
    recipe = gankit.get_preset("hinge_sn_dcgan", **overrides)  # now a registered preset
    size = (recipe.channels, recipe.image_size, recipe.image_size)
    table = gankit.summary(recipe.discriminator, size, print_fn=None)  # the layer table
    print(f"{recipe.name}: generator {sum(p.numel() for p in recipe.generator.parameters()):,}"
          f" parameters, critic {table.total_params:,} parameters"
          f" ({len(table.rows)} table rows, spectral norm's own rows included)")

    trainer = gankit.Trainer(recipe, device=args.device, out_dir=args.out,
                             progress=not args.quick)
    last = Path(args.out) / "checkpoints" / "last.pt"
    if last.exists():  # continue an earlier run in the same folder
        trainer.resume(last)
    data = load_images("toy-faces", image_size=recipe.image_size, num_images=num_images)
    trainer.fit(data)

    # Spectral norm keeps each critic layer's largest singular value near 1.
    sigmas = weight_spectral_norms(trainer.discriminator)
    print(f"done: {trainer.step} steps; critic layer norms "
          + ", ".join(f"{v:.3f}" for v in sigmas.values()))

    # sample() uses a private generator for the latents: torch's global RNG is untouched.
    images = trainer.sample(16, seed=0)  # (16, C, H, W) in [0, 1]
    path = Path(args.out) / "samples_seed0.png"
    save_image(images, path, nrow=4)
    print(f"  samples: {path}")


if __name__ == "__main__":
    main()
