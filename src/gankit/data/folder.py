"""Finding and decoding image files into a uint8 tensor.

Decoding follows torchvision's own recipe so the cached images reproduce it bitwise: PIL opens
the file (first frame for GIF), EXIF orientation is applied, the mode is converted to RGB (or L),
then torchvision's ``Resize`` (bilinear, antialiased as for PIL input) and optionally
``CenterCrop`` run on the PIL image, whose bytes become the cache.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torchvision import transforms
from tqdm.auto import tqdm

from gankit.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "FILE_ORDERS",
    "ImageSpec",
    "list_image_files",
    "convert_mode",
    "open_image",
    "prepare_pil",
    "decode_image",
    "decode_files",
    "warn_skipped",
    "show_path",
]

#: File name endings (lower case) that are read as images.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".bmp", ".dib", ".gif", ".jfif", ".jpe", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp",
)

# 16- and 32-bit integer modes: PIL's convert() clips them at 255 (a 16-bit photo turns white),
# so we rescale the 16-bit range to 8 bits ourselves before converting.
_HIGH_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


def show_path(path: str | os.PathLike[str]) -> str:
    """Formats a path for a one-line message (control characters escaped).

    Args:
        path: Any path.

    Returns:
        The path as text, quoted with ``repr`` only when it holds non-printable characters.

    Example:
        >>> show_path("faces/1.jpg")
        'faces/1.jpg'
    """
    text = os.fspath(path)
    return text if text.isprintable() else repr(text)


@dataclass(frozen=True)
class ImageSpec:
    """What every image becomes: its size, channel count and crop policy.

    Attributes:
        image_size: Height and width of the square output images.
        channels: 3 for RGB, 1 for grey (PIL mode ``L``).
        center_crop: ``False`` squashes the image to ``image_size`` x ``image_size``
            (``Resize((s, s))``); ``True`` keeps the aspect ratio
            (``Resize(s)`` on the shorter side, then ``CenterCrop(s)``).

    Example:
        >>> ImageSpec(64, 3, False).pil_mode
        'RGB'
    """

    image_size: int = 64
    channels: int = 3
    center_crop: bool = False

    @property
    def pil_mode(self) -> str:
        """The PIL mode images are converted to: ``'RGB'`` or ``'L'``."""
        return "L" if self.channels == 1 else "RGB"

    def torchvision_transform(self) -> Callable[[Image.Image], Image.Image]:
        """The torchvision PIL-to-PIL transform that sizes an image.

        Returns:
            ``Resize((s, s))`` or ``Compose([Resize(s), CenterCrop(s)])``, bilinear with
            torchvision's default antialiasing.
        """
        size = self.image_size
        bilinear = transforms.InterpolationMode.BILINEAR
        if self.center_crop:
            return transforms.Compose(
                [transforms.Resize(size, interpolation=bilinear), transforms.CenterCrop(size)]
            )
        return transforms.Resize((size, size), interpolation=bilinear)

    def as_dict(self) -> dict[str, object]:
        """The parameters as a plain dict (used in cache keys)."""
        return {"image_size": self.image_size, "channels": self.channels,
                "center_crop": self.center_crop}


#: How :func:`list_image_files` orders files: ``"sorted"`` by relative path (portable), or
#: ``"listing"``: the file system's own order, as ``os.scandir`` / ``glob.glob`` return it.
FILE_ORDERS = ("sorted", "listing")


def _walk(folder: Path, recursive: bool, seen: set[str] | None = None,
          order: str = "sorted") -> Iterator[Path]:
    # Real paths of folders already walked: a symlink back to a parent must not loop forever.
    seen = {os.path.realpath(folder)} if seen is None else seen
    # Hidden files and folders (".DS_Store", "._x.jpg", ".git") are never images we want.
    with os.scandir(folder) as entries:
        children = list(entries)
    if order == "sorted":
        children.sort(key=lambda e: e.name)
    for entry in children:
        if entry.name.startswith("."):
            continue
        try:
            is_dir, is_file = entry.is_dir(), entry.is_file()
        except OSError:
            is_dir, is_file = False, False
        if not is_dir and not is_file and entry.is_symlink():
            # A broken link or a link to itself (ELOOP): listed like a file, so that decoding
            # fails on it and it is skipped with a warning naming it, as any unreadable image.
            is_file = True
        if is_dir:
            real = os.path.realpath(entry.path)
            if recursive and real not in seen:
                seen.add(real)
                yield from _walk(Path(entry.path), recursive, seen, order)
        elif is_file:
            yield Path(entry.path)


def list_image_files(folder: str | os.PathLike[str], *, recursive: bool = False,
                     order: str = "sorted") -> list[Path]:
    """Lists the image files of a folder in a stable (sorted) order, or the file system's.

    Args:
        folder: The image folder.
        recursive: Also look into subfolders (e.g. ``ImageFolder``-style class folders).
        order: ``"sorted"`` (by path relative to ``folder``; the same on every machine) or
            ``"listing"`` (the file system's order, as ``glob.glob(os.path.join(folder, '*'))``
            returns it -- what the report's code used; it can differ between machines and
            copies of the folder).

    Returns:
        Paths of the files whose extension is in :data:`IMAGE_EXTENSIONS`, in that order.

    Raises:
        DataError: When the folder does not exist, is a file, is empty or holds no image files.

    Example:
        >>> list_image_files("faces")  # doctest: +SKIP
        [PosixPath('faces/1.jpg'), PosixPath('faces/2.jpg')]
    """
    if order not in FILE_ORDERS:
        raise DataError(f"file order must be sorted or listing, got {order!r}")
    folder = Path(folder)
    shown = show_path(folder)
    if not folder.exists():
        raise DataError(f"dataset path {shown} does not exist; pass an existing image folder "
                        "or a built-in dataset name such as toy-faces")
    if not folder.is_dir():
        raise DataError(f"dataset path {shown} is a file, not a folder; pass the folder that "
                        "holds the images")
    try:
        files = list(_walk(folder, recursive, order=order))
        has_subfolders = any(p.is_dir() for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as err:
        raise DataError(f"cannot read image folder {shown} ({err.strerror or err}); "
                        "check that it is readable") from err
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    if not images:
        accepted = ", ".join(IMAGE_EXTENSIONS)
        if not files and not has_subfolders:
            raise DataError(f"image folder {shown} is empty; put image files ({accepted}) in it")
        hint = (" or pass recursive=True to search its subfolders"
                if has_subfolders and not recursive else "")
        raise DataError(f"image folder {shown} has no image files; accepted extensions are "
                        f"{accepted}; add such files{hint}")
    return images


def _to_8bit(img: Image.Image) -> Image.Image:
    # Maps 0..65535 onto 0..255 with rounding (65535 -> 255), the inverse of v * 257.
    values = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
    return Image.fromarray(((values + 128) // 257).astype(np.uint8))


def convert_mode(img: Image.Image, channels: int = 3) -> Image.Image:
    """Converts a PIL image of any mode to RGB (or L), as ``img.convert('RGB')`` does.

    16-bit and 32-bit integer images (modes ``I;16``, ``I``) are first mapped from 0..65535
    to 0..255, where PIL alone would clip every value above 255 to white.

    Args:
        img: A loaded PIL image.
        channels: 3 for RGB, 1 for L.

    Returns:
        The image in mode ``RGB`` or ``L`` (``img`` itself when it already is).

    Example:
        >>> convert_mode(Image.new("CMYK", (2, 2))).mode
        'RGB'
    """
    if img.mode in _HIGH_BIT_MODES:
        img = _to_8bit(img)
    target = "L" if channels == 1 else "RGB"
    if img.mode == target:
        return img
    try:
        return img.convert(target)
    except ValueError:  # e.g. LAB -> L is not supported directly
        return img.convert("RGB").convert(target)


def open_image(path: str | os.PathLike[str], channels: int = 3) -> Image.Image:
    """Decodes one file into a PIL image of mode RGB (or L), EXIF orientation applied.

    Args:
        path: Image file (first frame is used for animated GIF / multi-page TIFF).
        channels: 3 for RGB, 1 for L.

    Returns:
        A loaded PIL image in mode ``RGB`` or ``L``.

    Raises:
        Exception: Whatever PIL raises for an unreadable, corrupt or truncated file.

    Example:
        >>> open_image("faces/1.png").mode  # doctest: +SKIP
        'RGB'
    """
    with Image.open(path) as img:
        img.load()
        try:
            ImageOps.exif_transpose(img, in_place=True)
        except Exception:  # noqa: BLE001 - a malformed EXIF block should not lose the image
            pass
        return convert_mode(img, channels)


def _pil_to_tensor(img: Image.Image, channels: int) -> torch.Tensor:
    array = np.asarray(img, dtype=np.uint8).reshape(img.height, img.width, channels)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def prepare_pil(img: Image.Image, spec: ImageSpec,
                transform: Callable[[Image.Image], Image.Image] | None = None) -> torch.Tensor:
    """Converts an already decoded PIL image to the cached uint8 form.

    Args:
        img: Any PIL image (e.g. from a torchvision dataset).
        spec: Output size, channels and crop policy.
        transform: ``spec.torchvision_transform()``, passed in to build it only once.

    Returns:
        uint8 tensor (C, H, W).

    Example:
        >>> prepare_pil(Image.new("RGB", (8, 8)), ImageSpec(4, 3)).shape
        torch.Size([3, 4, 4])
    """
    img = convert_mode(img, spec.channels)
    transform = transform or spec.torchvision_transform()
    return _pil_to_tensor(transform(img), spec.channels)


def decode_image(path: str | os.PathLike[str], spec: ImageSpec,
                 transform: Callable[[Image.Image], Image.Image] | None = None) -> torch.Tensor:
    """Decodes and sizes one image file.

    Args:
        path: Image file.
        spec: Output size, channels and crop policy.
        transform: ``spec.torchvision_transform()``, passed in to build it only once.

    Returns:
        uint8 tensor (C, H, W) with C = ``spec.channels`` and H = W = ``spec.image_size``.

    Raises:
        Exception: Whatever PIL raises for a corrupt file.

    Example:
        >>> decode_image("faces/1.jpg", ImageSpec(64, 3)).shape  # doctest: +SKIP
        torch.Size([3, 64, 64])
    """
    img = open_image(path, spec.channels)
    transform = transform or spec.torchvision_transform()
    return _pil_to_tensor(transform(img), spec.channels)


def _reason(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:120]


def decode_files(
    paths: Sequence[Path],
    spec: ImageSpec,
    *,
    progress: bool = True,
    num_workers: int | None = None,
    desc: str = "decoding images",
) -> tuple[torch.Tensor, list[int], list[tuple[Path, str]]]:
    """Decodes many files into one uint8 tensor, skipping the ones PIL cannot read.

    PIL releases the GIL while decoding and resizing, so a small thread pool speeds this up.

    Args:
        paths: Image files, in the order the result should have.
        spec: Output size, channels and crop policy.
        progress: Show a tqdm progress bar.
        num_workers: Decoding threads; default ``min(8, os.cpu_count())``.
        desc: Progress bar label.

    Returns:
        ``(images, kept, skipped)``: images is uint8 (N, C, H, W) for the readable files in
        order, ``kept`` their indices into ``paths``, ``skipped`` (path, reason) pairs.

    Example:
        >>> images, kept, skipped = decode_files(paths, ImageSpec(64, 3))  # doctest: +SKIP
    """
    size = spec.image_size
    out = torch.empty((len(paths), spec.channels, size, size), dtype=torch.uint8)
    transform = spec.torchvision_transform()
    kept: list[int] = []
    skipped: list[tuple[Path, str]] = []

    def work(path: Path) -> torch.Tensor | BaseException:
        try:
            # Looked up in the module at call time so tests can count decodes.
            return decode_image(path, spec, transform)
        except Exception as err:  # noqa: BLE001 - PIL raises many types for corrupt files
            return err

    workers = num_workers or min(8, os.cpu_count() or 1)
    bar = tqdm(total=len(paths), desc=desc, unit="img", disable=not progress)
    with warnings.catch_warnings():
        # Harmless per-file PIL chatter would otherwise repeat thousands of times.
        warnings.filterwarnings("ignore", message="Palette images with Transparency")
        if workers <= 1:
            results: Iterator[torch.Tensor | BaseException] = map(work, paths)
            pool = None
        else:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gankit-decode")
            results = pool.map(work, paths)
        try:
            for index, (path, result) in enumerate(zip(paths, results, strict=True)):
                if isinstance(result, BaseException):
                    skipped.append((path, _reason(result)))
                else:
                    out[len(kept)] = result
                    kept.append(index)
                bar.update(1)
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    if skipped:
        out = out[: len(kept)].clone()
    return out, kept, skipped


def warn_skipped(where: str | os.PathLike[str], skipped: Sequence[tuple[str, str]],
                 total: int, *, strict: bool) -> None:
    """Reports unreadable files: one warning, or a DataError when ``strict``.

    Args:
        where: Folder or dataset the files belong to (named in the message).
        skipped: (file name, reason) pairs.
        total: Number of image files looked at.
        strict: Raise instead of warning.

    Raises:
        DataError: When ``strict`` and files were skipped, or when no file could be read.

    Example:
        >>> warn_skipped("faces", [("bad.jpg", "truncated")], 10, strict=False)  # doctest: +SKIP
    """
    if not skipped:
        return
    shown = show_path(where)
    first = "; ".join(f"{show_path(name)}: {reason}" for name, reason in skipped[:3])
    more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    if len(skipped) == total:
        raise DataError(f"none of the {total} image files in {shown} could be decoded "
                        f"(e.g. {first}{more}); check that they are valid images")
    if strict:
        raise DataError(f"{len(skipped)} of {total} image files in {shown} are corrupt, "
                        f"truncated, empty or broken links ({first}{more}); fix or remove them, or pass "
                        "strict=False to skip them")
    warnings.warn(f"skipped {len(skipped)} of {total} image files in {shown} that are corrupt, "
                  f"truncated, empty or broken links: {first}{more}", stacklevel=4)
