"""Loggers: the public interface, and TensorBoard event files read back with tensorboard's reader."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

import gankit
from gankit.cli import main
from gankit.errors import ConfigError
from gankit.train import Logger, TensorBoardLogger

HAS_TB = importlib.util.find_spec("tensorboard") is not None


def tiny_trainer(tmp_path, **options):
    torch.manual_seed(0)
    recipe = gankit.get_preset("dcgan_task1", image_size=16, base_channels=2, batch_size=8, sample_grid=2)
    return gankit.Trainer(recipe, device="cpu", out_dir=tmp_path / "run", progress=False, log_every=1, **options)


class Recorder(Logger):
    def __init__(self):
        self.calls = []

    def log_hparams(self, hparams):
        self.calls.append(("hparams", dict(hparams)))

    def log_metrics(self, metrics, step):
        self.calls.append(("metrics", step, dict(metrics)))

    def log_image(self, tag, image, step):
        self.calls.append(("image", tag, tuple(image.shape), step, float(image.min()), float(image.max())))

    def close(self):
        self.calls.append(("close",))


def test_a_logger_hears_every_logged_value_grid_and_setting(tmp_path):
    rec = Recorder()
    trainer = tiny_trainer(tmp_path, loggers=[rec])
    trainer.fit("toy-faces", max_steps=3, num_images=16)
    kinds = [c[0] for c in rec.calls]
    assert kinds[0] == "hparams" and kinds[-1] == "close"
    hparams = rec.calls[0][1]
    assert hparams["preset"] == "dcgan_task1" and hparams["batch_size"] == 8 and hparams["image_size"] == 16
    steps = [c[1] for c in rec.calls if c[0] == "metrics"]
    assert steps == [1, 2, 3]
    logged = [c[2] for c in rec.calls if c[0] == "metrics"]
    # the same values as metrics.jsonl / history, by name
    for values, hist in zip(logged, trainer.history):
        for name, value in hist.items():
            if name != "step":
                assert values[name] == value or (math.isnan(values[name]) and math.isnan(value))
    images = [c for c in rec.calls if c[0] == "image"]
    assert images and all(c[1] == "samples" and c[2][0] == 3 and 0 <= c[4] and c[5] <= 1 for c in images)


def test_loggers_must_be_loggers(tmp_path):
    with pytest.raises(ConfigError, match="Logger"):
        tiny_trainer(tmp_path, loggers=[object()])


@pytest.mark.skipif(not HAS_TB, reason="tensorboard is not installed")
def test_tensorboard_event_files_hold_scalars_grids_hparams_and_evaluations(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    trainer = tiny_trainer(tmp_path, loggers=[TensorBoardLogger()], eval_every=2, eval_samples=16,
                           eval_metrics=("swd",))
    trainer.fit("toy-faces", max_steps=4, num_images=16)
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    logged = {k for rec in trainer.history for k in rec if k != "step"}
    assert logged <= set(tags["scalars"]), (logged, tags["scalars"])
    assert [e.step for e in acc.Scalars("loss_d")] == [1, 2, 3, 4]
    assert [e.value for e in acc.Scalars("loss_d")] == pytest.approx([r["loss_d"] for r in trainer.history])
    assert "eval/swd" in tags["scalars"]
    assert [e.step for e in acc.Scalars("eval/swd")] == [r["step"] for r in trainer.eval_history]
    assert "samples" in tags["images"] and acc.Images("samples")[-1].width > 0
    content = acc.PluginTagToContent("hparams")
    start = [plugin_data_pb2.HParamsPluginData.FromString(v).session_start_info for v in content.values()]
    names = {k for info in start for k in info.hparams}
    assert {"preset", "batch_size", "loss", "g_optimizer", "precision"} <= names


@pytest.mark.skipif(not HAS_TB, reason="tensorboard is not installed")
def test_gankit_train_tensorboard_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["train", "dcgan_task1", "--set", "image_size=16", "--set", "base_channels=2", "--num-images", "16",
               "--max-steps", "1", "--no-progress", "--out", "run", "--tensorboard"])
    assert rc == 0
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_tensorboard_logger_without_a_folder_is_a_one_line_error(tmp_path):
    if not HAS_TB:
        with pytest.raises(ConfigError, match="pip install"):
            TensorBoardLogger()
        return
    trainer = gankit.Trainer(gankit.get_preset("dcgan_task1", image_size=16, base_channels=2), device="cpu",
                             progress=False, loggers=[TensorBoardLogger()])
    with pytest.raises(ConfigError, match="log_dir"):
        trainer.fit(torch.zeros(4, 3, 16, 16), max_steps=1)
