"""Distributed data-parallel training: 2 CPU processes on gloo, as torchrun would start them.

The multi-process tests start this file as a script in 2 processes (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` set as torchrun sets
them); the worker at the bottom runs a phase, checks what it can see only from inside
(identical parameters on every rank after every step, which rank writes files), and
leaves JSON and tensors for the tests to assert on. ``GANKIT_TEST_DEVICE=cuda`` runs the
same workers on CUDA / NCCL (``benchmarks/multi_gpu_check.sh``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from gankit import ConfigError, Trainer
from gankit.presets import Recipe, RecipeSettings, get_preset
from gankit.regularizers import R1Penalty, Regularizer
from gankit.train import Callback, GANStep, load_checkpoint
from gankit.train import distributed as gdist

THIS = Path(__file__).resolve()
DEVICE = os.environ.get("GANKIT_TEST_DEVICE", "cpu")
NPROC = 2
if DEVICE == "cuda":  # TF32 would make 2 x 16 and 1 x 32 images differ by more than rounding
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
# On CUDA the runs that must agree bitwise use deterministic kernels.
KW = dict(device=DEVICE, progress=False, deterministic=DEVICE == "cuda")
PRESETS = ("dcgan_task1", "wgan_task2")
STEPS, FIRST = 6, 3  # run A: 6 steps straight; run B: 3 steps, then resumed in new processes to 6
BATCH = 8  # global batch: 4 images per rank
NUM_IMAGES = 36  # 5 batches per epoch, the last of 4 images: 2 per rank


def overrides(name: str, **kw) -> dict:
    base = dict(base_channels=4, z_dim=8, batch_size=BATCH, sample_grid=2)
    if name == "dcgan_task1":
        base["image_size"] = 32
    return {**base, **kw}


def images(name: str, n: int = NUM_IMAGES) -> torch.Tensor:
    side = 32 if name == "dcgan_task1" else 64
    return torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(1))


def no_batchnorm_recipe(batch_size: int) -> Recipe:
    """A small DCGAN without BatchNorm (and without dropout): per-rank = global statistics."""
    from gankit.models import dcgan_discriminator, dcgan_generator

    s = RecipeSettings(z_dim=8, image_size=32, base_channels=4, batch_size=batch_size, sample_grid=2)
    g = dcgan_generator(z_dim=8, image_size=32, base_channels=4, norm_layer=None)
    d = dcgan_discriminator(image_size=32, base_channels=4, norm_layer=None)
    return Recipe("dcgan_task1", g, d, s)


class FlipConsistency(Regularizer):
    """A user's regulariser (written in the test): D should score flipped reals alike."""

    def __call__(self, ctx):
        return (ctx.score(ctx.real.flip(-1)) - ctx.real_out.detach()).pow(2).mean()


def custom_step() -> GANStep:
    """A researcher's step: another objective, a built-in and a user-written regulariser."""
    return GANStep("hinge", regularizers=[R1Penalty(gamma=1.0), FlipConsistency("flip", 2.0)])


def equivalence_inputs(steps: int = 2, batch: int = 32):
    """The same real images and latents for the 1-process and the 2-process runs."""
    gen = torch.Generator().manual_seed(5)
    reals = [torch.rand(batch, 3, 32, 32, generator=gen) * 2 - 1 for _ in range(steps)]
    zs = [torch.randn(batch, 8, generator=gen) for _ in range(2 * steps)]  # D step, G step
    return reals, zs


def flat_params(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).cpu()
                      for net in (trainer.generator, trainer.discriminator) for p in net.parameters()])


def flat_bn_stats(trainer: Trainer) -> torch.Tensor:
    return torch.cat([b.detach().reshape(-1).float().cpu()
                      for net in (trainer.generator, trainer.discriminator)
                      for name, b in net.named_buffers() if name.endswith(("running_mean", "running_var"))])


def _all_equal(x: torch.Tensor, world: int) -> bool:
    import torch.distributed as dist

    gathered: list = [None] * world
    dist.all_gather_object(gathered, x)
    return all(torch.equal(gathered[0], g) for g in gathered)


# ---------------------------------------------------------------------- launching


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(phase: str, work: Path, *, timeout: float = 120, nproc: int = NPROC,
           env: dict | None = None) -> tuple[list[int], list[str], float]:
    """Run the worker ``phase`` in ``nproc`` processes; return exit codes, stderr, seconds."""
    port = _free_port()
    procs = []
    t0 = time.monotonic()
    for rank in range(nproc):
        penv = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
                "OMP_NUM_THREADS": "1", "GANKIT_DIST_TIMEOUT": "120",
                "CUBLAS_WORKSPACE_CONFIG": ":4096:8", **(env or {})}
        procs.append(subprocess.Popen(
            [sys.executable, str(THIS), phase, str(work)], env=penv,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        ))
    errs, codes = [], []
    deadline = t0 + timeout
    for p in procs:
        try:
            _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            _, err = p.communicate()
        errs.append(err)
        codes.append(p.returncode)
    return codes, errs, time.monotonic() - t0


def _check(codes: list[int], errs: list[str]) -> None:
    assert codes == [0] * len(codes), "\n".join(e[-3000:] for e in errs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Launch 1: runs A and B of both presets, the 2x16 equivalence run, config checks."""
    work = tmp_path_factory.mktemp("ddp")
    codes, errs, _ = launch("train", work)
    _check(codes, errs)
    return work


@pytest.fixture(scope="module")
def resumed(trained):
    """Launch 2: new processes resume run B of both presets, and a 1-process checkpoint."""
    torch.manual_seed(0)
    single = Trainer(get_preset("dcgan_task1", **overrides("dcgan_task1")), **KW,
                     out_dir=trained / "single", distributed=False)
    single.fit(images("dcgan_task1"), max_steps=2)
    codes, errs, _ = launch("resume", trained)
    _check(codes, errs)
    return trained


def _rank_reports(work: Path, tag: str) -> list[dict]:
    return [json.loads((work / f"{tag}_rank{r}.json").read_text()) for r in range(NPROC)]


# ---------------------------------------------------------------------- tests: 2 processes


@pytest.mark.parametrize("name", PRESETS)
def test_ranks_hold_identical_parameters_after_every_step(trained, name):
    for tag in (f"{name}_A", f"{name}_B1"):
        reports = _rank_reports(trained, tag)
        want = STEPS if tag.endswith("A") else FIRST
        for rep in reports:
            assert rep["steps"] == want
            assert rep["identical_after_step"] == [True] * want
        # the parameters did move (a check that compares nothing would also say "identical")
        assert reports[0]["param_sums"][0] != reports[0]["param_sums"][-1]


@pytest.mark.parametrize("name", PRESETS)
def test_ranks_get_own_latents_and_own_data_shards(trained, name):
    reports = _rank_reports(trained, f"{name}_A")
    z = [torch.tensor(r["first_latents"]) for r in reports]
    assert z[0].shape == (STEPS, 8)
    assert not torch.equal(z[0], z[1])  # each rank draws its own latents
    shards = [r["real_sums"] for r in reports]
    assert shards[0] != shards[1]
    assert all(r["local_batch"][:4] == [BATCH // NPROC] * 4 for r in reports)
    assert all(r["z_sample"] == reports[0]["z_sample"] for r in reports)  # the grid's latents agree


@pytest.mark.parametrize("name", PRESETS)
def test_only_rank_zero_writes_one_checkpoint_and_one_log(trained, name):
    out = trained / name / "A"
    reports = _rank_reports(trained, f"{name}_A")
    assert reports[0]["writes"]["atomic_save"] >= 1 and reports[0]["writes"]["metrics"] >= 1
    assert reports[0]["writes"]["grid"] >= 1
    for rep in reports[1:]:
        assert rep["writes"] == {"atomic_save": 0, "metrics": 0, "grid": 0, "curve": 0}
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt"]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "loss_curve.png", "metrics.jsonl", "samples"]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, STEPS + 1))
    # the log shows the global batch: the mean of the ranks' losses
    local = torch.tensor([r["loss_d"] for r in reports])
    assert_close(torch.tensor([r["loss_d"] for r in lines]), local.mean(0), rtol=1e-5, atol=1e-6)
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["step"] == STEPS and ckpt["world_size"] == NPROC and len(ckpt["rng_ranks"]) == NPROC
    assert not torch.equal(ckpt["rng_ranks"][0]["cpu"], ckpt["rng_ranks"][1]["cpu"])


def test_wgan_schedule_and_clipping_stay_in_step(trained):
    reports = _rank_reports(trained, "wgan_task2_A")
    for rep in reports:
        # 5 batches per epoch, n_critic 5: the generator steps after the 5th batch of each epoch
        assert rep["g_stepped"] == [False, False, False, False, True, False]
        assert rep["max_abs_d_param"] <= 0.01


def test_batchnorm_per_rank_by_default_or_synchronised(trained):
    for rep in _rank_reports(trained, "dcgan_task1_A"):
        assert rep["bn_stats_identical"] is False  # each rank kept its own running statistics
    for rep in _rank_reports(trained, "syncbn"):
        if DEVICE == "cuda":
            assert rep["bn_stats_identical"] is True and rep["steps"] == 2
        else:
            assert "sync_batchnorm needs CUDA" in rep["error"]


def test_batch_size_must_split_over_ranks(trained):
    for rep in _rank_reports(trained, "config"):
        assert "does not split over 2 processes" in rep["batch_error"]


@pytest.mark.parametrize("name", PRESETS)
def test_resume_under_two_processes_continues_bitwise(resumed, name):
    reports = _rank_reports(resumed, f"{name}_B2")
    for rep in reports:
        assert rep["start_step"] == FIRST
        assert rep["steps"] == STEPS
        assert rep["identical_after_step"] == [True] * (STEPS - FIRST)
    straight = torch.load(resumed / name / "A_params.pt")
    again = torch.load(resumed / name / "B_params.pt")
    # every rank's data position and latent stream restored: bitwise on the CPU
    assert_close(again, straight, **({} if DEVICE == "cuda" else dict(rtol=0, atol=0)))
    lines = (resumed / name / "B" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, STEPS + 1))


def test_single_process_checkpoint_resumes_under_two_processes(resumed):
    reports = _rank_reports(resumed, "single_resumed")
    for rep in reports:
        assert (rep["start_step"], rep["steps"]) == (2, 4)
        assert rep["identical_after_step"] == [True, True]
    assert reports[0]["warned"] and "new latent stream" in reports[0]["warned"][0]
    assert reports[0]["first_latents"] != reports[1]["first_latents"]


def test_two_ranks_of_16_equal_one_process_of_32(trained):
    reals, zs = equivalence_inputs()
    torch.manual_seed(3)
    feed = iter(zs)
    single = Trainer(no_batchnorm_recipe(32), **KW, distributed=False,
                     latent_sampler=lambda n, z_dim: next(feed))
    for x in reals:
        single.train_step(x)
    ddp = torch.load(trained / "equiv_params.pt")
    before = torch.load(trained / "equiv_params_init.pt")
    assert not torch.allclose(ddp, before)
    assert_close(ddp, flat_params(single), rtol=1e-5, atol=1e-6)


def test_custom_step_runs_data_parallel(trained):
    reals, zs = equivalence_inputs()
    feed = iter(zs)
    torch.manual_seed(3)
    single = Trainer(no_batchnorm_recipe(32), **KW, distributed=False, step=custom_step(),
                     latent_sampler=lambda n, z_dim: next(feed))
    for x in reals:
        single.train_step(x)
    for rep in _rank_reports(trained, "custom"):
        assert rep["identical"] and {"flip", "r1", "loss_d", "loss_g"} <= set(rep["logged"])
    assert_close(torch.load(trained / "equiv_custom_params.pt"), flat_params(single), rtol=1e-5, atol=1e-6)


def test_ema_and_ada_agree_over_the_ranks(trained):
    for rep in _rank_reports(trained, "ema_ada"):
        assert rep["ema_identical"] and rep["p_identical"] and rep["ema_differs_from_g"]
        assert rep["p"] != 0.5  # ADA moved p (the same way on both ranks)


def test_error_on_one_rank_ends_the_job(tmp_path):
    # gloo notices the dead peer at once (the 120 s timeout must not be what ends the wait);
    # NCCL cannot, and its watchdog ends the wait after the timeout (torchrun stops it sooner).
    timeout_s = "15" if DEVICE == "cuda" else "120"
    codes, errs, seconds = launch("fail", tmp_path, timeout=60, env={"GANKIT_DIST_TIMEOUT": timeout_s})
    assert seconds < 45, f"the job took {seconds:.0f} s: a rank waited for a dead peer"
    assert all(c != 0 for c in codes), codes
    assert "bad batch on rank 1" in errs[1]
    assert not (tmp_path / "fail" / "checkpoints" / "last.pt").exists()


def _cli_has_train() -> bool:
    from gankit.cli import build_parser

    sub = [a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"]
    return bool(sub) and "train" in sub[0].choices


@pytest.mark.skipif(not _cli_has_train(), reason="gankit.cli has no 'train' command yet")
def test_torchrun_cli_trains_and_resumes(tmp_path):
    out = tmp_path / "run"
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={NPROC}",
            "-m", "gankit", "train", "dcgan_task1", "--data", "toy-faces", "--num-images", "64",
            "--no-progress", "--out", str(out),
            "--device", DEVICE, "--seed", "0"]
    sets = [a for kv in overrides("dcgan_task1").items() for a in ("--set", f"{kv[0]}={kv[1]}")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GANKIT_DIST_TIMEOUT": "120"}
    first = subprocess.run(base + sets + ["--max-steps", "2"], env=env, capture_output=True, text=True,
                           timeout=180)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = out / "checkpoints" / "last.pt"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt"]
    assert load_checkpoint(ckpt)["world_size"] == NPROC
    second = subprocess.run(base + sets + ["--max-steps", "4", "--resume", str(ckpt)], env=env,
                            capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr[-3000:]
    assert load_checkpoint(ckpt)["step"] == 4
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


# ---------------------------------------------------------------------- tests: one process


def test_sharded_loader_splits_every_global_batch():
    from gankit.data import BatchLoader

    data = images("dcgan_task1", 21)  # batches of 8: 8, 8, 5 -> the last split 2 + 2 (one left out)
    whole = BatchLoader(data, 8, seed=4)
    shards = [gdist.ShardedBatchLoader(data, 8, rank=r, world_size=2, seed=4) for r in range(2)]
    assert len(shards[0]) == 3
    for epoch in range(2):
        parts = [list(s) for s in shards]
        for i, full in enumerate(whole):
            got = torch.cat([parts[0][i], parts[1][i]])
            assert torch.equal(got, full[:got.shape[0]])
            assert parts[0][i].shape[0] == parts[1][i].shape[0] == full.shape[0] // 2
        assert all(s.epoch == epoch + 1 and s.batch_index == 0 for s in shards)
    # resuming mid-epoch gives the same shares
    shard = shards[1]
    tail = list(shard.iter_from(1, epoch=5))
    assert torch.equal(tail[0], list(shard.iter_from(0, epoch=5))[1])
    state = shards[0].state_dict()
    fresh = gdist.ShardedBatchLoader(data, 8, rank=0, world_size=2, seed=4)
    fresh.load_state_dict(state)
    assert (fresh.epoch, fresh.batch_index) == (shards[0].epoch, shards[0].batch_index)


def test_sharded_loader_keeps_every_image_with_its_label():
    """A conditional recipe under torchrun: each rank's share carries the labels of its rows."""
    from gankit.data import BatchLoader

    data = images("dcgan_task1", 21)
    labels = torch.arange(21) % 5
    whole = BatchLoader(data, 8, seed=3, labels=labels)
    shards = [gdist.ShardedBatchLoader(data, 8, rank=r, world_size=2, seed=3, labels=labels) for r in range(2)]
    parts = [list(s) for s in shards]
    for i, (full, full_labels) in enumerate(whole):
        got = torch.cat([parts[0][i][0], parts[1][i][0]])
        got_labels = torch.cat([parts[0][i][1], parts[1][i][1]])
        assert torch.equal(got, full[:got.shape[0]]) and torch.equal(got_labels, full_labels[:got.shape[0]])
    assert gdist.ShardedBatchLoader(data, 8, rank=0, world_size=2).labels is None


def test_sharded_loader_skips_a_last_batch_too_small_to_split():
    data = images("dcgan_task1", 17)  # 8, 8, 1: the single image cannot go to both ranks
    shards = [gdist.ShardedBatchLoader(data, 8, rank=r, world_size=2, seed=0) for r in range(2)]
    assert len(shards[0]) == 2 and [b.shape[0] for b in shards[1]] == [4, 4]
    with pytest.raises(ConfigError, match="does not split over 3 processes"):
        gdist.ShardedBatchLoader(data, 8, rank=0, world_size=3)


def test_rank_seeds_differ_and_are_stable():
    seeds = {gdist.rank_seed(0, r) for r in range(8)}
    assert len(seeds) == 8
    assert gdist.rank_seed(7, 1) == gdist.rank_seed(7, 1) != gdist.rank_seed(8, 1)
    assert all(0 <= s < 2**63 for s in seeds)


def test_single_process_helpers_and_launch_detection(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert not gdist.distributed_requested()
    assert gdist.is_main_process()
    assert gdist.broadcast_object({"a": 1}) == {"a": 1}
    x = torch.tensor([1.0, 2.0])
    assert torch.equal(gdist.all_reduce(x, "mean"), x)
    gdist.barrier()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert gdist.distributed_requested()
    assert not gdist.is_main_process()
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        gdist.init_distributed(device="cpu")
    monkeypatch.setenv("WORLD_SIZE", "1")
    t = Trainer(get_preset("dcgan_task1", **overrides("dcgan_task1")), device="cpu", progress=False)
    assert t.dist is None and t.is_main and t.d_gen is t.discriminator


def test_distributed_checkpoint_resumes_in_one_process(trained):
    ckpt = trained / "dcgan_task1" / "A" / "checkpoints" / "last.pt"
    t = Trainer.load(ckpt, device="cpu", progress=False, distributed=False)
    assert t.step == STEPS and t.dist is None
    t.fit(images("dcgan_task1"), max_steps=STEPS + 1)
    assert t.step == STEPS + 1


# ---------------------------------------------------------------------- the worker


def _worker(phase: str, work: Path) -> None:
    import gankit.train.trainer as trainer_mod

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    writes = {"atomic_save": 0, "metrics": 0, "grid": 0, "curve": 0}

    def counting(fn, key):
        def wrapped(*a, **k):
            writes[key] += 1
            return fn(*a, **k)
        return wrapped

    trainer_mod.atomic_save = counting(trainer_mod.atomic_save, "atomic_save")
    trainer_mod.MetricsLog = counting(trainer_mod.MetricsLog, "metrics")
    trainer_mod.save_grid = counting(trainer_mod.save_grid, "grid")
    trainer_mod.plot_loss_curve = counting(trainer_mod.plot_loss_curve, "curve")

    class Recorder(Callback):
        """Watches every step through the public callback seam."""

        name = "recorder"

        def __init__(self) -> None:
            self.rep = {"identical_after_step": [], "param_sums": [], "first_latents": [], "real_sums": [],
                        "local_batch": [], "loss_d": [], "g_stepped": []}

        def on_step_end(self, t, batch, out):
            rep = self.rep
            flat = flat_params(t)
            rep["identical_after_step"].append(_all_equal(flat, world))
            rep["param_sums"].append(float(flat.double().sum()))
            rep["first_latents"].append(t.step_latents[0][0].cpu().tolist())
            rep["real_sums"].append(float(batch.images.double().sum()))
            rep["local_batch"].append(int(batch.images.shape[0]))
            rep["loss_d"].append(float(out["loss_d"]))
            rep["g_stepped"].append(out["loss_g"] is not None)

    def dump(tag: str, rep: dict) -> None:
        (work / f"{tag}_rank{rank}.json").write_text(json.dumps(rep))

    if phase == "train":
        # A batch that does not split over the ranks is refused in one line, on every rank.
        try:
            Trainer(get_preset("dcgan_task1", **overrides("dcgan_task1", batch_size=7)), device=DEVICE)
            dump("config", {"batch_error": ""})
        except ConfigError as err:
            dump("config", {"batch_error": str(err)})
        for name in PRESETS:
            for run, steps in (("A", STEPS), ("B1", FIRST)):
                for key in writes:
                    writes[key] = 0
                torch.manual_seed(0)
                rec = Recorder()
                t = Trainer(get_preset(name, **overrides(name)), **KW, out_dir=work / name / run[0],
                            callbacks=[rec])
                assert t.dist is not None and t.dist.world_size == world and t.is_main == (rank == 0)
                assert t.d_gen is t.discriminator  # the generator step calls the plain D
                rep = rec.rep
                t.fit(images(name), max_steps=steps)
                rep.update(steps=t.step, writes=dict(writes), z_sample=t.z_sample.tolist(),
                           max_abs_d_param=max(float(p.abs().max()) for p in t.discriminator.parameters()),
                           bn_stats_identical=_all_equal(flat_bn_stats(t), world))
                dump(f"{name}_{run}", rep)
                if run == "A" and rank == 0:
                    torch.save(flat_params(t), work / name / "A_params.pt")
        # SyncBatchNorm: global batch statistics, so the ranks' running statistics agree.
        torch.manual_seed(0)
        try:
            t = Trainer(get_preset("dcgan_task1", **overrides("dcgan_task1")), **KW, sync_batchnorm=True)
            t.fit(images("dcgan_task1"), max_steps=2)
            dump("syncbn", {"steps": t.step, "bn_stats_identical": _all_equal(flat_bn_stats(t), world)})
        except ConfigError as err:
            dump("syncbn", {"error": str(err)})
        # 2 ranks x 16 images against 1 process x 32 (the test runs the single process).
        reals, zs = equivalence_inputs()
        torch.manual_seed(3)
        per = 32 // world
        feed = iter(zs)
        t = Trainer(no_batchnorm_recipe(32), **KW,
                    latent_sampler=lambda n, z_dim: next(feed)[rank * per:(rank + 1) * per])
        if rank == 0:
            torch.save(flat_params(t), work / "equiv_params_init.pt")
        for x in reals:
            t.train_step(x[rank * per:(rank + 1) * per])
        if rank == 0:
            torch.save(flat_params(t), work / "equiv_params.pt")
        # the same with a custom step: its terms run data-parallel too
        feed = iter(zs)
        torch.manual_seed(3)
        t = Trainer(no_batchnorm_recipe(32), **KW, step=custom_step(),
                    latent_sampler=lambda n, z_dim: next(feed)[rank * per:(rank + 1) * per])
        logged = [t.train_step(x[rank * per:(rank + 1) * per]) for x in reals]
        if rank == 0:
            torch.save(flat_params(t), work / "equiv_custom_params.pt")
        dump("custom", {"logged": sorted(k for k, v in logged[-1].items() if v is not None),
                        "identical": _all_equal(flat_params(t), world)})
        # A generator EMA and ADA from the recipe's settings, data-parallel: one average and
        # one p on every rank (r_t is reduced over the ranks before p moves).
        from gankit.augment import ADA

        torch.manual_seed(0)
        t = Trainer(get_preset("dcgan_task1", **overrides("dcgan_task1", ema_half_life_images=32.0)), **KW,
                    step=GANStep("nonsaturating", augment=ADA(p=0.5, interval=1, speed_images=64)))
        t.fit(images("dcgan_task1"), max_steps=STEPS)
        ema_flat = torch.cat([v.detach().reshape(-1).float().cpu()
                              for v in t.ema.module.state_dict().values() if v.is_floating_point()])
        p = torch.tensor([t.step_fn.augment.p], dtype=torch.float64)
        dump("ema_ada", {"ema_identical": _all_equal(ema_flat, world), "p_identical": _all_equal(p, world),
                         "p": float(p), "ema_differs_from_g": not torch.equal(
                             ema_flat, torch.cat([v.detach().reshape(-1).float().cpu()
                                                  for v in t.generator.state_dict().values()
                                                  if v.is_floating_point()]))})
    elif phase == "resume":
        for name in PRESETS:
            torch.manual_seed(12345)  # whatever the seed now, the checkpoint's streams must win
            torch.randn(7)
            rec = Recorder()
            t = Trainer.load(work / name / "B" / "checkpoints" / "last.pt", **KW,
                             out_dir=work / name / "B", callbacks=[rec])
            start = t.step
            rep = rec.rep
            t.fit(images(name), max_steps=STEPS)
            rep.update(start_step=start, steps=t.step)
            dump(f"{name}_B2", rep)
            if rank == 0:
                torch.save(flat_params(t), work / name / "B_params.pt")
        # a checkpoint of a single process: the data position holds, each rank gets a new stream
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rec = Recorder()
            t = Trainer.load(work / "single" / "checkpoints" / "last.pt", **KW, callbacks=[rec])
        start = t.step
        rep = rec.rep
        t.fit(images("dcgan_task1"), max_steps=4)
        rep.update(start_step=start, steps=t.step,
                   warned=[str(w.message) for w in caught if "process" in str(w.message)])
        dump("single_resumed", rep)
    elif phase == "fail":
        torch.manual_seed(0)
        t = Trainer(get_preset("dcgan_task1", **overrides("dcgan_task1")), **KW, out_dir=work / "fail")
        step_fn = t.train_step

        def bad(real):
            if rank == 1 and t.step == 2:
                raise RuntimeError("bad batch on rank 1")
            return step_fn(real)

        t.train_step = bad
        t.fit(images("dcgan_task1"), max_steps=STEPS)
    else:
        raise SystemExit(f"unknown phase {phase}")
    gdist.barrier()
    gdist.destroy_distributed()


if __name__ == "__main__":
    _worker(sys.argv[1], Path(sys.argv[2]))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip the interpreter's slow teardown of torch's threads
