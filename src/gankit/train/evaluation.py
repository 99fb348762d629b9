"""Evaluate a generator's samples with :mod:`gankit.metrics` (used by the Trainer and ``gankit eval``)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import torch
from torch import nn

from ..metrics import MetricResult, evaluate
from .export import generate, sample_labels

__all__ = ["dataset_id", "evaluate_generator"]


def dataset_id(images: torch.Tensor, source: str = "") -> str:
    """A reference-dataset identifier that changes whenever the images change.

    Args:
        images: the dataset as a uint8 tensor ``(N, C, H, W)``.
        source: where the images came from (a folder or a dataset name).

    Returns:
        ``"<source>|<N>x<C>x<H>x<W>|<content hash>"``; cached reference statistics are keyed
        on it, so they are never reused for other images.
    """
    digest = hashlib.blake2b(images.detach().cpu().contiguous().numpy().tobytes(), digest_size=8)
    shape = "x".join(str(s) for s in images.shape)
    return f"{os.path.basename(str(source).rstrip('/')) or 'images'}|{shape}|{digest.hexdigest()}"


@torch.no_grad()
def evaluate_generator(
    generator: nn.Module,
    reference,
    *,
    z_dim: int,
    metrics: Sequence[str] = ("fid",),
    num_samples: int = 1000,
    extractor: str | nn.Module = "tiny",
    seed: int = 0,
    device: str | torch.device = "cpu",
    reference_id: str | None = None,
    batch_size: int = 100,
    **kwargs,
) -> MetricResult:
    """Sample a generator (eval mode) and compute metrics against reference images.

    Latents come from a private generator seeded with ``seed``, so evaluating during
    training leaves torch's global RNG -- and so the faithful latent stream -- untouched.
    A class-conditional generator is sampled with its classes in turn (``i % num_classes``).

    Args:
        generator: maps ``(n, z_dim)`` latents to images in [-1, 1].
        reference: reference images (uint8 or float tensor, dataset, statistics file).
        z_dim: latent size.
        metrics: subset of ``fid``, ``kid``, ``is``, ``pr``, ``swd``, ``ms_ssim``.
        num_samples: generated images to use.
        extractor: ``"tiny"`` (offline, not comparable to published numbers),
            ``"inception-v3"`` or an ``nn.Module``.
        seed: seed of the latents.
        device: where the generator runs.
        reference_id: identifier of the reference (enables the statistics cache).
        batch_size: images per forward pass.
        **kwargs: passed to :func:`gankit.metrics.evaluate` (``weights_path``, ``download``, ...).

    Returns:
        The :class:`~gankit.metrics.MetricResult`.
    """
    z = torch.randn(num_samples, z_dim, generator=torch.Generator().manual_seed(seed))
    # a class-conditional generator samples its classes in turn (i % num_classes)
    fake = generate(generator, z, device=device, batch_size=batch_size, labels=sample_labels(generator, num_samples))
    return evaluate(
        fake,
        reference,
        metrics=tuple(metrics),
        extractor=extractor,
        num_samples=num_samples,
        reference_id=reference_id,
        batch_size=batch_size,
        **kwargs,
    )
