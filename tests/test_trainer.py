"""Trainer behaviour around the loop: outputs, sampling, export, checkpoints and bad input."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from PIL import Image

import gankit
from gankit import CheckpointError, Trainer, TrainingError
from gankit.presets import get_preset
from gankit.train import load_checkpoint

TINY = dict(image_size=32, base_channels=4, z_dim=8, batch_size=4, sample_grid=3)


def tiny_trainer(tmp_path=None, name="dcgan_task1", **kw):
    overrides = dict(TINY) if name == "dcgan_task1" else dict(base_channels=4, z_dim=8, batch_size=4, sample_grid=3)
    torch.manual_seed(0)
    return Trainer(get_preset(name, **overrides), device=kw.pop("device", "cpu"), progress=False,
                   out_dir=tmp_path, **kw)


def images(n=10, side=32):
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def test_fit_writes_log_grid_curve_checkpoints(tmp_path):
    t = tiny_trainer(tmp_path, log_every=2)
    t.fit(images(), epochs=2)
    assert (t.step, t.epoch, t.batch_index) == (6, 2, 0)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 7))
    assert [r["epoch"] for r in lines] == [0, 0, 0, 1, 1, 1]
    assert set(lines[0]) == {"step", "epoch", "loss_d", "loss_g", "d_real", "d_fake", "seconds"}
    assert all(0 < r["d_real"] < 1 and 0 < r["d_fake"] < 1 for r in lines)
    grid = Image.open(tmp_path / "samples" / "epoch_0002.png")
    assert grid.size == (3 * 32 + 4 * 2, 3 * 32 + 4 * 2)  # 3x3 grid, torchvision padding 2
    assert (tmp_path / "samples" / "epoch_0001.png").is_file()
    assert Image.open(tmp_path / "loss_curve.png").size[0] > 100
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 6
    # generator back in train mode after rendering the grid
    assert t.generator.training and t.discriminator.training


def test_wgan_schedule_logs_generator_loss_every_fifth_step(tmp_path):
    t = tiny_trainer(tmp_path, name="wgan_task2")
    t.fit(images(20, 64), epochs=1)  # 5 batches of 4
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss_g"] is not None for r in lines] == [False, False, False, False, True]
    assert t.g_steps == 1


def test_sample_range_seed_and_rng(tmp_path):
    t = tiny_trainer()
    rng = torch.get_rng_state()
    a = t.sample(5, seed=3)
    b = t.sample(5, seed=3)
    assert torch.equal(rng, torch.get_rng_state())
    assert a.shape == (5, 3, 32, 32) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, t.sample(5, seed=4))
    assert t.generator.training


def test_export_and_load_generator(tmp_path):
    t = tiny_trainer()
    t.train_step(images(4).float() / 127.5 - 1)
    path = t.export_generator(tmp_path / "g.safetensors")
    rng = torch.get_rng_state()
    g = gankit.load_generator(path)
    assert torch.equal(rng, torch.get_rng_state())
    z = torch.randn(3, 8)
    t.generator.eval()
    assert torch.equal(g(z), t.generator(z))
    with pytest.raises(CheckpointError, match="does not exist"):
        gankit.load_generator(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        gankit.load_generator(tmp_path / "bad.safetensors")


def test_nan_loss_stops_naming_step_and_keeps_last_good_checkpoint(tmp_path):
    t = tiny_trainer(tmp_path, log_every=1)
    t.fit(images(8), epochs=1)  # 2 good steps, checkpoint written
    ckpt = tmp_path / "checkpoints" / "last.pt"
    before = ckpt.read_bytes()
    bad = [torch.full((4, 3, 32, 32), float("nan"))]
    with pytest.raises(TrainingError, match=r"non-finite loss at step 3.*last\.pt") as info:
        t.fit(bad, epochs=3)
    assert "\n" not in str(info.value)
    assert ckpt.read_bytes() == before
    assert load_checkpoint(ckpt)["step"] == 2


def test_batch_of_one_is_skipped_with_a_warning(tmp_path):
    t = tiny_trainer()
    with pytest.warns(UserWarning, match="batch of one"):
        t.fit(images(9), epochs=1)  # batches 4, 4, 1
    assert t.step == 2 and t.epoch == 1


def test_ctrl_c_saves_a_checkpoint_and_stops_cleanly(tmp_path):
    class Interrupting:
        def __iter__(self):
            for i in range(5):
                if i == 2:
                    signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C
                yield torch.rand(4, 3, 32, 32) * 2 - 1

    t = tiny_trainer(tmp_path)
    with pytest.raises(KeyboardInterrupt, match="checkpoint saved"):
        t.fit(Interrupting(), epochs=1)
    assert t.step == 3  # the step in flight finished, then training stopped
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_checkpoint_errors_are_one_line(tmp_path):
    t = tiny_trainer(tmp_path)
    t.fit(images(8), epochs=1)
    good = tmp_path / "checkpoints" / "last.pt"
    data = good.read_bytes()
    cases = {
        "truncated.pt": data[: len(data) // 2],
        "empty.pt": b"",
        "text.pt": b"hello, not a checkpoint\n",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    torch.save({"weight": torch.zeros(2)}, tmp_path / "state_dict.pt")
    for name in [*cases, "state_dict.pt", "missing.pt"]:
        with pytest.raises(CheckpointError) as info:
            Trainer.load(tmp_path / name, device="cpu")
        assert "\n" not in str(info.value) and name in str(info.value)
    other = Trainer(get_preset("wgan_task2", base_channels=4, z_dim=8), device="cpu", progress=False)
    with pytest.raises(CheckpointError, match="preset 'dcgan_task1', not 'wgan_task2'"):
        other.resume(good)
    different = Trainer(get_preset("dcgan_task1", **{**TINY, "base_channels": 8}), device="cpu", progress=False)
    with pytest.raises(CheckpointError, match="does not fit"):
        different.resume(good)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    t = tiny_trainer(tmp_path)
    path = t.save(tmp_path / "ckpt.pt")
    before = path.read_bytes()

    def crash(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    t.train_step(torch.rand(4, 3, 32, 32))
    with pytest.raises(OSError, match="disk full"):
        t.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_fast_mode_bf16_runs_and_uses_logits(device):
    t = tiny_trainer(precision="bf16", device=device)
    out = t.train_step(torch.rand(4, 3, 32, 32) * 2 - 1)
    assert t.objective.name == "bce_logits"
    assert torch.isfinite(out["loss_d"]) and torch.isfinite(out["loss_g"])
    assert 0 < float(out["d_real"]) < 1


def test_max_steps_on_the_last_batch_closes_the_epoch(tmp_path):
    t = tiny_trainer(tmp_path)
    t.fit(images(8), epochs=5, max_steps=2)  # two batches of 4: the epoch is complete
    assert (t.step, t.epoch, t.batch_index) == (2, 1, 0)
    assert (tmp_path / "samples" / "epoch_0001.png").is_file()
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 1


def test_training_logs_a_falling_fid_and_a_metric_curve(tmp_path):
    from gankit.data import load_images

    faces = load_images("toy-faces", num_images=512, image_size=32, progress=False)
    torch.manual_seed(0)
    recipe = get_preset("dcgan_task1", image_size=32, base_channels=8, z_dim=16, batch_size=32,
                        sample_grid=3, d_lr=2e-4, g_lr=2e-4)
    t = Trainer(recipe, device="cpu", progress=False, out_dir=tmp_path, eval_every=40,
                eval_samples=256, eval_metrics=("fid", "kid"))
    t.fit(faces, max_steps=80)
    fids = [r["fid"] for r in t.eval_history]
    assert [r["step"] for r in t.eval_history] == [0, 40, 80]
    assert fids[-1] < 0.7 * fids[0], fids
    assert all(r["extractor"].startswith("tiny") and r["comparable_to_published"] is False
               for r in t.eval_history)
    logged = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["fid"] for r in logged if r.get("kind") == "eval"] == fids
    assert len([r for r in logged if "loss_d" in r]) == 80
    assert Image.open(tmp_path / "metric_curve.png").size[0] > 100
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["eval_history"][-1]["fid"] == fids[-1]


def test_evaluation_leaves_the_training_stream_alone():
    images_u8 = images(16)
    a = tiny_trainer()
    a.fit(images_u8, max_steps=3)
    b = tiny_trainer(eval_every=1, eval_samples=8)
    b.fit(images_u8, max_steps=3)
    assert len(b.eval_history) == 4
    for (k, va), vb in zip(a.generator.state_dict().items(), b.generator.state_dict().values()):
        assert torch.equal(va, vb), k


def test_fit_in_chunks_within_an_epoch_equals_one_fit():
    """fit(max_steps=k) called again mid-epoch keeps the epoch's order ("dataloader" shuffle)."""
    from gankit.presets import dcgan_task1

    images = torch.rand(40, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    settings = dict(image_size=32, base_channels=8, batch_size=8)  # 5 batches per epoch
    torch.manual_seed(0)
    whole = Trainer(dcgan_task1(**settings), device="cpu", progress=False).fit(images, max_steps=7)
    torch.manual_seed(0)
    chunks = Trainer(dcgan_task1(**settings), device="cpu", progress=False)
    for k in (2, 3, 6, 7):
        chunks.fit(images, max_steps=k)
    assert all(torch.equal(a, b) for a, b in zip(whole.generator.state_dict().values(),
                                                 chunks.generator.state_dict().values()))
