"""High-level evaluation: metric values plus exactly how they were made.

:func:`evaluate` extracts features of generated images (a tensor, batches or a sampler)
and of a reference (a dataset, cached :class:`~gankit.metrics.stats.FeatureStats` or a
statistics file), computes the requested metrics and returns a :class:`MetricResult`
whose JSON carries the extractor, its comparability with published numbers, the resizer,
image sizes, sample counts, the reference dataset, the metric settings and the version.

Metric names: ``"fid"``, ``"kid"``, ``"is"`` (needs an extractor with logits, i.e.
InceptionV3) and ``"pr"`` (precision / recall) compare extractor features; ``"swd"``
(sliced Wasserstein distance, :mod:`gankit.metrics.swd`) compares image patches with the
reference images and ``"ms_ssim"`` (MS-SSIM diversity, :mod:`gankit.metrics.diversity`)
compares pairs of generated images; neither needs a network. Result keys: ``fid``,
``kid_mean``, ``kid_std``, ``is_mean``, ``is_std``, ``precision``, ``recall``, ``swd``
(x1e3, mean over pyramid levels) with ``swd_<side>`` per level, and ``ms_ssim``.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> real = torch.rand(64, 3, 16, 16, generator=g) * 2 - 1
    >>> fake = torch.rand(64, 3, 16, 16, generator=g) * 2 - 1
    >>> res = evaluate(fake, real, metrics=("fid", "kid"), reference_id="noise",
    ...                kid_subset_size=32, use_cache=False)
    >>> sorted(res.values), res.extractor, res.comparable_to_published
    (['fid', 'kid_mean', 'kid_std'], 'tiny-v1-seed0', False)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gankit._version import __version__
from gankit.errors import ConfigError, DataError
from gankit.metrics.diversity import ms_ssim_diversity, ms_ssim_settings
from gankit.metrics.extractors import get_extractor
from gankit.metrics.functional import (
    fid_from_stats,
    inception_score_from_logits,
    kid_from_features,
    mean_cov,
    precision_recall,
)
from gankit.metrics.preprocess import ImageSource, iter_image_batches
from gankit.metrics.stats import FeatureStats, compute_stats, extract_features
from gankit.metrics.swd import (
    SWD_SETTINGS,
    images_to_uint8,
    sliced_wasserstein_distance,
    swd_resolutions,
)

__all__ = ["MetricResult", "evaluate", "METRICS", "FEATURE_METRICS", "IMAGE_METRICS"]

#: Metrics computed on extractor features.
FEATURE_METRICS = ("fid", "kid", "is", "pr")
#: Metrics computed on the images themselves (no network).
IMAGE_METRICS = ("swd", "ms_ssim")
METRICS = FEATURE_METRICS + IMAGE_METRICS
_SMALL_SAMPLE = 10_000
_SWD_PUBLISHED_IMAGES = 16384  # PGGAN's and MMGeneration's SWD protocol


@dataclass
class MetricResult:
    """Metric values with their provenance.

    Attributes:
        values: Metric name -> value (``fid``, ``kid_mean``, ``kid_std``, ``is_mean``,
            ``is_std``, ``precision``, ``recall``, ``swd``, ``swd_<side>``, ``ms_ssim``).
        extractor: Feature extractor name (``"none"`` when only image metrics were asked).
        comparable_to_published: ``True`` only for the standard InceptionV3 FID weights
            (it concerns the feature metrics; SWD and MS-SSIM settings are in ``settings``).
        resizer: How images were resized for the extractor.
        input_size: Side the extractor saw (``None``: not resized).
        num_fake: Generated images used.
        num_real: Reference images used.
        reference: Reference dataset identifier.
        fake_image_size: ``(H, W)`` of the generated images.
        real_image_size: ``(H, W)`` of the reference images.
        settings: Metric settings actually used (e.g. the effective KID subset size).
        notes: Caveats a reader of the numbers should know.
        extractor_info: The extractor's :meth:`describe` (weights file and hash for Inception).
        gankit_version: Version that computed the numbers.

    Example:
        >>> r = MetricResult({"fid": 1.5}, "tiny-v1-seed0", False, "bilinear-antialias", 64,
        ...                  100, 100, "cifar10", (32, 32), (32, 32))
        >>> r["fid"], json.loads(r.to_json())["reference"]
        (1.5, 'cifar10')
    """

    values: dict[str, float]
    extractor: str
    comparable_to_published: bool
    resizer: str
    input_size: int | None
    num_fake: int
    num_real: int
    reference: str
    fake_image_size: tuple[int, int]
    real_image_size: tuple[int, int]
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extractor_info: dict[str, Any] = field(default_factory=dict)
    gankit_version: str = __version__

    def __getitem__(self, name: str) -> float:
        """Value of one metric, e.g. ``result["fid"]``.

        Args:
            name: Metric key.

        Returns:
            The value.
        """
        return self.values[name]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of values and provenance.

        Returns:
            A dict of plain Python values.
        """
        out = asdict(self)
        out["fake_image_size"] = list(self.fake_image_size)
        out["real_image_size"] = list(self.real_image_size)
        return out

    def to_json(self, indent: int | None = 2) -> str:
        """The result as JSON text (see :meth:`to_dict`).

        Args:
            indent: JSON indentation (``None``: one line).

        Returns:
            JSON string.
        """
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def __str__(self) -> str:
        vals = ", ".join(f"{k}={v:.4g}" for k, v in self.values.items())
        flag = "" if self.comparable_to_published else " (NOT comparable to published numbers)"
        return (
            f"{vals} | {self.extractor}{flag}, {self.num_fake} fake vs {self.num_real} "
            f"real from {self.reference}"
        )


def _load_reference(
    reference: FeatureStats | str | os.PathLike | ImageSource,
    extractor: Any,
    need_features: bool,
    reference_id: str | None,
    num_reference: int | None,
    kw: dict[str, Any],
) -> FeatureStats:
    """The reference statistics: given, read from a file, or computed (and cached)."""
    if isinstance(reference, (str, os.PathLike)):
        reference = FeatureStats.load(Path(reference))
    if isinstance(reference, FeatureStats):
        made = (reference.extractor, reference.input_size, reference.resizer)
        wanted = (extractor.name, extractor.input_size, extractor.resizer)
        if made != wanted:
            raise ConfigError(
                f"reference statistics were made with {made}, but the extractor is {wanted}; "
                "recompute them with this extractor or choose the one they were made with"
            )
        if need_features and reference.features is None:
            raise ConfigError(
                f"reference statistics of {reference.dataset} hold no features, which KID and "
                "precision/recall need; recompute them with keep_features=True"
            )
        return reference
    return compute_stats(
        reference,
        extractor,
        dataset=reference_id,
        num_samples=num_reference,
        keep_features=need_features,
        **kw,
    )


def _is_stats_file(reference: Any) -> bool:
    return isinstance(reference, (str, os.PathLike, FeatureStats))


def _collect_images(
    source: ImageSource, batch_size: int, num: int | None
) -> tuple[Tensor, list[Tensor]]:
    """All images of a source as one tensor, plus the batches (for a second pass)."""
    batches = list(iter_image_batches(source, batch_size, num))
    if not batches:
        raise DataError("the image source yielded no images")
    return torch.cat(batches), batches


def _subset(images: Tensor, n: int, seed: int) -> Tensor:
    """``n`` of the images, a seeded random choice when there are more (order kept)."""
    if images.shape[0] == n:
        return images
    keep = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    return images[keep.sort().values]


def _swd_values(
    fake: Tensor,
    real: Tensor,
    value_range: tuple[float, float],
    ref_range: tuple[float, float],
    seed: int,
    device: str | torch.device | None,
) -> tuple[dict[str, float], dict[str, Any]]:
    if tuple(fake.shape[1:]) != tuple(real.shape[1:]):
        raise ConfigError(
            f"SWD compares images of one shape, but the generated ones are {tuple(fake.shape[1:])}"
            f" and the reference ones {tuple(real.shape[1:])}; load the reference at the "
            "generator's size and channels"
        )
    n = min(fake.shape[0], real.shape[0])
    a = images_to_uint8(_subset(fake, n, seed), value_range)
    b = images_to_uint8(_subset(real, n, seed + 1), ref_range)
    values = sliced_wasserstein_distance(a, b, seed=seed, device=device)
    settings = {
        **SWD_SETTINGS,
        "resolutions": swd_resolutions(int(fake.shape[-1]), SWD_SETTINGS["min_resolution"]),
        "num_images": n,
        "seed": seed,
        "images": "8-bit",
        "definition": "PGGAN metrics/sliced_wasserstein.py (Karras et al. 2018)",
        "patch_positions": "splitmix64 keyed on (seed, image content, duplicate index)",
    }
    return values, settings


def evaluate(
    fake: ImageSource,
    reference: FeatureStats | str | os.PathLike | ImageSource,
    *,
    metrics: tuple[str, ...] | list[str] = ("fid", "kid"),
    extractor: str | nn.Module = "tiny",
    num_samples: int | None = None,
    num_reference: int | None = None,
    reference_id: str | None = None,
    batch_size: int = 64,
    value_range: tuple[float, float] = (-1.0, 1.0),
    reference_value_range: tuple[float, float] | None = None,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    kid_degree: int = 3,
    pr_k: int = 3,
    is_splits: int = 10,
    seed: int = 0,
    weights_path: str | os.PathLike | None = None,
    download: bool = False,
) -> MetricResult:
    """Computes sample-quality metrics of generated images against a reference.

    Feature metrics (``fid``, ``kid``, ``is``, ``pr``) run the extractor over both sets.
    ``swd`` compares the generated images with as many reference images (a seeded random
    choice of the larger set), so it needs reference *images*, not statistics.
    ``ms_ssim`` averages MS-SSIM over the ``N // 2`` disjoint random pairs of the generated
    images and ignores the reference. With only image metrics no extractor is built.

    Args:
        fake: Generated images: tensor ``(N, C, H, W)``, iterable of batches, or a sampler
            ``fn(n) -> (n, C, H, W)`` (called under ``torch.no_grad``).
        reference: Reference dataset (tensor / iterable of batches / DataLoader), its
            :class:`~gankit.metrics.stats.FeatureStats`, or a statistics file path.
        metrics: Subset of ``("fid", "kid", "is", "pr", "swd", "ms_ssim")``.
        extractor: ``"tiny"`` (offline, not comparable to published numbers),
            ``"inception-v3"`` (the standard FID network) or any ``nn.Module``.
        num_samples: Generated images to use (required for a sampler; default: all).
        num_reference: Reference images to use (default: all).
        reference_id: Identifier of the reference dataset, recorded in the result and
            used as cache key; without it reference statistics are not cached.
        batch_size: Images per forward pass.
        value_range: Range of the generated float images (gankit generators: ``(-1, 1)``).
        reference_value_range: Range of the reference images (default: ``value_range``).
        device: Where the extractor (and SWD) runs (default: where it is, i.e. CPU for
            built-ins).
        cache_dir: Statistics cache directory (default ``~/.cache/gankit/stats``).
        use_cache: Read / write cached reference statistics.
        kid_subsets: KID subsets.
        kid_subset_size: KID subset size (clamped to the smaller sample count).
        kid_degree: KID polynomial kernel degree.
        pr_k: Neighbour rank of the precision / recall radii.
        is_splits: Inception Score splits.
        seed: Seed of the KID subset draws, the SWD patches and directions and the MS-SSIM
            pairs (the global RNG is untouched).
        weights_path: InceptionV3 weights file (``--inception-weights``).
        download: Allow downloading InceptionV3 weights (``--download-weights``).

    Returns:
        :class:`MetricResult`.

    Example:
        >>> real = torch.zeros(8, 3, 8, 8)
        >>> evaluate(real, real, metrics=["fid"], use_cache=False)["fid"] < 1e-6
        True
        >>> x = torch.rand(8, 3, 32, 32) * 2 - 1
        >>> r = evaluate(x, x, metrics=["swd", "ms_ssim"])
        >>> r["swd"], r.extractor, sorted(r.values)
        (0.0, 'none', ['ms_ssim', 'swd', 'swd_16', 'swd_32'])
    """
    wanted = [m.lower() for m in metrics]
    unknown = sorted(set(wanted) - set(METRICS))
    if unknown or not wanted:
        raise ConfigError(f"unknown metrics {unknown or wanted}; choose from {', '.join(METRICS)}")
    features_wanted = any(m in FEATURE_METRICS for m in wanted)
    images_wanted = any(m in IMAGE_METRICS for m in wanted)
    if "swd" in wanted and _is_stats_file(reference):
        raise ConfigError(
            "SWD compares image patches, but the reference is feature statistics; pass the "
            "reference images (a tensor, dataset or folder) or drop 'swd'"
        )
    ref_range = reference_value_range or value_range
    fake_images: Tensor | None = None
    ref_images: Tensor | None = None
    if images_wanted:
        # Materialise the generated images once: a sampler must not be drawn twice.
        fake_images, fake_batches = _collect_images(fake, batch_size, num_samples)
        fake = fake_batches
        num_samples = fake_images.shape[0]
    if "swd" in wanted:
        if isinstance(reference, Tensor):
            ref_images = reference[:num_reference]
        else:
            ref_images, ref_batches = _collect_images(reference, batch_size, num_reference)
            reference = ref_batches

    values: dict[str, float] = {}
    settings: dict[str, Any] = {"value_range": list(value_range)}
    notes: list[str] = []
    ex = None
    ref = None
    n_fake = 0
    fake_size: tuple[int, int] = (0, 0)
    if features_wanted:
        ex = get_extractor(extractor, weights_path=weights_path, download=download, device=device)
        if "is" in wanted and not ex.has_logits:
            raise ConfigError(
                f"the Inception Score needs class logits, which extractor {ex.name!r} lacks; "
                "use extractor='inception-v3' (--extractor inception-v3) or drop 'is'"
            )
        need_features = "kid" in wanted or "pr" in wanted
        ref = _load_reference(
            reference,
            ex,
            need_features,
            reference_id,
            num_reference,
            {
                "batch_size": batch_size,
                "value_range": ref_range,
                "cache_dir": cache_dir,
                "use_cache": use_cache,
            },
        )
        fake_out = extract_features(
            fake,
            ex,
            num_samples=num_samples,
            batch_size=batch_size,
            value_range=value_range,
            with_logits="is" in wanted,
        )
        n_fake = fake_out.features.shape[0]
        fake_size = tuple(fake_out.image_size)
        settings["reference_value_range"] = list(ref.value_range)
        if "fid" in wanted:
            mu, cov = mean_cov(fake_out.features)
            values["fid"] = fid_from_stats(mu, cov, ref.mean, ref.cov)
        if "kid" in wanted:
            subset = min(kid_subset_size, n_fake, ref.num_samples)
            kid = kid_from_features(
                ref.features,
                fake_out.features,
                subsets=kid_subsets,
                subset_size=subset,
                degree=kid_degree,
                generator=torch.Generator().manual_seed(seed),
            )
            values["kid_mean"], values["kid_std"] = kid
            settings["kid"] = {
                "subsets": kid_subsets,
                "subset_size": subset,
                "degree": kid_degree,
                "gamma": "1/feature_dim",
                "coef": 1.0,
                "seed": seed,
            }
        if "is" in wanted:
            values["is_mean"], values["is_std"] = inception_score_from_logits(
                fake_out.logits, splits=is_splits
            )
            settings["is"] = {"splits": is_splits, "logits": "inception fc without bias"}
        if "pr" in wanted:
            values["precision"], values["recall"] = precision_recall(
                ref.features, fake_out.features, k=pr_k
            )
            settings["pr"] = {"k": pr_k}
        if not ex.comparable_to_published:
            notes.append(
                f"extractor {ex.name} is not the standard InceptionV3 FID network with its "
                "standard weights: these numbers are not comparable to published ones"
            )
        if n_fake < _SMALL_SAMPLE or ref.num_samples < _SMALL_SAMPLE:
            notes.append(
                f"FID/IS depend on sample counts ({n_fake} fake, {ref.num_samples} real); "
                "compare only numbers computed with the same counts (published FIDs mostly "
                "use 50000)"
            )
        if fake_size != tuple(ref.image_size):
            notes.append(
                f"generated images are {fake_size} but reference images are "
                f"{tuple(ref.image_size)}; both were resized to the extractor's input"
            )
    if fake_images is not None:
        n_fake = fake_images.shape[0]
        fake_size = (int(fake_images.shape[-2]), int(fake_images.shape[-1]))
    if "swd" in wanted:
        swd, settings["swd"] = _swd_values(
            fake_images, ref_images, value_range, ref_range, seed, device
        )
        values.update(swd)
        settings["reference_value_range"] = list(ref_range)
        if settings["swd"]["num_images"] < _SWD_PUBLISHED_IMAGES:
            notes.append(
                f"SWD depends on the image count ({settings['swd']['num_images']} per set); "
                f"PGGAN and MMGeneration report it on {_SWD_PUBLISHED_IMAGES}, so compare only "
                "numbers computed with the same count"
            )
    if "ms_ssim" in wanted:
        values["ms_ssim"] = ms_ssim_diversity(fake_images, seed=seed, value_range=value_range)
        ms = ms_ssim_settings(fake_size)
        settings["ms_ssim"] = {**ms, "pairs": n_fake // 2, "seed": seed}
        if ms["scales"] < 5:
            notes.append(
                f"MS-SSIM used {ms['scales']} of Wang's 5 scales ({fake_size[0]}x{fake_size[1]} "
                "images are too small for five 11-pixel windows); compare it only with MS-SSIMs "
                "computed with the same settings"
            )
    if ref is not None:
        num_real, ref_name, real_size = ref.num_samples, ref.dataset, tuple(ref.image_size)
    elif ref_images is not None:
        num_real, ref_name = int(ref_images.shape[0]), reference_id or "<unnamed>"
        real_size = (int(ref_images.shape[-2]), int(ref_images.shape[-1]))
    else:
        num_real, ref_name, real_size = 0, reference_id or "<unused>", (0, 0)
    return MetricResult(
        values=values,
        extractor=ex.name if ex is not None else "none",
        comparable_to_published=ex.comparable_to_published if ex is not None else False,
        resizer=ex.resizer if ex is not None else "none",
        input_size=ex.input_size if ex is not None else None,
        num_fake=n_fake,
        num_real=num_real,
        reference=ref_name,
        fake_image_size=fake_size,
        real_image_size=real_size,
        settings=settings,
        notes=notes,
        extractor_info=ex.describe() if ex is not None else {},
    )
