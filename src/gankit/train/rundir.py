"""Run folders: marked as gankit's, owned by one run at a time, repaired after a crash.

A run folder (``gankit train --out DIR``) holds a small manifest, ``gankit-run.json``,
that marks it as gankit's. :meth:`RunFolder.open`:

* refuses a folder that is not empty and that gankit did not make (its files are never
  overwritten);
* takes a lock (``.gankit-run.lock``, an OS file lock that dies with its process, so a
  ``kill -9`` never leaves a stale lock): a second run into the same folder gets a
  one-line error naming the holder's process id;
* with ``overwrite``, removes the old run's files -- and only those -- before the new
  run starts;
* removes the temporaries that killed processes left behind.

:func:`rewind_run` is what a resumed run does first: it drops from ``metrics.jsonl``
the records of steps after the checkpoint (a crash leaves them; the resumed run writes
them again), so every step is logged once, and removes stale temporaries.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import re
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from .._version import __version__
from ..errors import ConfigError, DiskFullError
from .checkpoint import atomic_write_bytes, is_disk_full

__all__ = [
    "MANIFEST_NAME",
    "LOCK_NAME",
    "RunFolder",
    "run_files",
    "rewind_run",
    "rewind_metrics",
    "remove_stale_temporaries",
    "check_output_file",
]

#: The file that marks a folder as a gankit run folder.
MANIFEST_NAME = "gankit-run.json"
#: The lock file of a run folder (locked while a run writes the folder).
LOCK_NAME = ".gankit-run.lock"
_MANIFEST_FORMAT = "gankit-run"

# Files a run writes, relative to the run folder.
_RUN_FILE_PATTERNS = [
    re.compile(p)
    for p in (
        r"metrics\.jsonl",
        r"loss_curve\.png",
        r"metric_curve\.png",
        re.escape(MANIFEST_NAME),
        re.escape(LOCK_NAME),
        r"samples/(epoch_\d{4,}|step_\d{7,})\.png",
        r"checkpoints/(last|epoch_\d{4,})\.pt",
    )
]
_RUN_SUBFOLDERS = ("samples", "checkpoints")
# Temporaries of atomic_write_bytes: .NAME.PID.RANDOM.tmp, and the older .NAME.RANDOM.tmp.
_TEMPORARY = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<pid>\d+)\.[0-9a-f]{8}|[0-9a-z_]{8})\.tmp$")


# flock errors of file systems that have no locks (some network file systems)
_NO_LOCKS = frozenset(e for e in (errno.ENOLCK, getattr(errno, "EOPNOTSUPP", None), errno.ENOSYS) if e)


def _is_temporary(name: str) -> bool:
    return _TEMPORARY.match(name) is not None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (another user's) or we cannot tell: keep its files
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed gankit processes left in a run folder.

    Only temporaries of :func:`~gankit.train.checkpoint.atomic_write_bytes` are touched
    (``.NAME.PID.RANDOM.tmp`` in the folder, ``samples/`` and ``checkpoints/``), and only
    when their process is gone (older names without a process id are always stale).

    Args:
        folder: the run folder.

    Returns:
        The files removed.
    """
    root = Path(folder)
    removed = []
    for sub in (root, *(root / s for s in _RUN_SUBFOLDERS)):
        try:
            entries = list(os.scandir(sub))
        except OSError:
            continue
        for entry in entries:
            m = _TEMPORARY.match(entry.name)
            if not m or entry.is_dir(follow_symlinks=False):
                continue
            if m["pid"] is not None and _pid_alive(int(m["pid"])):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def run_files(folder: str | os.PathLike) -> list[Path]:
    """The files of a run folder that a gankit run wrote (and temporaries it left).

    Args:
        folder: the run folder.

    Returns:
        Paths of the manifest, lock, ``metrics.jsonl``, curves, ``samples/epoch_NNNN.png``,
        ``samples/step_NNNNNNN.png``, ``checkpoints/last.pt``, ``checkpoints/epoch_NNNN.pt``
        and temporaries that exist, sorted. Other files are not the run's.
    """
    root = Path(folder)
    found = []
    for sub in ("", *_RUN_SUBFOLDERS):
        base = root / sub if sub else root
        try:
            entries = list(os.scandir(base))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                continue
            rel = f"{sub}/{entry.name}" if sub else entry.name
            if _is_temporary(entry.name) or any(p.fullmatch(rel) for p in _RUN_FILE_PATTERNS):
                found.append(Path(entry.path))
    return sorted(found)


def _looks_like_old_run(root: Path) -> bool:
    """A folder written by a gankit without manifests: a gankit checkpoint or metrics log."""
    last = root / "checkpoints" / "last.pt"
    with contextlib.suppress(OSError, zipfile.BadZipFile, KeyError, ValueError):
        with zipfile.ZipFile(last) as z:
            pickle_name = next(n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            if b"gankit-checkpoint" in z.read(pickle_name):
                return True
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open(root / "metrics.jsonl", encoding="utf-8") as f:
            first = json.loads(next(f))
            return isinstance(first, dict) and "step" in first and ("loss_d" in first or first.get("kind") == "eval")
    return False


def _read_manifest(root: Path) -> dict | None:
    try:
        data = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == _MANIFEST_FORMAT else None


def _unmarked_entries(root: Path) -> list[str]:
    """What a folder without a manifest holds, besides a lock file and empty run subfolders.

    Files named like a run's (``loss_curve.png``, ``samples/epoch_0001.png``, ...) count:
    in a folder gankit did not mark, they are the user's own.
    """
    names = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name == LOCK_NAME:
            continue
        if entry.name in _RUN_SUBFOLDERS and entry.is_dir(follow_symlinks=False):
            names += [f"{entry.name}/{n}" for n in sorted(e.name for e in os.scandir(entry.path))]
            continue
        names.append(entry.name)
    return names


def _within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


class RunFolder:
    """The output folder of one training run, locked while the run writes it.

    Use :meth:`open`; the lock is released by :meth:`close` (or when the process ends,
    however it ends).

    Attributes:
        path: the folder.
        removed: files of an old run that ``overwrite`` removed.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.removed: list[Path] = []
        self._lock_fd: int | None = None
        self._created = False

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        preset: str,
        resume: str | os.PathLike | None = None,
        overwrite: bool = False,
        option: str = "--out",
    ) -> RunFolder:
        """Check, lock and prepare a run folder (created if needed).

        Args:
            path: the folder.
            preset: the preset of the run (recorded in the manifest).
            resume: the checkpoint being resumed, if any.
            overwrite: replace a run that the folder already holds (only its files).
            option: how to name the folder in messages.

        Returns:
            The locked :class:`RunFolder`.

        Raises:
            ConfigError: one line, for an empty path, a file, a non-empty folder gankit did
                not make, a folder in use by another run (its process id is named), or a
                folder that holds a run when neither ``resume`` nor ``overwrite`` says what
                to do with it.
        """
        if not os.fspath(path):
            raise ConfigError(f"{option} is empty; give a folder for the run's files.")
        run = cls(path)
        run._check_not_foreign(option)
        run._created = not run.path.exists()
        try:
            run.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError(f"{option} {run.path} is a file; give a folder.") from None
        except OSError as err:
            if is_disk_full(err):
                raise DiskFullError(run.path) from None
            raise
        run._lock(option)
        try:
            run._check_not_foreign(option)  # again, now that no other run can change it
            run._prepare(preset=preset, resume=resume, overwrite=overwrite, option=option)
        except BaseException:
            run.close()
            raise
        return run

    def _check_not_foreign(self, option: str) -> None:
        root = self.path
        if root.is_symlink() and not root.exists():
            raise ConfigError(f"{option} {root} is a broken symbolic link; give a folder.")
        if not root.exists():
            return
        if not root.is_dir():
            raise ConfigError(f"{option} {root} is a file; give a folder.")
        if _read_manifest(root) is not None or _looks_like_old_run(root):
            return
        foreign = _unmarked_entries(root)
        if foreign:
            raise ConfigError(
                f"{option} {root} is not empty and is not a gankit run folder (it holds "
                f"{_listing(foreign)}); gankit does not write into other folders: choose a new or "
                "empty folder."
            )

    def _lock(self, option: str) -> None:
        path = self.path / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            self._lock_fd = fd
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in _NO_LOCKS:  # a file system without locks: go on unlocked
                self._lock_fd = fd
                return
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise ConfigError(
                f"{option} {self.path} is in use by another gankit run ({who}); wait for it to "
                "finish, stop it, or choose another --out."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._lock_fd = fd

    def _prepare(self, *, preset: str, resume, overwrite: bool, option: str) -> None:
        root = self.path
        metrics = root / "metrics.jsonl"
        if metrics.is_symlink():
            raise ConfigError(
                f"{metrics} is a symbolic link; gankit does not write through links in a run "
                "folder: remove it (or choose another --out)."
            )
        held = [p for p in run_files(root) if p.name not in (MANIFEST_NAME, LOCK_NAME) and not _is_temporary(p.name)]
        inside = resume is not None and _within(Path(resume), root)
        last = root / "checkpoints" / "last.pt"
        if held and inside and overwrite:
            raise ConfigError(
                f"--overwrite would remove the run in {root}, including the checkpoint {resume} you "
                "resume; drop --overwrite to continue that run, or resume into another --out."
            )
        if held and not inside and not overwrite:
            if resume is not None:
                raise ConfigError(
                    f"{root} already holds another run ({held[0].relative_to(root)}); resuming "
                    f"{resume} into it would mix two runs: choose another --out, or pass "
                    "--overwrite to replace that run."
                )
            raise ConfigError(
                f"{root} already holds a run ({held[0].relative_to(root).as_posix()}); resume it with "
                f"--resume {last}, choose another --out, or pass --overwrite."
            )
        if held and overwrite:
            self.removed = self._remove_old_run()
        if self.removed or _read_manifest(root) is None:
            manifest = {
                "format": _MANIFEST_FORMAT,
                "version": 1,
                "preset": preset,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "gankit_version": __version__,
            }
            atomic_write_bytes(root / MANIFEST_NAME, lambda f: f.write(json.dumps(manifest, indent=1).encode() + b"\n"))
        remove_stale_temporaries(root)

    def _remove_old_run(self) -> list[Path]:
        removed = []
        for p in run_files(self.path):
            if p.name == LOCK_NAME:
                continue  # ours now
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
        for sub in _RUN_SUBFOLDERS:
            with contextlib.suppress(OSError):
                (self.path / sub).rmdir()  # only when empty: other files stay
        return removed

    def abandon(self) -> None:
        """Undo :meth:`open` when the run stopped before writing anything, then :meth:`close`.

        Removes the manifest and the lock file when they are the folder's only run files,
        and the folder itself when :meth:`open` created it and it is empty again.
        """
        files = run_files(self.path)
        if all(p.name in (MANIFEST_NAME, LOCK_NAME) for p in files) and not self.removed:
            for p in files:
                with contextlib.suppress(OSError):
                    p.unlink()
            if self._created:
                with contextlib.suppress(OSError):
                    self.path.rmdir()
        self.close()

    def close(self) -> None:
        """Release the lock (the lock file stays; it is empty of meaning without a holder)."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- after a crash


def rewind_metrics(path: str | os.PathLike, step: int) -> int:
    """Make a metrics log end at ``step``, with every step once.

    Drops the records of later steps (written after the checkpoint by a run that then
    crashed), a torn last line, unreadable lines, and earlier copies of a step logged
    twice (the last copy is kept). The file is rewritten atomically, and only when
    something changes.

    Args:
        path: the ``metrics.jsonl`` file (nothing happens when it does not exist).
        step: the step of the checkpoint the run resumes from.

    Returns:
        The number of lines dropped.

    Raises:
        ConfigError: when the log is a symbolic link (gankit does not follow it).
    """
    p = Path(path)
    if p.is_symlink():
        raise ConfigError(
            f"{p} is a symbolic link; gankit does not write through links in a run folder: remove it."
        )
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        return 0
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline; else a torn record
    keys: list[tuple[str, int] | None] = []
    bad = bool(tail.strip())
    dropped = 1 if bad else 0
    keep = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            keys.append(None)
            keep.append(False)
            continue
        s = rec.get("step") if isinstance(rec, dict) else None
        if isinstance(s, int) and not isinstance(s, bool):
            keys.append(("eval" if rec.get("kind") == "eval" else "train", s))
            keep.append(s <= step)
        else:
            keys.append(None)
            keep.append(True)  # a record we do not know: keep it
    last_index = {k: i for i, k in enumerate(keys) if k is not None}
    for i, k in enumerate(keys):
        if k is not None and last_index[k] != i:
            keep[i] = False
    dropped += keep.count(False)
    if dropped:
        content = b"".join(line + b"\n" for line, ok in zip(lines, keep) if ok)
        atomic_write_bytes(p, lambda f: f.write(content))
    return dropped


def rewind_run(folder: str | os.PathLike, step: int) -> int:
    """Prepare a run folder for a run resumed at ``step``: rewind the log, drop stale temporaries.

    Args:
        folder: the run folder.
        step: the step of the checkpoint.

    Returns:
        The number of metrics lines dropped.
    """
    remove_stale_temporaries(folder)
    return rewind_metrics(Path(folder) / "metrics.jsonl", step)


# --------------------------------------------------------------------------- single files


def _is_gankit_png(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.format == "PNG" and str(im.info.get("Software", "")).startswith("gankit")
    except Exception:  # noqa: BLE001 -- not an image at all
        return False


def _is_gankit_export(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n < 100_000_000:
                return False
            header = json.loads(f.read(n))
        return header.get("__metadata__", {}).get("format") == "gankit-generator"
    except (OSError, ValueError, AttributeError):
        return False


def _is_gankit_json(path: Path) -> bool:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"values", "extractor", "num_fake", "num_real"} <= set(data)


_KINDS = {
    "png": (_is_gankit_png, "a sample grid that gankit wrote"),
    "generator": (_is_gankit_export, "a generator export that gankit wrote"),
    "json": (_is_gankit_json, "an evaluation result that gankit wrote"),
}


def check_output_file(
    out: str | os.PathLike,
    *,
    kind: str,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
    option: str = "--out",
) -> Path:
    """Refuse an output file that would destroy something gankit did not make.

    An output is refused when it is empty, a folder, one of the ``inputs`` (always, even
    with ``overwrite``), or an existing file that is not of ``kind`` as gankit writes it
    (unless ``overwrite``).

    Args:
        out: the file to write.
        kind: ``"png"`` (sample grids), ``"generator"`` (exports) or ``"json"`` (evaluations).
        inputs: the files the command reads.
        overwrite: allow replacing an existing file gankit did not make.
        option: how to name the output in messages.

    Returns:
        The output as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: one line saying why and what to do.
    """
    if not os.fspath(out):
        raise ConfigError(f"{option} is empty; give a file name.")
    p = Path(out)
    for source in inputs:
        src = Path(source)
        same = False
        with contextlib.suppress(OSError):
            same = p.exists() and src.exists() and os.path.samefile(p, src)
        if same or p.resolve() == src.resolve():
            raise ConfigError(
                f"{option} {p} is the file being read ({src}); gankit never writes over its input: "
                "choose another file name."
            )
    if p.is_dir():
        raise ConfigError(f"{option} {p} is a folder; give a file name.")
    if (p.exists() or p.is_symlink()) and not overwrite:
        check, what = _KINDS[kind]
        if not check(p):
            raise ConfigError(
                f"{option} {p} already exists and is not {what}; pass --overwrite to replace it, "
                "or choose another file name."
            )
    return p
