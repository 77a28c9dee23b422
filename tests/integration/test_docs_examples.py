"""Every shell and Python example in the docs runs against the real local services.

The conventions (also written for readers in docs/index.md, "How the examples are tested"):

- A ```` ```console ```` block is a shell session: a line starting with ``$ `` is a command
  (it goes on over following lines while it ends with ``\\`` or a quote is open); the lines
  up to the next command are its output, stdout and stderr together. Every command must
  exit 0 (a page that shows a failure writes ``cmd; echo "exit status $?"``). A command that
  ends with ``&`` keeps running in the background until the end of the page; the harness
  waits until the background command has printed its shown output before going on.
- In shown output, ``...`` stands for any text within a line, and a line that is only
  ``...`` for any number of lines (none included). Trailing spaces do not count.
- A ```` ```pycon ```` block is a Python session (``>>>`` / ``...`` prompts), run with
  doctest (ELLIPSIS, NORMALIZE_WHITESPACE); one namespace per page.
- A block with ``title="NAME"`` in its info string (```` ```python title="receiver.py" ````,
  ```` ```yaml title="distillwatch.yaml" ````) is a file: it is written to NAME in the
  page's directory when the page reaches it, for later commands to use. A titled Python
  file must be run by a later command on the page.
- Any other ``sh``/``bash``/``python`` block starts with the line
  ``# not run by the docs tests: REASON`` (e.g. it needs a remote cluster or GPUs).

Each page runs in a fresh directory, with its own Kafka topic prefix and consumer group, and
free ports in place of the two the pages use (8088, the monitor's HTTP API; 8080, a webhook
receiver): they are replaced in commands and files, and put back in the output. Before
comparing, the output also has the topic prefix removed, and lines that librdkafka logs by
itself (``%6|1700000000.123|...``) are left out.
"""

from __future__ import annotations

import doctest
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streams.local_alertmanager import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"
STRICT_PAGES = ["README.md", "docs/index.md", "docs/quickstart.md", "docs/concepts.md",
                "docs/metrics.md", "docs/configuration.md", "docs/operations.md",
                "docs/cookbook.md"]
"""Pages where every shell or Python block must run or say why not (the user guide)."""
SHELL_OR_PYTHON = {"console", "pycon", "sh", "bash", "shell", "zsh", "shell-session", "python", "py"}
NOT_RUN = re.compile(r"^#\s*not run by the docs tests:\s*\S")
FIXED_PORTS = ("8088", "8080")
"""Ports the pages use (the monitor's HTTP API, a local webhook receiver): each page gets free ones."""
COMMAND_TIMEOUT_S = 300.0
BACKGROUND_WAIT_S = 120.0
LIBRDKAFKA_LOG = re.compile(r"%\d\|\d+\.\d+\|[A-Z_]+\|[^\n]*(?:\n|$)")


# --------------------------------------------------------------------------------------------
# Reading the pages
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    title: str | None
    text: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<info>.*)$")


def blocks_of(page: str) -> list[Block]:
    """The fenced code blocks of a Markdown page, in order."""
    lines = (REPO_ROOT / page).read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m["indent"]), m["fence"], m["info"].strip()
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        lang = info.split()[0] if info else ""
        title = re.search(r'title="([^"]+)"', info)
        out.append(Block(page, i + 1, lang, title[1] if title else None, "\n".join(body) + "\n"))
        i = j + 1
    return out


@dataclass
class Command:
    text: str
    expected: str
    line: int


def commands_of(block: Block) -> list[Command]:
    """Split a console block into commands and their shown output."""
    out: list[Command] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            if out:
                out[-1].expected += line + "\n"
            elif line.strip():
                raise AssertionError(f"{block.where}: output before the first `$ ` command: {line!r}")
            i += 1
            continue
        text, start = line[2:], i
        while text.endswith("\\") or not _quotes_closed(text):
            i += 1
            if i >= len(lines):
                raise AssertionError(f"{block.where}: command at block line {start + 1} never ends")
            text += "\n" + lines[i]
        out.append(Command(text, "", block.line + start + 1))
        i += 1
    return out


def _quotes_closed(text: str) -> bool:
    try:
        shlex.split(text.replace("\\\n", " "), comments=True)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Comparing output
# --------------------------------------------------------------------------------------------

def output_pattern(expected: str) -> re.Pattern[str]:
    """The regular expression of shown output: ``...`` is any text, a ``...`` line any lines."""
    parts = []
    for line in expected.strip("\n").splitlines() if expected.strip() else []:
        line = line.rstrip()
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append("[^\n]*?".join(re.escape(p) for p in line.split("...")) + r"[ \t]*\n")
    return re.compile("".join(parts), re.S)


def normalise(actual: str) -> str:
    text = LIBRDKAFKA_LOG.sub("", actual.replace("\r\n", "\n"))
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    lines = [ln.rstrip() for ln in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return "".join(ln + "\n" for ln in lines)


def matches(expected: str, actual: str) -> bool:
    return output_pattern(expected).fullmatch(normalise(actual)) is not None


# --------------------------------------------------------------------------------------------
# Running a page
# --------------------------------------------------------------------------------------------

@dataclass
class Background:
    command: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.output)


@dataclass
class Session:
    """One page's working directory, environment and background processes."""

    cwd: Path
    env: dict[str, str]
    prefix: str
    ports: dict[str, int]
    background: list[Background] = field(default_factory=list)
    globs: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    """Outputs that differ from the page: the page goes on, so one run reports all of them."""

    def clean(self, actual: str) -> str:
        """Output as the page shows it: no topic prefix, the pages' port numbers."""
        actual = actual.replace(self.prefix, "")
        for shown, real in self.ports.items():
            actual = re.sub(rf":{real}\b", f":{shown}", actual)
        return actual

    def command_text(self, text: str) -> str:
        """A command or file of the page with this session's ports."""
        for shown, real in self.ports.items():
            text = re.sub(rf"\b{shown}\b", str(real), text)
        return text

    def run(self, cmd: Command, where: str) -> None:
        text = self.command_text(cmd.text).rstrip()
        started = time.monotonic()
        if text.endswith("&") and not text.endswith("&&"):
            self._start_background(text[:-1].rstrip(), cmd, where)
        else:
            self._run_foreground(text, cmd, where)
        self.log.append(f"{time.monotonic() - started:6.1f}s  {where}  {cmd.text.splitlines()[0][:90]}")

    def _run_foreground(self, text: str, cmd: Command, where: str) -> None:
        state = self.cwd / ".docs-test"
        state.mkdir(exist_ok=True)
        script = (f"{text}\n__rc=$?\nenv -0 > {shlex.quote(str(state / 'env'))}\n"
                  f"pwd > {shlex.quote(str(state / 'cwd'))}\nexit $__rc\n")
        try:
            done = subprocess.run(["bash", "-c", script], cwd=self.cwd, env=self.env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{where}: `{cmd.text}` ran over {COMMAND_TIMEOUT_S:.0f} s; output so far:\n"
                                 f"{exc.output}\n{self._background_report()}") from None
        actual = self.clean(done.stdout)
        if done.returncode != 0:
            raise AssertionError(f"{where}: `{cmd.text}` exited {done.returncode}:\n{actual}"
                                 f"{self._background_report()}")
        if not matches(cmd.expected, actual):
            self.mismatches.append(f"{where}: output of `{cmd.text}` differs from the page.\n"
                                   f"--- shown ---\n{cmd.expected}--- got ---\n{normalise(actual)}")
        env_file = state / "env"
        if env_file.exists():
            pairs = env_file.read_bytes().split(b"\0")
            self.env = dict(p.decode().split("=", 1) for p in pairs if b"=" in p)
            self.cwd = Path((state / "cwd").read_text().strip())

    def _start_background(self, text: str, cmd: Command, where: str) -> None:
        proc = subprocess.Popen(["bash", "-c", text], cwd=self.cwd, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        bg = Background(cmd.text, proc)
        self.background.append(bg)

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                bg.output.append(line)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + BACKGROUND_WAIT_S
        # The shown output is what it prints before the page goes on; more may follow later.
        pattern = output_pattern(cmd.expected + "...\n")
        while time.monotonic() < deadline:
            if pattern.fullmatch(normalise(self.clean(bg.text()))):
                return
            if proc.poll() is not None:
                time.sleep(0.2)
                raise AssertionError(f"{where}: background `{cmd.text}` exited {proc.returncode}:\n"
                                     f"{self.clean(bg.text())}")
            time.sleep(0.1)
        raise AssertionError(f"{where}: background `{cmd.text}` did not print the shown output within "
                             f"{BACKGROUND_WAIT_S:.0f} s.\n--- shown ---\n{cmd.expected}--- got ---\n"
                             f"{normalise(self.clean(bg.text()))}")

    def _background_report(self) -> str:
        return "".join(f"\n--- background `{bg.command}` ---\n{self.clean(bg.text())[-3000:]}"
                       for bg in self.background)

    def run_pycon(self, block: Block) -> None:
        parser = doctest.DocTestParser()
        test = parser.get_doctest(block.text, self.globs, block.where, block.page, block.line)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        report: list[str] = []
        old_cwd, old_env = Path.cwd(), dict(os.environ)
        os.chdir(self.cwd)
        os.environ.clear()
        os.environ.update(self.env)
        try:
            runner.run(test, out=report.append, clear_globs=False)
            self.globs.update(test.globs)  # DocTest works on a copy; later blocks see these names
        finally:
            os.chdir(old_cwd)
            os.environ.clear()
            os.environ.update(old_env)
        assert runner.failures == 0, f"{block.where}: a Python example failed:\n" + "".join(report)

    def stop(self) -> None:
        for bg in self.background:
            if bg.process.poll() is None:
                os.killpg(bg.process.pid, signal.SIGTERM)
        for bg in self.background:
            try:
                bg.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(bg.process.pid, signal.SIGKILL)
                bg.process.wait(10)


def make_session(tmp_path: Path, bootstrap: str) -> Session:
    prefix = f"dwdoc{uuid.uuid4().hex[:10]}."
    ports = {shown: free_port() for shown in FIXED_PORTS}
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir()
    for name, args in (("distillwatch", "-m distillwatch "), ("python", "")):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {args}"$@"\n')
        shim.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLWATCH_")}
    env.update({
        "PATH": f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "100",
        "NO_COLOR": "1",
        "TERM": "dumb",
        "DISTILLWATCH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "DISTILLWATCH_TOPIC_PREFIX": prefix,
        "DISTILLWATCH_EVALUATOR__GROUP_ID": f"{prefix}evaluator",
        "DISTILLWATCH_HTTP__PORT": str(ports["8088"]),
    })
    return Session(work, env, prefix, ports)


def runnable(block: Block) -> bool:
    return block.lang in ("console", "pycon") or block.title is not None


def pages_with_examples() -> list[str]:
    pages = sorted({*STRICT_PAGES, *(str(p.relative_to(REPO_ROOT)) for p in DOCS.glob("*.md"))})
    return [p for p in pages if (REPO_ROOT / p).exists() and any(
        b.lang in ("console", "pycon") for b in blocks_of(p))]


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", STRICT_PAGES)
def test_every_example_runs_or_says_why_not(page: str) -> None:
    """A shell or Python block is a console/pycon session, a titled file, or says why it is not run."""
    problems = []
    blocks = blocks_of(page)
    for i, b in enumerate(blocks):
        if not b.lang:
            problems.append(f"{b.where}: a code block without a language; say what it is "
                            "(console, pycon, sh, python, yaml, json, text, …)")
            continue
        if b.lang not in SHELL_OR_PYTHON or runnable(b):
            if b.title and b.lang in ("python", "py"):
                later = "".join(x.text for x in blocks[i + 1:] if x.lang == "console")
                if b.title not in later:
                    problems.append(f"{b.where}: file {b.title} is never run by a later console command")
            if b.lang == "console":
                commands_of(b)  # parses, or says what is wrong
            continue
        if not NOT_RUN.match(b.text.lstrip("\n")):
            problems.append(f"{b.where}: a ```{b.lang} block must be ```console/```pycon, a titled file, "
                            "or start with '# not run by the docs tests: REASON'")
    assert not problems, "\n".join(problems)


def test_output_convention() -> None:
    """The ellipsis convention the pages rely on."""
    assert matches("a ... c\n", "a b c\n")
    assert matches("first\n...\nlast\n", "first\nlast\n")
    assert matches("first\n...\nlast\n", "first\nx\ny\nlast\n")
    assert not matches("first\nlast\n", "first\nx\nlast\n")
    assert not matches("a\n", "a\nb\n")
    assert matches("", "")
    assert matches("done\n", "%6|1795887623.946|BGQUEUE|p#producer-1| [thrd:background]: Purging\ndone\n")


@pytest.mark.integration
@pytest.mark.parametrize("page", pages_with_examples())
def test_page_examples(page: str, tmp_path: Path, kafka_bootstrap: str, drop_topics_with_prefix: list[str],
                       capsys: pytest.CaptureFixture[str]) -> None:
    """Run the page's examples in order and compare every shown output."""
    session = make_session(tmp_path, kafka_bootstrap)
    drop_topics_with_prefix.append(session.prefix)
    started = time.monotonic()
    try:
        for block in blocks_of(page):
            if block.title is not None:
                target = session.cwd / block.title
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(session.command_text(block.text), encoding="utf-8")
            elif block.lang == "console":
                for cmd in commands_of(block):
                    session.run(cmd, f"{page}:{cmd.line}")
            elif block.lang == "pycon":
                session.run_pycon(block)
    finally:
        session.stop()
        with capsys.disabled():
            print(f"\n{page}: {time.monotonic() - started:.1f} s")
            for line in session.log:
                print("  " + line)
    assert not session.mismatches, "\n\n".join(session.mismatches)
