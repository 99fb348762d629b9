"""Conditional-accuracy benchmark: ``sngan_projection32`` on labelled toy-faces, on a CPU.

Trains the class-conditional preset (conditional BatchNorm in G, projection discriminator)
on ``toy-faces`` with its 10 hair classes, then measures how often a classifier trained on
the *real* labelled faces assigns the generated faces to the class they were generated for
(:func:`gankit.metrics.conditional_accuracy`). The classifier's own accuracy on held-out
real faces and the chance level (1 / 10) are recorded beside it. Nothing is downloaded.

    python benchmarks/conditional.py --steps 20000 --eval-every 2000 --out benchmarks/results-conditional-cpu.json

The settings differ from the preset's CIFAR recipe only where a CPU run needs it (stated in
the JSON): 16x16 images, ``base_channels`` 16 (32 generator / 16 discriminator channels) and
2 discriminator steps per generator step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from gankit import Trainer
from gankit.data import load_images
from gankit.metrics import conditional_accuracy, train_label_classifier
from gankit.presets import get_preset

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the sibling provenance.py, also when this file is loaded by path
    sys.path.insert(0, str(HERE))
from provenance import cpu_name  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--n-critic", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results-conditional-cpu.json")
    args = p.parse_args()

    overrides = dict(image_size=args.image_size, base_channels=args.base_channels, n_critic=args.n_critic,
                     batch_size=args.batch_size, num_classes=10)
    data = load_images("toy-faces", num_images=args.images, image_size=args.image_size, labels=True, progress=False)
    t0 = time.perf_counter()
    clf = train_label_classifier(data.images, data.labels, num_classes=10, seed=args.seed)
    clf_seconds = time.perf_counter() - t0
    print(f"classifier: held-out accuracy {clf.heldout_accuracy:.3f} on {clf.num_heldout} real faces "
          f"({clf_seconds:.0f} s)", flush=True)
    torch.manual_seed(args.seed)
    trainer = Trainer(get_preset("sngan_projection32", **overrides), device="cpu", progress=False)
    curve = []
    t_train = 0.0
    while trainer.step < args.steps:
        t0 = time.perf_counter()
        trainer.fit(data, epochs=10**6, max_steps=min(args.steps, trainer.step + args.eval_every))
        t_train += time.perf_counter() - t0
        acc = conditional_accuracy(trainer.sampling_generator(), clf, num_per_class=args.per_class, seed=args.seed)
        curve.append({"step": trainer.step, "generator_steps": trainer.g_steps, "accuracy": acc.accuracy,
                      "per_class": acc.per_class, "train_seconds": round(t_train, 1)})
        print(f"step {trainer.step}: conditional accuracy {acc.accuracy:.3f} (chance {acc.chance:.2f}), "
              f"{t_train:.0f} s of training", flush=True)
    result = {
        "preset": "sngan_projection32", "overrides": overrides, "dataset": f"toy-faces ({args.images} images, "
        "10 hair classes: gankit.data.toyfaces.toy_faces_labels)", "seed": args.seed,
        "chance": 0.1, "classifier": clf.describe(), "classifier_seconds": round(clf_seconds, 1),
        "images_per_class_evaluated": args.per_class, "curve": curve,
        "final_conditional_accuracy": curve[-1]["accuracy"],
        "machine": f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "command": "python benchmarks/conditional.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
