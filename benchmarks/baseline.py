"""Benchmark baseline: SPEC.md's task-one and task-two training loops, written plainly.

The networks and steps come from ``tests/spec_reference.py`` (an independent
transcription of SPEC.md that does not import gankit), so this measures what the
report's code would do: eager float32, one latent draw on the CPU per batch moved to
the device, ``.item()`` on every loss, no ``cudnn.benchmark``.

Usage::

    python benchmarks/baseline.py --task 1 --batch-size 64 --steps 3 --device cpu
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import spec_reference as ref  # noqa: E402

__all__ = ["run_baseline"]

_SIZE = 64
_N_CRITIC = 5


def _to_model_range(img: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float in [-1, 1] at 64x64: Resize, ToTensor, Normalize(0.5, 0.5)."""
    if img.shape[-2:] != (_SIZE, _SIZE):
        # Resize works on the uint8 image in the original (PIL, bilinear, antialiased).
        batched = img if img.dim() == 4 else img.unsqueeze(0)
        out = F.interpolate(
            batched.float(),
            size=(_SIZE, _SIZE),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        img = out.round().clamp(0, 255).view(*img.shape[:-2], _SIZE, _SIZE)
    return (img.float() / 255 - 0.5) / 0.5


def _batch_source(
    data: torch.Tensor | None, batch_size: int, decode: bool, seed: int
) -> Callable[[int], torch.Tensor]:
    """Return ``get(k)``: the k-th CPU batch, cycling over ``data`` like an endless loader."""
    gen = torch.Generator().manual_seed(seed)
    if data is None:  # synthetic images, uint8 when decoding is measured
        data = torch.randint(
            0, 256, (batch_size, 3, _SIZE, _SIZE), dtype=torch.uint8, generator=gen
        )
        if not decode:
            data = _to_model_range(data)
    if data.dim() != 4 or data.shape[1] != 3:
        raise ValueError(f"data must be (N, 3, H, W), got {tuple(data.shape)}")
    n = data.shape[0]

    def indices(k: int) -> torch.Tensor:
        return (torch.arange(batch_size) + k * batch_size) % n

    if decode:
        # DataLoader-style: every item is decoded and transformed alone, then collated.
        from torchvision.io import decode_jpeg, encode_jpeg

        if data.dtype != torch.uint8:
            raise ValueError("decode=True needs uint8 images (they are JPEG-encoded once)")
        encoded = [encode_jpeg(img, quality=95) for img in data]
        return lambda k: torch.stack(
            [_to_model_range(decode_jpeg(encoded[j])) for j in indices(k).tolist()]
        )
    if data.dtype == torch.uint8:
        return lambda k: _to_model_range(data[indices(k)])
    return lambda k: data[indices(k)]


def run_baseline(
    task: int,
    batch_size: int,
    steps: int,
    device: str = "cpu",
    data: torch.Tensor | None = None,
    *,
    decode: bool = False,
    warmup: int = 1,
    seed: int = 0,
) -> dict[str, float | int]:
    """Time ``steps`` training steps of SPEC.md's task one or two, after a warm-up.

    Args:
        task: 1 (DCGAN, BCE, Adam) or 2 (WGAN, clipping, SGD, n_critic 5).
        batch_size: Real images per step.
        steps: Timed steps. For task two the generator steps on every fifth one, so a
            multiple of 5 gives the loop's true average.
        device: Torch device string.
        data: Images kept on the CPU: float (N, 3, 64, 64) in [-1, 1] used as they are,
            or uint8 (N, 3, H, W) converted per batch (Resize, ToTensor, Normalize);
            ``None`` for synthetic images.
        decode: Also pay the original per-item pipeline: images are JPEG-encoded once
            up front and each batch is decoded image by image, transformed and stacked.
        warmup: Untimed steps first (for task two they include a generator step).
        seed: Seed for the networks and the synthetic data.

    Returns:
        ``images_per_s`` (real images per second), ``seconds`` (timed wall time) and
        ``peak_mem_bytes`` (peak CUDA memory allocated on a GPU; the process's peak
        resident memory on the CPU).

    Example:
        >>> r = run_baseline(task=2, batch_size=2, steps=1, device="cpu")
        >>> r["images_per_s"] > 0
        True
    """
    if task not in (1, 2):
        raise ValueError(f"task must be 1 or 2, got {task!r}")
    dev = torch.device(device)
    get_batch = _batch_source(data, batch_size, decode, seed)
    if task == 1:
        G, D = ref.build_task1(seed)
        G, D = G.to(dev), D.to(dev)
        opt_G = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.999))
        opt_D = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.999))

        def step(k: int, i: int) -> None:
            ref.task1_train_step(G, D, opt_G, opt_D, get_batch(k).to(dev))
    else:
        G, D = ref.build_task2(seed)
        G, D = G.to(dev), D.to(dev)
        opt_G = torch.optim.SGD(G.parameters(), lr=1e-4)
        opt_D = torch.optim.SGD(D.parameters(), lr=1e-4)

        def step(k: int, i: int) -> None:
            ref.task2_train_step(G, D, opt_G, opt_D, get_batch(k).to(dev), i)

    G.train()
    D.train()
    for w in range(warmup):
        step(w, _N_CRITIC - 1)  # i = 4: the warm-up also runs the generator step
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + i, i)
    if cuda:
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    if cuda:
        peak = torch.cuda.max_memory_allocated(dev)
    else:  # ru_maxrss is in KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "images_per_s": steps * batch_size / seconds,
        "seconds": seconds,
        "peak_mem_bytes": int(peak),
    }


def main(argv: list[str] | None = None) -> None:
    """Command line: print ``run_baseline``'s result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", type=int, choices=(1, 2), default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--decode", action="store_true", help="include per-item JPEG decode")
    args = parser.parse_args(argv)
    result = run_baseline(args.task, args.batch_size, args.steps, args.device, decode=args.decode)
    print(
        json.dumps(
            {"task": args.task, "batch_size": args.batch_size, "device": args.device, **result}
        )
    )


if __name__ == "__main__":
    main()
