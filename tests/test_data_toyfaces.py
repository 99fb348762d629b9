"""The built-in toy-faces dataset: deterministic, varied, normalised, and only a name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.data import generate_toy_faces, load_images, rgb_to_gray_uint8
from gankit.data.toyfaces import BLOCK
from gankit.errors import DataError


def test_same_seed_same_images():
    assert torch.equal(generate_toy_faces(40, 32, seed=7), generate_toy_faces(40, 32, seed=7))


def test_different_seeds_differ():
    a, b = generate_toy_faces(16, 32, seed=0), generate_toy_faces(16, 32, seed=1)
    assert all(not torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_images_within_a_batch_differ():
    faces = generate_toy_faces(32, 32, seed=3).flatten(1)
    assert len({tuple(row.tolist()) for row in faces}) == 32


def test_image_depends_only_on_seed_and_index():
    many = generate_toy_faces(BLOCK + 20, 16, seed=5)
    assert torch.equal(generate_toy_faces(10, 16, seed=5), many[:10])
    assert torch.equal(generate_toy_faces(BLOCK + 3, 16, seed=5), many[:BLOCK + 3])


@pytest.mark.parametrize("size", [1, 17, 64])
def test_any_size_and_normalised_range(size):
    dataset = load_images("toy-faces", num_images=6, image_size=size, seed=2)
    assert dataset.images.shape == (6, 3, size, size) and len(dataset) == 6
    item = dataset[5]
    assert item.dtype == torch.float32 and item.min() >= -1 and item.max() <= 1
    if size > 1:
        assert item.min() < 0 < item.max()


def test_default_count_is_ten_thousand(monkeypatch):
    import gankit.data.sources as sources

    calls = []
    monkeypatch.setattr(sources, "generate_toy_faces",
                        lambda n, size, seed, channels: calls.append(n)
                        or torch.zeros(1, channels, size, size, dtype=torch.uint8))
    load_images("toy-faces")
    assert calls == [10_000]


def test_grey_is_pil_luma_of_rgb():
    rgb = generate_toy_faces(4, 24, seed=9)
    grey = load_images("toy-faces", num_images=4, image_size=24, seed=9, channels=1).images
    assert torch.equal(grey, rgb_to_gray_uint8(rgb))
    pil = np.asarray(Image.fromarray(rgb[0].permute(1, 2, 0).numpy()).convert("L"))
    assert np.array_equal(grey[0, 0].numpy(), pil)


def test_faces_have_structure():
    # The face is drawn in the middle: across many images the centre pixels are skin-like
    # and vary less than the corners, which are random background colours.
    faces = generate_toy_faces(256, 32, seed=0).float()
    centre = faces[:, :, 14:18, 14:18].mean((2, 3))
    corner = faces[:, :, :3, :3].mean((2, 3))
    assert centre.std(0).mean() < corner.std(0).mean()
    assert (centre[:, 0] > centre[:, 2]).float().mean() > 0.8  # skin: more red than blue


def test_does_not_touch_the_global_rng():
    state = torch.get_rng_state()
    generate_toy_faces(8, 16, seed=1)
    assert torch.equal(state, torch.get_rng_state())


def test_an_existing_path_named_toy_faces_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy-faces").mkdir()
    Image.new("RGB", (5, 5), (255, 0, 0)).save(tmp_path / "toy-faces" / "only.png")
    dataset = load_images("toy-faces", image_size=8, progress=False)
    assert len(dataset) == 1 and dataset.files == ["only.png"]
    assert dataset.images[0, 0].eq(255).all()


def test_an_existing_file_named_toy_faces_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy-faces").write_text("a file")
    with pytest.raises(DataError, match="is a file"):
        load_images("toy-faces", progress=False)


def test_bad_arguments():
    with pytest.raises(ValueError):
        generate_toy_faces(4, 0)
