"""Checkpoint files: written atomically, read without running code, checked field by field.

A checkpoint is a plain dictionary of tensors and Python primitives saved with
:func:`torch.save`. It is written to a temporary file in the same folder, flushed to
disk, then renamed over the target (:func:`os.replace`), so a crash mid-write leaves the
previous checkpoint intact. It is read with ``torch.load(weights_only=True)``: loading a
checkpoint never runs code from it. Every field is then checked (:func:`validate_checkpoint`),
so a damaged or hand-edited checkpoint gives one :class:`~gankit.errors.CheckpointError`
line, never a traceback from deep inside the trainer.

Every file gankit writes goes through :func:`atomic_write_bytes`: it honours the umask
(files are not private unless the umask says so), and a full disk raises
:class:`~gankit.errors.DiskFullError` naming the file, with the previous version of the
file untouched.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import pickle
import re
import secrets
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch

from ..errors import CheckpointError, DiskFullError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "atomic_save",
    "atomic_write_bytes",
    "temporary_name",
    "is_disk_full",
    "load_checkpoint",
    "validate_checkpoint",
    "check_resumable",
    "clean_message",
]

#: The ``format`` field every gankit checkpoint carries.
CHECKPOINT_FORMAT = "gankit-checkpoint"
#: The ``format_version`` this gankit writes and the newest it reads.
CHECKPOINT_VERSION = 1

# Columns of a checkpoint's ``history`` (the Trainer's HISTORY_COLUMNS).
_HISTORY_WIDTH = 6
_DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if e)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def clean_message(text: object, limit: int = 160) -> str:
    """The first line of a message, without terminal colour codes or control characters.

    Args:
        text: an exception or any text.
        limit: the most characters kept.

    Returns:
        One printable line (empty when there is no text).

    Example:
        >>> clean_message("\\x1b[1mbold\\x1b[0m and more\\nsecond line")
        'bold and more'
    """
    raw = _ANSI.sub("", str(text)).strip()
    first = raw.splitlines()[0] if raw else ""
    return "".join(c if c.isprintable() else " " for c in first)[:limit].strip()


def is_disk_full(err: BaseException) -> bool:
    """Whether an exception is the operating system's "disk (or quota) full".

    Args:
        err: any exception.

    Returns:
        True for an :class:`OSError` with ``errno`` ENOSPC or EDQUOT.
    """
    return isinstance(err, OSError) and err.errno in _DISK_FULL_ERRNOS


def temporary_name(path: str | os.PathLike) -> Path:
    """The temporary file :func:`atomic_write_bytes` fills before renaming it to ``path``.

    ``.<name>.<pid>.<random>.tmp`` in the same folder: the process id lets a later run
    tell a temporary left by a killed process from one that a live process is writing
    (see :func:`gankit.train.rundir.remove_stale_temporaries`).

    Args:
        path: the final file.

    Returns:
        A path beside it that does not exist yet (with overwhelming probability).
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


class _RecordingWriter:
    """A binary file that remembers the first OSError of a write (torch.save hides it)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._raw.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        try:
            self._raw.flush()
        except OSError as err:
            self.error = self.error or err
            raise


def atomic_write_bytes(path: str | os.PathLike, write: Callable[[Any], Any]) -> Path:
    """Write a file atomically: ``write(fileobj)`` fills a temporary file, then it is renamed.

    The temporary file is created with mode ``0o666`` less the umask (as ``open`` would),
    flushed and synced to disk, then renamed over ``path``; on any failure it is removed
    and ``path`` keeps its previous content.

    Args:
        path: the final path; its folder is created if needed.
        write: a function that writes the content to a binary file object (it has
            ``write`` and ``flush``).

    Returns:
        The final path.

    Raises:
        DiskFullError: when the disk or the quota is full (the message names ``path``).
        OSError: for other failures of the file system (permissions, ...).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        while True:
            tmp = temporary_name(path)
            try:
                fd = os.open(tmp, flags, 0o666)
                break
            except FileExistsError:  # pragma: no cover - a 32-bit random clash
                continue
    except OSError as err:
        if is_disk_full(err):
            raise DiskFullError(path, reason=err.strerror or "No space left on device") from None
        raise
    try:
        with os.fdopen(fd, "wb") as raw:
            f = _RecordingWriter(raw)
            try:
                write(f)
            except Exception as err:
                # torch.save reports a failed write as a RuntimeError ("unexpected pos"):
                # the OSError underneath says what happened.
                if f.error is not None and f.error is not err:
                    raise f.error from err
                raise
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if is_disk_full(err):
            raise DiskFullError(path, reason=err.strerror or "No space left on device") from None
        raise
    return path


def atomic_save(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """Save a checkpoint dictionary atomically with :func:`torch.save`.

    Args:
        obj: the checkpoint (tensors, numbers, strings, lists, dicts, None).
        path: where to write it.

    Returns:
        The path written.

    Raises:
        DiskFullError: when the disk is full; the previous file at ``path`` is intact.
    """
    return atomic_write_bytes(path, lambda f: torch.save(obj, f))


# --------------------------------------------------------------------------- reading


def _damaged(source: object, what: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {source} is damaged or was not written by gankit: {what}; "
        "use another checkpoint (checkpoints/last.pt is rewritten atomically)."
    )


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a gankit checkpoint safely (``weights_only=True``) and check every field.

    Args:
        path: the checkpoint file.
        map_location: where tensors are loaded (``"cpu"`` by default).

    Returns:
        The checkpoint dictionary.

    Raises:
        CheckpointError: one line, if the file is missing, a folder, unreadable, truncated,
            not a torch file, holds pickled code (refused by weights-only loading), is not
            a gankit checkpoint, is of a newer format, or has a field of the wrong type or
            shape (:func:`validate_checkpoint`).
    """
    p = Path(path)
    if not os.fspath(path):
        raise CheckpointError("the checkpoint path is empty; give a .pt file.")
    if not p.exists():
        raise CheckpointError(f"checkpoint {p} does not exist; check the path.")
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a folder; give the .pt file inside it.")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {p}: {err.strerror or clean_message(err)}.") from None
    except pickle.UnpicklingError as err:
        text = clean_message(err, limit=2000)
        if "weights only" in text.lower() or "weights_only" in text.lower():
            found = re.search(r"GLOBAL ([\w.]+)", _ANSI.sub("", str(err)))
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"checkpoint {p} holds pickled Python objects{what}, not only tensors and plain "
                "data; gankit refused to load it because loading it could run code. Use a "
                "checkpoint written by gankit, or convert it yourself if you trust its source."
            ) from None
        raise _unreadable(p, err) from None
    except Exception as err:  # noqa: BLE001 -- a damaged file can fail anywhere in the unpickler
        raise _unreadable(p, err) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{p} is not a gankit checkpoint (a plain state dict or another tool's file?); "
            "give a file written by Trainer.save or 'gankit train'."
        )
    return validate_checkpoint(ckpt, p)


def _unreadable(p: Path, err: BaseException) -> CheckpointError:
    reason = clean_message(err, limit=120) or type(err).__name__
    with contextlib.suppress(OSError):
        if p.stat().st_size == 0:
            reason = "the file is empty"
    return CheckpointError(
        f"cannot read checkpoint {p}: it is truncated, corrupt or not a torch file ({reason}); "
        "use another checkpoint (checkpoints/last.pt is rewritten atomically)."
    )


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _kind(v: object) -> str:
    if isinstance(v, torch.Tensor):
        return f"a {v.dtype} tensor of shape {tuple(v.shape)}"
    text = repr(v)
    return f"{type(v).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


_PRIMITIVE = (str, int, float, bool, type(None))


def _check_overrides(overrides: object, source: object) -> None:
    from ..presets import RecipeSettings

    if not isinstance(overrides, dict):
        raise _damaged(source, f"'overrides' should be a dictionary of settings, got {_kind(overrides)}")
    hints = typing.get_type_hints(RecipeSettings)
    for key, value in overrides.items():
        if not isinstance(key, str):
            raise _damaged(source, f"'overrides' has a key that is not a setting name: {_kind(key)}")
        where = f"'overrides.{key}'"
        if key not in hints:  # a setting of a user preset: plain values only
            if not isinstance(value, _PRIMITIVE):
                raise _damaged(source, f"{where} should be a plain value, got {_kind(value)}")
            continue
        allowed = typing.get_args(hints[key]) or (hints[key],)
        ok = (
            (value is None and type(None) in allowed)
            or (isinstance(value, bool) and bool in allowed)
            or (_is_int(value) and (int in allowed or float in allowed))
            or (isinstance(value, float) and float in allowed)
            or (isinstance(value, str) and str in allowed)
        )
        if not ok:
            names = " or ".join("None" if a is type(None) else a.__name__ for a in allowed)
            raise _damaged(source, f"{where} should be {names}, got {_kind(value)}")


def _check_tensor_dict(value: object, where: str, source: object) -> None:
    if not isinstance(value, dict) or not value:
        raise _damaged(source, f"'{where}' should be a non-empty dictionary of tensors, got {_kind(value)}")
    for key, tensor in value.items():
        if not isinstance(key, str) or not isinstance(tensor, torch.Tensor):
            raise _damaged(source, f"'{where}' should map names to tensors, got {_kind(key)}: {_kind(tensor)}")


def _check_optimizer(value: object, where: str, source: object) -> None:
    if not isinstance(value, dict) or set(value) != {"state", "param_groups"}:
        raise _damaged(source, f"'{where}' should be an optimizer state dict (state, param_groups), got {_kind(value)}")
    groups, state = value["param_groups"], value["state"]
    if not isinstance(groups, list) or not groups:
        raise _damaged(source, f"'{where}.param_groups' should be a non-empty list, got {_kind(groups)}")
    ids: set[int] = set()
    for i, group in enumerate(groups):
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            raise _damaged(source, f"'{where}.param_groups[{i}]' should be a dictionary with a 'params' list, got {_kind(group)}")
        for key, hyper in group.items():
            if not isinstance(key, str):
                raise _damaged(source, f"'{where}.param_groups[{i}]' has a key {_kind(key)}")
            if key == "params":
                if not all(_is_int(x) for x in hyper):
                    raise _damaged(source, f"'{where}.param_groups[{i}].params' should list integers")
                ids.update(hyper)
            elif not (isinstance(hyper, _PRIMITIVE + (torch.Tensor,)) or (
                isinstance(hyper, (tuple, list)) and all(isinstance(x, _PRIMITIVE + (torch.Tensor,)) for x in hyper)
            )):
                raise _damaged(source, f"'{where}.param_groups[{i}].{key}' should be a number or a flag, got {_kind(hyper)}")
    if not isinstance(state, dict):
        raise _damaged(source, f"'{where}.state' should be a dictionary, got {_kind(state)}")
    for pid, entry in state.items():
        if not _is_int(pid) or pid not in ids:
            raise _damaged(source, f"'{where}.state' has an entry {_kind(pid)} for no parameter of its groups")
        if not isinstance(entry, dict):
            raise _damaged(source, f"'{where}.state[{pid}]' should be a dictionary, got {_kind(entry)}")
        for key, item in entry.items():
            if not isinstance(key, str) or not isinstance(item, (torch.Tensor, int, float, bool, type(None))):
                raise _damaged(source, f"'{where}.state[{pid}].{key}' should be a tensor or a number, got {_kind(item)}")


def _check_scaler(value: object, where: str, source: object) -> None:
    if not isinstance(value, dict):
        raise _damaged(source, f"'{where}' should be a gradient scaler state dict, got {_kind(value)}")
    for key, item in value.items():
        if not isinstance(key, str) or not _is_number(item) or (isinstance(item, float) and not math.isfinite(item)):
            raise _damaged(source, f"'{where}.{key}' should be a finite number, got {_kind(item)}")


def _check_rng(value: object, where: str, source: object, numel: int | None = None) -> None:
    ok = isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1
    if not ok or (numel is not None and value.numel() != numel):
        size = f" of {numel} bytes" if numel is not None else ""
        raise _damaged(source, f"'{where}' should be an RNG state (a uint8 tensor{size}), got {_kind(value)}")


def validate_checkpoint(ckpt: object, source: object = "checkpoint") -> dict[str, Any]:
    """Check that every field of a checkpoint dictionary has the type and shape gankit wrote.

    Args:
        ckpt: the dictionary (from :func:`torch.load` or :meth:`Trainer.state_dict`).
        source: how to name it in messages (usually its path).

    Returns:
        ``ckpt`` itself.

    Raises:
        CheckpointError: one line naming the first bad field, what it should be and what
            it is.

    Example:
        >>> validate_checkpoint({"format": "gankit-checkpoint"}, "x.pt")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        gankit.errors.CheckpointError: checkpoint x.pt has no format version ...
    """
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{source} is not a gankit checkpoint (a plain state dict or another tool's file?); "
            "give a file written by Trainer.save or 'gankit train'."
        )
    if "format_version" not in ckpt:
        raise CheckpointError(
            f"checkpoint {source} has no format version ('format_version'); it is damaged or was "
            "not written by gankit; use another checkpoint."
        )
    version = ckpt["format_version"]
    if not _is_int(version) or version < 1:
        raise _damaged(source, f"'format_version' should be a positive integer, got {_kind(version)}")
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{source} has checkpoint format {version}, newer than this gankit understands "
            f"({CHECKPOINT_VERSION}); upgrade gankit."
        )
    required = ("preset", "overrides", "generator", "discriminator", "opt_g", "opt_d", "scaler_g",
                "scaler_d", "step", "epoch", "batch_index", "g_steps", "rng_cpu", "z_sample", "history")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise _damaged(source, f"it has no {', '.join(repr(k) for k in missing)}")
    if not isinstance(ckpt["preset"], str) or not ckpt["preset"]:
        raise _damaged(source, f"'preset' should be a preset name, got {_kind(ckpt['preset'])}")
    if "gankit_version" in ckpt and not isinstance(ckpt["gankit_version"], str):
        raise _damaged(source, f"'gankit_version' should be text, got {_kind(ckpt['gankit_version'])}")
    _check_overrides(ckpt["overrides"], source)
    for key in ("generator", "discriminator"):
        _check_tensor_dict(ckpt[key], key, source)
    for key in ("opt_g", "opt_d"):
        _check_optimizer(ckpt[key], key, source)
    for key in ("scaler_g", "scaler_d"):
        _check_scaler(ckpt[key], key, source)
    for key in ("step", "epoch", "batch_index", "g_steps") + (("data_seed",) if "data_seed" in ckpt else ()):
        if not _is_int(ckpt[key]) or ckpt[key] < 0:
            raise _damaged(source, f"'{key}' should be a non-negative integer, got {_kind(ckpt[key])}")
    if ckpt["g_steps"] > ckpt["step"]:
        raise _damaged(source, f"'g_steps' ({ckpt['g_steps']}) is larger than 'step' ({ckpt['step']})")
    _check_rng(ckpt["rng_cpu"], "rng_cpu", source, torch.get_rng_state().numel())
    cuda = ckpt.get("rng_cuda", [])
    if not isinstance(cuda, list):
        raise _damaged(source, f"'rng_cuda' should be a list of RNG states, got {_kind(cuda)}")
    for i, state in enumerate(cuda):
        _check_rng(state, f"rng_cuda[{i}]", source)
    z = ckpt["z_sample"]
    if not isinstance(z, torch.Tensor) or not z.is_floating_point() or z.dim() != 2 or z.shape[0] < 1:
        raise _damaged(source, f"'z_sample' should be a float tensor (rows, z_dim), got {_kind(z)}")
    _check_history(ckpt["history"], source)
    if "d_steps" in ckpt and (not _is_int(ckpt["d_steps"]) or ckpt["d_steps"] < 0):
        raise _damaged(source, f"'d_steps' should be a non-negative integer, got {_kind(ckpt['d_steps'])}")
    if "builder" in ckpt and (not isinstance(ckpt["builder"], str) or ":" not in ckpt["builder"]):
        raise _damaged(source, f"'builder' should be 'module:function' or None, got {_kind(ckpt['builder'])}")
    if "step_state" in ckpt:
        _check_step_state(ckpt["step_state"], source)
    if ckpt.get("data") is not None:
        _check_data_state(ckpt["data"], source)
    callbacks = ckpt.get("callbacks", {})
    if not isinstance(callbacks, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) for k, v in callbacks.items()):
        raise _damaged(source, f"'callbacks' should map callback names to their states, got {_kind(callbacks)}")
    evals = ckpt.get("eval_history", [])
    if not isinstance(evals, list):
        raise _damaged(source, f"'eval_history' should be a list of records, got {_kind(evals)}")
    for i, rec in enumerate(evals):
        if not isinstance(rec, dict) or not _is_int(rec.get("step")) or not all(
            isinstance(k, str) and isinstance(v, _PRIMITIVE) for k, v in rec.items()
        ):
            raise _damaged(source, f"'eval_history[{i}]' should be a record of plain values with a 'step', got {_kind(rec)}")
    elapsed = ckpt.get("elapsed", 0.0)
    if not _is_number(elapsed) or not math.isfinite(elapsed) or elapsed < 0:
        raise _damaged(source, f"'elapsed' should be a non-negative number of seconds, got {_kind(elapsed)}")
    _check_trainer_options(ckpt.get("trainer", {}), source)
    if "world_size" in ckpt and (not _is_int(ckpt["world_size"]) or ckpt["world_size"] < 1):
        raise _damaged(source, f"'world_size' should be a positive integer, got {_kind(ckpt['world_size'])}")
    ranks = ckpt.get("rng_ranks", [])
    if not isinstance(ranks, list):
        raise _damaged(source, f"'rng_ranks' should be a list, got {_kind(ranks)}")
    for i, rank in enumerate(ranks):
        if not isinstance(rank, dict) or "cpu" not in rank or not isinstance(rank.get("cuda", []), list):
            raise _damaged(source, f"'rng_ranks[{i}]' should be a dictionary of RNG states, got {_kind(rank)}")
        _check_rng(rank["cpu"], f"rng_ranks[{i}].cpu", source, torch.get_rng_state().numel())
        for j, state in enumerate(rank.get("cuda", [])):
            _check_rng(state, f"rng_ranks[{i}].cuda[{j}]", source)
    return ckpt


_DATA_INTS = ("seed", "epoch", "batch", "num_images", "batch_size")


def _check_data_state(data: object, source: object) -> None:
    """The data loader's position: ``{"shuffle"}`` alone, or a BatchLoader's whole state."""
    from ..data.loader import SHUFFLES

    if not isinstance(data, dict) or data.get("shuffle") not in SHUFFLES:
        raise _damaged(source, f"'data' should be the data loader's state with its shuffle, got {_kind(data)}")
    if set(data) == {"shuffle"}:
        return
    if set(data) != {*_DATA_INTS, "shuffle", "sampler_seed"}:
        raise _damaged(source, f"'data' should hold {', '.join(_DATA_INTS)}, shuffle and sampler_seed, "
                               f"got {_kind(data)}")
    for key in _DATA_INTS:
        if not _is_int(data[key]) or data[key] < 0:
            raise _damaged(source, f"'data.{key}' should be a non-negative integer, got {_kind(data[key])}")
    sampler = data["sampler_seed"]
    if sampler is not None and not (isinstance(sampler, list) and len(sampler) == 2
                                    and all(_is_int(x) for x in sampler)):
        raise _damaged(source, f"'data.sampler_seed' should be [epoch, seed], got {_kind(sampler)}")


def _check_step_state(state: object, source: object) -> None:
    """The training step's counters and its regularisers' (and augmentation's) states."""
    if not isinstance(state, dict) or not {"d_updates", "g_updates", "regularizers"} <= set(state):
        raise _damaged(source, f"'step_state' should hold d_updates, g_updates and regularizers, got {_kind(state)}")
    for key in ("d_updates", "g_updates"):
        if not _is_int(state[key]) or state[key] < 0:
            raise _damaged(source, f"'step_state.{key}' should be a non-negative integer, got {_kind(state[key])}")
    regs = state["regularizers"]
    if not isinstance(regs, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) and _is_number(v.get("weight")) for k, v in regs.items()):
        raise _damaged(source, f"'step_state.regularizers' should map names to states with a weight, got {_kind(regs)}")
    if "augment" in state and not isinstance(state["augment"], dict):
        raise _damaged(source, f"'step_state.augment' should be a dictionary, got {_kind(state['augment'])}")


def _check_history(h: object, source: object) -> None:
    """The per-step history: named columns (``{"columns", "values"}``) or the older 6-wide tensor."""
    if isinstance(h, torch.Tensor):
        if not h.is_floating_point() or h.dim() != 2 or h.shape[1] != _HISTORY_WIDTH:
            raise _damaged(source, f"'history' should be a float tensor (rows, {_HISTORY_WIDTH}), got {_kind(h)}")
        return
    if not isinstance(h, dict) or set(h) != {"columns", "values"}:
        raise _damaged(source, f"'history' should be named columns and their values, got {_kind(h)}")
    columns, values = h["columns"], h["values"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise _damaged(source, f"'history.columns' should be a list of names, got {_kind(columns)}")
    if (not isinstance(values, torch.Tensor) or not values.is_floating_point() or values.dim() != 2
            or values.shape[1] != len(columns)):
        raise _damaged(source, f"'history.values' should be a float tensor (rows, {len(columns)}), "
                               f"got {_kind(values)}")


def _check_trainer_options(options: object, source: object) -> None:
    if not isinstance(options, dict):
        raise _damaged(source, f"'trainer' should be a dictionary of options, got {_kind(options)}")
    types = {"precision": str, "latents": str, "channels_last": bool, "compile": bool, "cuda_graph": bool}
    for key, value in options.items():
        want = types.get(key)
        if not isinstance(key, str) or (want is not None and not isinstance(value, want)) or (
            want is None and not isinstance(value, _PRIMITIVE)
        ):
            shown = want.__name__ if want else "a plain value"
            raise _damaged(source, f"'trainer.{key}' should be {shown}, got {_kind(value)}")


# --------------------------------------------------------------------------- fitting a trainer

_FLAG_KEYS = frozenset({"foreach", "fused", "capturable", "differentiable"})
_REFERENCE_STATES: dict[tuple, dict[str, Any] | None] = {}


def _compatible(fresh: object, saved: object) -> bool:
    """Whether a saved optimizer hyperparameter can stand where the fresh one stands."""
    if isinstance(fresh, bool) or fresh is None:
        return isinstance(saved, bool) or saved is None
    if _is_number(fresh) or isinstance(fresh, torch.Tensor):
        return (_is_number(saved) and math.isfinite(saved)) or (
            isinstance(saved, torch.Tensor) and saved.numel() == 1
        )
    if isinstance(fresh, (tuple, list)):
        return isinstance(saved, (tuple, list)) and len(saved) == len(fresh) and all(
            _compatible(a, b) for a, b in zip(fresh, saved)
        )
    return type(saved) is type(fresh)


def _reference_state(opt: torch.optim.Optimizer, group: Mapping[str, Any]) -> dict[str, Any] | None:
    """The state one step of ``type(opt)`` with this group's settings creates for a parameter."""
    hyper = {k: v for k, v in group.items() if k != "params" and k not in _FLAG_KEYS}
    try:
        key = (type(opt), tuple(sorted((k, repr(v)) for k, v in hyper.items())))
    except TypeError:  # pragma: no cover - unsortable custom settings
        return None
    if key not in _REFERENCE_STATES:
        try:
            p = torch.zeros(2, requires_grad=True)
            ref = type(opt)([p], **hyper)
            p.grad = torch.zeros_like(p)
            ref.step()
            _REFERENCE_STATES[key] = dict(ref.state[p])
        except Exception:  # noqa: BLE001 -- an optimizer we cannot imitate: skip this check
            _REFERENCE_STATES[key] = None
    return _REFERENCE_STATES[key]


def _misfit(source: object, what: str) -> CheckpointError:
    return CheckpointError(
        f"{source} does not fit this recipe (other settings, or a damaged file?): {what}; "
        "resume with the settings it was trained with."
    )


def _check_optimizer_fits(saved: dict[str, Any], opt: torch.optim.Optimizer, where: str, source: object) -> None:
    groups = saved["param_groups"]
    if len(groups) != len(opt.param_groups):
        raise _misfit(source, f"'{where}' has {len(groups)} parameter groups, this optimizer {len(opt.param_groups)}")
    params: dict[int, torch.Tensor] = {}
    for i, (fresh, old) in enumerate(zip(opt.param_groups, groups)):
        if len(old["params"]) != len(fresh["params"]):
            raise _misfit(source, f"'{where}.param_groups[{i}]' has {len(old['params'])} parameters, "
                                   f"the network {len(fresh['params'])} (other settings?)")
        params.update(zip(old["params"], fresh["params"]))
        for key, value in fresh.items():
            if key == "params":
                continue
            if key not in old:
                raise _misfit(source, f"'{where}.param_groups[{i}]' has no {key!r}")
            if not _compatible(value, old[key]):
                raise _misfit(source, f"'{where}.param_groups[{i}].{key}' should be like {value!r}, got {_kind(old[key])}")
        reference = _reference_state(opt, fresh)
        for pid in old["params"]:
            if pid not in saved["state"] or reference is None:
                continue
            entry, param = saved["state"][pid], params[pid]
            if set(entry) != set(reference):
                raise _misfit(source, f"'{where}.state[{pid}]' has {sorted(entry)}, expected {sorted(reference)}")
            for key, ref in reference.items():
                value = entry[key]
                if isinstance(ref, torch.Tensor) and ref.dim() == 0:
                    ok = (isinstance(value, torch.Tensor) and value.numel() == 1) or _is_number(value)
                elif isinstance(ref, torch.Tensor) or ref is None:
                    ok = (value is None and ref is None) or (
                        isinstance(value, torch.Tensor) and value.shape == param.shape
                    )
                else:
                    ok = _compatible(ref, value)
                if not ok:
                    want = f"shape {tuple(param.shape)}" if isinstance(ref, torch.Tensor) and ref.dim() else "one number"
                    raise _misfit(source, f"'{where}.state[{pid}].{key}' should have {want}, got {_kind(value)}")


def check_resumable(
    ckpt: object,
    source: object = "checkpoint",
    *,
    preset: str | None = None,
    modules: Mapping[str, torch.nn.Module] = (),
    optimizers: Mapping[str, torch.optim.Optimizer] = (),
    z_dim: int | None = None,
) -> dict[str, Any]:
    """Check a checkpoint, and that it fits a trainer's optimizers and latent size.

    :func:`validate_checkpoint`, then: the preset is ``preset``; for each
    ``{key: module}`` every tensor of the module is saved, with its shape (stricter than
    ``load_state_dict``, which lets a BatchNorm's ``num_batches_tracked`` go missing and
    takes a 1-element tensor for a scalar; unexpected names are left to it); for each ``{key: optimizer}`` the saved groups
    have as many parameters and compatible hyperparameters, and every saved optimizer state
    has the entries and shapes one step of that optimizer makes; ``z_sample`` has ``z_dim``
    columns.

    Args:
        ckpt: the checkpoint dictionary.
        source: how to name it in messages.
        preset: the trainer's preset name; a checkpoint of another preset is refused.
        modules: the trainer's networks by checkpoint key (``{"generator": ..., ...}``).
        optimizers: the trainer's optimizers by checkpoint key (``{"opt_g": ..., "opt_d": ...}``).
        z_dim: the recipe's latent size, or None.

    Returns:
        ``ckpt``.

    Raises:
        CheckpointError: one line naming the first field that does not fit.
    """
    ckpt = validate_checkpoint(ckpt, source)
    if preset is not None and ckpt["preset"] != preset:
        raise CheckpointError(
            f"{source} was written by preset {ckpt['preset']!r}, not {preset!r}; "
            f"resume it with preset {ckpt['preset']!r} or start a new run."
        )
    if z_dim is not None and ckpt["z_sample"].shape[1] != z_dim:
        raise CheckpointError(
            f"{source} has latents of size {ckpt['z_sample'].shape[1]}, this recipe's z_dim is {z_dim}; "
            "resume with the settings it was trained with."
        )
    for key, module in dict(modules).items():
        own = module.state_dict()
        missing = [name for name in own if name not in ckpt[key]]
        if missing:  # load_state_dict would let a BatchNorm's num_batches_tracked go missing
            raise _misfit(source, f"'{key}' has no {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        for name, tensor in ckpt[key].items():
            if name in own and isinstance(own[name], torch.Tensor) and tensor.shape != own[name].shape:
                raise _misfit(source, f"'{key}.{name}' has shape {tuple(tensor.shape)}, the network's "
                                      f"{tuple(own[name].shape)}")
    for key, opt in dict(optimizers).items():
        _check_optimizer_fits(ckpt[key], opt, key, source)
    return ckpt
