"""Class-conditional evaluation: intra-class metrics and conditional accuracy.

* :func:`per_class_evaluate` -- any metric of :func:`gankit.metrics.evaluate` (SWD, FID, ...)
  computed class by class: the images generated for class ``k`` against the real images
  of class ``k`` (intra-class FID / SWD), with the mean over classes.
* :func:`train_label_classifier` -- a small CNN trained on the real labelled images, its
  accuracy measured on real images it did not train on (held out), so that a
  conditional-accuracy figure always comes with how good its judge is.
* :func:`conditional_accuracy` -- the share of generated images that this classifier
  assigns to the class they were generated for; chance is ``1 / num_classes``.

Everything is seeded privately: torch's global RNG is left as it was.

Example:
    >>> import torch
    >>> images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    >>> labels = torch.arange(40) % 2
    >>> clf = train_label_classifier(images, labels, epochs=1)
    >>> 0.0 <= clf.heldout_accuracy <= 1.0, clf.num_classes
    (True, 2)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import ConfigError
from .evaluate import MetricResult, evaluate

__all__ = [
    "LabelClassifier",
    "train_label_classifier",
    "ConditionalAccuracy",
    "conditional_accuracy",
    "PerClassResult",
    "per_class_evaluate",
]


def _as_float(images: Tensor) -> Tensor:
    """uint8 images to floats in [-1, 1] (floats are taken as already there)."""
    return images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()


def _classifier(channels: int, num_classes: int, width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.BatchNorm2d(4 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes),
    )


@dataclass
class LabelClassifier:
    """A classifier of real images by class, with its accuracy on held-out real images.

    Attributes:
        model: the network (eval mode), ``(N, C, H, W)`` in [-1, 1] -> ``(N, K)`` logits.
        num_classes: ``K``.
        heldout_accuracy: accuracy on the held-out real images.
        num_train: real images it trained on.
        num_heldout: real images it was tested on.
        image_shape: the ``(C, H, W)`` it reads.
        settings: how it was trained (epochs, width, seed, ...).
    """

    model: nn.Module
    num_classes: int
    heldout_accuracy: float
    num_train: int
    num_heldout: int
    image_shape: tuple[int, int, int]
    settings: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def predict(self, images: Tensor, batch_size: int = 256) -> Tensor:
        """Predicted classes of images (uint8, or floats in [-1, 1]) as int64 ``(N,)``."""
        device = next(self.model.parameters()).device
        out = [self.model(_as_float(b).to(device)).argmax(1).cpu() for b in images.split(batch_size)]
        return torch.cat(out) if out else torch.empty(0, dtype=torch.long)

    def describe(self) -> dict[str, Any]:
        """What the classifier is, for result files."""
        return {"heldout_accuracy": self.heldout_accuracy, "num_train": self.num_train,
                "num_heldout": self.num_heldout, "num_classes": self.num_classes, **self.settings}


def train_label_classifier(
    images: Tensor,
    labels: Tensor,
    *,
    num_classes: int | None = None,
    holdout: float = 0.2,
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 2e-3,
    width: int = 32,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> LabelClassifier:
    """Train a small CNN to tell the classes of real images, and measure it on held-out ones.

    A seeded random ``holdout`` share of the images is set aside; the network (four 3x3
    convolutions with BatchNorm, two poolings, a linear layer) trains on the rest with
    Adam and random horizontal flips, and its accuracy on the held-out images is recorded.

    Args:
        images: ``(N, C, H, W)`` uint8 images (or floats in [-1, 1]).
        labels: ``(N,)`` class indices.
        num_classes: number of classes (default: the largest label + 1).
        holdout: share of images held out for the accuracy (0 < holdout < 1).
        epochs: passes over the training images.
        batch_size: images per step.
        lr: Adam's learning rate.
        width: channels of the first convolution.
        seed: seed of the split, the initial weights and the batches.
        device: where it trains.

    Returns:
        The :class:`LabelClassifier`.

    Raises:
        ConfigError: for mismatched or too few images, or a bad ``holdout``.
    """
    labels = torch.as_tensor(labels).long().cpu()
    if images.dim() != 4 or labels.dim() != 1 or len(images) != len(labels):
        raise ConfigError(f"give (N, C, H, W) images and (N,) labels, got {tuple(images.shape)} and "
                          f"{tuple(labels.shape)}.")
    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"holdout must be between 0 and 1, got {holdout}.")
    k = int(num_classes if num_classes is not None else labels.max() + 1)
    n = len(images)
    n_test = max(1, int(round(n * holdout)))
    if n - n_test < 2:
        raise ConfigError(f"{n} labelled images are too few to train and test a classifier; give at least 10.")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    test_idx, train_idx = order[:n_test], order[n_test:]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _classifier(images.shape[1], k, width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_all = images.cpu()
    model.train()
    for _ in range(epochs):
        perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
        for rows in perm.split(batch_size):
            if len(rows) < 2:
                continue
            x = _as_float(x_all[rows]).to(device)
            flip = torch.rand(len(rows), generator=gen) < 0.5
            x = torch.where(flip.to(device)[:, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(model(x), labels[rows].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    clf = LabelClassifier(model, k, 0.0, len(train_idx), n_test, tuple(images.shape[1:]),
                          {"epochs": epochs, "width": width, "lr": lr, "batch_size": batch_size,
                           "holdout": holdout, "seed": seed})
    clf.heldout_accuracy = float((clf.predict(x_all[test_idx]) == labels[test_idx]).float().mean())
    return clf


@dataclass
class ConditionalAccuracy:
    """How often generated images are classified as the class they were generated for.

    Attributes:
        accuracy: the share over all generated images.
        per_class: the share for each class.
        chance: ``1 / num_classes`` (the accuracy of a generator that ignores the labels,
            against a perfect classifier, with classes sampled equally).
        num_per_class: images generated per class.
        classifier: the classifier's description (its held-out accuracy on real images).
        class_names: names of the classes (may be empty).
    """

    accuracy: float
    per_class: list[float]
    chance: float
    num_per_class: int
    classifier: dict[str, Any]
    class_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def __str__(self) -> str:
        return (f"conditional accuracy {self.accuracy:.3f} (chance {self.chance:.3f}; the classifier's own "
                f"accuracy on {self.classifier.get('num_heldout')} held-out real images: "
                f"{self.classifier.get('heldout_accuracy', float('nan')):.3f})")


def _class_batches(generator: nn.Module, k: int, n: int, seed: int, device, batch_size: int) -> Tensor:
    from ..train.export import generate

    z = torch.randn(n, generator.z_dim, generator=torch.Generator().manual_seed(seed + 7919 * k))
    return generate(generator, z, device=device, batch_size=batch_size, labels=torch.full((n,), k))


@torch.no_grad()
def conditional_accuracy(generator: nn.Module, classifier: LabelClassifier, *, num_per_class: int = 100,
                         seed: int = 0, device: str | torch.device = "cpu",
                         batch_size: int = 100) -> ConditionalAccuracy:
    """Generate ``num_per_class`` images of every class and classify them.

    Args:
        generator: a class-conditional generator (``num_classes`` > 0, ``z_dim``).
        classifier: from :func:`train_label_classifier` on the real labelled data.
        num_per_class: images per class.
        seed: seed of the latents (class ``k`` uses ``seed + 7919 k``).
        device: where the generator runs.
        batch_size: images per forward pass.

    Returns:
        The :class:`ConditionalAccuracy`.

    Raises:
        ConfigError: for an unconditional generator or mismatched classes.
    """
    k = int(getattr(generator, "num_classes", 0) or 0)
    if not k:
        raise ConfigError("conditional accuracy needs a class-conditional generator.")
    if classifier.num_classes != k:
        raise ConfigError(f"the classifier knows {classifier.num_classes} classes, the generator {k}; "
                          "train the classifier on the generator's data.")
    per_class = []
    for c in range(k):
        pred = classifier.predict(_class_batches(generator, c, num_per_class, seed, device, batch_size))
        per_class.append(float((pred == c).float().mean()))
    return ConditionalAccuracy(sum(per_class) / k, per_class, 1.0 / k, num_per_class, classifier.describe(),
                               list(getattr(generator, "class_names", None) or []))


@dataclass
class PerClassResult:
    """Metrics computed class by class (intra-class FID, SWD, ...) and their mean.

    Attributes:
        values: class name -> metric name -> value.
        mean: metric name -> the mean over classes.
        num_fake: generated images per class.
        num_real: real images of each class.
        results: class name -> the full :class:`~gankit.metrics.MetricResult` (provenance).
    """

    values: dict[str, dict[str, float]]
    mean: dict[str, float]
    num_fake: int
    num_real: dict[str, int]
    results: dict[str, MetricResult] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (with every class's provenance)."""
        return {"values": self.values, "mean": self.mean, "num_fake": self.num_fake, "num_real": self.num_real,
                "results": {k: r.to_dict() for k, r in self.results.items()}}

    def to_json(self, indent: int | None = 2) -> str:
        """The result as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        lines = [f"{name}: " + ", ".join(f"{m}={v:.4g}" for m, v in vals.items()) + f" ({self.num_real[name]} real)"
                 for name, vals in self.values.items()]
        lines.append("mean over classes: " + ", ".join(f"{m}={v:.4g}" for m, v in self.mean.items()))
        return "\n".join(lines)


@torch.no_grad()
def per_class_evaluate(generator: nn.Module, images: Tensor, labels: Tensor, *, metrics=("swd",),
                       num_per_class: int = 500, seed: int = 0, device: str | torch.device = "cpu",
                       batch_size: int = 100, class_names: list[str] | None = None,
                       **kwargs: Any) -> PerClassResult:
    """Intra-class metrics: class ``k``'s generated images against the real images of class ``k``.

    Args:
        generator: a class-conditional generator.
        images: the real images (uint8 ``(N, C, H, W)``, or floats in [-1, 1]).
        labels: their classes ``(N,)``.
        metrics: metrics of :func:`gankit.metrics.evaluate` (``swd``, ``fid``, ``kid``, ...).
        num_per_class: images generated per class.
        seed: seed of the latents and of the metrics' draws.
        device: where the generator runs.
        batch_size: images per forward pass.
        class_names: names to report classes by (default: the generator's, else indices).
        **kwargs: passed to :func:`gankit.metrics.evaluate` (``extractor``, ...).

    Returns:
        The :class:`PerClassResult` (classes without real images are left out).
    """
    k = int(getattr(generator, "num_classes", 0) or 0)
    if not k:
        raise ConfigError("per-class evaluation needs a class-conditional generator.")
    labels = torch.as_tensor(labels).long().cpu()
    names = list(class_names or getattr(generator, "class_names", None) or [str(c) for c in range(k)])
    if len(names) < k:
        names += [str(c) for c in range(len(names), k)]
    values, real_counts, results = {}, {}, {}
    ref = _as_float(images) if images.dtype == torch.uint8 else images
    for c in range(k):
        real = ref[labels == c]
        if len(real) < 2:
            continue
        fake = _class_batches(generator, c, num_per_class, seed, device, batch_size)
        result = evaluate(fake, real, metrics=tuple(metrics), use_cache=False, seed=seed, batch_size=batch_size,
                          reference_id=f"class {names[c]}", **kwargs)
        values[names[c]], real_counts[names[c]], results[names[c]] = dict(result.values), len(real), result
    if not values:
        raise ConfigError("no class has at least two real images; give labelled reference images of its classes.")
    keys = list(next(iter(values.values())))
    mean = {m: sum(v[m] for v in values.values()) / len(values) for m in keys}
    return PerClassResult(values, mean, num_per_class, real_counts, results)
