"""Sweeps: K members trained together (MultiTrainer, ``gankit sweep``) equal K solo runs.

Tolerances: the ``loop`` engine is bitwise (every tensor of every checkpoint field
compared with ``torch.equal``). The ``vmap`` engine batches the members' networks (grouped
convolutions, batched matrix products), which sum in another order: logged losses agree to
``rtol=1e-4``; weights to ``1e-5`` under RMSprop (task two), and under Adam (task one) to
``2 * lr * steps`` -- Adam turns the rounding noise of a gradient that is zero in exact
arithmetic (a convolution bias followed by BatchNorm) into steps of size ``lr`` of either
sign, so only that bound holds there.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from gankit import ConfigError, Trainer
from gankit.errors import CheckpointError
from gankit.presets import dcgan_task1, wgan_task2
from gankit.train import MultiTrainer, extract_member, load_checkpoint, load_sweep
from gankit.train.multi import expand_grid, parse_seeds

BUILD = {"dcgan_task1": dcgan_task1, "wgan_task2": wgan_task2}
# 40 images, batches of 8: 5 steps per epoch, so 7 steps cross an epoch (a new data order);
# task two with n_critic 2: generator steps at 2, 4, 7 and clipping after every critic step.
SETTINGS = {"dcgan_task1": dict(image_size=32, base_channels=8, batch_size=8),
            "wgan_task2": dict(image_size=32, base_channels=4, batch_size=8, n_critic=2)}
STEPS = 7
SEEDS = [0, 1, 2]


def images(n: int = 40) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(123)) * 2 - 1


def solo(preset: str, seed: int, **extra) -> Trainer:
    torch.manual_seed(seed)
    t = Trainer(BUILD[preset](**{**SETTINGS[preset], **extra}), device="cpu", progress=False)
    return t.fit(images(), max_steps=STEPS)


def tensors(t: Trainer) -> dict[str, torch.Tensor]:
    out = {f"g.{k}": v for k, v in t.generator.state_dict().items()}
    out.update({f"d.{k}": v for k, v in t.discriminator.state_dict().items()})
    return out


@pytest.mark.parametrize("preset", list(BUILD))
def test_loop_members_are_bitwise_solo_runs(preset):
    sweep = MultiTrainer(preset, seeds=SEEDS, overrides=SETTINGS[preset], device="cpu", progress=False,
                         engine="loop").fit(images(), max_steps=STEPS)
    for seed, member in zip(SEEDS, sweep.trainers):
        alone = solo(preset, seed)
        assert (member.step, member.g_steps, member.epoch) == (alone.step, alone.g_steps, alone.epoch)
        assert alone.g_steps == (STEPS if preset == "dcgan_task1" else 3)
        a, b = tensors(alone), tensors(member)
        assert all(torch.equal(a[k], b[k]) for k in a), preset
        assert [r["loss_d"] for r in alone.history] == [r["loss_d"] for r in member.history]
        assert torch.equal(alone.z_sample, member.z_sample)
        for opt in ("opt_g", "opt_d"):
            sa, sb = getattr(alone, opt).state_dict()["state"], getattr(member, opt).state_dict()["state"]
            assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i] if torch.is_tensor(sa[i][k]))
    if preset == "wgan_task2":  # clipping ran on every member's own critic
        for member in sweep.trainers:
            assert max(p.abs().max().item() for p in member.discriminator.parameters()) <= 0.01


@pytest.mark.parametrize("preset", list(BUILD))
def test_vmap_members_match_solo_runs_within_fp32_rounding(preset):
    sweep = MultiTrainer(preset, seeds=SEEDS, overrides=SETTINGS[preset], device="cpu", progress=False,
                         engine="vmap").fit(images(), max_steps=STEPS)
    lr = sweep.trainers[0].opt_g.param_groups[0]["lr"]
    atol = 2 * lr * STEPS if preset == "dcgan_task1" else 1e-5
    for seed, member in zip(SEEDS, sweep.trainers):
        alone = solo(preset, seed)
        assert member.g_steps == alone.g_steps
        for key in ("loss_d", "loss_g"):
            got = [r[key] for r in member.history if r.get(key) is not None and math.isfinite(r[key])]
            want = [r[key] for r in alone.history if r.get(key) is not None and math.isfinite(r[key])]
            assert len(got) == len(want) > 0
            torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-4, atol=1e-6)
        a, b = tensors(alone), tensors(member)
        for k in a:
            if a[k].is_floating_point():
                torch.testing.assert_close(b[k], a[k], rtol=0, atol=atol, msg=f"{preset} seed {seed} {k}")
            else:
                assert torch.equal(a[k], b[k]), k


def test_vmap_refuses_members_of_other_architectures():
    with pytest.raises(ConfigError, match="engine='loop'"):
        MultiTrainer("dcgan_task1", seeds=[0], overrides=SETTINGS["dcgan_task1"],
                     grid={"base_channels": [8, 16]}, device="cpu", progress=False, engine="vmap")


def test_vmap_refuses_members_whose_steps_differ():
    sweep = MultiTrainer("wgan_task2", seeds=[0], overrides=SETTINGS["wgan_task2"], grid={"n_critic": [1, 2]},
                         device="cpu", progress=False, engine="vmap")
    with pytest.raises(ConfigError, match="same call in the same order"):
        sweep.fit(images(), max_steps=3)


def test_loop_members_may_differ_in_schedule_and_hyper_parameters():
    sweep = MultiTrainer("wgan_task2", seeds=[3], overrides=SETTINGS["wgan_task2"],
                         grid={"n_critic": [1, 2], "d_lr": [1e-4, 5e-5]}, device="cpu", progress=False)
    assert sweep.engine == "loop"
    assert [m.name for m in sweep.members] == ["seed3-n_critic=1-d_lr=0.0001", "seed3-n_critic=1-d_lr=5e-05",
                                               "seed3-n_critic=2-d_lr=0.0001", "seed3-n_critic=2-d_lr=5e-05"]
    sweep.fit(images(), max_steps=STEPS)
    assert [t.g_steps for t in sweep.trainers] == [7, 7, 3, 3]
    assert [t.opt_d.param_groups[0]["lr"] for t in sweep.trainers] == [1e-4, 5e-5, 1e-4, 5e-5]
    alone = solo("wgan_task2", 3, d_lr=5e-5)  # n_critic=2 of SETTINGS
    a, b = tensors(alone), tensors(sweep.trainers[3])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_loop_members_take_turns_on_the_sweeps_own_thread():
    """One thread, one OpenMP team: every step of every member runs on the thread that called
    fit (greenlets), one member's step after another's, in member order."""
    import threading

    from gankit.train import Callback

    class Where(Callback):
        name = "where"
        seen: list[tuple[int, int, int]] = []

        def on_step_end(self, trainer, batch, logs):
            Where.seen.append((threading.get_ident(), trainer.step, id(trainer)))

    sweep = MultiTrainer("dcgan_task1", seeds=[0, 1], overrides=SETTINGS["dcgan_task1"], device="cpu",
                         progress=False, callbacks=[Where()]).fit(images(16), max_steps=2)
    assert {ident for ident, _, _ in Where.seen} == {threading.get_ident()}
    order = [id(t) for t in sweep.trainers]
    assert [(step, who) for _, step, who in Where.seen] == [(1, order[0]), (1, order[1]), (2, order[0]), (2, order[1])]


def test_sweep_checkpoint_extracts_into_ordinary_checkpoints(tmp_path):
    MultiTrainer("dcgan_task1", seeds=[0, 1], overrides=SETTINGS["dcgan_task1"], device="cpu",
                 progress=False, out_dir=tmp_path / "sw").fit(images(), max_steps=3)
    state = load_sweep(tmp_path / "sw" / "sweep.pt")
    assert [m["name"] for m in state["members"]] == ["seed0", "seed1"]
    path = extract_member(tmp_path / "sw" / "sweep.pt", "seed1", tmp_path / "seed1.pt")
    ckpt = load_checkpoint(path)  # validated as an ordinary checkpoint
    assert ckpt["step"] == 3 and "sweep_turn" not in ckpt["callbacks"]
    # the member's own folder holds the same checkpoint a solo run writes
    own = load_checkpoint(tmp_path / "sw" / "seed1" / "checkpoints" / "last.pt")
    assert all(torch.equal(own["generator"][k], ckpt["generator"][k]) for k in own["generator"])
    # resumed alone it continues exactly as the member would have in the sweep
    resumed = Trainer.load(path, device="cpu", progress=False).fit(images(), max_steps=STEPS)
    alone = solo("dcgan_task1", 1)
    a, b = tensors(alone), tensors(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="exists"):
        extract_member(tmp_path / "sw" / "sweep.pt", 0, path)
    with pytest.raises(ConfigError, match="no member 'seed7'"):
        extract_member(tmp_path / "sw" / "sweep.pt", "seed7", tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a gankit sweep checkpoint"):
        load_sweep(path)


def test_sweep_resumes_from_its_checkpoint(tmp_path):
    kw = dict(seeds=[0, 1], overrides=SETTINGS["wgan_task2"], device="cpu", progress=False)
    MultiTrainer("wgan_task2", out_dir=tmp_path / "a", **kw).fit(images(), max_steps=3)
    sweep = MultiTrainer("wgan_task2", out_dir=tmp_path / "b", **kw).resume(tmp_path / "a" / "sweep.pt")
    sweep.fit(images(), max_steps=STEPS)
    for seed, member in zip([0, 1], sweep.trainers):
        a, b = tensors(solo("wgan_task2", seed)), tensors(member)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_summary_table_and_spread_figure(tmp_path):
    sweep = MultiTrainer("dcgan_task1", seeds=[0, 1], overrides=SETTINGS["dcgan_task1"], device="cpu",
                         progress=False, out_dir=tmp_path, eval_every=2, eval_samples=16,
                         eval_metrics=("swd",)).fit(images(), max_steps=4)
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = summary["members"]
    assert [r["member"] for r in rows] == ["seed0", "seed1"]
    assert all(r["steps"] == 4 and r["loss_d"] is not None and "swd_best" in r for r in rows)
    assert rows[0]["swd_last"] == sweep.trainers[0].eval_history[-1]["swd"]
    text = (tmp_path / "summary.txt").read_text()
    assert "mean" in text and "std" in text
    assert (tmp_path / "spread.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_refusals():
    with pytest.raises(ConfigError, match="CUDA graphs"):
        MultiTrainer("dcgan_task1", seeds=[0], cuda_graph=True, device="cpu")
    with pytest.raises(ConfigError, match="engine must be"):
        MultiTrainer("dcgan_task1", seeds=[0], engine="fast", device="cpu")
    with pytest.raises(ConfigError, match="distinct"):
        MultiTrainer("dcgan_task1", seeds=[1, 1], device="cpu")
    with pytest.raises(ConfigError, match="one-shot iterator"):
        MultiTrainer("dcgan_task1", seeds=[0], overrides=SETTINGS["dcgan_task1"], device="cpu",
                     progress=False).fit(iter([images(8)]))


def test_seed_and_grid_parsing():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("0,5,7") == [0, 5, 7]
    assert parse_seeds("0-1,10") == [0, 1, 10]
    for bad in ("a", "3-1", "1,1", "-2"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)
    assert expand_grid({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    with pytest.raises(ConfigError, match="non-empty list"):
        expand_grid({"a": []})


def test_cli_sweep_member_equals_cli_train_run(tmp_path):
    common = ["--set", "image_size=32", "--set", "base_channels=8", "--max-steps", "3", "--num-images", "40",
              "--batch-size", "8", "--device", "cpu"]
    run = [sys.executable, "-m", "gankit"]
    sweep = subprocess.run(run + ["sweep", "dcgan_task1", "--seeds", "0-1", "--set", "g_lr=1e-4,2e-4",
                                  "--out", str(tmp_path / "sw")] + common, capture_output=True, text=True)
    assert sweep.returncode == 0, sweep.stderr
    assert "seed1-g_lr=0.0002" in sweep.stdout and "mean" in sweep.stdout
    train = subprocess.run(run + ["train", "dcgan_task1", "--seed", "1", "--set", "g_lr=2e-4", "--no-progress",
                                  "--out", str(tmp_path / "solo")] + common, capture_output=True, text=True)
    assert train.returncode == 0, train.stderr
    a = load_checkpoint(tmp_path / "solo" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "sw" / "seed1-g_lr=0.0002" / "checkpoints" / "last.pt")
    for net in ("generator", "discriminator"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net])
    extract = subprocess.run(run + ["extract", str(tmp_path / "sw" / "sweep.pt"), "--member", "seed0-g_lr=0.0001",
                                    "--out", str(tmp_path / "m.pt")], capture_output=True, text=True)
    assert extract.returncode == 0, extract.stderr
    again = subprocess.run(run + ["sweep", "dcgan_task1", "--seeds", "0", "--out", str(tmp_path / "sw")] + common,
                           capture_output=True, text=True)
    assert again.returncode == 2 and "holds a sweep" in again.stderr and "Traceback" not in again.stderr


def test_torchrun_splits_members_over_ranks(tmp_path):
    """Under torchrun (2 CPU processes on gloo) member i trains on rank i % 2; rank 0 gathers all."""
    out = tmp_path / "sw"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gankit",
           "sweep", "dcgan_task1", "--seeds", "0-2", "--set", "image_size=32", "--set", "base_channels=8",
           "--max-steps", "3", "--num-images", "40", "--batch-size", "8", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GANKIT_DIST_TIMEOUT": "120"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    state = load_sweep(out / "sweep.pt")
    assert [m["name"] for m in state["members"]] == ["seed0", "seed1", "seed2"]
    summary = json.loads((out / "summary.json").read_text())
    assert [r["member"] for r in summary["members"]] == ["seed0", "seed1", "seed2"]
    assert all(r["steps"] == 3 for r in summary["members"])
    for seed, member in zip([0, 1, 2], state["members"]):
        torch.manual_seed(seed)
        t = Trainer(dcgan_task1(**SETTINGS["dcgan_task1"]), device="cpu", progress=False)
        ckpt = member["checkpoint"]
        assert ckpt["step"] == 3
        # the initial weights and z_sample come from the member's own seed on whichever rank
        assert torch.equal(ckpt["z_sample"], t.z_sample)


def test_docs_sweep_table_is_the_committed_benchmark():
    """docs/sweeps.rst shows benchmarks/results-sweep-cpu.txt, the table of the committed JSON."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("bench_train", root / "benchmarks" / "bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = json.loads((root / "benchmarks" / "results-sweep-cpu.json").read_text())
    assert (root / "benchmarks" / "results-sweep-cpu.txt").read_text() == bench.format_sweep(report)
    assert {(r["run"], r["mode"]) for r in report["sweep"]} >= {("fit", "faithful"), ("sweep-loop", "faithful")}
    assert all(r["members"] == 4 for r in report["sweep"] if r["run"] != "fit")
    assert ".. include:: ../benchmarks/results-sweep-cpu.txt" in (root / "docs" / "sweeps.rst").read_text()


def test_ctrl_c_stops_every_member_saves_and_resumes(tmp_path):
    """SIGINT: every member finishes its step and saves, sweep.pt is written, exit 130; resume goes on."""
    import signal
    import time

    out = tmp_path / "sw"
    cmd = [sys.executable, "-m", "gankit", "sweep", "dcgan_task1", "--seeds", "0-1", "--set", "image_size=32",
           "--set", "base_channels=8", "--max-steps", "400", "--num-images", "40", "--batch-size", "8",
           "--device", "cpu", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "seed1" / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    state = load_sweep(out / "sweep.pt")
    steps = [m["checkpoint"]["step"] for m in state["members"]]
    assert all(0 < s < 400 for s in steps), steps
    resumed = subprocess.run([*cmd[:-2], "--out", str(out), "--resume", str(out / "sweep.pt"),
                              "--max-steps", str(max(steps) + 2)], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert all(m["checkpoint"]["step"] == max(steps) + 2 for m in load_sweep(out / "sweep.pt")["members"])
