"""Feature extractors: networks that map images to the feature vectors metrics compare.

A :class:`FeatureExtractor` is an ``nn.Module`` that takes float images in ``[-1, 1]``
of any size (1 or 3 channels), resizes them with its named resizer and returns ``(N, D)``
float32 features. It carries the provenance a metric result records: ``name``,
``input_size``, ``resizer`` and ``comparable_to_published``.

* :class:`TinyExtractor` (``"tiny"``) -- a fixed random small conv net, offline and fast,
  for tests and quick looks. Its numbers are **not comparable to published FIDs**.
* :class:`ModuleExtractor` -- wraps any ``nn.Module`` that maps images to features.
* :class:`~gankit.metrics.inception.InceptionV3Extractor` (``"inception-v3"``) -- the
  standard FID network; weights come from a local file or cache (see that module).

Example:
    >>> import torch
    >>> ex = get_extractor("tiny")
    >>> ex(torch.zeros(2, 3, 32, 32)).shape, ex.comparable_to_published
    (torch.Size([2, 128]), False)
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gankit.errors import ConfigError
from gankit.metrics.preprocess import RESIZERS, resize_images, to_rgb

__all__ = [
    "FeatureExtractor",
    "TinyExtractor",
    "ModuleExtractor",
    "get_extractor",
    "EXTRACTOR_NAMES",
]

#: Names :func:`get_extractor` accepts (aliases of the InceptionV3 extractor included).
EXTRACTOR_NAMES = ("tiny", "inception-v3", "inception", "inceptionv3")


class FeatureExtractor(nn.Module, metaclass=abc.ABCMeta):
    """Abstract base class of feature extractors; subclasses implement :meth:`extract`.

    Attributes:
        name: Identifier recorded in results and cache keys; it changes whenever the
            features would (architecture, weights, seed).
        input_size: Side the images are resized to, or ``None`` for no resizing.
        resizer: Name of the resizing method (see :mod:`gankit.metrics.preprocess`).
        comparable_to_published: ``True`` only for the standard InceptionV3 FID weights.
        feature_dim: Length of a feature vector (``None`` until known).
        has_logits: Whether :meth:`forward_with_logits` gives class logits (for IS).

    Example:
        >>> class Mean(FeatureExtractor):
        ...     name, feature_dim = "channel-mean", 3
        ...     def extract(self, images):
        ...         return images.mean(dim=(2, 3))
        >>> Mean()(torch.zeros(4, 1, 8, 8)).shape
        torch.Size([4, 3])
    """

    name: str = "unnamed"
    input_size: int | None = None
    resizer: str = "none"
    comparable_to_published: bool = False
    feature_dim: int | None = None
    has_logits: bool = False

    @abc.abstractmethod
    def extract(self, images: Tensor) -> Tensor:
        """Features of images that are already RGB, resized and in ``[-1, 1]``.

        Args:
            images: ``(N, 3, input_size, input_size)`` float tensor on the module's device.

        Returns:
            ``(N, D)`` features.
        """

    def extract_with_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Features and class logits of prepared images (only if ``has_logits``).

        Args:
            images: As for :meth:`extract`.

        Returns:
            ``(features (N, D), logits (N, C))``.
        """
        raise ConfigError(
            f"extractor {self.name!r} has no classifier, so it cannot give an Inception Score; "
            "use extractor='inception-v3' for IS"
        )

    @property
    def device(self) -> torch.device:
        """Device of the extractor's first parameter or buffer (CPU if it has none)."""
        for t in (*self.parameters(), *self.buffers()):
            return t.device
        return torch.device("cpu")

    def prepare(self, images: Tensor) -> Tensor:
        """Moves ``[-1, 1]`` images to the device, makes them RGB and resizes them.

        Args:
            images: ``(N, C, H, W)`` float images in ``[-1, 1]``.

        Returns:
            ``(N, 3, S, S)`` float32 images with ``S = input_size`` (or unchanged size).
        """
        x = to_rgb(images.to(self.device, torch.float32))
        return resize_images(x, self.input_size, self.resizer)

    def forward(self, images: Tensor) -> Tensor:
        """Features of images in ``[-1, 1]``.

        Args:
            images: ``(N, C, H, W)`` float images in ``[-1, 1]``, ``C`` 1 or 3, any size.

        Returns:
            ``(N, D)`` float32 features.
        """
        return _flat(self.extract(self.prepare(images)))

    def forward_with_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Features and class logits of images in ``[-1, 1]``.

        Args:
            images: As for :meth:`forward`.

        Returns:
            ``(features (N, D), logits (N, C))`` as float32.
        """
        feats, logits = self.extract_with_logits(self.prepare(images))
        return _flat(feats), _flat(logits)

    def describe(self) -> dict[str, Any]:
        """Provenance of the features, as recorded in results and statistics files.

        Returns:
            Dict with ``name``, ``input_size``, ``resizer``, ``feature_dim`` and
            ``comparable_to_published``.
        """
        return {
            "name": self.name,
            "input_size": self.input_size,
            "resizer": self.resizer,
            "feature_dim": self.feature_dim,
            "comparable_to_published": self.comparable_to_published,
        }


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).float()


class TinyExtractor(FeatureExtractor):
    """A small fixed random-weights conv net: offline features for tests and quick looks.

    Three stride-2 4x4 convolutions with leaky ReLU (3 -> 32 -> 64 -> 128 channels, 64x64
    inputs down to 8x8), average pooling onto a 2x2 grid (so the layout of an image counts,
    not only its texture) and a fixed random projection of those 512 numbers to 128-d
    features. Weights are drawn from ``numpy.random.RandomState(seed)``, whose stream numpy
    keeps stable across versions, so features are identical across runs and machines up to
    float rounding, and the global torch / numpy RNGs are never touched. FID with these
    features falls as samples get closer to the data (less noise, right colours and
    contrast, more modes), but the numbers are **not comparable to published FIDs**
    (``comparable_to_published`` is ``False``).

    Args:
        seed: Seed of the weights; part of :attr:`name`.

    Example:
        >>> ex = TinyExtractor()
        >>> ex.name, ex(torch.zeros(1, 1, 28, 28)).shape
        ('tiny-v1-seed0', torch.Size([1, 128]))
    """

    input_size = 64
    resizer = "bilinear-antialias"
    comparable_to_published = False
    feature_dim = 128
    _channels = (3, 32, 64, 128)
    _grid = 2

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.name = f"tiny-v1-seed{seed}"
        rng = np.random.RandomState(seed)
        for i, (c_in, c_out) in enumerate(
            zip(self._channels[:-1], self._channels[1:], strict=True)
        ):
            fan_in = c_in * 16
            w = rng.standard_normal((c_out, c_in, 4, 4)) * np.sqrt(2.0 / fan_in)
            # Buffers, not parameters: the net is fixed and must never be trained.
            self.register_buffer(f"weight{i}", torch.from_numpy(w).float())
        pooled = self._channels[-1] * self._grid**2
        proj = rng.standard_normal((pooled, self.feature_dim)) / np.sqrt(pooled)
        self.register_buffer("projection", torch.from_numpy(proj).float())
        self.requires_grad_(False)
        self.eval()

    def extract(self, images: Tensor) -> Tensor:
        """Features of prepared images (see :meth:`FeatureExtractor.extract`).

        Args:
            images: ``(N, 3, 64, 64)`` float images in ``[-1, 1]``.

        Returns:
            ``(N, 128)`` features.
        """
        x = images
        for i in range(len(self._channels) - 1):
            x = F.leaky_relu(F.conv2d(x, getattr(self, f"weight{i}"), stride=2, padding=1), 0.2)
        return F.adaptive_avg_pool2d(x, self._grid).flatten(1) @ self.projection


class ModuleExtractor(FeatureExtractor):
    """Wraps a user ``nn.Module`` that maps images to features.

    Args:
        module: Maps ``(N, 3, S, S)`` images in ``input_range`` to ``(N, D)`` features
            (any trailing shape is flattened). It is put in eval mode and not trained.
        name: Identifier for results and cache keys; defaults to the module's class name.
            Give a name that changes when the weights change, or stale cached reference
            statistics may be reused.
        input_size: Side the images are resized to (``None``: keep their size).
        resizer: Resizer name (one of :data:`~gankit.metrics.preprocess.RESIZERS`).
        input_range: Value range the module expects, e.g. ``(0, 1)``.
        comparable_to_published: Set ``True`` only if the module and preprocessing are
            exactly those of a published protocol.
        logits_module: Optional module mapping the same inputs to ``(features, logits)``,
            used for the Inception Score.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1))
        >>> ex = ModuleExtractor(net, name="my-net", input_size=32)
        >>> ex(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 8])
    """

    def __init__(
        self,
        module: nn.Module,
        name: str | None = None,
        input_size: int | None = None,
        resizer: str = "bilinear-antialias",
        input_range: tuple[float, float] = (-1.0, 1.0),
        comparable_to_published: bool = False,
        logits_module: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ConfigError(f"ModuleExtractor needs an nn.Module, got {type(module).__name__}")
        if resizer not in RESIZERS:
            raise ConfigError(f"unknown resizer {resizer!r}; choose one of {', '.join(RESIZERS)}")
        self.module = module.eval().requires_grad_(False)
        self.logits_module = (
            None if logits_module is None else logits_module.eval().requires_grad_(False)
        )
        self.name = name or f"module:{type(module).__name__}"
        self.input_size = input_size
        self.resizer = resizer if input_size is not None else "none"
        self.input_range = (float(input_range[0]), float(input_range[1]))
        self.comparable_to_published = comparable_to_published
        self.has_logits = logits_module is not None

    def train(self, mode: bool = True) -> ModuleExtractor:
        """Keeps the wrapped module in eval mode (batch norm statistics stay fixed).

        Args:
            mode: Ignored.

        Returns:
            ``self``.
        """
        return super().train(False)

    def _to_module_range(self, images: Tensor) -> Tensor:
        low, high = self.input_range
        return (images + 1.0) * ((high - low) / 2.0) + low

    def extract(self, images: Tensor) -> Tensor:
        """Runs the wrapped module (see :meth:`FeatureExtractor.extract`).

        Args:
            images: Prepared images in ``[-1, 1]``.

        Returns:
            ``(N, D)`` features.
        """
        feats = _flat(self.module(self._to_module_range(images)))
        self.feature_dim = feats.shape[1]
        return feats

    def extract_with_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Runs ``logits_module`` (see :meth:`FeatureExtractor.extract_with_logits`).

        Args:
            images: Prepared images in ``[-1, 1]``.

        Returns:
            ``(features, logits)``.
        """
        if self.logits_module is None:
            return super().extract_with_logits(images)
        feats, logits = self.logits_module(self._to_module_range(images))
        return feats, logits


def get_extractor(
    spec: str | nn.Module = "tiny",
    *,
    weights_path: str | None = None,
    download: bool = False,
    device: str | torch.device | None = None,
) -> FeatureExtractor:
    """Builds a feature extractor from a name, a module or an extractor.

    Args:
        spec: ``"tiny"``, ``"inception-v3"`` (aliases ``"inception"``, ``"inceptionv3"``),
            a :class:`FeatureExtractor` (returned as is) or any ``nn.Module`` (wrapped in
            :class:`ModuleExtractor`).
        weights_path: InceptionV3 weights file (see
            :class:`~gankit.metrics.inception.InceptionV3Extractor`).
        download: Allow downloading the InceptionV3 weights when no local copy exists.
        device: Device to move the extractor to (``None``: leave it where it is).

    Returns:
        The extractor, in eval mode.

    Example:
        >>> get_extractor("tiny").name
        'tiny-v1-seed0'
    """
    if isinstance(spec, FeatureExtractor):
        ex = spec
    elif isinstance(spec, nn.Module):
        ex = ModuleExtractor(spec)
    elif isinstance(spec, str) and spec.lower() == "tiny":
        ex = TinyExtractor()
    elif isinstance(spec, str) and spec.lower() in EXTRACTOR_NAMES:
        from gankit.metrics.inception import InceptionV3Extractor

        ex = InceptionV3Extractor(weights_path=weights_path, download=download)
    else:
        raise ConfigError(
            f"unknown feature extractor {spec!r}; use 'tiny', 'inception-v3' or pass an nn.Module"
        )
    if device is not None:
        ex = ex.to(device)
    return ex.eval()
