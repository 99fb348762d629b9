"""Train task one of the report: the ML2020 HW11 baseline DCGAN, on the built-in toy faces.

The ``dcgan_task1`` preset holds everything the report fixes (layers, DCGAN init, BCE,
Adam 1e-4 with betas (0.5, 0.999), batch 64, 51 epochs); the Trainer runs its procedure
step for step. ``toy-faces`` is drawn in memory, so nothing is downloaded.

Run it from the repository root::

    python examples/train_task1.py                 # the report's settings (hours on a CPU)
    python examples/train_task1.py --quick         # a tiny run that takes seconds
    GANKIT_EXAMPLES_QUICK=1 python examples/train_task1.py   # the same as --quick

It writes into ``--out`` (default ``runs/train_task1``): ``metrics.jsonl``,
``loss_curve.png``, ``samples/epoch_NNNN.png`` and ``checkpoints/`` (``last.pt`` and
``epoch_NNNN.pt``). Run it again with the same ``--out`` to continue from ``last.pt``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

import gankit
from gankit.data import load_images


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the report's task one (DCGAN).")
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("GANKIT_EXAMPLES_QUICK") == "1",
                        help="tiny settings that finish in seconds (env GANKIT_EXAMPLES_QUICK=1)")
    parser.add_argument("--out", default="runs/train_task1", help="output folder")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and latents")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.quick:
        # 32x32 images, 8 channels next to the image instead of 64, 2 epochs of 2 batches;
        # a checkpoint every epoch so that every kind of output file shows up.
        overrides = dict(image_size=32, base_channels=8, batch_size=16, epochs=2,
                         checkpoint_every=1)
        num_images = 32
    else:
        overrides = {}  # the report: 64x64, batch 64, 51 epochs, checkpoints every 5 epochs
        num_images = None  # all 10,000 toy faces

    # The seed fixes, in this order: the initial weights (built by the preset, generator
    # first), the fixed sample latents (drawn when the Trainer is built) and every latent
    # of training. Data shuffling has its own seed (Trainer's data_seed).
    torch.manual_seed(args.seed)
    recipe = gankit.get_preset("dcgan_task1", **overrides)
    trainer = gankit.Trainer(recipe, device=args.device, out_dir=args.out,
                             progress=not args.quick)

    last = Path(args.out) / "checkpoints" / "last.pt"
    if last.exists():  # a second run continues the first one exactly
        trainer.resume(last)
        print(f"resuming {last} at epoch {trainer.epoch}, step {trainer.step}")

    # Images are decoded once to uint8 and served as float batches in [-1, 1].
    data = load_images("toy-faces", image_size=recipe.image_size, num_images=num_images)
    print(f"training {recipe.name} on {len(data)} toy faces on {trainer.device}: "
          f"batch {recipe.batch_size}, {recipe.epochs} epochs")
    trainer.fit(data)

    print(f"done: {trainer.step} steps, {trainer.epoch} epochs")
    for name, path in trainer.artifacts.items():  # the latest sample grid and loss curve
        print(f"  {name}: {path}")
    print(f"  checkpoint: {last}")


if __name__ == "__main__":
    main()
