"""The single entry point: a folder, ``toy-faces`` or a standard dataset -> uint8 images."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gankit.data.cache import (
    cache_file,
    file_key,
    fingerprint,
    load_cache,
    resolve_cache_dir,
    save_cache,
)
from gankit.data.dataset import ImageTensorDataset
from gankit.data.folder import (
    ImageSpec,
    decode_files,
    list_image_files,
    prepare_pil,
    show_path,
    warn_skipped,
)
from gankit.data.standard import (
    STANDARD_DATASETS,
    celeba_files,
    open_standard,
    parse_name,
    standard_images,
    standard_root,
    standard_targets,
)
from gankit.data.toyfaces import (
    DEFAULT_NUM_TOY_FACES,
    TOY_FACES_CLASSES,
    TOY_FACES_NAME,
    generate_toy_faces,
    toy_faces_labels,
)
from gankit.errors import ConfigError, DataError

__all__ = ["load_images"]

_TOY_FACES_ALIASES = frozenset({TOY_FACES_NAME, "toy_faces", "toyfaces"})


def load_images(
    source: str | os.PathLike[str],
    *,
    image_size: int = 64,
    channels: int = 3,
    recursive: bool = False,
    center_crop: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    strict: bool = False,
    num_images: int | None = None,
    seed: int = 0,
    download: bool = False,
    root: str | os.PathLike[str] | None = None,
    progress: bool = True,
    num_workers: int | None = None,
    file_order: str = "sorted",
    labels: bool | None = None,
) -> ImageTensorDataset:
    """Loads a dataset as uint8 images (N, C, H, W) whose items are floats in [-1, 1].

    ``source`` is, in this order of precedence: an existing folder of images; the built-in
    name ``toy-faces``; a standard dataset name (``cifar10``, ``cifar100``, ``mnist``,
    ``fashion-mnist``, ``svhn``, ``stl10``, ``celeba``, ``lsun:<category>``, optionally with
    ``:<split>``); or ``imagefolder:<path>`` (a class-folder tree, same as ``recursive=True``).
    Folders and standard datasets are decoded once into a cache and reused while nothing
    changed. Items equal torchvision's ``Resize``, ``ToTensor``, ``Normalize(0.5, 0.5)`` bitwise.

    Args:
        source: Folder path or dataset name.
        image_size: Side length of the square output images.
        channels: 3 (RGB) or 1 (grey).
        recursive: Also read images in subfolders.
        center_crop: Keep the aspect ratio (resize the shorter side, crop the centre) instead
            of squashing to a square.
        cache_dir: Cache directory; default ``$GANKIT_CACHE_DIR`` or ``~/.cache/gankit``.
            It must not lie inside the image folder.
        use_cache: Read and write the cache; ``False`` decodes in memory every time.
        strict: Raise a DataError for corrupt, truncated or empty image files instead of
            skipping them with one warning.
        num_images: Use at most this many images (the first ones in sorted order; for
            ``toy-faces`` the number generated, default 10,000).
        seed: Seed of ``toy-faces``.
        download: Let torchvision download a standard dataset that is absent (needs internet).
        root: Where standard datasets are stored; default ``<cache_dir>/datasets``.
        progress: Show a progress bar while decoding.
        num_workers: Decoding threads; default ``min(8, CPU count)``.
        file_order: Order of a folder's images: ``"sorted"`` (by relative path, the same on
            every machine) or ``"listing"`` (the file system's order, as the report's
            ``glob.glob`` listed them; use it only to replay a run on the same copy of the
            folder). With ``num_images`` the first files in that order are used.
        labels: Attach class labels (:attr:`ImageTensorDataset.labels` and ``classes``): for
            a folder, its class sub-folders (the ImageFolder layout: the first folder of each
            image's path is its class, classes sorted by name; implies ``recursive``); for a
            standard dataset, its targets (CIFAR, MNIST, SVHN, STL-10); for ``toy-faces``, the
            hair of each face (10 classes, :func:`gankit.data.toyfaces.toy_faces_labels`).
            None (default): labels for ``imagefolder:`` sources whose images all lie in
            sub-folders, none otherwise; False: never.

    Returns:
        An :class:`ImageTensorDataset`.

    Raises:
        DataError: A path that does not exist, is a file, an empty folder, a folder without
            image files, only unreadable images (or any with ``strict``), or a standard
            dataset that is absent or cannot be downloaded.
        ConfigError: An invalid ``image_size``, ``channels`` or ``num_images``.

    Example:
        >>> ds = load_images("toy-faces", num_images=8, image_size=32)
        >>> len(ds), tuple(ds[0].shape)
        (8, (3, 32, 32))
    """
    spec = _spec(image_size, channels, center_crop)
    if num_images is not None and (isinstance(num_images, bool) or num_images < 1):
        raise ConfigError(f"num_images must be a positive integer or None, got {num_images!r}")
    text = os.fspath(source)
    path = Path(text).expanduser()
    common = {"spec": spec, "cache_dir": cache_dir, "use_cache": use_cache, "strict": strict,
              "num_images": num_images, "progress": progress, "num_workers": num_workers}
    name = text.strip().lower()
    if path.exists():  # an existing path always wins over a built-in name
        return _labelled_folder(path, recursive or bool(labels), file_order, common, bool(labels))
    if name in _TOY_FACES_ALIASES:
        count = num_images if num_images is not None else DEFAULT_NUM_TOY_FACES
        dataset = _load_toy_faces(count, spec, seed=seed, cache_dir=cache_dir, use_cache=use_cache)
        if labels:
            return ImageTensorDataset(dataset.images, source=TOY_FACES_NAME,
                                      labels=toy_faces_labels(count, seed=seed), classes=list(TOY_FACES_CLASSES))
        return dataset
    if name.startswith("imagefolder:"):
        folder = Path(text.strip()[len("imagefolder:"):]).expanduser()
        return _labelled_folder(folder, True, file_order, common, None if labels is None else bool(labels))
    parsed = parse_name(text)
    if parsed is not None:
        dataset = _load_standard(*parsed, root=root, download=download, with_labels=bool(labels), **common)
        if labels and dataset.labels is None:
            raise DataError(f"{parsed[0]} has no class labels gankit can read (CelebA's attributes and LSUN "
                            "are not classes); train an unconditional recipe on it or use labelled data")
        return dataset
    if not any(sep in text for sep in ("/", os.sep, ".")) and not text.startswith("~"):
        raise DataError(
            f"unknown dataset {text!r} (and no such folder); valid names: {', '.join(dataset_names())}, "
            "or an image folder path"
        )
    list_image_files(path)  # raises the "does not exist" DataError
    raise AssertionError("unreachable")  # pragma: no cover


def dataset_names() -> list[str]:
    """The dataset names :func:`load_images` knows: ``toy-faces``, the standard datasets, ``lsun:CATEGORY``
    and ``imagefolder:PATH``.

    Returns:
        The names, in the order an error message lists them.

    Example:
        >>> dataset_names()[:2]
        ['toy-faces', 'cifar10']
    """
    return [TOY_FACES_NAME, *(n for n in STANDARD_DATASETS if n != "lsun"), "lsun:CATEGORY", "imagefolder:PATH"]


def _toy_faces_code_digest() -> str:
    import hashlib

    import gankit.data.toyfaces as toyfaces

    return hashlib.sha256(Path(toyfaces.__file__).read_bytes()).hexdigest()[:16]


def _load_toy_faces(count: int, spec: ImageSpec, *, seed: int, cache_dir, use_cache: bool) -> ImageTensorDataset:
    """``toy-faces``, drawn once per (count, size, channels, seed, drawing code) and then read from the cache."""
    if not use_cache:
        return ImageTensorDataset(generate_toy_faces(count, spec.image_size, seed=seed, channels=spec.channels),
                                  source=TOY_FACES_NAME)
    slot = {"kind": "toy-faces", "count": count, "seed": seed, "spec": spec.as_dict(),
            "code": _toy_faces_code_digest()}
    expected = fingerprint(slot)
    path = cache_file(resolve_cache_dir(cache_dir), f"toy-faces-{spec.image_size}px", slot)
    entry = load_cache(path, expected)
    if entry is not None:
        return ImageTensorDataset(entry.images, source=TOY_FACES_NAME)
    images = generate_toy_faces(count, spec.image_size, seed=seed, channels=spec.channels)
    _save(path, images, expected, [], [], TOY_FACES_NAME)
    return ImageTensorDataset(images, source=TOY_FACES_NAME)


def folder_classes(files: list[str]) -> tuple[list[str], dict[str, int]]:
    """The classes of an ImageFolder layout from image paths relative to its root.

    Args:
        files: relative POSIX paths (``"cat/001.png"``).

    Returns:
        ``(sorted class names, {class name: index})``.

    Raises:
        DataError: when an image lies directly in the root (it belongs to no class).
    """
    loose = [f for f in files if "/" not in f]
    if loose:
        raise DataError(f"{len(loose)} image(s) lie directly in the folder (e.g. {loose[0]!r}), not in a class "
                        "sub-folder; put every image in a folder named after its class (the ImageFolder layout)")
    names = sorted({f.split("/", 1)[0] for f in files})
    return names, {c: i for i, c in enumerate(names)}


def _labelled_folder(folder: Path, recursive: bool, file_order: str, common: dict,
                     labels: bool | None) -> ImageTensorDataset:
    """A folder's images; with class labels when asked (True), or when they exist (None)."""
    dataset = _load_folder(folder, recursive=recursive, file_order=file_order, **common)
    if labels is False or (labels is None and any("/" not in f for f in dataset.files)):
        return dataset
    classes, index = folder_classes(dataset.files)
    targets = torch.tensor([index[f.split("/", 1)[0]] for f in dataset.files], dtype=torch.long)
    return ImageTensorDataset(dataset.images, source=dataset.source, files=dataset.files, labels=targets,
                              classes=classes)


def _spec(image_size: int, channels: int, center_crop: bool) -> ImageSpec:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ConfigError(f"image_size must be a positive integer, got {image_size!r}")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ConfigError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    return ImageSpec(image_size=image_size, channels=channels, center_crop=bool(center_crop))


def _save(path: Path, images: torch.Tensor, expected: str, files: list[str],
          skipped: list[tuple[str, str]], source: str,
          targets: tuple[torch.Tensor, list[str]] | None = None) -> None:
    try:
        save_cache(path, images, expected, files=files, skipped=skipped, source=source,
                   labels=None if targets is None else targets[0],
                   classes=None if targets is None else targets[1])
    except OSError as err:
        # A read-only home must not stop training; it only costs a decode next time.
        warnings.warn(f"could not write the image cache {show_path(path)} ({err}); continuing "
                      "without it (set GANKIT_CACHE_DIR or cache_dir to a writable folder)",
                      stacklevel=4)


def _load_folder(folder: Path, *, recursive: bool, spec: ImageSpec, file_order: str = "sorted",
                 cache_dir: str | os.PathLike[str] | None, use_cache: bool, strict: bool,
                 num_images: int | None, progress: bool,
                 num_workers: int | None) -> ImageTensorDataset:
    files = list_image_files(folder, recursive=recursive, order=file_order)
    if num_images is not None:
        files = files[:num_images]
    # Names relative to the folder as listed (not resolved: a file may be a symlink elsewhere).
    names = {p: p.relative_to(folder).as_posix() for p in files}
    folder = folder.resolve()
    shown = show_path(folder)

    def decode() -> tuple[torch.Tensor, list[str], list[tuple[str, str]]]:
        images, kept, skipped = decode_files(files, spec, progress=progress,
                                             num_workers=num_workers,
                                             desc=f"decoding {folder.name or shown}")
        return (images, [names[files[i]] for i in kept],
                [(names[p], reason) for p, reason in skipped])

    if not use_cache:
        images, kept_names, skipped = decode()
        warn_skipped(folder, skipped, len(files), strict=strict)
        return ImageTensorDataset(images, source=str(folder), files=kept_names)

    cdir = resolve_cache_dir(cache_dir)
    if cdir == folder or folder in cdir.parents:
        raise DataError(f"cache directory {show_path(cdir)} is inside the image folder {shown}; "
                        "pass cache_dir (or set GANKIT_CACHE_DIR) to a folder outside it")
    stats = []
    for p in files:
        try:
            stats.append((names[p], *file_key(p)))
        except OSError:
            continue  # vanished since listing, or a broken link: decoding skips it
    slot = {"kind": "folder", "folder": str(folder), "recursive": recursive,
            "spec": spec.as_dict(), "num_images": num_images,
            **({"order": file_order} if file_order != "sorted" else {})}
    expected = fingerprint({**slot, "files": stats})
    path = cache_file(cdir, folder.name, slot)
    entry = load_cache(path, expected)
    if entry is None:
        images, kept_names, skipped = decode()
        if kept_names:
            _save(path, images, expected, kept_names, skipped, str(folder))
    else:
        images, kept_names, skipped = entry.images, entry.files, entry.skipped
    warn_skipped(folder, skipped, len(files), strict=strict)
    return ImageTensorDataset(images, source=str(folder), files=kept_names)


def _load_standard(name: str, split: str, *, root: str | os.PathLike[str] | None,
                   download: bool, spec: ImageSpec, with_labels: bool = False, cache_dir: str | os.PathLike[str] | None,
                   use_cache: bool, strict: bool, num_images: int | None, progress: bool,
                   num_workers: int | None) -> ImageTensorDataset:
    cdir = resolve_cache_dir(cache_dir)
    data_root = standard_root(root, cdir)
    dataset = open_standard(name, split, data_root, download=download)
    total = len(dataset)
    count = min(total, num_images) if num_images is not None else total
    label = f"{name}-{split}"
    slot = {"kind": "standard", "name": name, "split": split, "root": str(data_root),
            "spec": spec.as_dict(), "count": count, "total": total}
    expected = fingerprint(slot)
    path = cache_file(cdir, label, slot)
    entry = load_cache(path, expected) if use_cache else None
    targets = standard_targets(dataset, count)
    if entry is not None and not (with_labels and targets is not None and entry.labels is None):
        warn_skipped(label, entry.skipped, count, strict=strict)
        if with_labels and entry.labels is not None:
            return ImageTensorDataset(entry.images, source=label, labels=entry.labels, classes=entry.classes)
        return ImageTensorDataset(entry.images, source=label)

    skipped: list[tuple[str, str]] = []
    if name == "celeba":  # a folder of JPEGs: decode it in parallel like any folder
        files = celeba_files(dataset)[:count]
        images, _, skipped_paths = decode_files(files, spec, progress=progress,
                                                num_workers=num_workers,
                                                desc=f"decoding {label}")
        skipped = [(p.name, reason) for p, reason in skipped_paths]
    else:
        get = standard_images(dataset)
        transform = spec.torchvision_transform()
        images = torch.empty((count, spec.channels, spec.image_size, spec.image_size),
                             dtype=torch.uint8)
        for index in tqdm(range(count), desc=f"decoding {label}", unit="img",
                          disable=not progress):
            images[index] = prepare_pil(get(index), spec, transform)
    kept = None if skipped else targets  # (CelebA alone skips files, and has no classes)
    if use_cache and len(images):
        _save(path, images, expected, [], skipped, label, kept)
    warn_skipped(label, skipped, count, strict=strict)
    if with_labels and kept is not None:
        return ImageTensorDataset(images, source=label, labels=kept[0], classes=kept[1])
    return ImageTensorDataset(images, source=label)
