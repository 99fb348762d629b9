"""Fault injection: ``kill -9`` a short ``gankit train`` run at random moments, resume it, repeat.

Run by tests/test_reliability.py (``python tests/kill_cycles.py WORKDIR --cycles 20``); it
writes ``WORKDIR/result.json`` and leaves the run folders for the test to check.

Each cycle is one process running ``gankit.cli.main`` (the ``gankit train`` command, with
``--resume`` once a checkpoint exists, and a ``--max-steps`` it never reaches), killed with
SIGKILL at a random moment: after 0, 1 or 2 new checkpoints, then a random delay of up to
about one epoch (so the run progresses at any load of the machine, and every part of an
epoch -- steps, logs, grids, the checkpoint write -- is hit). 16 images in batches of 8 make two steps per epoch, and
``checkpoints/last.pt`` is written after every epoch: a checkpoint every 2 steps. After the
kills, one more resumed run stops a few steps after the last checkpoint, and an
uninterrupted run of as many steps is the reference. The
processes are forked from this one after it has imported torch, gankit and matplotlib
(nothing else: no torch operation has run, so no thread exists to break fork), which saves
the 2-3 s of imports per cycle; everything after the imports -- parsing, the run folder,
data, training, writing -- is the command's own. After each kill ``checkpoints/last.pt`` is
copied aside (raw bytes) for the test to load, together with the temporaries found. The
uninterrupted reference run is forked the same way.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import signal
import time
from pathlib import Path

import matplotlib.figure  # noqa: F401  -- imported before forking, like torch
import PIL.Image  # noqa: F401
import torch  # noqa: F401

import gankit.train  # noqa: F401
from gankit.cli import main

TINY = ["--data", "toy-faces", "--num-images", "16", "--batch-size", "8", "--set", "image_size=32",
        "--set", "base_channels=8", "--set", "sample_grid=3", "--device", "cpu", "--no-progress",
        "--seed", "0"]


def fork_run(argv: list[str], log: Path) -> int:
    """Start ``gankit <argv>`` in a forked child; returns its pid."""
    pid = os.fork()
    if pid == 0:  # the child: the command, then out without the interpreter's teardown
        code = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            code = main(argv)
        finally:
            os._exit(code)
    return pid


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def temporaries(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.tmp"))


def checkpoint_step(path: Path, work: Path) -> int:
    """The step of a checkpoint, read in a child (this process runs no torch operation)."""
    out = work / "step.txt"
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            out.write_text(str(torch.load(path, weights_only=True)["step"]))
            code = 0
        finally:
            os._exit(code)
    os.waitpid(pid, 0)
    return int(out.read_text())


def main_driver() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--extra-steps", type=int, default=4, help="steps the last run adds after the kills")
    ap.add_argument("--seed", type=int, default=0)
    opts = ap.parse_args()
    work: Path = opts.workdir
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(opts.seed)
    # matplotlib loads its fonts at the first figure: once here, not in every child
    matplotlib.figure.Figure(figsize=(1, 1)).savefig(io.BytesIO(), format="png")

    run = work / "run"
    last = run / "checkpoints" / "last.pt"
    snapshots = work / "snapshots"
    snapshots.mkdir(exist_ok=True)
    cycles = []
    t0 = time.perf_counter()
    # Phase 1: a long run (it never ends by itself), killed at random moments, resumed each time.
    epoch_seconds = 0.3  # running estimate of the time between two checkpoints
    while len(cycles) < opts.cycles:
        # before the first checkpoint, a killed run may have logged steps: start it again
        resume = ["--resume", str(last)] if last.exists() else ["--overwrite"]
        pid = fork_run(["train", "dcgan_task1", *TINY, "--max-steps", "1000000", "--out", str(run), *resume],
                       work / "run.log")
        # The moment: after 0, 1 or 2 new checkpoints (so that the run progresses whatever
        # the machine's load), then a uniform delay over about one epoch -- training steps,
        # logs, grids, curves and the checkpoint write all get hit; 0 also hits start-up,
        # the resume, and the rewind of the log.
        wait_for = rng.choice([0, 0, 1, 1, 2])
        seen, changes, status, done = _inode(last), 0, 0, 0
        start = last_change = time.perf_counter()
        while not done and changes < wait_for and time.perf_counter() - start < 60:
            inode = _inode(last)
            if inode != seen:
                now = time.perf_counter()
                if changes:  # time between two checkpoints of this process
                    epoch_seconds = 0.7 * epoch_seconds + 0.3 * (now - last_change)
                seen, changes, last_change = inode, changes + 1, now
            done, status = os.waitpid(pid, os.WNOHANG)
            time.sleep(0.001)
        delay = rng.uniform(0.0, 1.2 * epoch_seconds)
        deadline = time.perf_counter() + delay
        while not done and time.perf_counter() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            time.sleep(0.001)
        if not done:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        record = {"after_checkpoints": wait_for, "delay": delay, "exit": os.waitstatus_to_exitcode(status),
                  "temporaries": temporaries(run) if run.exists() else [], "snapshot": None}
        if last.exists():
            snap = snapshots / f"cycle_{len(cycles):03d}.pt"
            shutil.copyfile(last, snap)
            record["snapshot"] = str(snap)
        cycles.append(record)
    # Phase 2: resume once more and stop a few steps later; then the same run without faults.
    reached = checkpoint_step(last, work) if last.exists() else 0
    target = reached + opts.extra_steps
    resume = ["--resume", str(last)] if last.exists() else []
    pid = fork_run(["train", "dcgan_task1", *TINY, "--max-steps", str(target), "--out", str(run), *resume],
                   work / "run.log")
    _, status = os.waitpid(pid, 0)
    final_exit = os.waitstatus_to_exitcode(status)
    faulty_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    pid = fork_run(["train", "dcgan_task1", *TINY, "--max-steps", str(target), "--out", str(work / "reference")],
                   work / "reference.log")
    _, status = os.waitpid(pid, 0)
    result = {
        "faulty_seconds": faulty_seconds,
        "reference_seconds": time.perf_counter() - t0,
        "reference_exit": os.waitstatus_to_exitcode(status),
        "final_exit": final_exit,
        "reached_by_kills": reached,
        "steps": target,
        "kills": sum(c["exit"] == -signal.SIGKILL for c in cycles),
        "cycles": cycles,
        "reference": str(work / "reference"),
        "run": str(run),
    }
    (work / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main_driver()
