"""Checks that tests/spec_reference.py is a faithful reading of SPEC.md."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import spec_reference as ref  # noqa: E402

# SPEC.md's torchsummary tables: (layer type, output shape without batch, params) per row.
_T1_G_ROWS = [
    ("Linear", (8192,), 819_200),
    ("BatchNorm1d", (8192,), 16_384),
    ("ReLU", (8192,), 0),
    ("ConvTranspose2d", (256, 8, 8), 3_276_800),
    ("BatchNorm2d", (256, 8, 8), 512),
    ("ReLU", (256, 8, 8), 0),
    ("ConvTranspose2d", (128, 16, 16), 819_200),
    ("BatchNorm2d", (128, 16, 16), 256),
    ("ReLU", (128, 16, 16), 0),
    ("ConvTranspose2d", (64, 32, 32), 204_800),
    ("BatchNorm2d", (64, 32, 32), 128),
    ("ReLU", (64, 32, 32), 0),
    ("ConvTranspose2d", (3, 64, 64), 4_803),
    ("Tanh", (3, 64, 64), 0),
]
_T1_D_ROWS = [
    ("Conv2d", (64, 32, 32), 4_864),
    ("LeakyReLU", (64, 32, 32), 0),
    ("Conv2d", (128, 16, 16), 204_928),
    ("BatchNorm2d", (128, 16, 16), 256),
    ("LeakyReLU", (128, 16, 16), 0),
    ("Conv2d", (256, 8, 8), 819_456),
    ("BatchNorm2d", (256, 8, 8), 512),
    ("LeakyReLU", (256, 8, 8), 0),
    ("Conv2d", (512, 4, 4), 3_277_312),
    ("BatchNorm2d", (512, 4, 4), 1_024),
    ("LeakyReLU", (512, 4, 4), 0),
    ("Conv2d", (1, 1, 1), 8_193),
    ("Sigmoid", (1, 1, 1), 0),
]
_T2_G_ROWS = [
    ("Linear", (6400,), 646_400),
    ("BatchNorm2d", (256, 5, 5), 512),
    ("ReLU", (256, 5, 5), 0),
]
for _c, _s, _p in [
    (256, 9, 590_080),
    (256, 9, 590_080),
    (256, 17, 590_080),
    (256, 17, 590_080),
    (128, 33, 295_040),
    (64, 64, 73_792),
]:
    _T2_G_ROWS += [
        ("ConvTranspose2d", (_c, _s, _s), _p),
        ("BatchNorm2d", (_c, _s, _s), 2 * _c),
        ("ReLU", (_c, _s, _s), 0),
    ]
_T2_G_ROWS += [("ConvTranspose2d", (3, 64, 64), 1_731), ("Tanh", (3, 64, 64), 0)]
_T2_D_ROWS = (
    _T1_D_ROWS[:2]
    + [
        r
        for blk in range(3)
        for r in _T1_D_ROWS[2 + 3 * blk : 5 + 3 * blk]
        + [("Dropout2d", _T1_D_ROWS[4 + 3 * blk][1], 0)]
    ]
    + [("Linear", (1,), 8_193)]
)

_CASES = {
    "G1": (ref.Task1Generator, (100,), _T1_G_ROWS, 5_142_083, (3, 64, 64)),
    "D1": (ref.Task1Discriminator, (3, 64, 64), _T1_D_ROWS, 4_316_545, ()),
    "G2": (ref.Task2Generator, (100,), _T2_G_ROWS, 3_380_227, (3, 64, 64)),
    "D2": (ref.Task2Discriminator, (3, 64, 64), _T2_D_ROWS, 4_316_545, ()),
}


def _summary_rows(model: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, ...], int]]:
    """torchsummary's rows: one per leaf-module call, in the order the calls finish."""
    rows: list[tuple[str, tuple[int, ...], int]] = []

    def hook(mod: nn.Module, _inp: object, out: torch.Tensor) -> None:
        n_params = sum(p.numel() for p in mod.parameters(recurse=False))
        rows.append((type(mod).__name__, tuple(out.shape[1:]), n_params))

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return rows


@pytest.mark.parametrize("key", list(_CASES))
def test_parameter_counts_rows_and_output_shape(key: str) -> None:
    cls, in_shape, rows, total, out_tail = _CASES[key]
    torch.manual_seed(0)
    model = cls()
    assert sum(p.numel() for p in model.parameters()) == total
    assert model(torch.randn(2, *in_shape)).shape == (2, *out_tail)
    assert _summary_rows(model, torch.randn(2, *in_shape)) == rows


def test_table_totals_match_spec() -> None:
    # Guards the embedded tables themselves against typos.
    assert sum(r[2] for r in _T1_G_ROWS) == 5_142_083
    assert sum(r[2] for r in _T1_D_ROWS) == 4_316_545
    assert sum(r[2] for r in _T2_G_ROWS) == 3_380_227
    assert sum(r[2] for r in _T2_D_ROWS) == 4_316_545


@pytest.mark.parametrize(
    "cls", [ref.Task1Generator, ref.Task1Discriminator, ref.Task2Discriminator]
)
def test_apply_init_equals_registration_order_init(cls, monkeypatch) -> None:
    """self.apply (post-order) draws the same numbers as a loop over modules() (SPEC)."""
    torch.manual_seed(123)
    via_apply = cls().state_dict()

    init = ref.weights_init
    monkeypatch.setattr(ref, "weights_init", lambda m: None)
    torch.manual_seed(123)
    model = cls()  # PyTorch defaults only
    for m in model.modules():  # registration order, after every layer is built
        init(m)
    for name, value in model.state_dict().items():
        assert torch.equal(value, via_apply[name]), name


def test_init_statistics_task1() -> None:
    G, D = ref.build_task1(0)
    for m in list(G.modules()) + list(D.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            assert abs(m.weight.std().item() - 0.02) < 0.01
            if m.bias is not None:  # default init, not zero: bound 1/sqrt(fan_in)
                assert m.bias.abs().max().item() > 0
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            assert abs(m.weight.mean().item() - 1.0) < 0.01
            assert torch.count_nonzero(m.bias) == 0
        if isinstance(m, nn.Linear):  # default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            assert m.weight.abs().max().item() <= 1 / math.sqrt(m.in_features)


def test_task2_generator_keeps_default_init() -> None:
    G, D = ref.build_task2(0)
    bns = [m for m in G.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in bns)
    dbns = [m for m in D.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(not torch.all(m.weight == 1) for m in dbns)  # critic got the DCGAN init


@pytest.mark.parametrize("build", [ref.build_task1, ref.build_task2])
def test_build_is_deterministic(build) -> None:
    a, b = build(7), build(7)
    for m1, m2 in zip(a, b, strict=True):
        for (n, v1), v2 in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
            assert torch.equal(v1, v2), n


def test_task1_train_step_runs_and_updates() -> None:
    G, D = ref.build_task1(0)
    opt_G = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.999))
    before = D.ls[0].weight.detach().clone()
    loss_D, loss_G = ref.task1_train_step(G, D, opt_G, opt_D, torch.rand(2, 3, 64, 64) * 2 - 1)
    assert isinstance(loss_D, float) and isinstance(loss_G, float)
    assert math.isfinite(loss_D) and math.isfinite(loss_G)
    assert not torch.equal(before, D.ls[0].weight)
    # three D calls in train mode: BatchNorm momentum 0.1 applied three times
    assert D.ls[2][1].num_batches_tracked.item() == 3


def test_task2_train_step_schedule_and_clipping() -> None:
    G, D = ref.build_task2(0)
    opt_G = torch.optim.SGD(G.parameters(), lr=1e-4)
    opt_D = torch.optim.SGD(D.parameters(), lr=1e-4)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    g_before = G.fc[0].weight.detach().clone()
    loss_D, loss_G = ref.task2_train_step(G, D, opt_G, opt_D, x, i=0)
    assert isinstance(loss_D, float) and loss_G is None
    assert torch.equal(g_before, G.fc[0].weight)
    assert all(p.abs().max().item() <= 0.01 for p in D.parameters())
    loss_D, loss_G = ref.task2_train_step(G, D, opt_G, opt_D, x, i=4)
    assert isinstance(loss_G, float)
    assert not torch.equal(g_before, G.fc[0].weight)


def test_baseline_benchmark_smoke() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import baseline

    result = baseline.run_baseline(task=2, batch_size=2, steps=1, device="cpu", data=None)
    assert set(result) >= {"images_per_s", "seconds", "peak_mem_bytes"}
    assert result["images_per_s"] > 0 and result["seconds"] > 0
    raw = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8)  # needs decode + resize
    result = baseline.run_baseline(task=1, batch_size=2, steps=1, device="cpu", data=raw)
    assert result["images_per_s"] > 0
