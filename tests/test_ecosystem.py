"""Recipe files, Hub-style and ONNX export, latent interpolation (issue 18)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gankit
from gankit.cli import main
from gankit.errors import CheckpointError, ConfigError
from gankit.presets import RecipeSettings
from gankit.recipefile import parse_recipe_toml, recipe_toml
from gankit.train import load_generator
from gankit.train.callbacks import tensor_digest
from gankit.train.export import generate
from gankit.train.interpolate import interpolate, interpolation_latents

TINY = ["--set", "image_size=16", "--set", "base_channels=2"]
DATA = ["--num-images", "16", "--max-steps", "2", "--no-progress"]
HAS_HUB = importlib.util.find_spec("huggingface_hub") is not None
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None


def gankit_cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def ckpt(tmp_path, capsys):
    rc, _, err = gankit_cli(capsys, "train", "dcgan_task1", *TINY, *DATA, "--out", tmp_path / "run")
    assert rc == 0, err
    return tmp_path / "run" / "checkpoints" / "last.pt"


# -- recipe files -------------------------------------------------------------------------


def test_recipe_file_lists_every_setting_with_a_comment():
    text = recipe_toml("wgan_task2")
    lines = text.splitlines()
    for name in RecipeSettings.field_names():  # also settings added later: generated from the fields
        i = next(i for i, line in enumerate(lines) if line.startswith(f"{name} = "))
        assert lines[i - 1].startswith(f"# {name} ("), lines[i - 1]
    preset, settings = parse_recipe_toml(text, "f.toml")
    assert preset == "wgan_task2" and settings["clip_value"] == 0.01 and settings["g_lr"] is None


def test_config_then_train_with_the_file_is_bitwise_the_plain_run(tmp_path, capsys):
    rc, text, _ = gankit_cli(capsys, "config", "dcgan_task1", *TINY)
    assert rc == 0
    (tmp_path / "run.toml").write_text(text)
    assert gankit_cli(capsys, "train", "--config", tmp_path / "run.toml", *DATA, "--out", tmp_path / "a")[0] == 0
    assert gankit_cli(capsys, "train", "dcgan_task1", *TINY, *DATA, "--out", tmp_path / "b")[0] == 0
    a = torch.load(tmp_path / "a/checkpoints/last.pt", weights_only=True)
    b = torch.load(tmp_path / "b/checkpoints/last.pt", weights_only=True)
    assert a["overrides"] == b["overrides"] == {"image_size": 16, "base_channels": 2}
    for side in ("generator", "discriminator"):
        assert all(torch.equal(a[side][k], b[side][k]) for k in b[side])
    assert a["history"].keys() == b["history"].keys()
    for k, v in b["history"].items():
        assert torch.equal(a["history"][k], v) if isinstance(v, torch.Tensor) else a["history"][k] == v


def test_precedence_preset_then_file_then_flags(tmp_path, capsys):
    rc, text, _ = gankit_cli(capsys, "config", "dcgan_task1", *TINY, "--set", "batch_size=8", "--set", "epochs=3")
    (tmp_path / "run.toml").write_text(text)
    assert gankit_cli(capsys, "train", "--config", tmp_path / "run.toml", "--set", "batch_size=4", *DATA,
                      "--out", tmp_path / "run")[0] == 0
    rc, printed, _ = gankit_cli(capsys, "config", tmp_path / "run/checkpoints/last.pt")
    assert rc == 0
    _, settings = parse_recipe_toml(printed, "printed")
    assert settings["batch_size"] == 4  # the flag beats the file
    assert settings["epochs"] == 3  # the file beats the preset
    assert settings["z_dim"] == 100  # the preset's
    assert "(preset: 64)" in printed  # batch_size differs from the preset's


@pytest.mark.parametrize("body, message", [
    ('preset = "dcgan_task1"\n[settings]\nbatch_sise = 3\n', "run.toml line 3: unknown setting 'batch_sise'; did you mean batch_size?"),
    ('preset = "dcgan_task1"\n\n[settings]\nz_dim = 100\nbatch_size = "x"\n', "run.toml line 5: setting batch_size expects int, got 'x'"),
    ('preset = "dcgan_task1"\n[settings]\nspectral_norm = 1\n', "line 3: setting spectral_norm expects bool"),
    ('preset = "dcgan_task1"\nlearning = 3\n', "run.toml line 2: unknown key 'learning'"),
    ('preset = "dcgan_task1"\n[settings\n', "not valid TOML"),
    ('preset = "dcgan_task1"\n[settings]\nbatch_size = 0\n', "run.toml: batch_size must be a positive integer"),
])
def test_recipe_file_errors_are_one_line_naming_key_file_and_line(tmp_path, capsys, monkeypatch, body, message):
    monkeypatch.chdir(tmp_path)
    Path("run.toml").write_text(body)
    rc, _, err = gankit_cli(capsys, "train", "--config", "run.toml", *DATA)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_file_of_another_preset_is_refused(tmp_path, capsys):
    (tmp_path / "run.toml").write_text(recipe_toml("wgan_task2"))
    rc, _, err = gankit_cli(capsys, "train", "dcgan_task1", "--config", tmp_path / "run.toml", *DATA)
    assert rc == 2 and "is a recipe of 'wgan_task2'" in err


# -- hub-style export -----------------------------------------------------------------------


def test_hub_export_folder_and_load_generator_reproduce_the_checkpoint_bitwise(ckpt, tmp_path, capsys):
    rc, out, err = gankit_cli(capsys, "export", ckpt, "--format", "hub", tmp_path / "hub")
    assert rc == 0, err
    folder = tmp_path / "hub"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors", "samples.png"]
    config = json.loads((folder / "config.json").read_text())
    assert config["preset"] == "dcgan_task1" and config["overrides"] == {"image_size": 16, "base_channels": 2}
    assert config["z_dim"] == 100 and config["image_shape"] == [3, 16, 16] and config["step"] == 2
    assert config["gankit_version"] == gankit.__version__ and "num_classes" in config
    card = (folder / "README.md").read_text()
    assert "library_name: gankit" in card and "## Metrics" in card and "![samples](samples.png)" in card
    z = torch.randn(7, 100, generator=torch.Generator().manual_seed(5))
    assert torch.equal(generate(load_generator(folder), z), generate(load_generator(ckpt), z))
    # a second export into the folder needs --overwrite; a foreign folder is refused
    assert gankit_cli(capsys, "export", ckpt, "--format", "hub", folder)[0] == 2
    assert gankit_cli(capsys, "export", ckpt, "--format", "hub", folder, "--overwrite")[0] == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("hi")
    rc, _, err = gankit_cli(capsys, "export", ckpt, "--format", "hub", tmp_path / "mine")
    assert rc == 2 and "not a gankit hub export" in err and (tmp_path / "mine/notes.txt").read_text() == "hi"


def test_hub_card_states_the_metrics_with_their_provenance(tmp_path, capsys):
    rc, _, err = gankit_cli(capsys, "train", "dcgan_task1", *TINY, *DATA, "--out", tmp_path / "run",
                            "--eval-every", "2", "--eval-samples", "16", "--eval-metrics", "swd")
    assert rc == 0, err
    assert gankit_cli(capsys, "export", tmp_path / "run/checkpoints/last.pt", "--format", "hub", tmp_path / "hub")[0] == 0
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "swd = " in card and "extractor `" in card and "16 generated vs 16 reference images" in card


@pytest.mark.skipif(not HAS_HUB, reason="huggingface_hub is not installed")
def test_a_hub_repo_id_resolves_through_the_offline_cache(ckpt, tmp_path, capsys):
    assert gankit_cli(capsys, "export", ckpt, "--format", "hub", tmp_path / "hub")[0] == 0
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf-cache" / "models--me--tiny-gan"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tmp_path / "hub", repo / "snapshots" / commit)
    # the same weights (outputs could differ in the last bit with another thread count)
    weights = "torch.cat([v.flatten().double() for v in g.state_dict().values()])"
    expected = tensor_digest(eval(weights, {"torch": torch, "g": load_generator(tmp_path / "hub")}))
    code = ("import torch, gankit; from gankit.train.callbacks import tensor_digest; "
            f"g = gankit.load_generator('me/tiny-gan'); print(tensor_digest({weights}))")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hf-cache"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected
    # not in the cache: one clear error, nothing downloaded
    code = "import gankit; gankit.load_generator('me/other-gan')"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "not in the Hugging Face cache" in done.stderr


def test_a_folder_that_is_no_hub_export_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        load_generator(tmp_path / "empty")


# -- ONNX ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime is not installed")
def test_onnx_export_matches_pytorch_within_1e_5_at_batch_1_and_7(ckpt, tmp_path, capsys):
    import onnxruntime as ort

    rc, out, err = gankit_cli(capsys, "export", ckpt, "--format", "onnx", tmp_path / "gen.onnx")
    assert rc == 0, err
    session = ort.InferenceSession(str(tmp_path / "gen.onnx"), providers=["CPUExecutionProvider"])
    g = load_generator(ckpt)
    for batch in (1, 7):
        z = torch.randn(batch, 100, generator=torch.Generator().manual_seed(batch))
        (images,) = session.run(["images"], {"z": z.numpy()})
        assert images.shape == (batch, 3, 16, 16)
        torch.testing.assert_close(torch.from_numpy(images), generate(g, z), rtol=0, atol=1e-5)
    assert gankit_cli(capsys, "export", ckpt, "--format", "onnx", tmp_path / "gen.onnx")[0] == 2  # exists


# -- interpolation ------------------------------------------------------------------------------


def test_interpolate_writes_png_and_gif_and_its_ends_are_the_plain_samples(ckpt, tmp_path, capsys):
    from PIL import Image

    rc, out, err = gankit_cli(capsys, "interpolate", ckpt, "--out", tmp_path / "interp.png", "--rows", "2",
                              "--steps", "5", "--seed", "3", "--method", "both")
    assert rc == 0, err
    assert Image.open(tmp_path / "interp.png").size == (5 * 18 + 2, 4 * 18 + 2)  # 5 columns, 4 rows of 16 px
    gif = Image.open(tmp_path / "interp.gif")
    assert gif.format == "GIF" and gif.size == (2 * 18 + 2, 2 * 18 + 2)  # 4 paths side by side, 2x2
    g = load_generator(ckpt)
    images = interpolate(g, rows=2, steps=5, seed=3)
    plain = ((generate(g, torch.randn(4, 100, generator=torch.Generator().manual_seed(3))) + 1) / 2).clamp(0, 1)
    ends = images.reshape(2, 5, 3, 16, 16)[:, [0, -1]].reshape(4, 3, 16, 16)
    torch.testing.assert_close(ends, plain, rtol=0, atol=1e-6)
    z = interpolation_latents(100, rows=2, steps=5, seed=3, method="slerp").reshape(2, 5, 100)
    assert torch.allclose(z.norm(dim=-1)[:, 1:-1], z.norm(dim=-1)[:, :1], rtol=0.2)  # slerp keeps norms


def test_trainer_interpolate_beside_sample(tmp_path):
    torch.manual_seed(0)
    trainer = gankit.Trainer(gankit.get_preset("dcgan_task1", image_size=16, base_channels=2), device="cpu",
                             progress=False)
    path = trainer.interpolate(rows=1, steps=4, seed=9, method="lerp")
    assert path.shape == (4, 3, 16, 16)
    torch.testing.assert_close(path[[0, -1]], trainer.sample(2, seed=9), rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match="method"):
        trainer.interpolate(method="spline")


# -- data conveniences ----------------------------------------------------------------------------


def test_toy_faces_are_cached_like_folders(tmp_path):
    from gankit.data import load_images

    first = load_images("toy-faces", image_size=16, num_images=40, cache_dir=tmp_path / "cache")
    files = list((tmp_path / "cache").rglob("*"))
    assert any(p.is_file() for p in files), "toy-faces wrote no cache file"
    again = load_images("toy-faces", image_size=16, num_images=40, cache_dir=tmp_path / "cache")
    assert torch.equal(first.images, again.images)
    fresh = load_images("toy-faces", image_size=16, num_images=40, use_cache=False)
    assert torch.equal(first.images, fresh.images)  # the cache holds exactly what is drawn


def test_an_unknown_dataset_name_lists_the_valid_ones():
    from gankit.data import load_images
    from gankit.errors import DataError

    with pytest.raises(DataError, match=r"unknown dataset 'cifar11'.*toy-faces, cifar10, .*lsun:CATEGORY"):
        load_images("cifar11")


def test_fit_num_images_and_data_root(tmp_path, capsys):
    torch.manual_seed(0)
    trainer = gankit.Trainer(gankit.get_preset("dcgan_task1", image_size=16, base_channels=2, batch_size=8),
                             device="cpu", progress=False)
    trainer.fit("toy-faces", epochs=1, num_images=24)
    assert trainer.step == 3  # 24 images in batches of 8
    with pytest.raises(ConfigError, match="num_images"):
        trainer.fit(torch.zeros(8, 3, 16, 16), epochs=2, num_images=4)
    rc, _, err = gankit_cli(capsys, "train", "dcgan_task1", "--data", "mnist", "--data-root", tmp_path / "my-data-root",
                            *TINY, *DATA, "--out", tmp_path / "run")
    assert rc == 2 and "my-data-root" in err, err
