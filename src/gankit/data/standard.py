"""Standard datasets through torchvision (CIFAR-10, MNIST, CelebA, LSUN, ...), by name.

A name may carry a split or category after a colon: ``cifar10:test``, ``celeba:train``,
``lsun:church_outdoor``. The images go through the same decoding recipe as image folders
(mode conversion, torchvision ``Resize``/``CenterCrop``) into a uint8 tensor.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from gankit.errors import DataError

__all__ = ["STANDARD_DATASETS", "is_standard_name", "parse_name", "open_standard",
           "standard_images", "celeba_files", "standard_root"]

#: name -> (default split, accepted splits); an empty tuple accepts any split.
STANDARD_DATASETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "cifar10": ("train", ("train", "test")),
    "cifar100": ("train", ("train", "test")),
    "mnist": ("train", ("train", "test")),
    "fashion-mnist": ("train", ("train", "test")),
    "svhn": ("train", ("train", "test", "extra")),
    "stl10": ("unlabeled", ("train", "test", "unlabeled", "train+unlabeled")),
    "celeba": ("all", ("all", "train", "valid", "test")),
    "lsun": ("bedroom", ()),  # the part after the colon is an LSUN category
}


def parse_name(source: str) -> tuple[str, str] | None:
    """Splits ``"name[:split]"`` into a known dataset name and its split.

    Args:
        source: What the user passed, e.g. ``"cifar10"`` or ``"lsun:church_outdoor"``.

    Returns:
        ``(name, split)`` with defaults filled in, or ``None`` when the name is not known.

    Example:
        >>> parse_name("CIFAR10:test")
        ('cifar10', 'test')
    """
    name, _, split = str(source).strip().lower().partition(":")
    name = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-100": "cifar100",
            "stl-10": "stl10"}.get(name, name)
    if name not in STANDARD_DATASETS:
        return None
    default, _ = STANDARD_DATASETS[name]
    return name, split or default


def is_standard_name(source: str) -> bool:
    """Whether ``source`` names a standard dataset (see :data:`STANDARD_DATASETS`).

    Args:
        source: A name such as ``"mnist"`` or ``"cifar10:test"``.

    Returns:
        ``True`` for a known name.

    Example:
        >>> is_standard_name("mnist"), is_standard_name("faces")
        (True, False)
    """
    return parse_name(source) is not None


def _factory(name: str, split: str) -> Callable[[str, bool], Dataset[Any]]:
    from torchvision import datasets

    if name in ("cifar10", "cifar100", "mnist", "fashion-mnist"):
        cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100,
               "mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[name]
        return lambda root, download: cls(root, train=split == "train", download=download)
    if name == "svhn":
        return lambda root, download: datasets.SVHN(root, split=split, download=download)
    if name == "stl10":
        return lambda root, download: datasets.STL10(root, split=split, download=download)
    if name == "celeba":
        return lambda root, download: datasets.CelebA(root, split=split, target_type=[],
                                                      download=download)

    def lsun(root: str, download: bool) -> Dataset[Any]:
        if download:
            raise DataError(f"torchvision cannot download LSUN; download the {split} lmdb "
                            f"with the LSUN tools into {root} and pass download=False")
        try:
            import lmdb  # noqa: F401  (torchvision's LSUN reads lmdb databases)
        except ImportError as err:
            raise DataError("the LSUN dataset needs the lmdb package; run pip install lmdb") \
                from err
        category = split if split.endswith(("_train", "_val")) else f"{split}_train"
        return datasets.LSUN(root, classes=[category])

    return lsun


def open_standard(name: str, split: str, root: Path, *, download: bool) -> Dataset[Any]:
    """Opens a torchvision dataset, turning its failures into one-line DataErrors.

    Args:
        name: A key of :data:`STANDARD_DATASETS`.
        split: Its split (or LSUN category).
        root: Where torchvision keeps (or downloads) the files.
        download: Let torchvision download missing files (needs internet).

    Returns:
        The torchvision dataset; items are ``(PIL image, target)``.

    Raises:
        DataError: Unknown split, files absent, download impossible.

    Example:
        >>> open_standard("mnist", "train", Path("~/data"), download=True)  # doctest: +SKIP
    """
    _, splits = STANDARD_DATASETS[name]
    if splits and split not in splits:
        raise DataError(f"{name} has no split {split!r}; use one of {', '.join(splits)}")
    where = str(root)
    try:
        if download:
            root.mkdir(parents=True, exist_ok=True)
        return _factory(name, split)(where, download)
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - torchvision raises RuntimeError, URLError, ...
        reason = (str(err).splitlines() or [type(err).__name__])[0][:160]
        if download:
            raise DataError(f"could not download {name} into {where} ({reason}); check the "
                            "internet connection, or put the files there yourself and drop "
                            "download=True (--download)") from err
        raise DataError(f"{name} files are missing or damaged in {where} ({reason}); pass "
                        "download=True (--download on the command line; needs internet), or "
                        "put the files there, or choose another root") from err


def celeba_files(dataset: Dataset[Any]) -> list[Path]:
    """The image files of a torchvision CelebA dataset, to decode them like a folder.

    Args:
        dataset: A ``torchvision.datasets.CelebA``.

    Returns:
        Absolute paths of its JPEG files, in dataset order.

    Example:
        >>> celeba_files(open_standard("celeba", "all", root, download=False))  # doctest: +SKIP
    """
    folder = Path(dataset.root) / dataset.base_folder / "img_align_celeba"
    return [folder / name for name in dataset.filename]


def standard_images(dataset: Dataset[Any]) -> Callable[[int], Image.Image]:
    """A function returning the PIL image at an index of a torchvision dataset.

    Args:
        dataset: A torchvision dataset whose items are ``(image, target)``.

    Returns:
        ``index -> PIL image``.

    Example:
        >>> mnist = open_standard("mnist", "train", root, download=False)  # doctest: +SKIP
        >>> standard_images(mnist)(0).size  # doctest: +SKIP
        (28, 28)
    """
    def get(index: int) -> Image.Image:
        item = dataset[index]
        image = item[0] if isinstance(item, tuple) else item
        if not isinstance(image, Image.Image):
            raise TypeError(f"expected a PIL image from {type(dataset).__name__}, "
                            f"got {type(image).__name__}")
        return image

    return get


def standard_root(root: str | os.PathLike[str] | None, cache_dir: Path) -> Path:
    """Where a standard dataset's files live.

    Args:
        root: The user's choice, or ``None``.
        cache_dir: The gankit cache directory.

    Returns:
        ``root`` (absolute) or ``cache_dir / "datasets"``.

    Example:
        >>> standard_root(None, Path("/c"))
        PosixPath('/c/datasets')
    """
    return Path(root).expanduser().resolve() if root is not None else cache_dir / "datasets"


def standard_targets(dataset: Dataset[Any], count: int) -> tuple[torch.Tensor, list[str]] | None:
    """The class labels (and class names) of the first ``count`` items of a torchvision dataset.

    Read from the dataset's ``targets`` (CIFAR, MNIST, Fashion-MNIST) or ``labels`` (SVHN,
    STL-10) without decoding any image; class names from ``classes`` when it has them.

    Args:
        dataset: A torchvision dataset.
        count: How many items.

    Returns:
        ``(labels, class names)``, or None for a dataset without class labels (CelebA's
        attributes and LSUN are not classes).
    """
    for attr in ("targets", "labels"):
        values = getattr(dataset, attr, None)
        if values is None:
            continue
        labels = torch.as_tensor(values[:count] if not isinstance(values, torch.Tensor) else values[:count])
        if labels.dim() != 1 or labels.is_floating_point():
            return None
        names = [str(c) for c in getattr(dataset, "classes", None) or []]
        return labels.long(), names
    return None
