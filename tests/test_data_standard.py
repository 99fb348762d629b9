"""Standard torchvision datasets by name (offline: a tiny fake MNIST on disk)."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets, transforms

import gankit.data.sources as sources
from gankit.data import is_standard_name, load_images
from gankit.data.standard import parse_name
from gankit.errors import DataError


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path) -> Path:
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 5), ("t10k", 3)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (count,)))
    return tmp_path / "data"


@pytest.mark.parametrize("channels", [1, 3])
def test_mnist_equals_torchvision_pipeline(mnist_root, tmp_path, channels):
    dataset = load_images("mnist", root=mnist_root, image_size=16, channels=channels,
                          cache_dir=tmp_path / "cache", progress=False)
    pipeline = transforms.Compose([
        transforms.Lambda(lambda img: img.convert("RGB" if channels == 3 else "L")),
        transforms.Resize((16, 16)), transforms.ToTensor(),
        transforms.Normalize((0.5,) * channels, (0.5,) * channels)])
    reference = datasets.MNIST(str(mnist_root), train=True, transform=pipeline)
    assert len(dataset) == 5
    for i in range(5):
        assert torch.equal(dataset[i], reference[i][0])


def test_split_and_cache_reuse(mnist_root, tmp_path, monkeypatch):
    calls = []
    original = sources.prepare_pil
    monkeypatch.setattr(sources, "prepare_pil",
                        lambda *args: calls.append(1) or original(*args))
    test = load_images("mnist:test", root=mnist_root, image_size=8,
                       cache_dir=tmp_path / "cache", progress=False)
    again = load_images("mnist:test", root=mnist_root, image_size=8,
                        cache_dir=tmp_path / "cache", progress=False)
    assert len(test) == 3 and len(calls) == 3 and torch.equal(test.images, again.images)
    assert len(load_images("mnist", root=mnist_root, num_images=2, image_size=8,
                           cache_dir=tmp_path / "cache", progress=False)) == 2


def test_missing_files_without_download(tmp_path):
    root = tmp_path / "empty_root"
    with pytest.raises(DataError, match="download=True") as info:
        load_images("cifar10", root=root, progress=False)
    assert str(root) in str(info.value) and "\n" not in str(info.value)


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    def offline(self):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(datasets.MNIST, "download", offline)
    root = tmp_path / "offline"
    with pytest.raises(DataError, match="could not download mnist") as info:
        load_images("mnist", root=root, download=True, progress=False)
    assert str(root) in str(info.value) and "\n" not in str(info.value)


def test_unknown_split(tmp_path):
    with pytest.raises(DataError, match="no split 'dev'"):
        load_images("cifar10:dev", root=tmp_path, progress=False)


@pytest.mark.skipif(importlib.util.find_spec("lmdb") is not None, reason="lmdb is installed")
def test_lsun_needs_lmdb(tmp_path):
    with pytest.raises(DataError, match="pip install lmdb"):
        load_images("lsun:church_outdoor", root=tmp_path, progress=False)


def test_names():
    assert parse_name("MNIST") == ("mnist", "train")
    assert parse_name("celeba") == ("celeba", "all")
    assert parse_name("lsun:church_outdoor") == ("lsun", "church_outdoor")
    assert is_standard_name("cifar10:test") and not is_standard_name("my_faces")


def test_an_existing_folder_named_like_a_dataset_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist").mkdir()
    Image.new("RGB", (3, 3)).save(tmp_path / "mnist" / "x.png")
    assert load_images("mnist", image_size=4, progress=False).files == ["x.png"]
