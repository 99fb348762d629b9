"""Sample-quality metrics that reproduce and say how each number was made.

* Image metrics that need no network: :func:`sliced_wasserstein_distance` (SWD, PGGAN's
  definition, :mod:`gankit.metrics.swd`) and :func:`ms_ssim_diversity` (mean MS-SSIM of
  random pairs of generated images, torchmetrics' MS-SSIM, :mod:`gankit.metrics.diversity`).

* Functional metrics on feature tensors: :func:`fid_from_features`,
  :func:`fid_from_stats`, :func:`kid_from_features` (unbiased, mean and std over
  subsets), :func:`inception_score_from_probs` / :func:`inception_score_from_logits`,
  :func:`precision_recall` (k-NN manifolds).
* Feature extractors: ``"tiny"`` (:class:`TinyExtractor`, offline, not comparable to
  published FIDs), ``"inception-v3"`` (:class:`InceptionV3Extractor`, the standard FID
  network from a local weights file or the torchmetrics / torch-fidelity cache; it is
  downloaded only with ``download=True``) and any ``nn.Module`` (:class:`ModuleExtractor`).
* Reference statistics cached on disk: :func:`compute_stats`, :class:`FeatureStats`.
* :func:`evaluate` returns a :class:`MetricResult` whose JSON records the extractor,
  resizer, sample counts and reference dataset.

Images are float ``(N, C, H, W)`` in ``[-1, 1]`` (gankit generators' ``tanh`` range);
pass ``value_range=(0, 1)`` for ``[0, 1]`` images. Nothing is downloaded at import time.

Example:
    >>> import torch
    >>> from gankit.metrics import evaluate
    >>> imgs = torch.rand(32, 3, 16, 16) * 2 - 1
    >>> evaluate(imgs, imgs, metrics=["fid", "pr"], use_cache=False).values["precision"]
    1.0
"""

from gankit.metrics.conditional import (
    ConditionalAccuracy,
    LabelClassifier,
    PerClassResult,
    conditional_accuracy,
    per_class_evaluate,
    train_label_classifier,
)
from gankit.metrics.diversity import MS_SSIM_BETAS, ms_ssim_diversity, ms_ssim_settings
from gankit.metrics.evaluate import (
    FEATURE_METRICS,
    IMAGE_METRICS,
    METRICS,
    MetricResult,
    evaluate,
)
from gankit.metrics.extractors import (
    EXTRACTOR_NAMES,
    FeatureExtractor,
    ModuleExtractor,
    TinyExtractor,
    get_extractor,
)
from gankit.metrics.functional import (
    fid_from_features,
    fid_from_stats,
    inception_score_from_logits,
    inception_score_from_probs,
    kid_from_features,
    mean_cov,
    precision_recall,
)
from gankit.metrics.inception import (
    INCEPTION_WEIGHTS_URL,
    InceptionV3Extractor,
    find_inception_weights,
    inception_weights_candidates,
)
from gankit.metrics.preprocess import RESIZERS, normalize_images, resize_images
from gankit.metrics.stats import (
    ExtractedFeatures,
    FeatureStats,
    compute_stats,
    default_cache_dir,
    extract_features,
    stats_cache_path,
)
from gankit.metrics.swd import SWD_SETTINGS, laplacian_pyramid, sliced_wasserstein_distance

__all__ = [
    "ConditionalAccuracy",
    "LabelClassifier",
    "PerClassResult",
    "conditional_accuracy",
    "per_class_evaluate",
    "train_label_classifier",
    "EXTRACTOR_NAMES",
    "FEATURE_METRICS",
    "IMAGE_METRICS",
    "MS_SSIM_BETAS",
    "SWD_SETTINGS",
    "INCEPTION_WEIGHTS_URL",
    "METRICS",
    "RESIZERS",
    "ExtractedFeatures",
    "FeatureExtractor",
    "FeatureStats",
    "InceptionV3Extractor",
    "MetricResult",
    "ModuleExtractor",
    "TinyExtractor",
    "compute_stats",
    "default_cache_dir",
    "evaluate",
    "extract_features",
    "fid_from_features",
    "fid_from_stats",
    "find_inception_weights",
    "get_extractor",
    "inception_score_from_logits",
    "inception_score_from_probs",
    "inception_weights_candidates",
    "kid_from_features",
    "laplacian_pyramid",
    "mean_cov",
    "ms_ssim_diversity",
    "ms_ssim_settings",
    "normalize_images",
    "precision_recall",
    "resize_images",
    "sliced_wasserstein_distance",
    "stats_cache_path",
]
