"""Feature extraction over image sources and reference statistics cached on disk.

:func:`extract_features` runs an extractor over a tensor, an iterable of batches or a
sampler. :func:`compute_stats` turns a dataset into :class:`FeatureStats` (mean and
covariance of its features, optionally the features themselves for KID and P/R) and
caches them in a safetensors file keyed by the dataset id, the extractor (name, input
size, resizer), the sample count and the value range, so the reference side of a metric
is computed once per dataset and extractor.

The cache directory is ``$GANKIT_CACHE_DIR/stats`` if that variable is set, else
``~/.cache/gankit/stats``. Files are written atomically (temporary file + rename), so an
interrupted run never leaves a truncated statistics file behind.

Example:
    >>> import torch, tempfile
    >>> images = torch.rand(16, 3, 32, 32) * 2 - 1
    >>> st = compute_stats(images, "tiny", dataset="noise-16", cache_dir=tempfile.mkdtemp())
    >>> st.mean.shape, st.num_samples, st.extractor
    (torch.Size([128]), 16, 'tiny-v1-seed0')
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from gankit._version import __version__
from gankit.errors import DataError
from gankit.metrics.extractors import FeatureExtractor, get_extractor
from gankit.metrics.preprocess import ImageSource, iter_image_batches, normalize_images

__all__ = [
    "FeatureStats",
    "ExtractedFeatures",
    "extract_features",
    "compute_stats",
    "default_cache_dir",
    "stats_cache_path",
]


def default_cache_dir() -> Path:
    """Directory of cached reference statistics.

    Returns:
        ``$GANKIT_CACHE_DIR/stats`` if the variable is set, else ``~/.cache/gankit/stats``.

    Example:
        >>> default_cache_dir().name
        'stats'
    """
    root = os.environ.get("GANKIT_CACHE_DIR") or "~/.cache/gankit"
    return Path(root).expanduser() / "stats"


class ExtractedFeatures(NamedTuple):
    """Features of an image source.

    Attributes:
        features: ``(N, D)`` float32 CPU tensor.
        logits: ``(N, C)`` float32 CPU tensor if requested, else ``None``.
        image_size: ``(H, W)`` of the source images before resizing.
    """

    features: Tensor
    logits: Tensor | None
    image_size: tuple[int, int]


def _iter_features(
    source: ImageSource,
    extractor: FeatureExtractor,
    num_samples: int | None,
    batch_size: int,
    value_range: tuple[float, float],
    with_logits: bool,
):
    """Yields ``(features, logits_or_None, image_size)`` per batch, on the CPU."""
    for batch in iter_image_batches(source, batch_size, num_samples):
        images = normalize_images(batch, value_range)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        # Inference mode per batch, not around the loop: a context held across `yield`
        # would leak into the caller's code.
        with torch.inference_mode():
            if with_logits:
                feats, logits = extractor.forward_with_logits(images)
            else:
                feats, logits = extractor(images), None
        yield feats.cpu(), None if logits is None else logits.cpu(), size


def extract_features(
    source: ImageSource,
    extractor: str | nn.Module = "tiny",
    *,
    num_samples: int | None = None,
    batch_size: int = 64,
    value_range: tuple[float, float] = (-1.0, 1.0),
    with_logits: bool = False,
) -> ExtractedFeatures:
    """Runs a feature extractor over all images of a source.

    Args:
        source: Tensor ``(N, C, H, W)``, iterable of batches, or sampler ``fn(n)``.
        extractor: Extractor, ``nn.Module`` or name (see
            :func:`~gankit.metrics.extractors.get_extractor`).
        num_samples: Use exactly this many images (required for samplers).
        batch_size: Images per forward pass.
        value_range: Range of float images (``(-1, 1)`` for gankit generators).
        with_logits: Also return class logits (InceptionV3 only).

    Returns:
        :class:`ExtractedFeatures`.

    Example:
        >>> out = extract_features(torch.zeros(3, 1, 28, 28), "tiny")
        >>> out.features.shape, out.image_size
        (torch.Size([3, 128]), (28, 28))
    """
    ex = get_extractor(extractor)
    feats, logits, size = [], [], None
    for f, lg, s in _iter_features(source, ex, num_samples, batch_size, value_range, with_logits):
        size = size or s
        if s != size:
            raise DataError(f"images of sizes {size} and {s} in one source; resize them first")
        feats.append(f)
        logits.append(lg)
    if not feats:
        raise DataError("the image source yielded no images")
    return ExtractedFeatures(
        torch.cat(feats), torch.cat(logits) if with_logits else None, size or (0, 0)
    )


@dataclass
class FeatureStats:
    """Mean and covariance of a dataset's features, with how they were made.

    Attributes:
        mean: ``(D,)`` float64 feature mean.
        cov: ``(D, D)`` float64 unbiased covariance (divisor ``N - 1``).
        num_samples: Number of images ``N``.
        dataset: Identifier of the dataset (e.g. ``"cifar10-train"`` or a path).
        extractor: Extractor name (e.g. ``"inception-v3-fid@6726825d"``).
        comparable_to_published: Whether the extractor is the standard FID network.
        input_size: Side the images were resized to (``None``: not resized).
        resizer: Resizer name.
        image_size: ``(H, W)`` of the dataset images before resizing.
        value_range: Value range the images were read in.
        features: ``(N, D)`` float32 features if kept (KID and P/R need them), else ``None``.
        gankit_version: Version that made the statistics.

    Example:
        >>> st = compute_stats(torch.zeros(4, 3, 8, 8), "tiny", use_cache=False)
        >>> st.provenance()["dataset"]
        '<unnamed>'
    """

    mean: Tensor
    cov: Tensor
    num_samples: int
    dataset: str
    extractor: str
    comparable_to_published: bool
    input_size: int | None
    resizer: str
    image_size: tuple[int, int]
    value_range: tuple[float, float] = (-1.0, 1.0)
    features: Tensor | None = None
    gankit_version: str = field(default=__version__)

    def provenance(self) -> dict[str, Any]:
        """Everything but the tensors, as JSON-ready values.

        Returns:
            Dict of the metadata fields plus ``feature_dim`` and ``has_features``.
        """
        return {
            "dataset": self.dataset,
            "num_samples": self.num_samples,
            "extractor": self.extractor,
            "comparable_to_published": self.comparable_to_published,
            "input_size": self.input_size,
            "resizer": self.resizer,
            "image_size": list(self.image_size),
            "value_range": list(self.value_range),
            "feature_dim": int(self.mean.shape[0]),
            "has_features": self.features is not None,
            "gankit_version": self.gankit_version,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the statistics atomically to a safetensors file.

        Args:
            path: Destination file (parent directories are created).

        Returns:
            The path written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"mean": self.mean.contiguous().cpu(), "cov": self.cov.contiguous().cpu()}
        if self.features is not None:
            tensors["features"] = self.features.contiguous().cpu()
        meta = {"gankit_stats": json.dumps(self.provenance())}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureStats:
        """Reads statistics written by :meth:`save`.

        Args:
            path: A safetensors statistics file.

        Returns:
            The :class:`FeatureStats`.

        Raises:
            DataError: the file is missing or is not a gankit statistics file.
        """
        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {})["gankit_stats"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (OSError, KeyError, ValueError, RuntimeError, SafetensorError) as err:
            raise DataError(
                f"{path} is not a readable gankit statistics file ({type(err).__name__}); "
                "recompute it with compute_stats"
            ) from err
        return cls(
            mean=tensors["mean"],
            cov=tensors["cov"],
            num_samples=int(meta["num_samples"]),
            dataset=meta["dataset"],
            extractor=meta["extractor"],
            comparable_to_published=bool(meta["comparable_to_published"]),
            input_size=meta["input_size"],
            resizer=meta["resizer"],
            image_size=tuple(meta["image_size"]),
            value_range=tuple(meta["value_range"]),
            features=tensors.get("features"),
            gankit_version=meta["gankit_version"],
        )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:48] or "x"


def stats_cache_path(
    dataset: str,
    extractor: FeatureExtractor,
    num_samples: int | None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Cache file of a dataset's statistics for one extractor and protocol.

    The name hashes everything that changes the features: dataset id, extractor name,
    input size, resizer, sample count and value range.

    Args:
        dataset: Dataset identifier.
        extractor: The feature extractor.
        num_samples: Sample count (``None``: the whole dataset).
        value_range: Value range of the images.
        cache_dir: Cache directory (``None``: :func:`default_cache_dir`).

    Returns:
        The path (it may not exist yet).

    Example:
        >>> from gankit.metrics.extractors import TinyExtractor
        >>> stats_cache_path("cifar10", TinyExtractor(), None, cache_dir="/tmp").name[:21]
        'cifar10-tiny-v1-seed0'
    """
    key = {
        "dataset": dataset,
        "extractor": extractor.name,
        "input_size": extractor.input_size,
        "resizer": extractor.resizer,
        "num_samples": num_samples,
        "value_range": [float(v) for v in value_range],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / f"{_slug(dataset)}-{_slug(extractor.name)}-{digest}.safetensors"


class _Moments:
    """Streaming float64 mean / covariance; sums are taken around the first batch's mean
    so large feature offsets do not cancel catastrophically."""

    def __init__(self) -> None:
        self.n = 0
        self.shift: Tensor | None = None
        self.s1: Tensor | None = None
        self.s2: Tensor | None = None

    def update(self, x: Tensor) -> None:
        x = x.to(torch.float64)
        if self.shift is None:
            self.shift = x.mean(dim=0)
            self.s1 = torch.zeros_like(self.shift)
            self.s2 = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
        xc = x - self.shift
        self.s1 += xc.sum(dim=0)
        self.s2 += xc.T @ xc
        self.n += x.shape[0]

    def result(self) -> tuple[Tensor, Tensor]:
        if self.n < 2:
            raise DataError(f"statistics need at least 2 images, got {self.n}")
        mean_c = self.s1 / self.n
        cov = (self.s2 - self.n * torch.outer(mean_c, mean_c)) / (self.n - 1)
        return self.shift + mean_c, cov


def compute_stats(
    source: ImageSource,
    extractor: str | nn.Module = "tiny",
    *,
    dataset: str | None = None,
    num_samples: int | None = None,
    batch_size: int = 64,
    value_range: tuple[float, float] = (-1.0, 1.0),
    keep_features: bool = False,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> FeatureStats:
    """Feature statistics of a dataset, read from / written to the cache when it has an id.

    Args:
        source: Tensor ``(N, C, H, W)``, iterable of batches (e.g. a DataLoader; tuples
            are read as ``(images, labels)``) or sampler ``fn(n)``.
        extractor: Extractor, ``nn.Module`` or name (``"tiny"``, ``"inception-v3"``).
        dataset: Identifier of the dataset (e.g. ``"cifar10-train@32"``). Without one the
            statistics are neither cached nor looked up.
        num_samples: Use the first ``num_samples`` images (``None``: all).
        batch_size: Images per forward pass.
        value_range: Range of float images (``(-1, 1)`` gankit's, ``(0, 1)`` torchvision's).
        keep_features: Also keep the ``(N, D)`` features (needed for KID and P/R). A cached
            file without features is recomputed when features are asked for.
        cache_dir: Cache directory (``None``: :func:`default_cache_dir`).
        use_cache: Set ``False`` to neither read nor write the cache.

    Returns:
        :class:`FeatureStats`.

    Example:
        >>> st = compute_stats(torch.zeros(4, 3, 8, 8), "tiny", keep_features=True,
        ...                    use_cache=False)
        >>> st.features.shape
        torch.Size([4, 128])
    """
    ex = get_extractor(extractor)
    path = None
    if dataset is not None and use_cache:
        path = stats_cache_path(dataset, ex, num_samples, value_range, cache_dir)
        if path.is_file():
            try:
                cached = FeatureStats.load(path)
            except DataError:
                cached = None  # unreadable cache entry: recompute and overwrite it
            if cached is not None and (cached.features is not None or not keep_features):
                return cached
    moments, kept, size = _Moments(), [], None
    for f, _, s in _iter_features(source, ex, num_samples, batch_size, value_range, False):
        size = size or s
        if s != size:
            raise DataError(f"images of sizes {size} and {s} in one dataset; resize them first")
        moments.update(f)
        if keep_features:
            kept.append(f)
    mean, cov = moments.result()
    stats = FeatureStats(
        mean=mean,
        cov=cov,
        num_samples=moments.n,
        dataset=dataset or "<unnamed>",
        extractor=ex.name,
        comparable_to_published=ex.comparable_to_published,
        input_size=ex.input_size,
        resizer=ex.resizer,
        image_size=size or (0, 0),
        value_range=(float(value_range[0]), float(value_range[1])),
        features=torch.cat(kept) if keep_features else None,
    )
    if path is not None:
        stats.save(path)
    return stats
