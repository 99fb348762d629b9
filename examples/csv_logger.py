"""A logger of your own: every logged value of a run as one CSV row per step.

gankit's logger interface (:class:`gankit.train.Logger`) has four methods; a W&B or MLflow
logger overrides the same ones (``wandb.log(metrics, step=step)``, ``mlflow.log_metrics``).
"""

import argparse
import csv
import math
import os
from pathlib import Path

import torch

from gankit import Trainer, get_preset
from gankit.train import Logger


class CSVLogger(Logger):
    """Write ``metrics.csv`` (one row per step) and ``hparams.csv`` (name, value)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.rows = {}

    def log_hparams(self, hparams):
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "hparams.csv", "w", newline="") as f:
            csv.writer(f).writerows(sorted(hparams.items()))

    def log_metrics(self, metrics, step):
        self.rows.setdefault(step, {}).update(metrics)

    def close(self):
        names = sorted({k for row in self.rows.values() for k in row})
        with open(self.folder / "metrics.csv", "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["step", *names])
            for step, row in sorted(self.rows.items()):
                out.writerow([step, *("" if math.isnan(row.get(k, math.nan)) else row[k] for k in names)])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/csv_logger")
    parser.add_argument("--quick", action="store_true", default=os.environ.get("GANKIT_EXAMPLES_QUICK") == "1",
                        help="a few steps on tiny networks (env GANKIT_EXAMPLES_QUICK=1)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and latents")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    recipe = get_preset("dcgan_task1", image_size=32, base_channels=8 if args.quick else 32, batch_size=16)
    trainer = Trainer(recipe, out_dir=args.out, device=args.device, progress=not args.quick,
                      loggers=[CSVLogger(args.out)])
    trainer.fit("toy-faces", max_steps=8 if args.quick else 2000, num_images=64 if args.quick else 4000)
    print(open(Path(args.out) / "metrics.csv").read().splitlines()[0])
