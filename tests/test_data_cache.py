"""The decode-once cache: reused while nothing changed, rebuilt otherwise, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gankit.data.cache as cache_module
import gankit.data.folder as folder_module
from gankit.data import load_images


def write_image(path: Path, value: int, size: tuple[int, int] = (10, 7)) -> None:
    rng = np.random.default_rng(value)
    array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    array[0, 0] = value
    Image.fromarray(array).save(path)


@pytest.fixture
def decodes(monkeypatch) -> list[Path]:
    """Records every file the loader decodes."""
    seen: list[Path] = []
    original = folder_module.decode_image

    def counting(path, spec, transform=None):
        seen.append(Path(path))
        return original(path, spec, transform)

    monkeypatch.setattr(folder_module, "decode_image", counting)
    return seen


@pytest.fixture
def folder(tmp_path) -> Path:
    images = tmp_path / "faces"
    images.mkdir()
    for i in range(3):
        write_image(images / f"{i}.png", i)
    return images


def load(folder: Path, cache: Path, **kwargs):
    return load_images(folder, image_size=8, cache_dir=cache, progress=False, **kwargs)


def fresh(folder: Path, **kwargs) -> torch.Tensor:
    return load_images(folder, image_size=8, use_cache=False, progress=False, **kwargs).images


def test_second_load_uses_the_cache(folder, tmp_path, decodes):
    first = load(folder, tmp_path / "cache")
    assert len(decodes) == 3
    second = load(folder, tmp_path / "cache")
    assert len(decodes) == 3  # nothing decoded again
    assert torch.equal(first.images, second.images)
    assert second.files == ["0.png", "1.png", "2.png"]
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 1


def test_added_file_rebuilds(folder, tmp_path, decodes):
    load(folder, tmp_path / "cache")
    write_image(folder / "3.png", 3)
    dataset = load(folder, tmp_path / "cache")
    assert len(decodes) == 3 + 4 and len(dataset) == 4
    assert torch.equal(dataset.images, fresh(folder))


def test_removed_file_rebuilds(folder, tmp_path, decodes):
    load(folder, tmp_path / "cache")
    (folder / "1.png").unlink()
    dataset = load(folder, tmp_path / "cache")
    assert len(decodes) == 3 + 2 and dataset.files == ["0.png", "2.png"]
    assert torch.equal(dataset.images, fresh(folder))


def test_modified_file_rebuilds_and_is_never_stale(folder, tmp_path, decodes):
    old = load(folder, tmp_path / "cache").images.clone()
    stamp = (folder / "2.png").stat().st_mtime_ns
    write_image(folder / "2.png", 99)
    os.utime(folder / "2.png", ns=(stamp + 10**9, stamp + 10**9))
    dataset = load(folder, tmp_path / "cache")
    assert len(decodes) == 6
    assert torch.equal(dataset.images, fresh(folder))
    assert not torch.equal(dataset.images[2], old[2]) and torch.equal(dataset.images[:2], old[:2])


def test_mtime_change_alone_rebuilds(folder, tmp_path, decodes):
    load(folder, tmp_path / "cache")
    stamp = (folder / "0.png").stat().st_mtime_ns
    os.utime(folder / "0.png", ns=(stamp + 5 * 10**9, stamp + 5 * 10**9))
    load(folder, tmp_path / "cache")
    assert len(decodes) == 6
    load(folder, tmp_path / "cache")
    assert len(decodes) == 6


def test_transform_parameters_are_part_of_the_key(folder, tmp_path, decodes):
    small = load(folder, tmp_path / "cache")
    grey = load(folder, tmp_path / "cache", channels=1)
    cropped = load(folder, tmp_path / "cache", center_crop=True)
    assert len(decodes) == 9
    assert grey.images.shape == (3, 1, 8, 8)
    assert not torch.equal(small.images, cropped.images)
    for kwargs in ({}, {"channels": 1}, {"center_crop": True}):
        load(folder, tmp_path / "cache", **kwargs)
    assert len(decodes) == 9


def test_environment_variable_and_argument_choose_the_directory(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path / "from_env"))
    load_images(folder, image_size=8, progress=False)
    assert list((tmp_path / "from_env").rglob("*.safetensors"))
    load(folder, tmp_path / "from_arg")
    assert list((tmp_path / "from_arg").rglob("*.safetensors"))


def test_use_cache_false_writes_nothing(folder, tmp_path, decodes):
    load(folder, tmp_path / "cache", use_cache=False)
    load(folder, tmp_path / "cache", use_cache=False)
    assert len(decodes) == 6 and not (tmp_path / "cache").exists()


def test_failed_write_leaves_no_partial_file(folder, tmp_path, monkeypatch, decodes):
    def broken_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(cache_module, "save_file", broken_save)
    with pytest.warns(UserWarning, match="could not write the image cache"):
        dataset = load(folder, tmp_path / "cache")
    assert len(dataset) == 3
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_damaged_cache_file_is_rebuilt(folder, tmp_path, decodes):
    expected = load(folder, tmp_path / "cache").images
    (cache_file,) = (tmp_path / "cache").rglob("*.safetensors")
    cache_file.write_bytes(cache_file.read_bytes()[:50])
    dataset = load(folder, tmp_path / "cache")
    assert len(decodes) == 6 and torch.equal(dataset.images, expected)
    assert [p.name for p in cache_file.parent.iterdir()] == [cache_file.name]


def test_progress_bar_while_building(folder, tmp_path, capsys):
    load_images(folder, image_size=8, cache_dir=tmp_path / "cache")
    assert "decoding faces" in capsys.readouterr().err
