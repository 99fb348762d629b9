"""Reliability and security (issue 16): each test can fail, most drive the ``gankit`` command.

Process-level behaviour (the import path, signals and exit codes, locks, file modes, a full
disk) is tested in subprocesses; option checks that need no process of their own call
``gankit.cli.main`` in this process, as tests/test_cli.py does.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gankit import Trainer, get_preset
from gankit.cli import main
from gankit.data import BatchLoader, load_images
from gankit.errors import CheckpointError, ConfigError, DataError, DiskFullError
from gankit.signals import Interrupted, install_stop_handlers, restore_handlers
from gankit.train import load_checkpoint
from gankit.train.checkpoint import atomic_write_bytes
from gankit.train.export import generator_from_checkpoint
from gankit.train.outputs import MetricsLog

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
# 16 images in batches of 8: two steps per epoch, a checkpoint after every epoch.
FAST = ["--data", "toy-faces", "--num-images", "16", "--batch-size", "8", "--set", "image_size=32",
        "--set", "base_channels=4", "--set", "z_dim=8", "--set", "sample_grid=3", "--device", "cpu",
        "--no-progress"]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}


def gankit(*args, cwd=None, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gankit", *map(str, args)], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=timeout, **kw)


def _as_from_a_terminal() -> None:
    # A job started in the background by a shell (CI runners, `cmd &`) inherits an ignored
    # SIGINT, and gankit keeps ignored signals ignored (nohup): give the child a terminal's.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args, cwd=None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gankit", *map(str, args)], cwd=cwd, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_as_from_a_terminal, **kw)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "\x1b" not in err
    return lines[0]


def steps_logged(run: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()
            if "kind" not in json.loads(x)]


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def same_state(a: dict, b: dict) -> bool:
    """Networks, optimizers, counters and RNG bitwise equal."""
    def equal(x, y):
        if isinstance(x, torch.Tensor):
            return isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y)
        if isinstance(x, dict):
            return isinstance(y, dict) and x.keys() == y.keys() and all(equal(x[k], y[k]) for k in x)
        if isinstance(x, (list, tuple)):
            return len(x) == len(y) and all(equal(p, q) for p, q in zip(x, y))
        return x == y

    keys = ("generator", "discriminator", "opt_g", "opt_d", "step", "epoch", "batch_index", "g_steps",
            "rng_cpu", "z_sample")
    ha, hb = a["history"], b["history"]  # the logged values (not the seconds) of every step
    return (all(equal(a[k], b[k]) for k in keys) and ha["columns"] == hb["columns"]
            and torch.equal(ha["values"].nan_to_num(-7.0), hb["values"].nan_to_num(-7.0)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 2-step run (made in this process)."""
    out = tmp_path_factory.mktemp("rel") / "run"
    assert main(["train", "dcgan_task1", *FAST, "--max-steps", "2", "--out", str(out)]) == 0
    return out


# ----------------------------------------------------------------------------- 1. security


_SCRIPT = Path(sys.executable).with_name("gankit")


@pytest.mark.parametrize("launcher", ["python -m gankit", pytest.param("gankit script", marks=pytest.mark.skipif(
    not _SCRIPT.is_file(), reason="the gankit console script is not installed beside this Python"))])
def test_code_in_the_working_folder_never_runs(tmp_path, launcher):
    work = tmp_path / "downloaded-dataset"
    work.mkdir()
    (work / "matplotlib.py").write_text('open("PWNED", "w").write("ran")\n')
    (work / "PIL.py").write_text('open("PWNED", "w").write("ran")\n')
    if launcher == "gankit script":  # the console entry point, as installed
        cmd = [str(_SCRIPT)]
    else:
        cmd = [sys.executable, "-m", "gankit"]
    proc = subprocess.run([*cmd, "train", "dcgan_task1", *FAST, "--max-steps", "2", "--out", tmp_path / "r"],
                          cwd=work, env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r" / "loss_curve.png").is_file()  # matplotlib was imported: the real one
    assert not (work / "PWNED").exists()


def test_import_loads_only_the_module_it_names(tmp_path):
    (tmp_path / "matplotlib.py").write_text('open("PWNED", "w").write("ran")\n')
    (tmp_path / "mypresets.py").write_text(textwrap.dedent("""
        from gankit.presets import dcgan_task1, register_preset

        @register_preset(name="my_tiny")
        def my_tiny(**o):
            '''A user preset.'''
            return dcgan_task1(**{"image_size": 32, "base_channels": 4, "z_dim": 8, **o})
    """))
    proc = gankit("--import", "mypresets", "train", "my_tiny", *FAST, "--max-steps", "2", "--out", "r",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "PWNED").exists()
    assert (tmp_path / "r" / "checkpoints" / "last.pt").is_file()


# ----------------------------------------------------------------------------- 2, 5. signals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_save_the_step_reached_and_resume_bitwise(tmp_path, signum):
    run = tmp_path / "run"
    proc = start("train", "dcgan_task1", *FAST, "--max-steps", "400", "--out", run)
    wait_for(run / "checkpoints" / "last.pt", proc)  # a checkpoint of epoch 1 exists
    time.sleep(0.3)  # somewhere in a later epoch
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    line = one_line(err)
    name = signal.Signals(signum).name
    assert f"interrupted by {name} at step" in line and "checkpoint saved to" in line
    reached = int(line.split(" at step ")[1].split(";")[0])
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == reached and reached > 2  # not the last epoch checkpoint: the step reached
    assert steps_logged(run) == list(range(1, reached + 1))
    if signum != signal.SIGTERM:
        return  # the same path as SIGTERM from here on: resumed once, below
    total = reached + 3
    resumed = gankit("train", "dcgan_task1", *FAST, "--max-steps", total, "--out", run,
                     "--resume", run / "checkpoints" / "last.pt")
    assert resumed.returncode == 0, resumed.stderr
    straight = gankit("train", "dcgan_task1", *FAST, "--max-steps", total, "--out", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    assert same_state(load_checkpoint(run / "checkpoints" / "last.pt"),
                      load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt"))
    assert steps_logged(run) == list(range(1, total + 1))


def test_a_second_signal_stops_at_once():
    asked = []
    previous = install_stop_handlers(asked.append)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert asked == [signal.SIGTERM]  # the first only asks training to stop
        with pytest.raises(Interrupted) as info:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs at the next bytecode
        assert info.value.exit_code == 130 and isinstance(info.value, KeyboardInterrupt)
    finally:
        restore_handlers(previous)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_trainer_stops_on_sigterm_and_restores_the_handlers(tmp_path):
    class Terminating:
        def __iter__(self):
            for i in range(5):
                if i == 2:
                    signal.raise_signal(signal.SIGTERM)  # as if `docker stop` came
                yield torch.rand(4, 3, 32, 32) * 2 - 1

    before = signal.getsignal(signal.SIGTERM)
    trainer = Trainer(get_preset("dcgan_task1", image_size=32, base_channels=4, z_dim=8, batch_size=4,
                                 sample_grid=3), device="cpu", out_dir=tmp_path, progress=False)
    with pytest.raises(Interrupted, match="SIGTERM at step 3; checkpoint saved") as info:
        trainer.fit(Terminating(), epochs=1)
    assert info.value.exit_code == 143
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is before


def test_ctrl_c_while_importing_prints_no_traceback(tmp_path):
    # From 1 s on: Python's own start-up (before any gankit code runs, about 0.1 s here, more
    # on a loaded machine) is not gankit's to guard; torch's import takes seconds after it.
    for delay in (1.0, 2.0, 3.0):
        proc = start("train", "dcgan_task1", *FAST, "--max-steps", "400", "--out", tmp_path / f"r{delay}")
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, (delay, err)
        assert "interrupted" in one_line(err), delay


# ----------------------------------------------------------------------------- 3. disk full

FULL_DISK_SCRIPT = """
set -u
mount -t tmpfs -o size=2m gankit-test "$DISK" || exit 77
cd "$DISK"
run() { "$PY" -m gankit "$@" > /dev/null 2>> "$LOGS/$NAME.err"; echo "$NAME $?" >> "$LOGS/codes"; }
fill() { dd if=/dev/zero of="filler.$1" bs=1k 2> /dev/null; true; }   # until the disk is full
cp -r "$TRAINED" run   # a finished 2-step run, now on the small disk
cp run/checkpoints/last.pt "$LOGS/before.pt"
free=$(df -k --output=avail . | tail -1)
dd if=/dev/zero of=filler bs=1k count=$((free - 150)) 2> /dev/null   # room for logs, not a checkpoint
NAME=checkpoint run train dcgan_task1 $FAST --max-steps 4 --out run --resume run/checkpoints/last.pt
cp run/checkpoints/last.pt "$LOGS/after.pt"
fill 1; NAME=log run train dcgan_task1 $FAST --max-steps 4 --out run --resume run/checkpoints/last.pt
fill 2; NAME=export run export run/checkpoints/last.pt --out g.safetensors
fill 3; NAME=sample run sample run/checkpoints/last.pt --out grid.png
ls -a run run/checkpoints run/samples > "$LOGS/listing"
"""


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare") or sys.platform != "linux":
        return False
    probe = subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c",
                            "mount -t tmpfs -o size=64k x /mnt 2>/dev/null || mount -t tmpfs -o size=64k x /tmp"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare and tmpfs mounts (user namespaces)")
def test_a_full_tmpfs_gives_one_line_and_keeps_the_previous_checkpoint(trained, tmp_path):
    disk, logs = tmp_path / "disk", tmp_path / "logs"
    disk.mkdir()
    logs.mkdir()
    proc = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "bash", "-c", FULL_DISK_SCRIPT],
        env={**env(), "DISK": str(disk), "LOGS": str(logs), "PY": sys.executable, "FAST": " ".join(FAST),
             "TRAINED": str(trained)},
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    codes = dict(line.split() for line in (logs / "codes").read_text().splitlines())
    assert codes == {"checkpoint": "2", "log": "2", "export": "2", "sample": "2"}, codes
    for name, failed in (("checkpoint", "run/checkpoints/last.pt"), ("log", "run/metrics.jsonl"),
                         ("export", "g.safetensors"), ("sample", "grid.png")):
        line = one_line((logs / f"{name}.err").read_text())
        assert f"cannot write {failed}: the disk is full (No space left on device)" in line, line
        assert "is intact" in line, line
    for name in ("checkpoint", "log"):
        assert "the previous checkpoint run/checkpoints/last.pt (step 2) is intact" in (
            (logs / f"{name}.err").read_text())
    assert (logs / "after.pt").read_bytes() == (logs / "before.pt").read_bytes()
    assert load_checkpoint(logs / "after.pt")["step"] == 2
    assert ".tmp" not in (logs / "listing").read_text()


INJECT_ENOSPC = """
import errno, os, sys
real_fsync = os.fsync

def fsync(fd):  # the disk fills up when a checkpoint is flushed to it
    if "/checkpoints/" in os.readlink(f"/proc/self/fd/{fd}") and os.environ.get("GANKIT_TEST_FULL"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_fsync(fd)

os.fsync = fsync
from gankit.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_an_injected_enospc_names_the_file_and_the_intact_checkpoint(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    script = tmp_path / "inject.py"
    script.write_text(INJECT_ENOSPC)
    cmd = [sys.executable, str(script), "train", "dcgan_task1", *FAST, "--out", str(run)]
    before = (run / "checkpoints" / "last.pt").read_bytes()
    full = subprocess.run([*cmd, "--max-steps", "4", "--resume", str(run / "checkpoints" / "last.pt")],
                          env={**env(), "GANKIT_TEST_FULL": "1"}, capture_output=True, text=True, timeout=120)
    assert full.returncode == 2
    line = one_line(full.stderr)
    last = run / "checkpoints" / "last.pt"
    assert line == (f"gankit: error: cannot write {last}: the disk is full (No space left on device); "
                    f"the previous checkpoint {last} (step 2) is intact; free some space and resume with "
                    f"--resume {last}.")
    assert last.read_bytes() == before
    assert not list(run.rglob("*.tmp"))


def test_disk_full_in_every_writer_is_one_error(tmp_path, monkeypatch):
    class Full:
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match=r"cannot write .*x\.bin: the disk is full") as info:
        atomic_write_bytes(tmp_path / "x.bin", lambda f: Full().write(b"x"))
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # the temporary is gone
    # torch.save turns a failed write into a RuntimeError: the OSError under it is what counts
    real_write = os.fdopen

    def full_file(fd, *a, **k):
        f = real_write(fd, *a, **k)

        class Writer:
            def write(self, data):
                raise OSError(errno.ENOSPC, "No space left on device")

            def __getattr__(self, name):
                return getattr(f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

        return Writer()

    monkeypatch.setattr(os, "fdopen", full_file)
    with pytest.raises(DiskFullError, match="last.pt: the disk is full"):
        atomic_write_bytes(tmp_path / "last.pt", lambda f: torch.save({"w": torch.zeros(1000)}, f))
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- 4. crash leftovers


def test_resume_after_a_crash_logs_each_step_once_and_removes_stale_temporaries(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    # what a run killed after its checkpoint at step 2 leaves: steps 3-5 logged, a torn line,
    # and the temporaries of interrupted writes (a dead process's, and an older unnamed one)
    log = (run / "metrics.jsonl").read_text()
    rec = json.loads(log.splitlines()[-1])
    extra = "".join(json.dumps({**rec, "step": s}) + "\n" for s in (3, 4, 5))
    (run / "metrics.jsonl").write_text(log + extra + '{"step": 6, "epoch": 2, "loss_')
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [run / "checkpoints" / f".last.pt.{dead.pid}.0123abcd.tmp", run / ".loss_curve.png.k2j3h4g5.tmp",
             run / "samples" / f".epoch_0003.png.{dead.pid}.89abcdef.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    alive = run / "checkpoints" / f".last.pt.{os.getpid()}.fedcba98.tmp"  # a live writer's: kept
    alive.write_bytes(b"being written")
    code, out, err = run_cli(capsys, "train", "dcgan_task1", *FAST, "--max-steps", "4", "--out", run,
                             "--resume", run / "checkpoints" / "last.pt")
    assert code == 0, err
    assert steps_logged(run) == [1, 2, 3, 4]
    assert not any(p.exists() for p in stale)
    assert alive.exists()


def test_the_log_rewind_drops_later_steps_and_old_duplicates(tmp_path):
    from gankit.train.rundir import rewind_metrics

    log = tmp_path / "metrics.jsonl"
    lines = [{"step": s} for s in (1, 2, 3, 2, 3, 4, 5)] + [{"kind": "eval", "step": 4, "fid": 1.0}]
    log.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert rewind_metrics(log, 3) == 5
    assert [json.loads(x) for x in log.read_text().splitlines()] == [{"step": 1}, {"step": 2}, {"step": 3}]
    assert rewind_metrics(log, 3) == 0  # nothing to do: not rewritten


# ----------------------------------------------------------------------------- 6-10. output folders


def test_export_and_sample_never_write_over_their_input(trained, tmp_path, capsys):
    ckpt = tmp_path / "ck.pt"
    shutil.copyfile(trained / "checkpoints" / "last.pt", ckpt)
    before = ckpt.read_bytes()
    link = tmp_path / "link.pt"
    link.symlink_to(ckpt)
    for argv in (["export", ckpt, "--out", ckpt], ["sample", ckpt, "--out", ckpt, "--device", "cpu"],
                 ["export", ckpt, "--out", link, "--overwrite"], ["sample", link, "--out", ckpt, "--overwrite"]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and "never writes over its input" in one_line(err), argv
    assert ckpt.read_bytes() == before


def test_single_files_gankit_did_not_write_need_overwrite(trained, tmp_path, capsys):
    ckpt = trained / "checkpoints" / "last.pt"
    mine = tmp_path / "holiday.png"
    Image.new("RGB", (4, 4), "red").save(mine)
    notes = tmp_path / "notes.safetensors"
    notes.write_text("my notes")
    for argv, path in ((["sample", ckpt, "--out", mine, "--device", "cpu"], mine),
                       (["export", ckpt, "--out", notes], notes)):
        before = path.read_bytes()
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and "--overwrite" in one_line(err)
        assert path.read_bytes() == before
        code, _, err = run_cli(capsys, *argv, "--overwrite")
        assert code == 0, err
        assert path.read_bytes() != before
    # what gankit wrote, it may write again
    for argv in (["sample", ckpt, "--out", mine, "--device", "cpu"], ["export", ckpt, "--out", notes]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 0, err


def test_a_foreign_folder_is_refused_and_left_untouched(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "samples").mkdir(parents=True)
    (out / "checkpoints").mkdir()
    files = {"loss_curve.png": b"my plot", "samples/epoch_0001.png": b"my grid",
             "checkpoints/epoch_0001.pt": b"my model"}
    for name, data in files.items():
        (out / name).write_bytes(data)
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(capsys, "train", "dcgan_task1", *FAST, "--max-steps", "2", "--out", out, *extra)
        assert code == 2 and "not a gankit run folder" in one_line(err)
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


def test_overwrite_replaces_the_old_run_completely_and_only_it(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "dcgan_task1", *FAST, "--set", "checkpoint_every=1", "--max-steps", "6",
                           "--out", out)
    assert code == 0, err
    assert (out / "checkpoints" / "epoch_0003.pt").exists() and (out / "samples" / "epoch_0003.png").exists()
    (out / "notes.txt").write_text("my notes")
    code, _, err = run_cli(capsys, "train", "dcgan_task1", *FAST, "--max-steps", "2", "--out", out)
    assert code == 2 and "--overwrite" in one_line(err)
    code, out_text, err = run_cli(capsys, "train", "dcgan_task1", *FAST, "--max-steps", "2", "--out", out,
                                  "--overwrite")
    assert code == 0, err
    assert "replaced the old run" in out_text
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert left == [".gankit-run.lock", "checkpoints/last.pt", "gankit-run.json", "loss_curve.png",
                    "metrics.jsonl", "notes.txt", "samples/epoch_0001.png"]
    assert steps_logged(out) == [1, 2]


def test_a_second_run_in_the_same_folder_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "run"
    first = start("train", "dcgan_task1", *FAST, "--max-steps", "400", "--out", out, umask=0o022)
    try:
        wait_for(out / "checkpoints" / "last.pt", first)
        second = gankit("train", "dcgan_task1", *FAST, "--max-steps", "2", "--out", out, "--overwrite")
        assert second.returncode == 2
        assert f"in use by another gankit run (process {first.pid})" in one_line(second.stderr)
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 143
    # the first run's files honour its umask (022): readable by all, not 0600
    for name in ("checkpoints/last.pt", "metrics.jsonl", "loss_curve.png", "gankit-run.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
    # once it is gone, its lock is gone with it (a kill -9 too: the OS releases it)
    from gankit.train.rundir import RunFolder

    RunFolder.open(out, preset="dcgan_task1", resume=out / "checkpoints" / "last.pt").close()


def test_files_honour_a_private_umask_too(tmp_path):
    old = os.umask(0o077)
    try:
        path = atomic_write_bytes(tmp_path / "a" / "x.bin", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_empty_out_and_a_metrics_symlink_are_refused(trained, tmp_path, capsys):
    for argv in (["train", "dcgan_task1", *FAST, "--out", ""], ["sample", trained / "checkpoints" / "last.pt",
                                                               "--out", ""]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and "--out is empty" in one_line(err)
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    target = tmp_path / "elsewhere.txt"
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(target)
    code, _, err = run_cli(capsys, "train", "dcgan_task1", *FAST, "--max-steps", "4", "--out", run,
                           "--resume", run / "checkpoints" / "last.pt")
    assert code == 2 and "symbolic link" in one_line(err)
    assert not target.exists()
    with pytest.raises(ConfigError, match="symbolic link"):
        MetricsLog(run / "metrics.jsonl").write([{"step": 1}])
    assert not target.exists()


# ----------------------------------------------------------------------------- 11-14. settings


def test_resume_with_another_batch_size_recomputes_the_position(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    code, out, err = run_cli(capsys, "train", "dcgan_task1", *FAST, "--max-steps", "3", "--out", run,
                             "--resume", run / "checkpoints" / "last.pt")  # now mid-epoch: batch 1 of 2
    assert code == 0, err
    code, out, err = run_cli(capsys, "train", "dcgan_task1", *FAST, "--batch-size", "4", "--max-steps", "6",
                             "--out", run, "--resume", run / "checkpoints" / "last.pt")
    assert code == 0, err
    assert "batch_size=4 (was 8)" in out
    assert "goes on at batch 2 of 4" in out  # 8 images used: the next batch of 4 starts at image 8
    assert steps_logged(run) == [1, 2, 3, 4, 5, 6]
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["overrides"]["batch_size"] == 4 and ckpt["epoch"] == 2 and ckpt["batch_index"] == 1


def test_resume_applies_a_changed_learning_rate(trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    code, out, err = run_cli(capsys, "train", "dcgan_task1", *FAST, "--set", "d_lr=0.0005", "--max-steps", "3",
                             "--out", run, "--resume", run / "checkpoints" / "last.pt")
    assert code == 0, err
    assert "d_lr=0.0005 (was None)" in out
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert [g["lr"] for g in ckpt["opt_d"]["param_groups"]] == [0.0005]
    assert [g["lr"] for g in ckpt["opt_g"]["param_groups"]] == [1e-4]


@pytest.mark.parametrize("setting", ["base_channels=8", "z_dim=16", "sample_grid=4", "loss=hinge",
                                     "g_optimizer=adam_wgan_gp"])
def test_resume_refuses_settings_the_checkpoint_cannot_take(trained, tmp_path, capsys, setting):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = (run / "metrics.jsonl").read_bytes()
    code, _, err = run_cli(capsys, "train", "dcgan_task1", *FAST, "--set", setting, "--max-steps", "4",
                           "--out", run, "--resume", run / "checkpoints" / "last.pt")
    assert code == 2
    name = setting.split("=")[0]
    assert f"cannot resume with {setting}" in one_line(err) and f"drop --set {name}" in err
    assert (run / "metrics.jsonl").read_bytes() == before


@pytest.mark.parametrize("extra", [["--batch-size", "1"], ["--num-images", "1"]])
def test_batchnorm_with_batches_of_one_image_is_refused_before_training(tmp_path, capsys, extra):
    out = tmp_path / "run"
    args = [*FAST, *extra]
    code, stdout, err = run_cli(capsys, "train", "dcgan_task1", *args, "--out", out)
    assert code == 2 and "BatchNorm" in one_line(err)
    assert "training" not in stdout and not out.exists()  # nothing trained, nothing left behind
    trainer = Trainer(get_preset("dcgan_task1", image_size=32, base_channels=4, z_dim=8, batch_size=8),
                      device="cpu", progress=False)
    with pytest.raises(ConfigError, match="BatchNorm"):
        trainer.fit(torch.zeros(1, 3, 32, 32), epochs=2)
    assert trainer.step == 0 and trainer.epoch == 0


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train", "dcgan_task1", "--max-steps", "-5"], "--max-steps must be a positive integer, got -5"),
        (["train", "dcgan_task1", "--max-steps", "0"], "--max-steps must be a positive integer"),
        (["train", "dcgan_task1", "--set", "z_dim=100000000"], "more than the"),
        (["summary", "dcgan_task1", "--set", "z_dim=100000000"], "for the weights alone"),
        (["train", "dcgan_task1", "--seed", str(2**66)], "--seed must be between 0 and 18446744073709551615"),
        (["train", "dcgan_task1", "--seed", "-1"], "--seed must be between 0"),
        (["sample", "CKPT", "--nrow", "-2"], "--nrow must be a positive integer, got -2"),
        (["sample", "CKPT", "--n", "1000000000"], "--n must be between 1 and 10,000"),
        (["sample", "CKPT", "--seed", str(2**66)], "--seed must be between"),
        (["eval", "CKPT", "--seed", str(2**66)], "--seed must be between"),
        (["--import", "not a module", "presets"], "is not a module name"),
    ],
)
def test_out_of_range_options_are_one_line_errors(trained, tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    argv = [str(trained / "checkpoints" / "last.pt") if a == "CKPT" else a for a in argv]
    if argv[0] == "train":  # the tiny settings first: the option under test comes last and wins
        argv = ["train", "dcgan_task1", *FAST, "--out", str(tmp_path / "o"), *argv[2:]]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and needle in one_line(err)
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- 13. checkpoints


@functools.cache
def _base_checkpoint() -> dict:
    """A checkpoint after 2 steps (optimizer states exist), built once."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        t = Trainer(get_preset("dcgan_task1", image_size=32, base_channels=4, z_dim=8, batch_size=4,
                               sample_grid=2), device="cpu", progress=False)
        t.fit(torch.rand(8, 3, 32, 32) * 2 - 1, max_steps=2)
        return t.state_dict()


@pytest.fixture
def base_checkpoint() -> dict:
    return _base_checkpoint()


def _leaves(obj, path=()):
    """(path, value) of every value inside dicts, lists and tuples; tensors are leaves."""
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, (list, tuple)) and obj:
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))
    if path:
        yield path, obj


def _replace(obj, path, value):
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        new = dict(obj)
        if value is _DELETE and not rest:
            del new[head]
        else:
            new[head] = _replace(obj[head], rest, value)
        return new
    items = list(obj)
    items[head] = _replace(obj[head], rest, value)
    return type(obj)(items) if isinstance(obj, tuple) else items


_DELETE = object()
# absent from older checkpoints, so a checkpoint without them still loads
_OPTIONAL = {"gankit_version", "rng_cuda", "data_seed", "eval_history", "elapsed", "trainer", "world_size",
             "rng_ranks", "builder", "d_steps", "step_state", "callbacks", "data"}


def _bad_values(value, path):
    """Values that cannot stand where ``value`` is (each must be refused)."""
    others = ["text", None, [1, "x"], {"x": 1}]
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:  # a scalar: two numbers do not fit (one in a list of one would)
            return [torch.zeros(2, dtype=value.dtype), "text", None, [1.0]]
        grown = torch.cat([value, value.narrow(-1, 0, 1)], dim=-1)
        return [grown, value.unsqueeze(0), "text", None, [1.0]]
    if isinstance(value, bool) or value is None:
        return ["text", [1], {"x": 1}, torch.zeros(3)]
    if isinstance(value, int):
        counter = path in (("step",), ("epoch",), ("batch_index",), ("g_steps",))
        return [x for x in others if x is not None or path[0] != "overrides"] + ([-1] if counter else [])
    if isinstance(value, float):
        return others
    if isinstance(value, str):
        return [12, None, [1, "x"], {"x": 1}]
    return ["text", 12, None] + ([[1]] if isinstance(value, dict) else [{"x": 1}])


def _mutations(ckpt):
    out = []
    for path, value in _leaves(ckpt):
        if path[0] == "overrides" and value is None:
            continue
        # "data": None is what a run over a plain iterable of batches records (valid)
        out += [(path, bad) for bad in _bad_values(value, path) if not (path == ("data",) and bad is None)]
        deletable = (len(path) == 1 and path[0] not in _OPTIONAL) or (
            len(path) > 1 and path[0] not in ("overrides", "trainer", "eval_history", "rng_cuda"))
        if deletable and isinstance(path[-1], str):
            out.append((path, _DELETE))
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_checkpoints_give_one_line_checkpoint_errors(tmp_path, data):
    base = _base_checkpoint()
    path, bad = data.draw(st.sampled_from(_mutations(base)), label="mutation")
    ckpt = _replace(base, path, bad)
    file = tmp_path / "fuzzed.pt"
    torch.save(ckpt, file)
    with pytest.raises(CheckpointError) as info:
        trainer = Trainer.load(file, device="cpu", progress=False)
        trainer.train_step(torch.rand(4, 3, 32, 32) * 2 - 1)  # it would have to train, too
        trainer.render(trainer.z_sample)
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message and str(file) in message, message
    try:  # gankit sample / export read only a part: they may work, or refuse in one line
        generator_from_checkpoint(file)
    except CheckpointError as err:
        assert "\n" not in str(err)


def test_checkpoint_messages_are_clean_and_accurate(base_checkpoint, tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"format": "gankit-checkpoint", "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "evil.pt")
    message = str(info.value)
    assert "pickled Python objects" in message and "could run code" in message and "system" in message
    assert "truncated" not in message and "\x1b" not in message and "\n" not in message
    no_version = {k: v for k, v in base_checkpoint.items() if k != "format_version"}
    torch.save(no_version, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="has no format version") as info:
        load_checkpoint(tmp_path / "old.pt")
    assert "newer" not in str(info.value)
    torch.save({**base_checkpoint, "format_version": 99}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="newer than this gankit"):
        load_checkpoint(tmp_path / "new.pt")


def test_exports_with_bad_metadata_are_one_line(trained, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    code, _, err = run_cli(capsys, "export", trained / "checkpoints" / "last.pt", "--out", tmp_path / "g.safetensors")
    assert code == 0, err
    tensors = load_file(tmp_path / "g.safetensors")
    for name, meta in {"json": {"overrides": "{not json"}, "list": {"overrides": "[1, 2]"},
                       "nopreset": {"preset": ""}, "types": {"overrides": '{"image_size": [32]}'}}.items():
        full = {"format": "gankit-generator", "preset": "dcgan_task1", "overrides": "{}", **meta}
        save_file(tensors, tmp_path / f"{name}.safetensors", metadata=full)
        code, _, err = run_cli(capsys, "sample", tmp_path / f"{name}.safetensors", "--out", tmp_path / "s.png",
                               "--device", "cpu")
        assert code == 2 and f"{name}.safetensors" in one_line(err), name


# ----------------------------------------------------------------------------- 15-17. data, eval


def test_a_self_referencing_symlink_is_skipped_with_a_warning_naming_it(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"{i}.png")
    (folder / "x.png").symlink_to("x.png")
    (folder / "gone.png").symlink_to("nowhere.png")
    for use_cache in (True, False):
        with pytest.warns(UserWarning, match=r"skipped 2 of 5 .*gone\.png.*x\.png.*symbolic links"):
            ds = load_images(folder, image_size=8, use_cache=use_cache, progress=False)
        assert len(ds) == 3 and ds.files == ["0.png", "1.png", "2.png"]


def test_the_cache_never_serves_pixels_of_a_rewritten_file(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.bmp")
    target = folder / "1.bmp"
    os.utime(target, ns=(10**18, 10**18))  # old, as a downloaded dataset's files are
    time.sleep(2.1)  # and not changed in the last 2 s: the cache keys it on its times alone
    first = load_images(folder, image_size=8, progress=False).images.clone()
    st = target.stat()
    Image.fromarray(255 - np.asarray(Image.open(target))).save(target)  # new pixels, same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same modification time
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    second = load_images(folder, image_size=8, progress=False).images
    fresh = load_images(folder, image_size=8, use_cache=False, progress=False).images
    assert torch.equal(second, fresh) and not torch.equal(second[1], first[1])


def test_float_data_outside_minus_one_one_is_refused(tmp_path):
    for bad, needle in ((torch.rand(4, 3, 8, 8) * 255, "look like \\[0, 255\\]"),
                        (torch.rand(4, 3, 8, 8) * 3 - 1.5, "in \\[-1, 1\\]"),
                        (torch.full((4, 3, 8, 8), float("nan")), "NaN")):
        with pytest.raises(DataError, match=needle):
            BatchLoader(bad, 2)
    BatchLoader(torch.rand(4, 3, 8, 8) * 2 - 1, 2)  # in range: fine
    trainer = Trainer(get_preset("dcgan_task1", image_size=32, base_channels=4, z_dim=8, batch_size=4),
                      device="cpu", progress=False)
    with pytest.raises(DataError, match="\\[-1, 1\\]"):
        trainer.fit(torch.rand(8, 3, 32, 32) * 255, epochs=1)
    assert trainer.step == 0


def test_eval_with_too_few_images_says_so(trained, tmp_path, capsys):
    code, out, err = run_cli(capsys, "eval", trained / "checkpoints" / "last.pt", "--num-samples", "64",
                             "--num-reference", "2", "--metrics", "fid", "--device", "cpu", "--no-progress")
    assert code == 0, err
    line = one_line(err)
    assert "warning" in line and "2 reference images are too few" in line and "128" in line
    code, out, err = run_cli(capsys, "eval", trained / "checkpoints" / "last.pt", "--num-samples", "200",
                             "--num-reference", "200", "--metrics", "fid", "--device", "cpu", "--no-progress")
    assert code == 0 and "warning" not in err


def test_a_loader_resumed_past_its_end_is_one_line():
    loader = BatchLoader(torch.zeros(8, 3, 4, 4, dtype=torch.uint8), 4)
    with pytest.raises(DataError, match="cannot start epoch 0 at batch 5: this data has 2 batches"):
        loader.set_epoch(0, start_batch=5)


# ----------------------------------------------------------------------------- kill -9


@pytest.mark.slow
def test_kill_9_at_random_moments_never_loses_a_step(tmp_path):
    """20 kill -9 cycles: every last.pt loads, no step logged twice, no temporary survives,
    and the result is bitwise the uninterrupted run's."""
    proc = subprocess.run([sys.executable, str(TESTS / "kill_cycles.py"), str(tmp_path), "--cycles", "20"],
                          env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["kills"] == 20 and result["final_exit"] == 0 and result["reference_exit"] == 0
    assert result["reached_by_kills"] >= 10  # the kills landed all over a run, not only at its start
    for cycle in result["cycles"]:
        if cycle["snapshot"]:
            ckpt = load_checkpoint(cycle["snapshot"])  # loads, and every field checks out
            assert ckpt["step"] % 2 == 0  # an epoch end: a whole checkpoint, never a torn one
    run, reference = Path(result["run"]), Path(result["reference"])
    assert same_state(load_checkpoint(run / "checkpoints" / "last.pt"),
                      load_checkpoint(reference / "checkpoints" / "last.pt"))
    logged = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(x) for x in (reference / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(1, result["steps"] + 1))
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in logged]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in expected]  # same losses
    assert not list(run.rglob("*.tmp"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print(f"kill cycles: {result['kills']} kills, {result['reached_by_kills']} steps reached by the kills, "
              f"{sum(bool(c['temporaries']) for c in result['cycles'])} kills left a temporary; "
              f"{result['faulty_seconds']:.1f} s + reference {result['reference_seconds']:.1f} s")
