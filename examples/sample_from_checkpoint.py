"""Sample images from a training checkpoint, and export its generator to ``.safetensors``.

A checkpoint (``checkpoints/last.pt`` or ``epoch_NNNN.pt``) records its preset and
overrides, so the generator is rebuilt without knowing how it was trained. The export
holds the generator's weights alone, for inference.

Run it from the repository root::

    python examples/train_task1.py                                # writes a checkpoint
    python examples/sample_from_checkpoint.py                     # runs/train_task1/...
    python examples/sample_from_checkpoint.py --checkpoint runs/train_task2/checkpoints/last.pt
    python examples/sample_from_checkpoint.py --quick             # trains 2 tiny steps first
    GANKIT_EXAMPLES_QUICK=1 python examples/sample_from_checkpoint.py   # the same as --quick

It writes into ``--out`` (default ``runs/sample_from_checkpoint``): ``samples.png`` (a grid
of ``--n`` images), ``generator.safetensors`` and, in quick mode without ``--checkpoint``,
the tiny training run under ``train/``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from torchvision.utils import save_image

import gankit
from gankit.data import load_images


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Sample from a gankit checkpoint.")
    parser.add_argument("--quick", action="store_true",
                        default=os.environ.get("GANKIT_EXAMPLES_QUICK") == "1",
                        help="tiny settings that finish in seconds (env GANKIT_EXAMPLES_QUICK=1)")
    parser.add_argument("--checkpoint", default=None,
                        help="a checkpoint written by the Trainer (default: "
                             "runs/train_task1/checkpoints/last.pt; in quick mode, a new one)")
    parser.add_argument("--out", default="runs/sample_from_checkpoint", help="output folder")
    parser.add_argument("--n", type=int, default=None, help="images (default 100, quick 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    return parser.parse_args()


def tiny_checkpoint(out: Path) -> Path:
    """Train dcgan_task1 for 2 steps at 32x32 and return its checkpoint (quick mode)."""
    torch.manual_seed(0)
    recipe = gankit.get_preset("dcgan_task1", image_size=32, base_channels=8, batch_size=8)
    trainer = gankit.Trainer(recipe, device="cpu", out_dir=out / "train", progress=False)
    trainer.fit(load_images("toy-faces", image_size=32, num_images=16), max_steps=2)
    return out / "train" / "checkpoints" / "last.pt"


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    n = args.n or (16 if args.quick else 100)
    if args.checkpoint is not None:
        checkpoint = Path(args.checkpoint)
    elif args.quick:
        checkpoint = tiny_checkpoint(out)
    else:
        checkpoint = Path("runs/train_task1/checkpoints/last.pt")
    if not checkpoint.is_file():
        raise SystemExit(f"no checkpoint at {checkpoint}: run examples/train_task1.py first, "
                         "pass --checkpoint, or use --quick")

    # 1. The generator alone, rebuilt from the checkpoint's preset, in eval mode.
    #    (Loading never runs code from the file: it is read with weights_only=True.)
    device = gankit.train.resolve_device(args.device)
    generator = gankit.load_generator(checkpoint, device=device)
    latents = torch.randn(n, generator.z_dim, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        images = generator(latents.to(device)).cpu()  # tanh range [-1, 1]
    out.mkdir(parents=True, exist_ok=True)
    save_image((images + 1) / 2, out / "samples.png", nrow=round(n**0.5))
    print(f"wrote {n} samples of {checkpoint} to {out / 'samples.png'}")

    # 2. The whole trainer (networks, optimizers, counters, RNG state): it could go on
    #    training with fit(); here it exports the generator's weights to safetensors.
    trainer = gankit.Trainer.load(checkpoint, device=device, progress=False)
    print(f"the checkpoint is {trainer.recipe.name} after {trainer.step} steps "
          f"({trainer.epoch} epochs)")
    export = trainer.export_generator(out / "generator.safetensors")

    # The export rebuilds the same generator: same latents, same images.
    again = gankit.load_generator(export, device=device)
    with torch.no_grad():
        same = torch.equal(again(latents.to(device)).cpu(), images)
    print(f"exported the generator to {export} (reproduces the samples: {same})")


if __name__ == "__main__":
    main()
