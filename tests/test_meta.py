"""``Recipe.meta`` (torchvision style): every preset says what it is and where it comes from;
figures only with their provenance."""

from __future__ import annotations

import pytest

from gankit.presets import META_KEYS, get_preset, list_presets, meta_table


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_has_meta_with_the_known_keys(name):
    meta = get_preset(name).meta
    assert set(meta) == set(META_KEYS)
    assert meta["summary"] and meta["source"] and meta["recipe"]
    for figure in meta["benchmarks"]:  # a figure without provenance is not a figure
        assert {"metric", "value", "machine", "steps", "seeds", "extractor"} <= set(figure)


def test_report_presets_cite_the_report():
    for name in ("dcgan_task1", "wgan_task2"):
        assert "SPEC.md" in get_preset(name).meta["source"]


def test_every_figure_comes_from_a_committed_benchmark_run():
    import json
    from pathlib import Path

    results = Path(__file__).resolve().parent.parent / "benchmarks"
    measured = set()
    for path in results.glob("results-quality-*.json"):
        for row in json.loads(path.read_text())["summary"]:
            for which in ("best", "last"):
                measured.add((row["preset"], row["metric"], which, float(f"{row[which]:.4g}")))
    for name in list_presets():
        for figure in get_preset(name).meta.get("benchmarks", []):
            metric = "swd" if figure["metric"].startswith("SWD") else "fid"
            which = "best" if ", best" in figure["metric"] else "last"
            assert (name, metric, which, figure["value"]) in measured, (name, figure)


def test_meta_table_lists_every_preset():
    table = meta_table()
    for name in list_presets():
        assert f"``{name}``" in table
    assert table.count("none yet: no measured run") == sum(
        not get_preset(n).meta.get("benchmarks") for n in list_presets())
