"""Layer tables equal the report's, row for row, totals and MB lines included."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
import torch
from torch import nn

import gankit
from conftest import GOLDEN, SHARED_SEED
from gankit.constraints import spectral_norm_
from gankit.models import dcgan_discriminator
from gankit.presets import get_preset

ROW = re.compile(r"^\s*(\w+)-(\d+)\s+(\[[-\d, ]+\])\s+([\d,]+)$")

CASES = [
    ("dcgan_task1", "generator", "task1_generator.txt"),
    ("dcgan_task1", "discriminator", "task1_discriminator.txt"),
    ("wgan_task2", "generator", "task2_generator.txt"),
    ("wgan_task2", "discriminator", "task2_discriminator.txt"),
]


def parse_table(text: str) -> dict:
    rows, totals = [], {}
    for line in text.splitlines():
        m = ROW.match(line)
        if m:
            shape = tuple(int(x) for x in m.group(3).strip("[]").split(","))
            rows.append((m.group(1), int(m.group(2)), shape, int(m.group(4).replace(",", ""))))
        elif ":" in line:
            key, value = line.split(":", 1)
            totals[key.strip()] = value.strip()
    return {"rows": rows, "totals": totals}


@pytest.mark.parametrize("preset,net,fname", CASES)
def test_table_matches_report(preset, net, fname):
    recipe = get_preset(preset)
    model = getattr(recipe, net)
    size = (recipe.z_dim,) if net == "generator" else (3, 64, 64)
    table = gankit.summary(model, size, print_fn=None)
    expected = parse_table((GOLDEN / fname).read_text())
    got = parse_table(str(table))
    assert len(expected["rows"]) >= 13
    assert got["rows"] == expected["rows"]
    assert got["totals"] == expected["totals"]
    assert set(expected["totals"]) >= {
        "Total params",
        "Input size (MB)",
        "Forward/backward pass size (MB)",
        "Params size (MB)",
        "Estimated Total Size (MB)",
    }
    # and the whole text, character for character
    assert str(table).strip() == (GOLDEN / fname).read_text().strip()


@pytest.mark.skipif(not SHARED_SEED.is_dir(), reason="no ../shared/seed beside this checkout")
@pytest.mark.parametrize("fname", [c[2] for c in CASES])
def test_golden_copies_equal_shared_seed(fname):
    assert (GOLDEN / fname).read_text() == (SHARED_SEED / fname).read_text()


def test_summary_leaves_model_and_rng_untouched():
    recipe = get_preset("dcgan_task1")
    before = {k: v.clone() for k, v in recipe.discriminator.state_dict().items()}
    rng = torch.get_rng_state()
    recipe.discriminator.train()
    gankit.summary(recipe.discriminator, (3, 64, 64), print_fn=None)
    assert torch.equal(rng, torch.get_rng_state())
    assert recipe.discriminator.training
    for k, v in recipe.discriminator.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_module_called_twice_gives_two_rows_and_counts_nontrainable():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.frozen = nn.Linear(4, 2)
            self.frozen.requires_grad_(False)

        def forward(self, x):
            return self.frozen(self.fc(self.fc(x)))

    table = gankit.summary(Twice(), (4,), print_fn=None)
    assert [r.name for r in table.rows] == ["Linear-1", "Linear-2", "Linear-3"]
    text = str(table)
    assert "Trainable params: 40" in text  # fc counted on each of its two calls
    assert "Non-trainable params: 10" in text


# --- torchsummary 1.5.1 itself -------------------------------------------------------------

def torchsummary_text(model: nn.Module, input_size: tuple[int, ...]) -> str:
    """What ``torchsummary.summary(model, input_size, device="cpu")`` writes to stdout."""
    torchsummary = pytest.importorskip(
        "torchsummary", reason="torchsummary is not installed (it is in the dev extra)"
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        torchsummary.summary(model, input_size, device="cpu")
    return out.getvalue()


@pytest.mark.parametrize("preset,net,fname", CASES)
def test_torchsummary_prints_the_report_tables(preset, net, fname):
    # Byte for byte, nothing normalised: torchsummary ends with a newline, as the files do.
    recipe = get_preset(preset)
    size = (recipe.z_dim,) if net == "generator" else (3, 64, 64)
    model = getattr(recipe, net)
    assert model.training  # torchsummary's pass runs in train mode, gankit's in eval mode
    text = torchsummary_text(model, size)
    assert text == (GOLDEN / fname).read_text()
    assert str(gankit.summary(model, size, print_fn=None)) + "\n" == text


W = 512  # wide enough for the MB lines to show the sign rule of tuple outputs


class Block(nn.Module):
    """A custom container that is not a Sequential: torchsummary gives it a row."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(W, W)
        self.act = nn.Sequential(nn.LeakyReLU(0.2))

    def forward(self, x):
        return self.act(self.fc(x)) + x


class Split(nn.Module):
    """Returns a tuple: its row shows a list of shapes."""

    def forward(self, x):
        return x, x[:, :3]


class Odd(nn.Module):
    """A bias but no weight, and a parameter that is neither: rows count only weight/bias."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(W))
        self.scale = nn.Parameter(torch.ones(W))

    def forward(self, x):
        return x * self.scale + self.bias


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.shared = nn.Linear(W, W)
        self.twice = nn.ModuleList([self.shared, nn.Sequential(self.shared)])  # two parents
        self.frozen = nn.Linear(W, W)
        self.frozen.weight.requires_grad_(False)
        self.odd = Odd()
        self.norm = nn.BatchNorm1d(W, affine=False)  # weight and bias are None
        self.split = Split()

    def forward(self, x):
        x = self.block(self.block(x))  # the same container called twice
        x = self.norm(self.odd(self.frozen(self.shared(x))))
        a, b = self.split(x)
        return torch.cat([a, b], dim=1)


def sn_critic() -> nn.Module:
    return spectral_norm_(
        dcgan_discriminator(image_size=16, base_channels=8, norm_layer=None, head="linear",
                            sigmoid=False, dropout=0.3)
    )


OTHER_MODELS = {
    "spectral-norm critic": (sn_critic, (3, 16, 16)),
    "custom containers, shared and frozen layers, tuple outputs": (Mixed, (W,)),
    "small dcgan generator": (lambda: get_preset("dcgan_task1", image_size=16).generator, (100,)),
    "linear head with a sigmoid": (
        lambda: dcgan_discriminator(head="linear", sigmoid=True, dropout=0.25), (3, 64, 64)
    ),
}


@pytest.mark.parametrize("key", list(OTHER_MODELS))
def test_tables_agree_with_torchsummary_row_for_row(key):
    build, size = OTHER_MODELS[key]
    torch.manual_seed(0)
    model = build().train()
    table = gankit.summary(model, size, print_fn=None)
    text = torchsummary_text(model, size)
    got, want = str(table).splitlines(), text.splitlines()
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"line {i}: {g!r} != {w!r}"
    assert len(got) == len(want)
    assert text == str(table) + "\n"


def test_rule_details_on_the_mixed_model():
    # What the agreement above covers, spelled out (so it cannot pass vacuously).
    table = gankit.summary(Mixed(), (W,), print_fn=None)
    names = [r.name.rsplit("-", 1)[0] for r in table.rows]
    assert names == [
        "Linear", "LeakyReLU", "Block",  # the custom container is a row, after its layers
        "Linear", "LeakyReLU", "Block",  # ... and a row per call
        "Linear", "Linear", "Linear",  # `shared` is reached three ways: three hooks, three rows
        "Linear", "Odd", "BatchNorm1d", "Split",
    ]
    rows = {r.name: r for r in table.rows}
    assert rows["Linear-10"].params == W * W + W and not rows["Linear-10"].trainable  # frozen
    assert rows["Odd-11"].params == W and not rows["Odd-11"].trainable  # a bias, no weight
    assert rows["BatchNorm1d-12"].params == 0
    assert rows["Split-13"].output_shape == ((-1, W), (-1, 3))
    assert "Split-13  " + f"[[-1, {W}], [-1, 3]]".rjust(25) + " " + "0".rjust(15) in str(table)
    # Every row's shape multiplied out, -1s included: 12 rows of -W, then (-W) * (-3).
    assert table.forward_backward_mb == 2 * (12 * W - 3 * W) * 4 / 2**20
    assert "Forward/backward pass size (MB): 0.04" in str(table)


def test_spectral_norm_reads_are_rows():
    table = gankit.summary(nn.Sequential(nn.utils.parametrizations.spectral_norm(
        nn.Linear(4, 2))), (4,), print_fn=None)
    # one parametrization call while the layer runs, then one per read of `weight`
    assert [r.name for r in table.rows] == [
        "_SpectralNorm-1", "ParametrizedLinear-2", "_SpectralNorm-3", "_SpectralNorm-4",
        "_SpectralNorm-5", "_SpectralNorm-6",
    ]
    assert table.rows[1].params == 10 and table.rows[1].trainable
    assert table.rows[0].output_shape == (-1, 4)  # the (2, 4) weight, first entry as batch
