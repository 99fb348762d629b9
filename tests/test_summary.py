"""Layer tables equal the report's, row for row, totals and MB lines included."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import gankit
from conftest import GOLDEN, SHARED_SEED
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
