"""The standard InceptionV3 FID network, loaded from local weights; downloads only on request.

The network is torch-fidelity's ``FeatureExtractorInceptionV3`` (the TensorFlow FID
Inception graph ported to PyTorch, which torchmetrics also uses), so features match the
reference implementations: images are quantised to uint8, resized to 299x299 with
TensorFlow-1 compatible bilinear interpolation, and the 2048-d pool features (FID, KID,
P/R) and the bias-free 1008-way logits (IS) are read out.

Weights are looked up, in order, at:

1. the ``weights_path`` argument (``--inception-weights`` on the command line);
2. the ``GANKIT_INCEPTION_WEIGHTS`` environment variable;
3. the torch hub cache, ``<torch hub dir>/checkpoints/``, under the names torch-fidelity /
   torchmetrics (``weights-inception-2015-12-05-6726825d.pth``) and pytorch-fid
   (``pt_inception-2015-12-05-6726825d.pth``) save it;
4. a download into that cache, only with ``download=True``.

Nothing is downloaded at import time or without ``download=True``. Results are marked
comparable to published FIDs only when the file's SHA-256 starts with ``6726825d``, the
hash of the standard weights.

Example:
    >>> path = "weights-inception-2015-12-05-6726825d.pth"
    >>> ex = InceptionV3Extractor(weights_path=path)  # doctest: +SKIP
    >>> ex.name, ex.comparable_to_published  # doctest: +SKIP
    ('inception-v3-fid@6726825d', True)
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch
from torch import Tensor

from gankit.errors import ConfigError, GankitError
from gankit.metrics.extractors import FeatureExtractor

__all__ = [
    "InceptionV3Extractor",
    "INCEPTION_WEIGHTS_URL",
    "INCEPTION_WEIGHTS_FILENAMES",
    "inception_weights_candidates",
    "find_inception_weights",
]

#: Where torch-fidelity publishes the converted TensorFlow weights (about 92 MiB).
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)
#: File names under which the standard weights sit in the torch hub cache.
INCEPTION_WEIGHTS_FILENAMES = (
    "weights-inception-2015-12-05-6726825d.pth",
    "pt_inception-2015-12-05-6726825d.pth",
)
_STANDARD_SHA256_PREFIX = "6726825d"
_ENV_VAR = "GANKIT_INCEPTION_WEIGHTS"


def inception_weights_candidates() -> list[Path]:
    """Cache paths where the standard weights are looked for (existing or not).

    Returns:
        Paths under ``torch.hub.get_dir()/checkpoints`` (honours ``TORCH_HOME``).

    Example:
        >>> inception_weights_candidates()[0].name
        'weights-inception-2015-12-05-6726825d.pth'
    """
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    return [checkpoints / name for name in INCEPTION_WEIGHTS_FILENAMES]


def _download_weights(url: str, dest: Path) -> None:
    """Downloads ``url`` to ``dest``, checking the SHA-256 prefix (torch.hub does it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(dest), hash_prefix=_STANDARD_SHA256_PREFIX)


def find_inception_weights(
    weights_path: str | os.PathLike | None = None, download: bool = False
) -> Path:
    """Resolves the InceptionV3 weights file (see the module docstring for the order).

    Args:
        weights_path: Explicit file; it must exist.
        download: Download into the torch hub cache when no local file is found.

    Returns:
        Path of an existing weights file.

    Raises:
        ConfigError: no file found and ``download`` is ``False``, or the given file is missing.
        GankitError: the download failed.

    Example:
        >>> find_inception_weights("/no/such/file.pth")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        gankit.errors.ConfigError: InceptionV3 weights file /no/such/file.pth does not exist
    """
    explicit = weights_path if weights_path is not None else os.environ.get(_ENV_VAR) or None
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"InceptionV3 weights file {path} does not exist; pass the path of "
                f"{INCEPTION_WEIGHTS_FILENAMES[0]} (--inception-weights FILE)"
            )
        return path
    candidates = inception_weights_candidates()
    for path in candidates:
        if path.is_file():
            return path
    if not download:
        raise ConfigError(
            f"InceptionV3 FID weights not found offline; download {INCEPTION_WEIGHTS_URL} "
            f"to {candidates[0]}, or pass --inception-weights FILE (weights_path=...), "
            "or allow the download with --download-weights (download=True)"
        )
    try:
        _download_weights(INCEPTION_WEIGHTS_URL, candidates[0])
    except Exception as err:  # any network / disk failure gets the same advice
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise GankitError(
            f"could not download the InceptionV3 FID weights ({reason}); download "
            f"{INCEPTION_WEIGHTS_URL} elsewhere and pass --inception-weights FILE"
        ) from err
    return candidates[0]


def _fidelity_class() -> type:
    """torch-fidelity's InceptionV3 class, imported only when an extractor is built."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as err:
        raise ConfigError(
            "the InceptionV3 extractor needs torch-fidelity; install it with "
            "pip install 'gankit[metrics]' (or pip install torch-fidelity)"
        ) from err
    return FeatureExtractorInceptionV3


def _summarize_load_error(message: str) -> str:
    """One line out of ``load_state_dict``'s multi-line report: counts and a first example."""
    parts = []
    for line in message.splitlines()[1:]:
        head, _, rest = line.strip().partition(":")
        keys = re.findall(r'"([^"]+)"', rest)
        if keys:
            parts.append(f"{head.lower()}: {len(keys)}, e.g. {keys[0]}")
        elif head.startswith("size mismatch"):
            parts.append(head)
    summary = "; ".join(parts) or (message.strip().splitlines() or ["unknown error"])[0]
    return summary[:200]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class InceptionV3Extractor(FeatureExtractor):
    """The InceptionV3 network of the FID paper (via torch-fidelity), from local weights.

    Takes ``[-1, 1]`` images of any size; quantises them to uint8 like saved PNGs, then
    torch-fidelity resizes to 299x299 (TF1 bilinear). Features are the 2048-d pool3
    activations; logits (for IS) are the 1008 class scores without the fc bias, as in the
    original Inception Score code.

    Args:
        weights_path: A PyTorch state dict file of this architecture. ``None`` looks in
            ``$GANKIT_INCEPTION_WEIGHTS`` and the torch hub cache.
        download: If no local file is found, download the standard weights (needs internet).

    Raises:
        ConfigError: torch-fidelity is missing, the weights are not found, or the file is
            not a state dict of this architecture (one-line messages).

    Example:
        >>> ex = InceptionV3Extractor(weights_path="inception.pth")  # doctest: +SKIP
        >>> ex(torch.rand(2, 3, 32, 32) * 2 - 1).shape  # doctest: +SKIP
        torch.Size([2, 2048])
    """

    input_size = 299
    resizer = "uint8+tf1-bilinear"
    feature_dim = 2048
    has_logits = True

    def __init__(
        self, weights_path: str | os.PathLike | None = None, download: bool = False
    ) -> None:
        super().__init__()
        if download:
            _fidelity_class()  # fail before a 92 MiB download, not after
        path = find_inception_weights(weights_path, download=download)
        try:
            # weights_only=True refuses pickled code, so the file is safe for torch-fidelity
            # (which loads it again with weights_only=False).
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # corrupt / foreign files: one-line advice
            raise ConfigError(
                f"cannot read InceptionV3 weights {path} as a PyTorch state dict; "
                f"pass {INCEPTION_WEIGHTS_FILENAMES[0]} or a state dict saved with torch.save"
            ) from err
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise ConfigError(
                f"{path} is not a state dict (a dict of tensors); save one with "
                "torch.save(model.state_dict(), path)"
            )
        del state
        fidelity_class = _fidelity_class()
        try:
            self.net = fidelity_class(
                "inception-v3-compat",
                ["2048", "logits_unbiased"],
                feature_extractor_weights_path=str(path),
            )
        except (RuntimeError, KeyError, ValueError) as err:
            raise ConfigError(
                f"{path} does not fit the FID InceptionV3 architecture "
                f"({_summarize_load_error(str(err))}); pass {INCEPTION_WEIGHTS_FILENAMES[0]}"
            ) from err
        self.weights_path = str(path)
        self.weights_sha256 = _sha256(path)
        self.comparable_to_published = self.weights_sha256.startswith(_STANDARD_SHA256_PREFIX)
        self.name = f"inception-v3-fid@{self.weights_sha256[:8]}"
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> InceptionV3Extractor:
        """Keeps the network in eval mode (its batch norms must not update).

        Args:
            mode: Ignored.

        Returns:
            ``self``.
        """
        return super().train(False)

    def prepare(self, images: Tensor) -> Tensor:
        """Quantises ``[-1, 1]`` images to uint8 RGB; torch-fidelity resizes them itself.

        Args:
            images: ``(N, C, H, W)`` float images in ``[-1, 1]``.

        Returns:
            ``(N, 3, H, W)`` uint8 images on the network's device.
        """
        x = images.to(self.device, torch.float32)
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        if x.shape[1] != 3:
            raise ConfigError(f"images have {x.shape[1]} channels; InceptionV3 takes 1 or 3")
        return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)

    def extract(self, images: Tensor) -> Tensor:
        """2048-d pool features of uint8 images (see :meth:`prepare`).

        Args:
            images: ``(N, 3, H, W)`` uint8 tensor.

        Returns:
            ``(N, 2048)`` features.
        """
        return self.net(images)[0]

    def extract_with_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Pool features and bias-free 1008-way logits of uint8 images.

        Args:
            images: ``(N, 3, H, W)`` uint8 tensor.

        Returns:
            ``(features (N, 2048), logits (N, 1008))``.
        """
        feats, logits = self.net(images)
        return feats, logits

    def describe(self) -> dict:
        """Provenance including the weights file and its SHA-256.

        Returns:
            :meth:`FeatureExtractor.describe` plus ``weights_path`` and ``weights_sha256``.
        """
        return {
            **super().describe(),
            "weights_path": self.weights_path,
            "weights_sha256": self.weights_sha256,
        }
