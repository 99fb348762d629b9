"""Checkpoint files: written atomically, read without running code.

A checkpoint is a plain dictionary of tensors and Python primitives saved with
:func:`torch.save`. It is written to a temporary file in the same folder, flushed to
disk, then renamed over the target (:func:`os.replace`), so a crash mid-write leaves the
previous checkpoint intact. It is read with ``torch.load(weights_only=True)``: loading a
checkpoint never runs code from it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

__all__ = ["CHECKPOINT_FORMAT", "atomic_save", "load_checkpoint", "atomic_write_bytes"]

#: The ``format`` field every gankit checkpoint carries.
CHECKPOINT_FORMAT = "gankit-checkpoint"
CHECKPOINT_VERSION = 1


def atomic_write_bytes(path: str | os.PathLike, write) -> Path:
    """Write a file atomically: ``write(fileobj)`` fills a temporary file, then it is renamed.

    Args:
        path: the final path; its folder is created if needed.
        write: a function that writes the content to a binary file object.

    Returns:
        The final path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_save(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """Save a checkpoint dictionary atomically with :func:`torch.save`.

    Args:
        obj: the checkpoint (tensors, numbers, strings, lists, dicts, None).
        path: where to write it.

    Returns:
        The path written.
    """
    return atomic_write_bytes(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a gankit checkpoint safely (``weights_only=True``) and check its format.

    Args:
        path: the checkpoint file.
        map_location: where tensors are loaded (``"cpu"`` by default).

    Returns:
        The checkpoint dictionary.

    Raises:
        CheckpointError: one line, if the file is missing, a folder, truncated, not a
            torch file, or not a gankit checkpoint.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist; check the path.")
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a folder; give the .pt file inside it.")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 -- a damaged file can fail anywhere in the unpickler
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if p.stat().st_size == 0:
            reason = "the file is empty"
        raise CheckpointError(
            f"cannot read checkpoint {p}: it is truncated, corrupt or not a torch file ({reason[:120]}); "
            "use another checkpoint (checkpoints/last.pt is rewritten atomically)."
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{p} is not a gankit checkpoint (a plain state dict or another tool's file?); "
            "give a file written by Trainer.save or 'gankit train'."
        )
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{p} has checkpoint format {version!r}, newer than this gankit understands "
            f"({CHECKPOINT_VERSION}); upgrade gankit."
        )
    return ckpt
