"""The docs' pictures: every image a page shows is a small committed PNG, the pictures of
``make pictures`` are the ones ``docs/images/pictures.json`` describes, the pages say where
and how they were made, and ``benchmarks/pictures.py --quick`` writes all of them."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
IMAGES = DOCS / "images"
SCRIPT = ROOT / "benchmarks" / "pictures.py"
MAX_BYTES = 256 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_RST_IMAGE = re.compile(r"^\s*\.\.\s+(?:image|figure)::\s*(?P<path>\S+)\s*$", re.M)
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\((?P<md>[^)\s]+)[^)]*\)|<img\s[^>]*src=\"(?P<html>[^\"]+)\"")


@pytest.fixture(scope="module")
def pictures():
    spec = importlib.util.spec_from_file_location("pictures_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def referenced_images() -> dict[Path, list[str]]:
    """Every image file a page shows -> the pages that show it."""
    found: dict[Path, list[str]] = {}
    for page in sorted(DOCS.glob("*.rst")):
        for m in _RST_IMAGE.finditer(page.read_text(encoding="utf-8")):
            found.setdefault((page.parent / m["path"]).resolve(), []).append(page.name)
    readme = ROOT / "README.md"
    for m in _MD_IMAGE.finditer(readme.read_text(encoding="utf-8")):
        found.setdefault((ROOT / (m["md"] or m["html"])).resolve(), []).append(readme.name)
    return found


def recorded() -> dict:
    return json.loads((IMAGES / "pictures.json").read_text(encoding="utf-8"))


def test_the_collector_finds_rst_and_markdown_images():
    text = '![a grid](docs/images/x.png "title") and <img src="docs/images/y.png" width="274">'
    assert [m["md"] or m["html"] for m in _MD_IMAGE.finditer(text)] == ["docs/images/x.png", "docs/images/y.png"]
    assert _RST_IMAGE.findall(".. figure:: images/a.png\n   :width: 10px\n\n  .. image:: images/b.png\n") == [
        "images/a.png", "images/b.png"]


def test_every_shown_image_is_a_small_committed_png():
    found = referenced_images()
    assert found, "no page shows an image"
    for path, pages in found.items():
        where = ", ".join(sorted(set(pages)))
        assert path.is_file(), f"{where} show {path}, which does not exist"
        assert path.is_relative_to(IMAGES), f"{where} show {path}, outside docs/images"
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE), f"{path} (shown by {where}) is not a PNG"
        assert len(data) < MAX_BYTES, f"{path} (shown by {where}) is {len(data):,} bytes, over {MAX_BYTES:,}"


def test_the_pages_show_the_pictures_where_they_talk_about_them(pictures):
    shown_by: dict[str, set[str]] = {}
    for path, pages in referenced_images().items():
        shown_by.setdefault(path.name, set()).update(pages)
    wanted = {
        "dcgan_task1-samples.png": {"index.rst", "quickstart.rst", "reproducing.rst", "README.md"},
        "wgan_task2-samples.png": {"reproducing.rst"},
        "dcgan_task1-loss.png": {"reproducing.rst"},
        "wgan_task2-loss.png": {"reproducing.rst"},
        "interpolation.png": {"cli.rst"},
        "quality-cpu.png": {"benchmarks.rst"},
        "quality-beyond.png": {"beyond.rst"},
    }
    assert set(pictures.PICTURES) <= set(wanted)
    for name, pages in wanted.items():
        assert pages <= shown_by.get(name, set()), f"{name} is not shown by {sorted(pages - shown_by.get(name, set()))}"


def test_pictures_json_describes_the_committed_pictures(pictures):
    doc = recorded()
    assert doc["made_by"] == "benchmarks/pictures.py", "the committed pictures come from a --quick run"
    assert set(doc["pictures"]) == set(pictures.PICTURES)
    for name, info in doc["pictures"].items():
        data = (IMAGES / name).read_bytes()
        with Image.open(IMAGES / name) as img:
            assert (img.format, img.size) == (info["format"], (info["width"], info["height"])), name
        assert len(data) == info["bytes"], f"{name}: {len(data)} bytes, pictures.json says {info['bytes']}"
        assert hashlib.sha256(data).hexdigest() == info["sha256"], f"{name} is not the picture pictures.json records"
    assert doc["machine"]["cpu"] and doc["machine"]["cores"] >= 1 and doc["machine"]["torch"]
    assert doc["git"]["commit"] and doc["wall_seconds"] > 0
    assert [c["command"].split()[1] for c in doc["commands"]] == ["train", "sample", "interpolate", "train", "sample"]
    for preset, (steps, sets) in pictures.CONFIGS["full"]["runs"].items():
        assert doc["runs"][preset]["steps"] == steps and doc["runs"][preset]["settings"] == sets
        assert doc["runs"][preset]["last_record"]["step"] == steps


def test_captions_name_the_machine_and_the_command():
    doc = recorded()
    cpu = doc["machine"]["cpu"]
    for page in ("index.rst", "quickstart.rst", "reproducing.rst", "cli.rst"):
        text = " ".join((DOCS / page).read_text(encoding="utf-8").split())  # as rendered: lines joined
        assert "make pictures" in text, f"{page} does not say which command made its pictures"
        assert cpu in text, f"{page} does not name the machine of its pictures ({cpu})"
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "make pictures" in readme and "make demo" in readme and "make test" in readme
    assert cpu in readme, f"README.md does not name the machine of its picture ({cpu})"
    reproducing = " ".join((DOCS / "reproducing.rst").read_text(encoding="utf-8").split())
    minutes = f"{doc['wall_seconds'] / 60:.1f} minutes"
    assert minutes in reproducing, f"reproducing.rst does not give the recorded wall time ({minutes})"


def test_quick_needs_an_out_folder(pictures):
    with pytest.raises(SystemExit):
        pictures.parse_args(["--quick"])


def test_running_mean(pictures):
    assert pictures.running_mean([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert pictures.running_mean([2.0], 50) == [2.0]


def test_quick_run_writes_every_picture(pictures, tmp_path, capsys):
    import torch

    threads = torch.get_num_threads()
    assert pictures.main(["--quick", "--out", str(tmp_path)]) == 0
    assert torch.get_num_threads() == threads  # left as it was
    doc = json.loads((tmp_path / "pictures.json").read_text(encoding="utf-8"))
    assert doc["made_by"] == "benchmarks/pictures.py --quick"
    for name in pictures.PICTURES:
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) < MAX_BYTES, name
        assert doc["pictures"][name]["bytes"] == len(data)
    assert doc["runs"]["wgan_task2"]["last_record"]["loss_g"] is not None  # its generator stepped
    assert "wall time:" in capsys.readouterr().out


def test_pixelated_grids_are_shown_at_twice_their_recorded_size():
    """A sample grid is drawn at an integer scale (sharp pixels), of the picture as recorded."""
    doc = recorded()
    figure = re.compile(r"^\s*\.\. figure:: images/(?P<name>\S+)\n(?P<options>(?:\s+:[a-z]+:.*\n)+)", re.M)
    seen = 0
    for page in sorted(DOCS.glob("*.rst")):
        for m in figure.finditer(page.read_text(encoding="utf-8")):
            if ":class: pixelated" not in m["options"]:
                continue
            seen += 1
            width = re.search(r":width:\s*(\d+)px", m["options"])
            assert width, f"{page.name}: {m['name']} is pixelated but has no :width: in px"
            assert int(width[1]) == 2 * doc["pictures"][m["name"]]["width"], f"{page.name}: {m['name']}"
    assert seen >= 5
