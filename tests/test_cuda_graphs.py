"""Whole-step CUDA graphs (Trainer(cuda_graph=True)): refusals everywhere, the rest on CUDA.

The CUDA tests compare a graph-replaying trainer with an eager one that starts from the
same weights and draws the same latents: the captured kernels are the eager ones, so the
parameters must agree to float32 rounding (cuDNN may pick other algorithms per trainer).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gankit import Trainer
from gankit.errors import ConfigError
from gankit.presets import get_preset
from gankit.train.graphs import make_graph_safe, optimizer_flags, restore_optimizer_flags

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def _true_float32():
    """No TF32 in these comparisons: eager and replayed steps then differ by fp32 rounding only."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _assert_same_training(eager: nn.Module, graphed: nn.Module, start: dict) -> None:
    """Same parameter updates up to rounding: the difference is tiny next to the updates
    themselves, and almost no element differs by a tenth of an Adam step (1e-5). Each
    trainer autotunes its own cuDNN algorithms, so differences of ~1e-6 are expected; a
    replay on stale inputs would differ by whole steps everywhere."""
    names = [k for k, v in eager.state_dict().items() if v.is_floating_point()]
    e_sd, g_sd = eager.state_dict(), graphed.state_dict()
    update = torch.cat([(e_sd[k].float() - start[k].to(e_sd[k].device).float()).flatten() for k in names])
    diff = torch.cat([(g_sd[k].float() - e_sd[k].float()).flatten() for k in names])
    assert update.norm() > 0, "nothing trained"
    assert (diff.abs() > 1e-5).float().mean() < 1e-2, "replayed updates differ from the eager ones"
    assert diff.norm() < 0.05 * update.norm(), "replayed updates differ from the eager ones"


def _recipe(name: str = "dcgan_task1", **kw):
    torch.manual_seed(0)
    if name == "wgan_task2":  # fixed to 64x64 by the report
        return get_preset(name, **kw)
    return get_preset(name, image_size=32, base_channels=16, **kw)


def test_cuda_graph_is_refused_off_cuda_with_a_one_line_error():
    with pytest.raises(ConfigError, match="needs a CUDA device.*drop --cuda-graph"):
        Trainer(_recipe(), device="cpu", cuda_graph=True, progress=False)


def test_graph_safe_optimizer_flags_and_their_restoration():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    plain = optimizer_flags(opt)
    make_graph_safe(opt)
    group = opt.param_groups[0]
    assert group["capturable"] is True and group["fused"] is True and group["foreach"] is False
    assert opt.state[p]["step"].dtype == torch.float32
    restore_optimizer_flags(opt, plain)  # as after loading a checkpoint written in graph mode
    assert optimizer_flags(opt) == plain and opt.state[p]["step"].device.type == "cpu"
    sgd = torch.optim.SGD([p], lr=0.1)  # no step counter: nothing to change
    make_graph_safe(sgd)
    with pytest.raises(ConfigError, match="cannot run inside a CUDA graph"):
        make_graph_safe(torch.optim.Adagrad([p]))


def _pair(name: str, latents: str, steps: int, precision: str = "fp32", bs: int = 8):
    """Train an eager trainer and a graph trainer side by side on the same batches."""
    results = []
    recipe = _recipe(name)
    size = recipe.settings.image_size
    data = torch.rand(bs * 3, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    start = None
    for graph in (False, True):
        recipe = _recipe(name)
        if start is None:
            start = {"g": {k: v.clone() for k, v in recipe.generator.state_dict().items()},
                     "d": {k: v.clone() for k, v in recipe.discriminator.state_dict().items()}}
        trainer = Trainer(recipe, device="cuda", progress=False, latents=latents, precision=precision,
                          cuda_graph=graph)
        if not graph:  # same optimizer arithmetic as the graph trainer
            make_graph_safe(trainer.opt_g)
            make_graph_safe(trainer.opt_d)
        torch.manual_seed(5)
        torch.cuda.manual_seed(5)
        logs = []
        for i in range(steps):
            out = trainer.train_step(data[(i % 3) * bs:(i % 3 + 1) * bs].cuda())
            logs.append(float(out["loss_d"]))
        torch.cuda.synchronize()
        results.append((trainer, logs))
    return results, start


@cuda
@pytest.mark.parametrize("latents", ["cpu", "device"])
def test_cuda_graph_task1_matches_the_eager_step(latents):
    ((eager, log_e), (graphed, log_g)), start = _pair("dcgan_task1", latents, steps=10)
    assert graphed.captured_graphs == 1  # task one: every step has a generator step
    assert len(set(log_g[4:])) > 1  # replays really train (losses change)
    torch.testing.assert_close(torch.tensor(log_g), torch.tensor(log_e), rtol=1e-4, atol=1e-5)
    _assert_same_training(eager.generator, graphed.generator, start["g"])
    _assert_same_training(eager.discriminator, graphed.discriminator, start["d"])


@cuda
def test_cuda_graph_task2_captures_both_variants_and_clips():
    ((eager, log_e), (graphed, log_g)), start = _pair("wgan_task2", "cpu", steps=22)
    assert graphed.captured_graphs == 2  # critic-only and critic + generator
    assert graphed.g_steps == eager.g_steps == 4
    c = graphed.settings.clip_value
    assert all(p.abs().max() <= c for p in graphed.discriminator.parameters())
    torch.testing.assert_close(torch.tensor(log_g), torch.tensor(log_e), rtol=1e-4, atol=1e-6)
    _assert_same_training(eager.generator, graphed.generator, start["g"])
    _assert_same_training(eager.discriminator, graphed.discriminator, start["d"])


@cuda
def test_cuda_graph_bf16_channels_last_trains_and_logs_every_step():
    torch.manual_seed(0)
    trainer = Trainer(_recipe(batch_size=8), device="cuda", progress=False, precision="bf16", channels_last=True,
                      latents="device", cuda_graph=True, log_every=4)
    data = torch.rand(8 * 4, 3, 32, 32) * 2 - 1
    trainer.fit(data, max_steps=12)
    assert trainer.captured_graphs == 1
    losses = [row["loss_d"] for row in trainer.history]
    assert len(losses) == 12 and len(set(losses)) == 12  # each step logged its own value


@cuda
def test_cuda_graph_smaller_last_batch_runs_eagerly_and_resume_recaptures(tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(_recipe(batch_size=8), device="cuda", progress=False, cuda_graph=True, out_dir=tmp_path)
    data = torch.rand(8 * 5 + 3, 3, 32, 32) * 2 - 1  # 5 full batches and one of 3
    trainer.fit(data, epochs=2)
    assert trainer.step == 12 and trainer.captured_graphs == 1
    path = trainer.save(tmp_path / "ck.pt")
    again = Trainer.load(path, device="cuda", progress=False, cuda_graph=True)
    assert again.opt_d.param_groups[0]["capturable"] is True
    again.fit(data, epochs=3)
    assert again.step == 18 and again.captured_graphs == 1
    plain = Trainer.load(path, device="cuda", progress=False)  # a graph checkpoint, resumed eagerly
    assert plain.opt_d.param_groups[0]["capturable"] is False
    plain.fit(data, epochs=3)
    assert plain.step == 18
