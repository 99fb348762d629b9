"""Every Python, console and bash block of README.md and docs/*.rst runs, as documented.

One test per page. The page's blocks run in order, in a fresh temporary folder that holds
``faces/`` (64 toy faces as PNG files, for the commands that say ``--data faces/``) and
links to the checkout's ``examples/`` and ``benchmarks/``:

* ``python`` blocks share one namespace per page (a page reads top to bottom);
* ``console`` blocks: each ``$ command`` runs (``gankit ...`` in-process through
  :func:`gankit.cli.main`, anything else with bash); the lines after it are its expected
  output, matched line by line, where ``...`` alone matches any lines and ``...`` inside a
  line matches any text. An output starting ``gankit: error:`` expects exit status 2,
  anything else 0;
* ``bash`` blocks: every command runs, and must exit with 0;
* ``text`` blocks are shown output, not run.

A page marks a block just before it with comments (``.. docs-test: ...`` in reST,
``<!-- docs-test: ... -->`` in Markdown):

* ``skip REASON`` -- not run (needs CUDA, several GPUs, the network, files the reader
  brings, or a long run); the reason is required and shown;
* ``sub OLD => NEW`` -- run with the text OLD replaced by NEW (tiny sizes, so that the
  test stays fast; OLD must occur in the block);
* ``no-output`` -- run a console block without comparing its output.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.rst"))]
RUN = {"python", "console", "bash", "shell", "sh"}
SHOWN = {"text", "none", "", "toml", "json"}

_RST_BLOCK = re.compile(r"^(?P<indent>\s*)\.\. code-block::\s*(?P<lang>\S*)\s*$")
_RST_MARK = re.compile(r"^\s*\.\. docs-test:\s*(?P<mark>.*?)\s*$")
_MD_MARK = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<mark>.*?)\s*-->\s*$")


@dataclass
class Block:
    page: str
    line: int
    lang: str
    code: str
    marks: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def skip_reason(self) -> str | None:
        for mark in self.marks:
            if mark.split(None, 1)[0] == "skip":
                return mark.partition(" ")[2].strip()
        return None

    def prepared(self) -> str:
        code = self.code
        for mark in self.marks:
            word, _, rest = mark.partition(" ")
            if word != "sub":
                continue
            old, sep, new = rest.partition(" => ")
            assert sep, f"{self.where}: a sub mark is 'sub OLD => NEW', got {mark!r}"
            assert old in code, f"{self.where}: sub {old!r} does not occur in the block"
            code = code.replace(old, new)
        return code


def parse_rst(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, marks, i = [], [], 0
    while i < len(lines):
        if m := _RST_MARK.match(lines[i]):
            marks.append(m["mark"])
            i += 1
            continue
        m = _RST_BLOCK.match(lines[i])
        i += 1
        if not m:
            continue
        start, indent, body = i, len(m["indent"]), []
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            body.append(lines[i])
            i += 1
        body = [b for b in body if not re.match(r"^\s+:[a-z-]+:", b)] if body else body  # options
        blocks.append(Block(path.name, start, m["lang"], textwrap.dedent("\n".join(body)).strip("\n"), marks))
        marks = []
    return blocks


def parse_markdown(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, marks, i = [], [], 0
    while i < len(lines):
        if m := _MD_MARK.match(lines[i]):
            marks.append(m["mark"])
        elif lines[i].startswith("```"):
            lang, start, body = lines[i][3:].strip(), i + 2, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(Block(path.name, start, lang, "\n".join(body), marks))
            marks = []
        i += 1
    return blocks


def page_blocks(path: Path) -> list[Block]:
    return parse_markdown(path) if path.suffix == ".md" else parse_rst(path)


# -- console blocks ---------------------------------------------------------------------------


def console_commands(code: str) -> list[tuple[str, list[str]]]:
    """``$ cmd`` (with ``\\`` continuations) -> [(command, expected output lines)]."""
    out: list[tuple[str, list[str]]] = []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.startswith("$ "):
            assert out, f"console output before the first command: {line!r}"
            out[-1][1].append(line.rstrip())
            continue
        cmd = line[2:]
        while cmd.rstrip().endswith("\\") and i < len(lines):
            cmd = cmd.rstrip()[:-1] + " " + lines[i].strip()
            i += 1
        out.append((cmd, []))
    return out


def bash_commands(code: str) -> list[str]:
    cmds, current = [], ""
    for line in code.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip()[:-1] + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            cmds.append(current)
            current = ""
    return cmds


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """Line-wise match; a line ``...`` matches any lines, ``...`` in a line any text."""
    exp = [e.rstrip() for e in expected]
    while exp and not exp[-1]:
        exp.pop()
    act = [a.rstrip() for a in actual]
    while act and not act[-1]:
        act.pop()

    def line_ok(e: str, a: str) -> bool:
        return re.fullmatch(".*".join(map(re.escape, e.split("..."))), a) is not None

    def match(i: int, j: int) -> bool:
        if i == len(exp):
            return j == len(act)
        if exp[i].strip() == "...":
            return any(match(i + 1, k) for k in range(j, len(act) + 1))
        return j < len(act) and line_ok(exp[i], act[j]) and match(i + 1, j + 1)

    return match(0, 0)


def has_shell_operators(cmd: str) -> bool:
    """Whether a command needs a shell: ``&&``, ``|``, ``>``, ``;`` outside quotes."""
    lex = shlex.shlex(cmd, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    return any(tok and set(tok) <= set("();<>|&") for tok in lex)


def run_gankit(argv: list[str]) -> tuple[int, str]:
    from gankit.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            rc = main(argv)
        except SystemExit as stop:  # --help, --version
            rc = stop.code if isinstance(stop.code, int) else 0
    return rc, buf.getvalue()


def run_shell(cmd: str) -> tuple[int, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(ROOT / "src")}
    if cmd.startswith("python "):
        cmd = f"{shlex.quote(sys.executable)} {cmd[len('python '):]}"
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env, timeout=300)
    return done.returncode, done.stdout + done.stderr


def run_command(cmd: str) -> tuple[int, str]:
    words = shlex.split(cmd, comments=True)
    if words and words[0] == "gankit" and not has_shell_operators(cmd):
        return run_gankit(words[1:])
    return run_shell(cmd if has_shell_operators(cmd) else shlex.join(words))


def run_console(block: Block, code: str) -> None:
    check = "no-output" not in block.marks
    for cmd, expected in console_commands(code):
        rc, output = run_command(cmd)
        wants_error = bool(expected) and expected[0].startswith("gankit: error:")
        assert rc == (2 if wants_error else 0), (
            f"{block.where}: `{cmd}` exited with {rc} (expected {2 if wants_error else 0}):\n{output}")
        if check and expected:
            assert output_matches(expected, output.splitlines()), (
                f"{block.where}: `{cmd}` printed\n{output}\n-- but the page shows --\n" + "\n".join(expected))


def run_bash(block: Block, code: str) -> None:
    for cmd in bash_commands(code):
        rc, output = run_command(cmd)
        assert rc == 0, f"{block.where}: `{cmd}` exited with {rc}:\n{output}"


# -- the test ---------------------------------------------------------------------------------


def _faces_folder(folder: Path) -> None:
    from PIL import Image

    from gankit.data.toyfaces import generate_toy_faces

    folder.mkdir()
    for i, image in enumerate(generate_toy_faces(64, 64, seed=7)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"face_{i:03d}.png")


def test_collector_sees_every_kind_of_block():
    blocks = [b for page in PAGES for b in page_blocks(page)]
    langs = {b.lang for b in blocks}
    assert {"python", "console"} <= langs
    assert not langs - RUN - SHOWN, f"blocks of a language the collector does not know: {langs - RUN - SHOWN}"
    for b in blocks:
        for mark in b.marks:
            assert mark.split(None, 1)[0] in {"skip", "sub", "no-output"}, f"{b.where}: unknown mark {mark!r}"
            if mark.startswith("skip"):
                assert b.skip_reason(), f"{b.where}: a skip needs a reason"


def test_output_matching():
    assert output_matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert output_matches(["fid=..., kid"], ["fid=13.5, kid"])
    assert not output_matches(["1 epochs"], ["2 epochs"])
    assert not output_matches(["a"], ["a", "b"])


@pytest.mark.parametrize("page", [p for p in PAGES if any(b.lang in RUN and not b.skip_reason()
                                                           for b in page_blocks(p))],
                         ids=lambda p: p.name)
def test_page_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    _faces_folder(tmp_path / "faces")
    for name in ("examples", "benchmarks"):  # commands that run the checkout's scripts
        (tmp_path / name).symlink_to(ROOT / name, target_is_directory=True)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    ran = 0
    for block in page_blocks(page):
        if block.lang not in RUN or block.skip_reason():
            continue
        code = block.prepared()
        if block.lang == "python":
            try:
                exec(compile(code, block.where, "exec"), namespace)
            except Exception as err:
                raise AssertionError(f"{block.where}: the python block fails: {type(err).__name__}: {err}") from err
        elif block.lang == "console":
            run_console(block, code)
        else:
            run_bash(block, code)
        ran += 1
    assert ran, f"{page.name}: every block is skipped"


def test_readme_resume_continues_in_the_checkpoints_run_folder(tmp_path, monkeypatch):
    # README: `gankit train dcgan_task1 --resume runs/task1/checkpoints/last.pt` continues
    # runs/task1 (it once wrote a second run to runs/dcgan_task1).
    monkeypatch.chdir(tmp_path)
    import gankit

    tiny = ["--set", "image_size=16", "--set", "base_channels=2", "--num-images", "16", "--no-progress"]
    recipe = gankit.get_preset("dcgan_task1", image_size=16, base_channels=2)  # as README's Python part
    gankit.Trainer(recipe, device="cpu", out_dir="runs/task1", progress=False).fit(
        "toy-faces", max_steps=1, num_images=16)
    rc, out = run_gankit(["train", "dcgan_task1", "--resume", "runs/task1/checkpoints/last.pt",
                          "--max-steps", "2", *tiny])
    assert rc == 0, out
    assert "runs/task1/checkpoints/last.pt" in out and not (tmp_path / "runs" / "dcgan_task1").exists()
