"""What training writes besides checkpoints: the metrics log, the loss curve, sample grids."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import save_image

from .checkpoint import atomic_write_bytes

__all__ = ["MetricsLog", "save_grid", "plot_loss_curve", "plot_metric_curve"]


class MetricsLog:
    """A JSON-lines file with one record per training iteration (rank 0 only).

    Args:
        path: the ``metrics.jsonl`` file; appended to, so a resumed run continues it.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, records: list[dict[str, Any]]) -> None:
        """Append records (one JSON object per line); non-finite numbers become null."""
        if not records:
            return
        with self.path.open("a", encoding="utf-8") as f:
            for rec in records:
                clean = {
                    k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                    for k, v in rec.items()
                }
                f.write(json.dumps(clean) + "\n")


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int) -> Path:
    """Save images in [0, 1] as one PNG grid, atomically.

    Args:
        images: ``(N, C, H, W)`` in [0, 1].
        path: the PNG file.
        nrow: images per row.

    Returns:
        The path written.
    """
    buf = io.BytesIO()
    save_image(images.detach().float().cpu(), buf, nrow=nrow, format="png")
    return atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))


def plot_loss_curve(history: list[list[float]], path: str | os.PathLike, title: str = "") -> Path:
    """Plot discriminator and generator losses against the step, as a PNG, atomically.

    Args:
        history: rows ``[step, epoch, loss_d, loss_g, d_real, d_fake]`` (loss_g NaN when
            the generator did not step).
        path: the PNG file.
        title: the figure title.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    if history:
        t = torch.tensor(history, dtype=torch.float64)
        steps, loss_d, loss_g = t[:, 0], t[:, 2], t[:, 3]
        ax.plot(steps.numpy(), loss_d.numpy(), label="loss D", linewidth=0.8)
        g_ok = torch.isfinite(loss_g)
        ax.plot(steps[g_ok].numpy(), loss_g[g_ok].numpy(), label="loss G", linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))


def plot_metric_curve(records: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """Plot every metric of the evaluation records against the step, as a PNG, atomically.

    Args:
        records: evaluation records with ``step`` and metric values (``fid``, ``kid_mean``, ...).
        path: the PNG file.
        title: the figure title (the extractor is added, as the numbers depend on it).

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    skip = {"kind", "step", "epoch", "extractor", "comparable_to_published", "num_fake", "num_real",
            "reference"}
    names = [k for k in (records[0] if records else {}) if k not in skip and not k.endswith("_std")]
    fig = Figure(figsize=(8, 3 * max(1, len(names))), dpi=100)
    for i, name in enumerate(names or ["(none)"]):
        ax = fig.add_subplot(max(1, len(names)), 1, i + 1)
        if names:
            ax.plot([r["step"] for r in records], [r[name] for r in records], marker="o", linewidth=1)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    ax.set_xlabel("step")
    extractor = records[-1].get("extractor", "") if records else ""
    fig.suptitle(f"{title} ({extractor})" if extractor else title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))
