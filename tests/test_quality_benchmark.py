"""benchmarks/quality.py: the collapse flag on hand-made curves, and the quick configuration
end to end (JSON with provenance, PNG, table)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from PIL import Image

from gankit.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "quality.py"


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("curve", "higher", "expected"),
    [
        ([10, 5, 4, 4.5, 5.9], False, "stable"),  # never more than 50% above its best (4)
        ([10, 4, 7, 5, 6.5], False, "oscillates"),  # 7 > 6, then back to 5
        ([10, 4, 7, 9, 6.5], False, "collapsed"),  # 7, 9, 6.5: all above 6 to the end
        ([10, 4, 5, 6.1], False, "collapsed"),  # worse only at the last evaluation
        ([4, 7, 8], False, "collapsed"),  # best at the start: the run only got worse
        ([0.1, 0.6, 0.5, 0.3], True, "collapsed"),  # precision: 0.3 < 0.6 / 1.5
        ([0.1, 0.6, 0.3, 0.5], True, "oscillates"),
        ([0.0, 0.0, 0.0], True, "-"),  # a relative threshold means nothing at 0
        ([0.2, -0.01, 0.1], False, "-"),  # unbiased KID below 0
    ],
)
def test_collapse_flag(quality, curve, higher, expected):
    assert quality.collapse_state(curve, higher, 0.5) == expected


def test_stability_ratio_and_images_seen(quality):
    assert quality.stability_ratio(4.0, 6.0, False) == 1.5
    assert quality.stability_ratio(0.6, 0.3, True) == 2.0
    assert math.isinf(quality.stability_ratio(0.5, 0.0, True))
    # 10 images in batches of 4: 3 steps an epoch (4, 4, 2)
    assert [quality.images_seen(s, 10, 4) for s in (0, 1, 2, 3, 4, 6)] == [0, 4, 8, 10, 14, 20]


@pytest.mark.slow  # ~10 s on an idle 2-core machine, up to ~50 s when it is shared
def test_quick_run_writes_json_png_and_table(quality, tmp_path, capsys):
    doc = quality.main(["--quick", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "OFFLINE extractor" in out and "collapse flag per seed" in out
    data = json.loads((tmp_path / "quality.json").read_text())
    assert data == json.loads(json.dumps(doc, default=str))
    assert data["gankit_version"] and "commit" in data["git"] and data["machine"]["cores"] >= 1
    assert data["seeds"] == [0, 1] and data["settings"]["presets"] == ["dcgan_task1", "wgan_task2"]
    prov = data["metric_provenance"]
    assert prov["extractor"].startswith("tiny") and prov["comparable_to_published"] is False
    assert prov["settings"]["swd"]["dirs_per_repeat"] == 128 and "ms_ssim" in prov["settings"]
    runs = data["runs"]
    assert [(r["preset"], r["seed"]) for r in runs] == [
        ("dcgan_task1", 0), ("dcgan_task1", 1), ("wgan_task2", 0), ("wgan_task2", 1)]
    for r in runs:  # the same training images for every preset, whatever its batch size
        assert r["images_seen"] == [0, 256, 512]
        assert all({"swd", "fid", "kid_mean", "precision", "recall", "ms_ssim"} <= set(e)
                   for e in r["evals"])
    assert {r["batch_size"] for r in runs} == {64, 32}
    assert len(data["summary"]) == 2 * 6
    table = (tmp_path / "table.txt").read_text()
    assert "dcgan_task1" in table and "wgan_task2" in table and "last/best" in table
    assert Image.open(tmp_path / "quality.png").size[0] > 600


def test_sweep_trains_the_seeds_together_with_the_same_curves(quality, tmp_path):
    """The seeds of a preset train as one MultiTrainer (the default); every curve is bitwise the
    same as with --no-sweep (one Trainer after another)."""
    args = ["--quick", "--presets", "dcgan_task1", "--images", "128", "--eval-every-images", "64", "--eval-samples", "32"]
    alone = quality.main([*args, "--no-sweep", "--out", str(tmp_path / "alone")])
    together = quality.main([*args, "--out", str(tmp_path / "sweep")])
    assert [(r["seed"], r["evals"]) for r in alone["runs"]] == [(r["seed"], r["evals"]) for r in together["runs"]]
    assert all(r["trained_as"].startswith("sweep member") for r in together["runs"])


def test_bad_options_are_one_line_errors(quality, tmp_path):
    cases = [
        (["--quick", "--presets", "nope"], "unknown presets"),
        (["--quick", "--presets", "dcgan_task1", "--eval-every-images", "100"], "multiple of 64"),
        (["--quick", "--seeds", "a,b"], "comma-separated integers"),
        (["--quick", "--import", "benchmarks/no_such_file.py"], "does not exist; give the path of a .py file"),
    ]
    for argv, match in cases:
        with pytest.raises(ConfigError, match=match) as info:
            quality.main([*argv, "--out", str(tmp_path)])
        assert "\n" not in str(info.value)


def test_import_takes_a_benchmark_module_by_path(quality, tmp_path):
    """--import benchmarks/wgan_gp_critics.py registers its presets (no PYTHONPATH needed)."""
    import sys

    from gankit.presets import get_preset, unregister_preset, wgan_gp_task2

    def layers(recipe, word):
        return [type(m).__name__ for m in recipe.discriminator.modules() if word in type(m).__name__]

    try:
        with pytest.raises(ConfigError, match="unknown presets \\['nope'\\]; registered: .*wgan_gp_task2_nonorm"):
            quality.main(["--quick", "--import", str(ROOT / "benchmarks" / "wgan_gp_critics.py"),
                          "--presets", "wgan_gp_task2_nonorm,nope", "--out", str(tmp_path)])
        base = wgan_gp_task2(image_size=32, base_channels=8)
        nonorm, nodrop = (get_preset(f"wgan_gp_task2_{v}", image_size=32, base_channels=8) for v in ("nonorm", "nodropout"))
        assert layers(nonorm, "Norm") == [] and layers(base, "Norm") == layers(nodrop, "Norm") == ["GroupNorm"] * 2
        assert layers(nodrop, "Dropout") == [] and layers(base, "Dropout") == layers(nonorm, "Dropout") == ["Dropout2d"] * 2
        for variant in (nonorm, nodrop):
            assert (variant.n_critic, variant.gp_weight, variant.g_optimizer) == (5, 10.0, "adam_wgan_gp")
    finally:
        for name in ("wgan_gp_task2_nonorm", "wgan_gp_task2_nodropout"):
            unregister_preset(name, missing_ok=True)
        sys.modules.pop("wgan_gp_critics", None)


def test_write_meta_gives_each_preset_the_provenance_of_its_own_runs(quality, tmp_path):
    """A gathering run (--reuse ... --write-meta) names, per preset, where its runs were trained."""
    here = {"commit": "a" * 40, "dirty": False}
    elsewhere = {"git": {"commit": "b" * 40, "dirty": True}, "machine": {"cpu": "Xeon", "cores": 2},
                 "date": "2026-12-02", "folder": "runs/old"}
    doc = {"git": here, "machine": {"cpu": "AMD EPYC", "cores": 2}, "date": "2026-12-03",
           "settings": {"config": "cpu", "data": "toy-faces", "image_size": 32, "base_channels": 32,
                        "fast": True, "images": 163840, "epochs": None, "seeds": [0, 1], "extractor": "tiny"},
           "runs": [{"preset": "fresh", "seed": 0, "steps": 2560},
                    {"preset": "reused", "seed": 0, "steps": 2560, "reused_from": elsewhere},
                    {"preset": "reused", "seed": 1, "steps": 2560, "reused_from": {**elsewhere, "date": None}}]}
    rows = [{"preset": p, "metric": m, "best": 1.0, "last": 2.0} for p in ("fresh", "reused") for m in ("swd", "fid")]
    path = tmp_path / "measured.json"
    path.write_text('{"untouched": {"figures": []}}')
    quality.write_meta(path, rows, doc)
    measured = json.loads(path.read_text())
    assert measured["untouched"] == {"figures": []}  # other presets' figures are kept
    fresh, reused = measured["fresh"]["figures"], measured["reused"]["figures"]
    assert len(fresh) == len(reused) == 4 and [f["value"] for f in fresh] == [1.0, 2.0, 1.0, 2.0]
    assert {(f["commit"], f["machine"], f["date"]) for f in fresh} == {("aaaaaaa", "AMD EPYC, 2 cores", "2026-12-03")}
    assert {(f["commit"], f["machine"], f["date"]) for f in reused} == {
        ("bbbbbbb+dirty", "Xeon, 2 cores", "2026-12-02, not recorded")}


def test_a_reused_run_keeps_the_provenance_of_the_folder_it_was_trained_in(quality, tmp_path):
    cfg = {"data": "toy-faces", "images": 512}
    trained = {"git": {"commit": "c" * 40, "dirty": False}, "machine": {"cpu": "Xeon", "cores": 2}, "date": "2026-12-01"}
    gathered = {"git": {"commit": "d" * 40, "dirty": False}, "machine": {"cpu": "AMD EPYC", "cores": 2}, "settings": cfg,
                "runs": [{"preset": "a", "seed": 0, "reused_from": {"folder": "runs/first", **trained}},
                         {"preset": "b", "seed": 0},
                         {"preset": "c", "seed": 0, "reused_from": {"folder": "runs/older", "git": trained["git"]}}]}
    (tmp_path / "quality.json").write_text(json.dumps(gathered))
    found = quality.reusable_runs([str(tmp_path)], cfg)
    first, own = found[("a", 0)]["reused_from"], found[("b", 0)]["reused_from"]
    assert (first["git"], first["machine"], first["date"]) == (trained["git"], trained["machine"], "2026-12-01")
    assert (own["git"], own["machine"], own["date"]) == (gathered["git"], gathered["machine"], None)
    assert first["folder"] == own["folder"] == str(tmp_path)
    older = found[("c", 0)]["reused_from"]  # reused before machines were recorded: the folder's
    assert (older["git"], older["machine"], older["date"]) == (trained["git"], gathered["machine"], None)


def _seed_means(runs: list[dict], metric: str, digits: int) -> str:
    """A metric's mean over the runs (seeds) at every evaluation after the first, as the docs print it."""
    n = len(runs[0]["evals"])
    return ", ".join(f"{sum(r['evals'][i][metric] for r in runs) / len(runs):.{digits}f}" for i in range(1, n))


def test_docs_r3gan_gamma_sweep_table_is_the_committed_runs():
    """docs/beyond.rst's second gamma sweep shows the seed means of the committed JSONs."""
    page = (ROOT / "docs" / "beyond.rst").read_text(encoding="utf-8").replace("**", "")
    for name in ("results-r3gan-sweep2.json", "results-r3gan-sweep3.json"):
        report = json.loads((ROOT / "benchmarks" / name).read_text())
        assert report["settings"]["seeds"] == [0, 1] and report["settings"]["images"] == 40960
        presets = sorted({r["preset"] for r in report["runs"]})
        for preset in presets:
            runs = [r for r in report["runs"] if r["preset"] == preset]
            assert sorted(r["seed"] for r in runs) == [0, 1] and len(runs[0]["evals"]) == 5
            gamma = preset.split("r1_gamma=")[1].split(";")[0]
            ms_ssim = sum(r["evals"][4]["ms_ssim"] for r in runs) / len(runs)
            row = (f"   * - {gamma}\n     - {_seed_means(runs, 'swd', 1)}\n     - {_seed_means(runs, 'fid', 2)}\n"
                   f"     - {ms_ssim:.3f}\n")
            assert row in page, row


def test_docs_r3gan_full_length_table_is_the_committed_run():
    """docs/beyond.rst's full-length gamma-100 table shows the seed means of the committed JSON."""
    page = (ROOT / "docs" / "beyond.rst").read_text(encoding="utf-8")
    report = json.loads((ROOT / "benchmarks" / "results-r3gan100-full.json").read_text())
    assert report["settings"]["seeds"] == [0, 1] and report["settings"]["config"] == "cpu"
    for preset in ("dcgan_task1", "r3gan_task1[r1_gamma=100;r2_gamma=100]"):
        runs = [r for r in report["runs"] if r["preset"] == preset]
        assert sorted(r["seed"] for r in runs) == [0, 1] and runs[0]["images_seen"][-1] == 163_840
        assert f"     - {_seed_means(runs, 'swd', 1)}\n     - {_seed_means(runs, 'fid', 3)}\n" in page, preset


REPORT_PRESETS = ("dcgan_task1", "wgan_task2")


def _summary_by_key(report: dict) -> dict[tuple[str, str], dict]:
    """A quality.json's summary rows by (preset, metric)."""
    return {(s["preset"], s["metric"]): s for s in report["summary"]}


def beyond_table_rows(report: dict) -> list[str]:
    """The rows of docs/beyond.rst's main table, rendered from a quality.json's summary.

    Per preset: SWD best / last, FID best / last (means over seeds), MS-SSIM last, the SWD
    and FID collapse flags of each seed, and whether the preset beats both report presets
    (a lower best *and* last SWD *and* FID than each of them).
    """
    summary = _summary_by_key(report)
    presets = list(dict.fromkeys(s["preset"] for s in report["summary"] if "(raw G)" not in s["preset"]))

    def beats(preset: str) -> str:
        if preset in REPORT_PRESETS:
            return "--"
        return "yes" if all(summary[preset, m][k] < summary[r, m][k] for r in REPORT_PRESETS
                            for m in ("swd", "fid") for k in ("best", "last")) else "no"

    rows = []
    for preset in presets:
        swd, fid, ms = summary[preset, "swd"], summary[preset, "fid"], summary[preset, "ms_ssim"]
        flags = ", ".join(f"s{seed}: {swd['seed_flags'][seed]} / {fid['seed_flags'][seed]}"
                          for seed in sorted(swd["seed_flags"]))
        cells = [f"``{preset}``", f"{swd['best']:.1f}", f"{swd['last']:.1f}", f"{fid['best']:.3f}",
                 f"{fid['last']:.3f}", f"{ms['last']:.3f}", flags, beats(preset)]
        rows.append("   * - " + "\n     - ".join(cells) + "\n")
    return rows


def test_docs_beyond_table_is_the_committed_benchmark():
    """docs/beyond.rst's table of the seven presets is benchmarks/results-quality-beyond-cpu.json."""
    page = (ROOT / "docs" / "beyond.rst").read_text(encoding="utf-8")
    report = json.loads((ROOT / "benchmarks" / "results-quality-beyond-cpu.json").read_text())
    assert report["settings"]["seeds"] == [0, 1] and report["settings"]["config"] == "cpu"
    rows = beyond_table_rows(report)
    assert len(rows) == 7
    for row in rows:
        assert row in page, row


def test_docs_stable_ablation_table_is_the_committed_runs():
    """docs/beyond.rst's ablation of dcgan_task1_stable: each row is a committed run's seed means."""
    page = (ROOT / "docs" / "beyond.rst").read_text(encoding="utf-8")

    def summary(name: str) -> dict:
        report = json.loads((ROOT / "benchmarks" / name).read_text())
        assert report["settings"]["seeds"] == [0, 1] and report["settings"]["config"] == "cpu"
        return _summary_by_key(report)

    now, v1 = summary("results-quality-beyond-cpu.json"), summary("results-quality-beyond-cpu-v1.json")
    v2 = summary("results-quality-beyond-cpu-v2.json")
    variants = summary("results-stable-variants.json")
    rows = [("``dcgan_task1`` (the report)", now, "dcgan_task1"),
            ("+ the DCGAN paper's lr 2e-4", now, "dcgan_task1_stable (raw G)"),
            ("+ generator EMA (= ``dcgan_task1_stable``)", now, "dcgan_task1_stable"),
            ("``dcgan_task1`` + generator EMA only (lr 1e-4)", variants, "dcgan_task1_stable[augment=none]"),
            ("lr 2e-4 + DiffAugment ``color,translation,cutout``, raw generator", v2, "dcgan_task1_stable (raw G)"),
            ("lr 2e-4 + DiffAugment ``color,translation,cutout`` + EMA (the second ``dcgan_task1_stable``)", v2,
             "dcgan_task1_stable"),
            ("DiffAugment ``color,translation,cutout`` at lr 1e-4, raw generator", v1, "dcgan_task1_stable (raw G)"),
            ("DiffAugment + EMA at lr 1e-4 (the first ``dcgan_task1_stable``)", v1, "dcgan_task1_stable")]
    for label, table, preset in rows:
        swd, fid, ms = (table[preset, m] for m in ("swd", "fid", "ms_ssim"))
        row = (f"   * - {label}\n     - {swd['best']:.1f} / {swd['last']:.1f}\n"
               f"     - {fid['best']:.3f} / {fid['last']:.3f}\n     - {ms['last']:.3f}\n")
        assert row in page, row


def test_docs_wgan_gp_per_generator_update_table_is_the_committed_benchmark():
    """docs/beyond.rst compares wgan_gp_task2 and dcgan_task1 at equal generator updates."""
    page = (ROOT / "docs" / "beyond.rst").read_text(encoding="utf-8")
    report = json.loads((ROOT / "benchmarks" / "results-quality-beyond-cpu.json").read_text())

    def at(preset: str, g_updates: int) -> str:
        runs = [r for r in report["runs"] if r["preset"] == preset]
        n_critic = runs[0]["recipe"]["n_critic"]  # 160 steps an epoch: every 5th updates G
        i = [e["step"] for e in runs[0]["evals"]].index(g_updates * n_critic)
        swd, fid = (sum(r["evals"][i][m] for r in runs) / len(runs) for m in ("swd", "fid"))
        return f"{swd:.1f} / {fid:.3f} ({runs[0]['images_seen'][i]:,} images)"

    assert f"     - {at('wgan_gp_task2', 320)}\n     - {at('dcgan_task1', 320)}\n" in page
    assert f"     - {at('wgan_gp_task2', 512)}\n     - {at('dcgan_task1', 640)}\n" in page


def _probe_cell(doc: dict, key: str) -> str:
    last = [r for r in doc["results"] if r["images"] == 163_840]
    fid = sum(r[key]["fid"] for r in last) / len(last)
    swd = f"{sum(r[key]['swd'] for r in last) / len(last):.1f}" if "swd" in last[0][key] else "--"
    return f"{swd} / {fid:.3f}"


def test_docs_ema_probe_table_is_the_committed_runs():
    """docs/beyond.rst's EMA table is benchmarks/results-ema-probe-*.json, and the probe trains as the
    benchmark does: its preset EMA ends where the table of the same commit's recipes (v2) ends."""
    page = (ROOT / "docs" / "beyond.rst").read_text(encoding="utf-8")
    probes = {p: json.loads((ROOT / "benchmarks" / f"results-ema-probe-{p}.json").read_text()) for p in ("stable", "sngan")}
    keys = [k for k in probes["stable"]["results"][-1] if k not in ("seed", "images")]
    assert len(keys) == 10
    for key in keys:
        assert f"     - {_probe_cell(probes['stable'], key)}\n     - {_probe_cell(probes['sngan'], key)}\n" in page, key
    v2 = _summary_by_key(json.loads((ROOT / "benchmarks" / "results-quality-beyond-cpu-v2.json").read_text()))
    for probe, preset in ((probes["stable"], "dcgan_task1_stable"), (probes["sngan"], "sngan_task1")):
        assert probe["preset"] == preset
        last = [r for r in probe["results"] if r["images"] == 163_840]
        for metric in ("swd", "fid"):
            mean = sum(r["preset_ema"][metric] for r in last) / len(last)
            assert mean == pytest.approx(v2[preset, metric]["last"], rel=1e-9), (preset, metric)



def _only_run(name: str) -> dict:
    """The one run of a committed single-preset, single-seed quality.json."""
    (run,) = json.loads((ROOT / "benchmarks" / name).read_text())["runs"]
    return run


def _swd_fid(evaluation: dict) -> str:
    return f"{evaluation['swd']:.1f} / {evaluation['fid']:.3f}"


def test_docs_wgan_gp_longer_run_and_ema_are_the_committed_runs():
    """docs/beyond.rst's five-times-longer wgan_gp_task2 run and its EMA, betas (0.5, 0.9),
    no-normalisation and no-dropout variants are the committed JSONs, and the long run trains
    as the benchmark does: at 163,840 images it is the table's seed 0."""
    page = (ROOT / "docs" / "beyond.rst").read_text(encoding="utf-8")
    table = json.loads((ROOT / "benchmarks" / "results-quality-beyond-cpu.json").read_text())
    long, ema, b05, nonorm = (_only_run(f"results-wgan-gp-{v}-s0.json") for v in ("5x", "ema", "b05", "nonorm"))
    seed0 = {r["preset"]: r for r in table["runs"] if r["seed"] == 0}
    base = seed0["wgan_gp_task2"]
    n_critic = long["recipe"]["n_critic"]
    assert long["preset"] == "wgan_gp_task2" and long["seed"] == 0 and long["images_seen"][-1] == 5 * 163_840
    i = long["images_seen"].index(163_840)
    assert (long["evals"][i]["swd"], long["evals"][i]["fid"]) == (base["evals"][-1]["swd"], base["evals"][-1]["fid"])
    for images, e in zip(long["images_seen"], long["evals"]):
        if e["step"]:
            row = f"   * - {images:,}\n     - {e['step'] // n_critic:,}\n     - {_swd_fid(e)}\n"
            assert row in page, row
    assert _swd_fid(seed0["dcgan_task1"]["evals"][-1]) in page
    assert ema["overrides"]["ema_half_life_images"] == 10_000 and ema["overrides"]["ema_recompute_bn"] == 2048
    assert ema["images_seen"][-1] == 163_840
    assert _swd_fid(ema["evals"][-1]) in page
    assert _swd_fid(base["evals"][-1]) in page
    assert b05["overrides"]["g_optimizer"] == b05["overrides"]["d_optimizer"] == "adam_wgan_gp_b05"
    assert b05["images_seen"][-1] == 163_840
    assert f"gave {_swd_fid(b05['evals'][-1])}" in page
    assert nonorm["preset"] == "wgan_gp_task2_nonorm" and nonorm["images_seen"][-1] == 163_840
    assert f"gave {_swd_fid(nonorm['evals'][-1])}, behind" in page
    assert nonorm["images_seen"] == base["images_seen"]
    behind = [a["swd"] > b["swd"] for i, a, b in zip(base["images_seen"], nonorm["evals"], base["evals"]) if i >= 40_960]
    assert len(behind) == 7 and all(behind)  # "behind ... on SWD at every evaluation from 40,960 images on"
    # the critic without dropout: both seeds, the table's images; mean and seed 0 as the page gives them
    nodrop = json.loads((ROOT / "benchmarks" / "results-wgan-gp-nodropout.json").read_text())
    runs = {r["seed"]: r for r in nodrop["runs"]}
    assert set(runs) == {0, 1} and all(r["preset"] == "wgan_gp_task2_nodropout" for r in runs.values())
    assert all(r["images_seen"] == base["images_seen"] for r in runs.values())
    mean = {m: sum(r["evals"][-1][m] for r in runs.values()) / 2 for m in ("swd", "fid")}
    table_mean = _summary_by_key(table)
    assert f"gave SWD {mean['swd']:.1f} and FID {mean['fid']:.3f}" in page
    assert f"seed 0 alone {_swd_fid(runs[0]['evals'][-1])}), against the preset's " \
           f"{table_mean['wgan_gp_task2', 'swd']['last']:.1f} / {table_mean['wgan_gp_task2', 'fid']['last']:.3f}" in page
    assert mean["fid"] < table_mean["wgan_gp_task2", "fid"]["last"] / 2  # "That halves FID"
    assert mean["swd"] > table_mean["dcgan_task1", "swd"]["last"] and mean["fid"] > table_mean["dcgan_task1", "fid"]["last"]
    # ... and five times as long: the table's last column, its first evaluation the run above's seed 0
    long_nodrop = _only_run("results-wgan-gp-nodropout-5x-s0.json")
    assert long_nodrop["images_seen"] == long["images_seen"] and long_nodrop["seed"] == 0
    j = long_nodrop["images_seen"].index(163_840)
    assert long_nodrop["evals"][j] == runs[0]["evals"][-1]
    for images, a, b in zip(long["images_seen"], long["evals"], long_nodrop["evals"]):
        if a["step"]:
            row = f"   * - {images:,}\n     - {a['step'] // n_critic:,}\n     - {_swd_fid(a)}\n     - {_swd_fid(b)}\n"
            assert row in page, row
    end, dcgan_end = long_nodrop["evals"][-1], seed0["dcgan_task1"]["evals"][-1]
    assert f"FID\n{end['fid']:.3f}, ahead of ``dcgan_task1``'s seed 0 at the same updates ({dcgan_end['fid']:.3f})" in page
    assert f"but SWD {end['swd']:.1f}, behind both ({dcgan_end['swd']:.1f} and {long['evals'][-1]['swd']:.1f})" in page
    assert end["fid"] < dcgan_end["fid"] and end["swd"] > dcgan_end["swd"] > long["evals"][-1]["swd"]
