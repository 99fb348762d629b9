"""The gankit command: every subcommand, and every user error as one line with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from gankit.cli import main

TINY = ["--set", "image_size=32", "--set", "base_channels=4", "--set", "z_dim=8", "--batch-size", "4",
        "--num-images", "16", "--device", "cpu", "--no-progress"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("gankit: error: ")
    return lines[0]


def test_presets_lists_with_descriptions(capsys):
    code, out, _ = run(capsys, "presets")
    assert code == 0
    assert "dcgan_task1" in out and "wgan_task2" in out and "ML2020" in out
    code, out, _ = run(capsys, "presets", "wgan*")
    names = [line.split()[0] for line in out.strip().splitlines()]
    assert "wgan_task2" in names and all(n.startswith("wgan") for n in names)


def test_summary_prints_the_report_tables(capsys):
    code, out, _ = run(capsys, "summary", "dcgan_task1")
    assert code == 0
    assert "Total params: 5,142,083" in out and "Total params: 4,316,545" in out
    assert "ConvTranspose2d-13            [-1, 3, 64, 64]           4,803" in out
    assert "batch_size: 64" in out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "dcgan_task1", "--max-steps", "3", "--out", str(out), *TINY])
    assert code == 0
    return out


def test_train_writes_everything(trained, capsys):
    assert (trained / "checkpoints" / "last.pt").is_file()
    assert (trained / "loss_curve.png").is_file()
    assert list((trained / "samples").glob("*.png"))
    assert len((trained / "metrics.jsonl").read_text().splitlines()) == 3


def test_train_resume_continues(trained, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(trained, run_dir)
    code, out, err = run(capsys, "train", "dcgan_task1", "--max-steps", "5", "--out", str(run_dir),
                         "--resume", str(run_dir / "checkpoints" / "last.pt"), *TINY)
    assert code == 0, err
    assert "resumed" in out and "step 3" in out
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]


def test_sample_and_export(trained, tmp_path, capsys):
    code, out, _ = run(capsys, "sample", str(trained / "checkpoints" / "last.pt"), "--n", "9",
                       "--out", str(tmp_path / "grid.png"), "--seed", "1", "--device", "cpu")
    assert code == 0 and Image.open(tmp_path / "grid.png").size == (3 * 32 + 8, 3 * 32 + 8)
    code, out, _ = run(capsys, "export", str(trained / "checkpoints" / "last.pt"), "--out",
                       str(tmp_path / "g.safetensors"))
    assert code == 0 and (tmp_path / "g.safetensors").is_file()
    code, _, _ = run(capsys, "sample", str(tmp_path / "g.safetensors"), "--n", "4", "--out",
                     str(tmp_path / "g.png"), "--device", "cpu")
    assert code == 0 and (tmp_path / "g.png").is_file()


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["summary", "dcgan_taks1"], "dcgan_task1"),
        (["train", "nope_preset", "--device", "cpu"], "unknown preset"),
        (["train", "dcgan_task1", "--set", "batchsize=3"], "batch_size"),
        (["train", "dcgan_task1", "--set", "batch_size=many"], "batch_size"),
        (["train", "dcgan_task1", "--set", "novalue"], "key=value"),
        (["train", "dcgan_task1", "--data", "/no/such/folder", *TINY], "/no/such/folder"),
        (["train", "dcgan_task1", "--device", "warp"], "device"),
        (["train", "dcgan_task1", "--cuda-graph", "--data", "toy-faces", *TINY], "drop --cuda-graph"),
        (["sample", "/no/such.pt", "--out", "x.png"], "does not exist"),
        (["export", "/no/such.pt"], "does not exist"),
    ],
)
def test_user_errors_are_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert needle in one_line_error(err)


def test_data_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("not an image")
    for path in (empty, afile, notes):
        code, _, err = run(capsys, "train", "dcgan_task1", "--data", str(path), "--out", str(tmp_path / "o"), *TINY)
        assert code == 2 and str(path) in one_line_error(err)


def test_bad_checkpoints(trained, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes((trained / "checkpoints" / "last.pt").read_bytes()[:1000])
    for cmd in (["sample", str(bad), "--out", str(tmp_path / "s.png")], ["export", str(bad)],
                ["train", "dcgan_task1", "--resume", str(bad), "--out", str(tmp_path / "r"), *TINY]):
        code, _, err = run(capsys, *cmd)
        assert code == 2 and "bad.pt" in one_line_error(err)
    code, _, err = run(capsys, "train", "wgan_task2", "--resume", str(trained / "checkpoints" / "last.pt"),
                       "--out", str(tmp_path / "w"), "--device", "cpu", "--set", "base_channels=4", "--set", "z_dim=8")
    assert code == 2 and "preset 'dcgan_task1'" in one_line_error(err)


def test_existing_run_needs_resume_or_overwrite(trained, capsys):
    code, _, err = run(capsys, "train", "dcgan_task1", "--out", str(trained), *TINY)
    assert code == 2 and "--resume" in one_line_error(err)


def test_python_dash_m_and_help_examples():
    out = subprocess.run([sys.executable, "-m", "gankit", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "examples:" in out.stdout and "--resume" in out.stdout
    out = subprocess.run([sys.executable, "-m", "gankit", "presets", "zzz*"], capture_output=True, text=True)
    assert out.returncode == 0


def test_eval_writes_metrics_with_provenance(trained, tmp_path, capsys):
    out_json = tmp_path / "m.json"
    code, out, err = run(capsys, "eval", str(trained / "checkpoints" / "last.pt"), "--data", "toy-faces",
                         "--num-samples", "64", "--num-reference", "128", "--device", "cpu",
                         "--json", str(out_json), "--no-progress")
    assert code == 0, err
    assert "fid=" in out and "NOT comparable" in out
    result = json.loads(out_json.read_text())
    assert result["values"]["fid"] > 0 and "kid_mean" in result["values"]
    assert result["num_fake"] == 64 and result["num_real"] == 128
    assert result["extractor"].startswith("tiny") and result["comparable_to_published"] is False
    assert result["reference"].startswith("toy-faces|128x3x32x32|")


def test_eval_inception_offline_is_one_line(trained, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("GANKIT_INCEPTION_WEIGHTS", raising=False)
    code, _, err = run(capsys, "eval", str(trained / "checkpoints" / "last.pt"), "--extractor", "inception-v3",
                       "--num-samples", "4", "--num-reference", "8", "--device", "cpu", "--no-progress")
    assert code == 2 and "--inception-weights" in one_line_error(err)


def test_import_registers_a_user_preset(tmp_path, capsys, monkeypatch):
    (tmp_path / "my_presets_mod.py").write_text(
        "from gankit.presets import register_preset, dcgan_task1\n"
        "@register_preset(name='my_tiny_gan', description='a user preset')\n"
        "def my_tiny_gan(**o):\n"
        "    return dcgan_task1(**{'image_size': 32, 'base_channels': 4, 'z_dim': 8, **o})\n"
    )
    monkeypatch.chdir(tmp_path)
    from gankit.presets import unregister_preset

    try:
        code, out, _ = run(capsys, "--import", "my_presets_mod", "presets", "my_*")
        assert code == 0 and "my_tiny_gan  a user preset" in out
    finally:
        unregister_preset("my_tiny_gan", missing_ok=True)
        sys.modules.pop("my_presets_mod", None)
    code, _, err = run(capsys, "--import", "no_such_module_xyz", "presets")
    assert code == 2 and "no_such_module_xyz" in one_line_error(err)


def test_import_takes_the_path_of_a_py_file(tmp_path, capsys, monkeypatch):
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "path_presets_mod.py").write_text(
        "from gankit.presets import register_preset, dcgan_task1\n"
        "@register_preset(name='my_path_gan', description='a preset from a file')\n"
        "def my_path_gan(**o):\n"
        "    return dcgan_task1(**o)\n"
    )
    (lab / "pkg_presets_mod").mkdir()
    (lab / "pkg_presets_mod" / "__init__.py").write_text("from .inner import VALUE\n")
    (lab / "pkg_presets_mod" / "inner.py").write_text("VALUE = 7\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # not the file's folder: the path alone finds it
    from gankit.presets import unregister_preset

    try:
        code, out, _ = run(capsys, "--import", "../lab/path_presets_mod.py", "presets", "my_*")
        assert code == 0 and "my_path_gan  a preset from a file" in out
        assert sys.modules["path_presets_mod"].__file__ == str(lab / "path_presets_mod.py")
        code, out, _ = run(capsys, "--import", "../lab/path_presets_mod.py", "presets", "my_*")  # again: the same module
        assert code == 0 and "my_path_gan" in out
        code, _, _ = run(capsys, "--import", "../lab/pkg_presets_mod", "presets")  # a package folder
        assert code == 0 and sys.modules["pkg_presets_mod"].VALUE == 7
    finally:
        unregister_preset("my_path_gan", missing_ok=True)
        for name in ("path_presets_mod", "pkg_presets_mod", "pkg_presets_mod.inner"):
            sys.modules.pop(name, None)
    assert str(lab) not in sys.path


@pytest.mark.parametrize(
    ("name", "body", "needle"),
    [
        ("missing.py", None, "does not exist; give the path of a .py file"),
        ("my-presets.py", "", "is not a valid module name; rename the file"),
        ("json.py", "", "a module named 'json' is already loaded"),
        ("tabnanny.py", "", "which it would hide; rename the file"),  # importable, not loaded
        ("broken_imports_mod.py", "import no_such_module_xyz\n", "No module named 'no_such_module_xyz'"),
    ],
)
def test_import_path_errors_are_one_line(tmp_path, capsys, name, body, needle):
    import json as _json  # noqa: F401 -- loaded, so a json.py of the user's cannot shadow it

    if body is not None:
        (tmp_path / name).write_text(body)
    code, _, err = run(capsys, "--import", str(tmp_path / name), "presets")
    assert code == 2 and needle in one_line_error(err)
    assert "broken_imports_mod" not in sys.modules
    assert getattr(sys.modules.get("tabnanny"), "__file__", "").find(str(tmp_path)) == -1


def test_resume_keeps_the_checkpoint_settings(trained, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(trained, run_dir)
    # no --set given: the checkpoint's image_size / base_channels / z_dim are used
    code, out, err = run(capsys, "train", "dcgan_task1", "--max-steps", "4", "--out", str(run_dir),
                         "--resume", str(run_dir / "checkpoints" / "last.pt"), "--num-images", "16",
                         "--device", "cpu", "--no-progress")
    assert code == 0, err
    assert "changed settings" not in out
    code, out, err = run(capsys, "train", "dcgan_task1", "--max-steps", "5", "--out", str(run_dir),
                         "--resume", str(run_dir / "checkpoints" / "last.pt"), "--num-images", "16",
                         "--device", "cpu", "--no-progress", "--set", "d_lr=0.0002")
    assert code == 0, err
    assert "changed settings: d_lr=0.0002" in out


def test_broken_pipe_is_not_an_error():
    cmd = f"{sys.executable} -m gankit summary dcgan_task1 | head -n 2"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "error" not in out.stderr


def test_class_conditional_end_to_end_on_an_image_folder(tmp_path, capsys):
    root = tmp_path / "folder"
    for name, colour in (("blue", (0, 0, 255)), ("red", (255, 0, 0))):
        (root / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (16, 16), colour).save(root / name / f"{i}.png")
    run_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", "sngan_projection32", "--data", f"imagefolder:{root}", "--max-steps", "2",
                         "--out", str(run_dir), "--set", "image_size=16", "--set", "base_channels=4", "--set",
                         "z_dim=8", "--set", "num_classes=2", "--batch-size", "4", "--device", "cpu", "--no-progress")
    assert code == 0, err
    ckpt = run_dir / "checkpoints" / "last.pt"
    code, out, _ = run(capsys, "sample", str(ckpt), "--class", "red", "--n", "4", "--out", str(tmp_path / "red.png"))
    assert code == 0 and "of class 1 (red)" in out
    code, out, _ = run(capsys, "sample", str(ckpt), "--per-class", "3", "--out", str(tmp_path / "grid.png"))
    assert code == 0 and "one row per class" in out
    assert Image.open(tmp_path / "grid.png").size[1] < Image.open(tmp_path / "grid.png").size[0]  # 2 rows of 3
    code, out, _ = run(capsys, "export", str(ckpt), "--out", str(tmp_path / "g.safetensors"))
    assert code == 0
    code, out, _ = run(capsys, "sample", str(tmp_path / "g.safetensors"), "--class", "blue", "--n", "2",
                       "--out", str(tmp_path / "blue.png"))
    assert code == 0 and "(blue)" in out
    code, out, err = run(capsys, "eval", str(tmp_path / "g.safetensors"), "--data", f"imagefolder:{root}",
                         "--per-class", "--metrics", "swd", "--num-samples", "8", "--device", "cpu",
                         "--no-progress", "--json", str(tmp_path / "eval.json"))
    assert code == 0, err
    assert "blue: swd" in out and "red: swd" in out and "conditional accuracy" in out
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert set(saved["per_class"]["values"]) == {"blue", "red"}
    assert saved["conditional_accuracy"]["chance"] == 0.5
    code, _, err = run(capsys, "sample", str(ckpt), "--class", "green", "--out", str(tmp_path / "x.png"))
    assert code == 2 and "unknown class 'green'" in one_line_error(err)
