"""Image folders: decoding matches torchvision bitwise; bad input gives one-line DataErrors."""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps
from torchvision import transforms

from gankit.data import BatchLoader, load_images
from gankit.errors import ConfigError, DataError

# (mode, format) pairs Pillow can write; the reader sees whatever the file holds.
MODE_FORMATS = [
    ("1", "PNG"), ("1", "BMP"), ("1", "TIFF"),
    ("L", "PNG"), ("L", "JPEG"), ("L", "BMP"), ("L", "GIF"), ("L", "TIFF"), ("L", "WEBP"),
    ("LA", "PNG"), ("LA", "TIFF"), ("LA", "WEBP"),
    ("P", "PNG"), ("P", "GIF"), ("P", "BMP"), ("P", "TIFF"),
    ("RGB", "PNG"), ("RGB", "JPEG"), ("RGB", "WEBP"), ("RGB", "BMP"), ("RGB", "GIF"),
    ("RGB", "TIFF"),
    ("RGBA", "PNG"), ("RGBA", "WEBP"), ("RGBA", "TIFF"), ("RGBA", "GIF"),
    ("CMYK", "JPEG"), ("CMYK", "TIFF"),
    ("I;16", "PNG"), ("I;16", "TIFF"), ("I", "TIFF"),
]
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif",
          "TIFF": ".tiff"}


def make_image(mode: str, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A random image of the given PIL mode."""
    def u8(*shape: int) -> np.ndarray:
        return rng.integers(0, 256, (height, width, *shape), dtype=np.uint8)

    if mode == "1":
        return Image.fromarray(u8() > 127)
    if mode == "L":
        return Image.fromarray(u8())
    if mode in ("LA", "RGB", "RGBA"):
        return Image.fromarray(u8({"LA": 2, "RGB": 3, "RGBA": 4}[mode]))
    if mode == "P":
        img = Image.frombytes("P", (width, height), u8().tobytes())
        img.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
        return img
    if mode == "CMYK":
        return Image.frombytes("CMYK", (width, height), u8(4).tobytes())
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    if mode == "I":  # includes values outside 0..65535, which are clipped
        return Image.fromarray(rng.integers(-1000, 70000, (height, width), dtype=np.int32))
    raise ValueError(mode)


def reference(path: Path, size: int, channels: int = 3, center_crop: bool = False
              ) -> torch.Tensor:
    """torchvision's own pipeline on a file (16-bit images scaled to 8 bits first)."""
    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.clip(np.asarray(img).astype(np.float64), 0, 65535)
        img = Image.fromarray(np.round(values / 257).astype(np.uint8))
    img = img.convert("RGB" if channels == 3 else "L")
    sizing = [transforms.Resize(size), transforms.CenterCrop(size)] if center_crop else [
        transforms.Resize((size, size))]
    pipeline = transforms.Compose([*sizing, transforms.ToTensor(),
                                   transforms.Normalize((0.5,) * channels, (0.5,) * channels)])
    return pipeline(img)


def write_images(folder: Path, count: int, size: tuple[int, int] = (12, 9)) -> list[Path]:
    rng = np.random.default_rng(count)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i:03d}.png"
        make_image("RGB", *size, rng).save(path)
        paths.append(path)
    return paths


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file below a folder."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=st.lists(st.tuples(st.sampled_from(MODE_FORMATS), st.integers(1, 300),
                             st.integers(1, 300)), min_size=1, max_size=3),
    size=st.integers(1, 48),
    channels=st.sampled_from([3, 3, 1]),
    center_crop=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
@example(files=[(("RGB", "JPEG"), 300, 300), (("I;16", "PNG"), 300, 1),
                (("P", "GIF"), 1, 1)], size=64, channels=3, center_crop=False, seed=0)
@example(files=[(("CMYK", "JPEG"), 299, 123)], size=64, channels=1, center_crop=True, seed=1)
def test_random_images_equal_torchvision_bitwise(files, size, channels, center_crop, seed):
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        paths = []
        for i, ((mode, fmt), width, height) in enumerate(files):
            path = folder / f"{i}{SUFFIX[fmt]}"
            make_image(mode, width, height, rng).save(path, fmt)
            paths.append(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no file may be skipped
            dataset = load_images(folder, image_size=size, channels=channels,
                                  center_crop=center_crop, cache_dir=Path(tmp) / "cache",
                                  progress=False)
        expected = torch.stack([reference(p, size, channels, center_crop) for p in paths])
        assert dataset.files == [p.name for p in paths]
        assert dataset.images.shape == (len(paths), channels, size, size)
        for i in range(len(paths)):
            item = dataset[i]
            assert item.dtype == torch.float32 and item.shape == (channels, size, size)
            assert item.min() >= -1 and item.max() <= 1
            assert torch.equal(item, expected[i])
        batch = next(iter(BatchLoader(dataset, len(paths), shuffle=False)))
        assert torch.equal(batch, expected)


def test_default_recipe_is_64_rgb_and_bitwise(tmp_path):
    paths = write_images(tmp_path / "faces", 2, size=(90, 70))
    dataset = load_images(tmp_path / "faces", progress=False)
    assert dataset.images.shape == (2, 3, 64, 64)
    pipeline = transforms.Compose([transforms.Resize((64, 64)), transforms.ToTensor(),
                                   transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    for i, path in enumerate(paths):
        assert torch.equal(dataset[i], pipeline(Image.open(path).convert("RGB")))


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    folder = tmp_path / "deep"
    folder.mkdir()
    Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16)).save(folder / "mid.png")
    dataset = load_images(folder, image_size=4, progress=False, use_cache=False)
    assert int(dataset.images.unique()) == 128  # 32896 / 257; PIL's convert alone gives 255


def test_exif_orientation_is_applied(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    across = np.tile(np.linspace(0, 255, 30).astype(np.uint8), (12, 1))
    down = np.tile(np.linspace(0, 255, 12).astype(np.uint8)[:, None], (1, 30))
    img = Image.fromarray(np.stack([across, down, np.full_like(down, 90)], -1))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(folder / "rotated.jpg", exif=exif, quality=95)
    dataset = load_images(folder, image_size=8, progress=False, use_cache=False)
    assert torch.equal(dataset[0], reference(folder / "rotated.jpg", 8))
    with Image.open(folder / "rotated.jpg") as raw:
        unrotated = transforms.Compose([
            transforms.Resize((8, 8)), transforms.ToTensor(),
            transforms.Normalize((0.5,) * 3, (0.5,) * 3)])(raw.convert("RGB"))
    assert not torch.equal(dataset[0], unrotated)


def test_gif_uses_first_frame(tmp_path):
    folder = tmp_path / "anim"
    folder.mkdir()
    frames = [Image.new("RGB", (6, 6), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(folder / "a.gif", save_all=True, append_images=frames[1:], duration=100)
    dataset = load_images(folder, image_size=6, progress=False, use_cache=False)
    red = dataset.images[0, :, 3, 3].tolist()
    assert red[0] > 200 and red[2] < 50


def test_mixed_folder_loads(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i, (mode, fmt) in enumerate(MODE_FORMATS):
        make_image(mode, 5 + 7 * i, 40 - i, rng).save(folder / f"{i:02d}{SUFFIX[fmt]}", fmt)
    (folder / "notes.txt").write_text("not an image")
    dataset = load_images(folder, image_size=16, channels=1, progress=False, num_workers=1)
    assert dataset.images.shape == (len(MODE_FORMATS), 1, 16, 16)
    assert "notes.txt" not in dataset.files


def test_thousands_of_mixed_images_load(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(2)
    n = 2000
    for i in range(n):
        mode, fmt = MODE_FORMATS[i % len(MODE_FORMATS)]
        w, h = (int(x) for x in rng.integers(1, 97, 2))
        make_image(mode, w, h, rng).save(folder / f"{i:05d}{SUFFIX[fmt]}", fmt)
    (folder / "00000-broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.warns(UserWarning, match="1 "):
        dataset = load_images(folder, progress=False)
    assert dataset.images.shape == (n, 3, 64, 64) and dataset.images.dtype == torch.uint8
    assert float(dataset[n - 1].min()) >= -1 and float(dataset[n - 1].max()) <= 1


def test_recursive_reads_nested_folders_and_skips_hidden(tmp_path):
    root = tmp_path / "classes"
    write_images(root / "cats", 2)
    write_images(root / "dogs" / "small", 1)
    write_images(root / ".thumbnails", 3)
    with pytest.raises(DataError, match="recursive=True"):
        load_images(root, progress=False)
    dataset = load_images(root, recursive=True, progress=False)
    assert dataset.files == ["cats/000.png", "cats/001.png", "dogs/small/000.png"]
    assert len(load_images(f"imagefolder:{root}", progress=False)) == 3


def test_num_images_takes_the_first_files(tmp_path):
    write_images(tmp_path / "many", 5)
    dataset = load_images(tmp_path / "many", num_images=3, progress=False)
    assert dataset.files == ["000.png", "001.png", "002.png"]


def _one_line_error(source, path, *, match: str, **kwargs) -> None:
    with pytest.raises(DataError, match=match) as info:
        load_images(source, progress=False, **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_missing_path(tmp_path):
    _one_line_error(tmp_path / "nope", tmp_path / "nope", match="does not exist")


def test_path_is_a_file(tmp_path):
    write_images(tmp_path, 1)
    _one_line_error(tmp_path / "000.png", tmp_path / "000.png", match="is a file")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line_error(tmp_path / "empty", tmp_path / "empty", match="is empty")


def test_folder_without_images_lists_extensions(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    (folder / "b.csv").write_text("y")
    _one_line_error(folder, folder, match=r"no image files.*\.jpg.*\.png.*\.webp")


def test_only_corrupt_images(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    _one_line_error(folder, folder, match="none of the 1 image files")


def _write_corrupt(folder: Path) -> None:
    (folder / "zero.png").write_bytes(b"")
    (folder / "garbage.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    buffer = folder / "truncated.jpg"
    make_image("RGB", 64, 64, np.random.default_rng(0)).save(buffer, quality=90)
    buffer.write_bytes(buffer.read_bytes()[:600])


def test_corrupt_files_are_skipped_with_one_warning(tmp_path):
    folder = tmp_path / "some_bad"
    write_images(folder, 3)
    _write_corrupt(folder)
    for _ in range(2):  # the cached second load reports them again
        with pytest.warns(UserWarning) as record:
            dataset = load_images(folder, image_size=8, progress=False,
                                  cache_dir=tmp_path / "cache")
        ours = [w for w in record if "skipped" in str(w.message)]
        assert len(ours) == 1
        message = str(ours[0].message)
        assert "skipped 3 of 6" in message and str(folder) in message
        assert "zero.png" in message and "truncated.jpg" in message
        assert dataset.files == ["000.png", "001.png", "002.png"]


def test_strict_makes_corrupt_files_an_error(tmp_path):
    folder = tmp_path / "strict"
    write_images(folder, 2)
    _write_corrupt(folder)
    _one_line_error(folder, folder, match="3 of 5 image files", strict=True)
    with pytest.warns(UserWarning):
        load_images(folder, progress=False)  # builds the cache
    _one_line_error(folder, folder, match="3 of 5 image files", strict=True)  # from the cache


def test_input_files_are_never_touched(tmp_path):
    folder = tmp_path / "precious"
    write_images(folder / "sub", 3)
    _write_corrupt(folder)
    before = snapshot(folder)
    with pytest.warns(UserWarning):
        load_images(folder, recursive=True, progress=False, cache_dir=tmp_path / "cache")
    with pytest.warns(UserWarning):
        load_images(folder, recursive=True, progress=False, cache_dir=tmp_path / "cache")
    assert snapshot(folder) == before


def test_cache_inside_the_image_folder_is_refused(tmp_path):
    folder = tmp_path / "imgs"
    write_images(folder, 1)
    _one_line_error(folder, folder, match="inside the image folder",
                    cache_dir=folder / ".cache")
    assert not (folder / ".cache").exists()


@pytest.mark.parametrize("kwargs", [{"image_size": 0}, {"channels": 2}, {"num_images": 0}])
def test_bad_options_are_config_errors(tmp_path, kwargs):
    write_images(tmp_path / "ok", 1)
    with pytest.raises(ConfigError):
        load_images(tmp_path / "ok", progress=False, **kwargs)


def _can_symlink() -> bool:
    with tempfile.TemporaryDirectory() as d:
        try:
            (Path(d) / "link").symlink_to(d, target_is_directory=True)
        except OSError:
            return False
    return True


@pytest.mark.skipif(not _can_symlink(), reason="no symlinks on this file system")
def test_symlink_loop_does_not_recurse_forever(tmp_path):
    root = tmp_path / "looped"
    write_images(root / "a", 1)
    (root / "a" / "back").symlink_to(root, target_is_directory=True)
    assert load_images(root, recursive=True, progress=False).files == ["a/000.png"]
