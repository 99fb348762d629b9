"""The on-disk cache of decoded images (uint8 safetensors files).

A cache file is named after its source and decoding parameters and holds, in its metadata,
a fingerprint of everything its contents depend on (file names, sizes, modification and
change times, inode numbers, parameters, library versions; see :func:`file_key`). A cache
whose fingerprint differs is rebuilt, never used. Files are written to a temporary name and
moved into place with ``os.replace`` so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import PIL
import torch
import torchvision
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

__all__ = [
    "CACHE_ENV",
    "CacheEntry",
    "default_cache_dir",
    "resolve_cache_dir",
    "fingerprint",
    "file_key",
    "cache_file",
    "load_cache",
    "save_cache",
]

#: Environment variable that overrides the default cache directory.
CACHE_ENV = "GANKIT_CACHE_DIR"

# Bump when the cached bytes for the same inputs would change (decoding recipe, layout).
_FORMAT_VERSION = "1"


@dataclass
class CacheEntry:
    """A loaded cache: the images and the lists stored beside them.

    Attributes:
        images: uint8 tensor (N, C, H, W).
        files: Names of the source files of the images, in order (may be empty).
        skipped: (file name, reason) pairs for unreadable source files.
        labels: int64 labels of the images, or None when the cache holds none.
        classes: class names (may be empty).
    """

    images: torch.Tensor
    files: list[str]
    skipped: list[tuple[str, str]]
    labels: torch.Tensor | None = None
    classes: list[str] | None = None


def default_cache_dir() -> Path:
    """The cache directory used when none is given.

    Returns:
        ``$GANKIT_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/gankit``, else ``~/.cache/gankit``.

    Example:
        >>> default_cache_dir()  # doctest: +SKIP
        PosixPath('/home/me/.cache/gankit')
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "gankit"


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    """The absolute cache directory for an optional user choice.

    Args:
        cache_dir: A directory, or ``None`` for :func:`default_cache_dir`.

    Returns:
        The resolved absolute path (it need not exist yet).

    Example:
        >>> resolve_cache_dir("/tmp/c")
        PosixPath('/tmp/c')
    """
    chosen = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return chosen.resolve()


def fingerprint(payload: object) -> str:
    """A stable hex digest of a JSON-serialisable value.

    The digest also covers the cache format version and the Pillow and torchvision versions,
    whose decoders and resizers produce the cached bytes.

    Args:
        payload: Anything ``json.dumps`` accepts.

    Returns:
        A 64-character sha256 hex digest.

    Example:
        >>> fingerprint({"a": 1}) == fingerprint({"a": 1})
        True
    """
    full = {"format": _FORMAT_VERSION, "pillow": PIL.__version__,
            "torchvision": torchvision.__version__, "payload": payload}
    text = json.dumps(full, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# A file changed this recently may be changed again within the same tick of the file system's
# clock (a few ms; 2 s on FAT), which its times would not show: such files are also hashed.
_RECENT_NS = 2_000_000_000


def _content_digest(path: str | os.PathLike[str]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_key(path: str | os.PathLike[str], st: os.stat_result | None = None) -> list[object]:
    """What the cached pixels of one image file depend on, as cheap to compute as it is safe.

    The size, the modification time, the *change* time (``st_ctime``, which the system sets
    on every write and which, unlike the modification time, no program can set back) and
    the inode number. A file rewritten in place, even with its old size and modification
    time restored, so gets a new key. The contents are hashed as well when the change time
    cannot be trusted: on Windows (where ``st_ctime`` is the creation time), and for files
    changed less than two seconds ago (a second change within one tick of the file
    system's clock would not show in its times).

    Args:
        path: the image file.
        st: its ``os.stat`` result, if already known.

    Returns:
        A JSON-serialisable list.

    Raises:
        OSError: when the file cannot be read.

    Example:
        >>> len(file_key(__file__)) >= 4
        True
    """
    st = os.stat(path) if st is None else st
    key: list[object] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    if os.name == "nt" or time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _RECENT_NS:
        key.append(_content_digest(path))
    return key


def cache_file(cache_dir: Path, label: str, key: object) -> Path:
    """The cache file for a source and its decoding parameters.

    Args:
        cache_dir: The cache directory.
        label: Human-readable part of the name (e.g. the folder's name).
        key: What identifies the cache slot (e.g. absolute folder path and parameters); the
            contents' own fingerprint is checked separately, so a changed folder reuses its slot.

    Returns:
        ``cache_dir / "images" / "<label>-<digest>.safetensors"``.

    Example:
        >>> cache_file(Path("/c"), "faces", {"size": 64}).parent
        PosixPath('/c/images')
    """
    safe_label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("._")[:40] or "images"
    digest = fingerprint(key)[:16]
    return cache_dir / "images" / f"{safe_label}-{digest}.safetensors"


def load_cache(path: Path, expected: str) -> CacheEntry | None:
    """Loads a cache file if it exists and its fingerprint is ``expected``.

    Args:
        path: The cache file.
        expected: The fingerprint the current inputs give.

    Returns:
        The entry, or ``None`` when the file is missing, stale or unreadable (then rebuild).

    Example:
        >>> load_cache(Path("/nonexistent.safetensors"), "0" * 64) is None
        True
    """
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            if meta.get("fingerprint") != expected:
                return None
            images = handle.get_tensor("images")
            labels = handle.get_tensor("labels") if "labels" in handle.keys() else None
        files = json.loads(meta.get("files", "[]"))
        classes = [str(c) for c in json.loads(meta.get("classes", "[]"))]
        skipped = [(str(name), str(reason)) for name, reason in json.loads(meta["skipped"])]
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):
        return None  # a damaged cache is only a cache: rebuild it
    if images.dtype != torch.uint8 or images.dim() != 4:
        return None
    if labels is not None and (labels.dtype != torch.int64 or labels.shape != (images.shape[0],)):
        return None
    return CacheEntry(images=images, files=[str(f) for f in files], skipped=skipped, labels=labels,
                      classes=classes)


def save_cache(path: Path, images: torch.Tensor, expected: str, *,
               files: list[str], skipped: list[tuple[str, str]], source: str,
               labels: torch.Tensor | None = None, classes: list[str] | None = None) -> None:
    """Writes a cache file atomically (temporary file in the same folder, then ``os.replace``).

    Args:
        path: The cache file.
        images: uint8 tensor (N, C, H, W).
        expected: The fingerprint of the inputs.
        files: Source file names of the images.
        skipped: (file name, reason) pairs of unreadable files, re-reported on every load.
        source: The folder or dataset, for people inspecting the cache.
        labels: int64 labels of the images, stored beside them (None: none).
        classes: class names, stored in the metadata.

    Raises:
        OSError: When the cache directory cannot be written.

    Example:
        >>> save_cache(path, images, fp, files=[], skipped=[], source="x")  # doctest: +SKIP
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "fingerprint": expected,
        "source": source,
        "files": json.dumps(files),
        "skipped": json.dumps([list(item) for item in skipped]),
    }
    tensors = {"images": images.contiguous()}
    if labels is not None:
        tensors["labels"] = labels.to(torch.int64).contiguous()
        metadata["classes"] = json.dumps(list(classes or []))
    # Created by save_file itself, so that it honours the umask like any file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, SafetensorError):  # e.g. a full disk, reported by the Rust writer
            raise OSError(f"cannot write {path}: {err}") from None
        raise
