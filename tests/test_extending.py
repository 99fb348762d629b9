"""The open training step: user objectives, regularisers, schedules, accumulation and
callbacks keep every engine feature; the examples of docs/extending.rst, tested."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from gankit import ConfigError, Trainer
from gankit.data import load_images
from gankit.presets import build_recipe, dcgan_task1, get_preset
from gankit.regularizers import R1Penalty, Regularizer
from gankit.schedules import constant, cosine, linear
from gankit.train import Callback, GANStep, StepSchedule
from gankit.train.outputs import loss_curve_panels

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
USER_TERMS = {"r3gan_objective": ["r1", "r2"], "lazy_r1": ["r1"], "consistency_bcr": ["bcr"],
              "ttur_cosine": ["r1"], "grad_accumulation": []}


def example(name: str):
    """Import an example script as a module (registered, so its builder can be rebuilt)."""
    mod_name = f"gankit_example_{name}"
    if mod_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(mod_name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
    return sys.modules[mod_name]


@pytest.fixture(scope="module")
def faces():
    return load_images("toy-faces", num_images=40, image_size=32, progress=False)


def _params(t: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for net in (t.generator, t.discriminator) for p in net.state_dict().values()]


@pytest.mark.parametrize("name", sorted(USER_TERMS))
def test_example_terms_are_logged_and_the_run_resumes_bitwise(name, faces, tmp_path):
    mod = example(name)
    torch.manual_seed(0)
    full = mod.make_trainer(tmp_path / "a", quick=True, progress=False, log_every=2)
    full.fit(faces, max_steps=4)
    records = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    for term in USER_TERMS[name]:
        assert any(term in r and r[term] is not None for r in records), term
        assert term in full.progress_columns()
        assert any(term in names for _, names in loss_curve_panels(full.history))

    torch.manual_seed(0)
    first = mod.make_trainer(tmp_path / "b", quick=True, progress=False)
    first.fit(faces, max_steps=2)
    torch.manual_seed(123)  # whatever happens between must not matter
    kwargs = {"schedules": full.schedules} if full.schedules else {}
    second = Trainer.load(tmp_path / "b" / "checkpoints" / "last.pt", device="cpu", progress=False,
                          out_dir=tmp_path / "b", **kwargs)
    assert second.recipe.builder.endswith(f"{name}:{second.recipe.builder.split(':')[1]}")
    second.fit(faces, max_steps=4)
    for a, b in zip(_params(full), _params(second)):
        assert torch.equal(a, b)
    for a, b in zip(full.opt_d.param_groups, second.opt_d.param_groups):
        assert a["lr"] == b["lr"]


def test_gradient_accumulation_equals_one_big_batch():
    mod = example("grad_accumulation")
    batch = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    runs = []
    for accumulate in (1, 4):
        torch.manual_seed(0)
        t = mod.make_trainer(None, quick=True, accumulate=accumulate, progress=False)
        assert t.step_fn.accumulate == accumulate
        for _ in range(2):
            t.train_step(batch)
        runs.append(_params(t))
    for a, b in zip(*runs):
        assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert not all(torch.equal(a, b) for a, b in zip(*runs))  # other summation order, other bits


def test_accumulate_must_split_the_batch():
    mod = example("grad_accumulation")
    t = mod.make_trainer(None, quick=True, accumulate=3, progress=False)
    with pytest.raises(ConfigError, match="divisible by accumulate"):
        t.train_step(torch.zeros(64, 3, 32, 32))


class FlipConsistency(Regularizer):
    def __call__(self, ctx):
        return (ctx.score(ctx.real.flip(-1)) - ctx.real_out.detach()).pow(2).mean()


def _tiny(**kw):
    return dcgan_task1(image_size=32, base_channels=4, z_dim=8, batch_size=4, sample_grid=2, **kw)


def test_custom_regulariser_keeps_bf16_on_cpu():
    torch.manual_seed(0)
    step = GANStep("nonsaturating", regularizers=[FlipConsistency("flip", 1.0), R1Penalty(1.0)])
    t = Trainer(_tiny(), step=step, device="cpu", precision="bf16", progress=False)
    dtypes = []
    first_conv = next(m for m in t.discriminator.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    out = t.train_step(torch.rand(4, 3, 32, 32) * 2 - 1)
    # real, fake, the flipped reals, R1's input-gradient call, the generator step: all in bf16
    assert dtypes == [torch.bfloat16] * 5
    assert torch.isfinite(out["flip"]) and torch.isfinite(out["r1"])


def test_step_that_bypasses_the_engine_is_refused_under_bf16():
    class Raw(GANStep):
        def train_discriminator(self, batch):
            t = self.trainer
            with t.optimize("d") as opt:
                loss = t.discriminator(batch.images).mean()  # not through trainer.score
                opt.backward(loss)
            return {"loss_d": loss.detach()}

        def train_generator(self, batch):
            return {}

    t = Trainer(_tiny(), step=Raw("wasserstein"), device="cpu", precision="bf16", progress=False)
    with pytest.raises(ConfigError, match="precision='bf16' cannot apply"):
        t.train_step(torch.zeros(4, 3, 32, 32))
    fp32 = Trainer(_tiny(), step=Raw("wasserstein"), device="cpu", progress=False)
    assert "loss_d" in fp32.train_step(torch.zeros(4, 3, 32, 32))


def test_custom_regulariser_keeps_compile():
    torch.manual_seed(0)
    step = GANStep("hinge", regularizers=[FlipConsistency("flip", 1.0)])
    t = Trainer(_tiny(), step=step, device="cpu", progress=False, compile={"backend": "eager"})
    assert t.g_run is not t.generator and t.d_run is not t.discriminator  # the compiled wrappers run
    torch.manual_seed(1)
    eager = Trainer(_tiny(), step=GANStep("hinge", regularizers=[FlipConsistency("flip", 1.0)]),
                    device="cpu", progress=False)
    eager.load_state_dict(t.state_dict())
    batch = torch.rand(4, 3, 32, 32) * 2 - 1
    torch.manual_seed(2)
    a = t.train_step(batch)
    torch.manual_seed(2)
    b = eager.train_step(batch)
    assert_close(a["flip"], b["flip"]) and assert_close(a["loss_d"], b["loss_d"])


def test_global_n_critic_counts_over_epochs():
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    for count, g_steps in (("global", 2), ("epoch", 0)):
        torch.manual_seed(0)
        t = Trainer(get_preset("dcgan_task1", image_size=32, base_channels=4, z_dim=8, batch_size=16,
                               n_critic=5, n_critic_count=count, sample_grid=2), device="cpu", progress=False)
        t.fit(images, max_steps=10)
        assert (t.step, t.epoch, t.g_steps) == (10, 2, g_steps)


def test_g_first_and_several_generator_steps():
    torch.manual_seed(0)
    order = []

    class Watch(GANStep):
        def train_discriminator(self, batch):
            order.append("d")
            return super().train_discriminator(batch)

        def train_generator(self, batch):
            order.append("g")
            return super().train_generator(batch)

    t = Trainer(_tiny(), step=Watch("bce", schedule=StepSchedule(order="g_first", g_steps=2)),
                device="cpu", progress=False)
    t.train_step(torch.rand(4, 3, 32, 32) * 2 - 1)
    assert order == ["g", "g", "d"] and len(t.step_latents) == 3


def test_schedules_set_learning_rates_betas_and_weights():
    step = GANStep("hinge", regularizers=[R1Penalty(gamma=2.0)])
    t = Trainer(_tiny(), step=step, device="cpu", progress=False,
                schedules={"g.lr": linear(1e-3, 0.0, steps=4), "d.beta2": constant(0.9),
                           "r1": cosine(1.0, 0.0, steps=2)})
    for _ in range(3):
        t.train_step(torch.rand(4, 3, 32, 32) * 2 - 1)
    assert t.opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 - 2 / 4))
    assert t.opt_d.param_groups[0]["betas"][1] == 0.9
    assert step.regularizers[0].weight == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="unknown schedule target"):
        Trainer(_tiny(), device="cpu", progress=False, schedules={"nope": constant(1)}).train_step(
            torch.zeros(4, 3, 32, 32))


def test_grids_and_checkpoints_every_steps_keep_last(tmp_path):
    torch.manual_seed(0)
    t = Trainer(_tiny(), device="cpu", progress=False, out_dir=tmp_path, grid_every_steps=2,
                checkpoint_every_steps=2, keep_last=2)
    t.fit(torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8), max_steps=8)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*.pt")) == [
        "step_0000006.pt", "step_0000008.pt"]
    grids = sorted(p.name for p in (tmp_path / "samples").glob("step_*.png"))
    assert grids == [f"step_{s:07d}.png" for s in (2, 4, 6, 8)]
    assert torch.load(tmp_path / "checkpoints" / "step_0000006.pt", weights_only=True)["step"] == 6


def test_callback_state_is_checkpointed(tmp_path):
    class Count(Callback):
        name = "count"

        def __init__(self):
            self.steps = 0

        def on_step_end(self, trainer, batch, logs):
            self.steps += 1

        def state_dict(self):
            return {"steps": self.steps}

        def load_state_dict(self, state):
            self.steps = state["steps"]

    torch.manual_seed(0)
    t = Trainer(_tiny(), device="cpu", progress=False, out_dir=tmp_path, callbacks=[Count()])
    t.fit(torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8), max_steps=3)
    again = Trainer.load(tmp_path / "checkpoints" / "last.pt", device="cpu", callbacks=[Count()])
    assert again.callbacks[0].steps == 3


BUILDER = '''
from gankit.presets import dcgan_task1
from gankit.regularizers import R1Penalty
from gankit.train import GANStep


def my_recipe(gamma=1.0, **overrides):
    recipe = dcgan_task1(**overrides)
    recipe.name = "my_recipe"
    recipe.step = GANStep("nonsaturating", regularizers=[R1Penalty(gamma)])
    return recipe
'''


def test_unregistered_builder_trains_and_resumes_through_the_cli(tmp_path):
    (tmp_path / "mylab.py").write_text(BUILDER)
    common = [sys.executable, "-m", "gankit", "--import", "mylab", "train", "mylab:my_recipe",
              "--data", "toy-faces", "--num-images", "8", "--batch-size", "4", "--set", "image_size=32",
              "--set", "base_channels=4", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "run")]
    first = subprocess.run([*common, "--max-steps", "2"], capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    saved = torch.load(ckpt, weights_only=True)
    assert (saved["preset"], saved["builder"]) == ("my_recipe", "mylab:my_recipe")
    again = subprocess.run([*common, "--resume", str(ckpt), "--max-steps", "4"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3, 4]
    assert all("r1" in json.loads(x) for x in lines)


def test_builder_checkpoint_needs_its_module(tmp_path):
    mod = example("lazy_r1")
    t = mod.make_trainer(tmp_path, quick=True, progress=False)
    path = t.save(tmp_path / "ck.pt")
    assert Trainer.load(path, device="cpu").recipe.builder == t.recipe.builder
    ckpt = torch.load(path, weights_only=True)
    ckpt["builder"] = "not_imported_module_xyz:build"
    ckpt["preset"] = "unregistered"
    from gankit.errors import CheckpointError
    from gankit.presets import rebuild_recipe

    with pytest.raises(CheckpointError, match="import not_imported_module_xyz first"):
        rebuild_recipe(ckpt)
    assert build_recipe(mod.lazy_r1_task1, every=2).step.regularizers[0].every == 2
