"""What training writes besides checkpoints: the metrics log, the loss curve, sample grids.

Every PNG gankit writes carries a ``Software`` text chunk (``gankit <version>``), by which
``gankit sample`` recognises a grid it may replace without ``--overwrite``.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid

from .._version import __version__
from ..errors import ConfigError, DiskFullError
from .checkpoint import atomic_write_bytes, is_disk_full

__all__ = ["PNG_SOFTWARE", "MetricsLog", "save_grid", "plot_loss_curve", "plot_metric_curve",
           "loss_curve_panels"]

#: The ``Software`` text of every PNG gankit writes.
PNG_SOFTWARE = f"gankit {__version__}"


class MetricsLog:
    """A JSON-lines file with one record per training iteration (rank 0 only).

    Records are appended in one write per call. The file is never written through a
    symbolic link; a resumed run first drops records after its checkpoint
    (:func:`gankit.train.rundir.rewind_metrics`).

    Args:
        path: the ``metrics.jsonl`` file; appended to, so a resumed run continues it.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            if is_disk_full(err):
                raise DiskFullError(self.path) from None
            raise

    def write(self, records: list[dict[str, Any]]) -> None:
        """Append records (one JSON object per line); non-finite numbers become null.

        Raises:
            ConfigError: when the log is a symbolic link.
            DiskFullError: when the disk is full (a torn last line is dropped on resume).
        """
        if not records:
            return
        text = "".join(
            json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()})
            + "\n"
            for rec in records
        )
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            if self.path.is_symlink():
                raise OSError(errno.ELOOP, "is a symbolic link", str(self.path))
            fd = os.open(self.path, flags, 0o666)
            with os.fdopen(fd, "ab") as f:
                f.write(text.encode("utf-8"))
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise ConfigError(
                    f"{self.path} is a symbolic link; gankit does not write through links in a run "
                    "folder: remove it."
                ) from None
            if is_disk_full(err):
                raise DiskFullError(self.path) from None
            raise


def _png_bytes(images: torch.Tensor, nrow: int) -> bytes:
    """The PNG of a grid, as ``torchvision.utils.save_image`` makes it, plus a Software chunk."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    grid = make_grid(images.detach().float().cpu(), nrow=nrow)
    array = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    info = PngInfo()
    info.add_text("Software", PNG_SOFTWARE)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="png", pnginfo=info)
    return buf.getvalue()


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int) -> Path:
    """Save images in [0, 1] as one PNG grid, atomically.

    Args:
        images: ``(N, C, H, W)`` in [0, 1].
        path: the PNG file.
        nrow: images per row.

    Returns:
        The path written.
    """
    data = _png_bytes(images, nrow)
    return atomic_write_bytes(path, lambda f: f.write(data))


def loss_curve_panels(history: list[dict[str, float]]) -> list[tuple[str, list[str]]]:
    """The panels of :func:`plot_loss_curve`: ``(y label, logged names)``, empty ones left out.

    Example:
        >>> loss_curve_panels([{"step": 1, "epoch": 0, "loss_d": 1.0, "r1": 0.1}])
        [('loss', ['loss_d']), ('other terms', ['r1'])]
    """
    names: list[str] = []
    for rec in history:
        names += [k for k in rec if k not in names and k not in ("step", "epoch")]
    panels = [("loss", [n for n in names if n.startswith("loss")]),
              ("D output", [n for n in names if n in ("d_real", "d_fake")])]
    panels.append(("other terms", [n for n in names if not any(n in p for _, p in panels)]))
    return [p for p in panels if p[1]]


def plot_loss_curve(history: list[dict[str, float]], path: str | os.PathLike, title: str = "") -> Path:
    """Plot every logged value against the step, as a PNG, atomically.

    Losses (``loss_*``) share the first panel, the mean discriminator outputs (``d_real``,
    ``d_fake``) the second, and every other logged name (regularisers, a user's own terms)
    the third; a name is drawn at the steps where it was logged.

    Args:
        history: one record per step: ``{"step", "epoch", name: value, ...}`` (NaN or a
            missing name: not logged at that step).
        path: the PNG file.
        title: the figure title.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    panels = loss_curve_panels(history) or [("loss", [])]
    fig = Figure(figsize=(8, 3.2 * len(panels)), dpi=100)
    labels = {"loss_d": "loss D", "loss_g": "loss G", "d_real": "D(x)", "d_fake": "D(G(z))"}
    for i, (ylabel, group) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        for name in group:
            pts = [(r["step"], r[name]) for r in history
                   if name in r and r[name] is not None and math.isfinite(r[name])]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=labels.get(name, name), linewidth=0.8)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if group:
            ax.legend(loc="best")
        if i == 0:
            ax.set_title(title)
    ax.set_xlabel("step")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": PNG_SOFTWARE})
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
    fig.savefig(buf, format="png", metadata={"Software": PNG_SOFTWARE})
    return atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))
