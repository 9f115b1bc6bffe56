"""The code of the README and of the docs' pages (the front pages, docs/howto/, docs/reference/;
the tutorials are notebooks the docs build runs: tests/test_docs.py), run as a user pastes it:
every fenced block carries a marker ``<!-- readme-test: SCENARIO RUNNER -->`` (or ``skip: why``)
on the line above it, and the blocks of a scenario run in the page's order, verbatim, from one
folder:

- ``kernel``: one cell in the scenario's real kernel (jupyter_client), which must not fail;
- ``python``: a script run by the environment's Python;
- ``sh``: a bash script (``set -e``), with the environment's bin first on PATH;
- ``background``: each line a long-running program (a driver, a replay), started and waited for
  until its socket answers (its ``--socket PATH``, or the path after the runner:
  ``background /tmp/meter.sock``); the last one runs until the scenario ends;
- ``file:NAME``: the block is a file the reader saves (a header, a C program, a CMakeLists.txt),
  written to NAME.

The only change made to the text: the sockets under /tmp and port 8765 become private ones, so
that a driver a user runs on this machine is never touched. A block without a marker fails the
test, so no page can grow code that nobody runs or says why not.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from cbridge_magics.testing import ROOT, Kernel, wait_for

README = ROOT / "README.md"
DOCUMENTS = [README, ROOT / "docs" / "index.md", ROOT / "docs" / "tutorials" / "index.md",
             *sorted((ROOT / "docs" / "howto").glob("*.md")),
             *sorted((ROOT / "docs" / "reference").glob("*.md"))]
# A fence may be indented (a block in a list item): its marker then is too.
BLOCK = re.compile(r"^(?P<indent>[ ]*)(?:<!-- readme-test: (?P<marker>[^\n]*?) -->\n(?P=indent))?"
                   r"```(?P<lang>\w*)\n(?P<body>.*?)^(?P=indent)```$", re.S | re.M)
RUNNERS = ("kernel", "python", "sh", "background")


@dataclass
class Block:
    where: str  # page:line
    lang: str
    body: str
    scenario: str | None  # None: skipped
    runner: str
    socket: str | None = None  # background: the socket to wait for, when no --socket says


def blocks(page: Path = README, strict: bool = True) -> list[Block]:
    """The page's code blocks; ``strict``: each must carry a marker (the test of that), else an
    unmarked one is left out (collecting the scenarios must not fail the whole module)."""
    text = page.read_text()
    out = []
    for m in BLOCK.finditer(text):
        where = f"{page.relative_to(ROOT)}:{text[:m.start('lang')].count(chr(10)) + 1}"
        marker = m.group("marker")
        body = textwrap.dedent(m.group("body"))
        if not m.group("lang"):
            continue  # a drawing, not code
        if not marker and not strict:
            continue
        assert marker, f"{where}: a code block without <!-- readme-test: ... -->"
        if marker.startswith("skip:"):
            assert marker[5:].strip(), f"{where}: skip says why"
            out.append(Block(where, m.group("lang"), body, None, ""))
            continue
        scenario, runner, *socket = marker.split()
        assert runner in RUNNERS or runner.startswith("file:"), f"{where}: runner {runner!r}"
        out.append(Block(where, m.group("lang"), body, scenario, runner, *socket))
    return out


def scenarios() -> list[tuple[Path, str]]:
    return [(page, name) for page in DOCUMENTS
            for name in dict.fromkeys(b.scenario for b in blocks(page, strict=False)
                                      if b.scenario)]


def page_id(page: Path) -> str:
    return page.name if page == README else f"{page.parent.name}-{page.name}"


@pytest.mark.parametrize("page", DOCUMENTS, ids=page_id)
def test_every_code_block_is_run_or_says_why_not(page):
    blocks(page)  # a block without a marker, or a skip without a reason, fails here


class Scenario:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.kernel: Kernel | None = None
        self.background: list[subprocess.Popen] = []
        bindir = Path(sys.executable).parent
        self.env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.env.pop("CBRIDGE_DRIVER", None)  # the README's driver is the installed one

    def text(self, body: str) -> str:
        """The block, its /tmp sockets and fixed port made private."""
        body = re.sub(r"/tmp/([\w-]+\.sock)", lambda m: str(self.work / m.group(1)), body)
        return body.replace("--port 8765", "--port 0").replace("port=8765", "port=0")

    def run(self, block: Block) -> None:
        text = self.text(block.body)
        where = block.where
        if block.runner.startswith("file:"):
            (self.work / block.runner[5:]).write_text(text)
        elif block.runner == "kernel":
            if self.kernel is None:
                self.kernel = Kernel(cwd=str(self.work))
            res = self.kernel.run(text, timeout=180, allow_error=True)
            reply = res["reply"]
            assert reply["status"] == "ok", (f"{where}: {reply.get('ename')}: "
                                             f"{reply.get('evalue')}\n{res['stderr']}")
            assert "Traceback" not in res["stderr"] + res["stdout"], (where, res["stderr"])
        elif block.runner == "python":
            script = self.work / f"block_{block.where.rsplit(':', 1)[1]}.py"
            script.write_text(text)
            done = subprocess.run([sys.executable, str(script)], cwd=self.work, env=self.env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{where}: {done.stderr[-3000:]}"
        elif block.runner == "sh":
            done = subprocess.run(["bash", "-ec", text], cwd=self.work, env=self.env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{where}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        else:
            commands = [c for c in text.splitlines() if c.strip()]
            for i, command in enumerate(commands):
                proc = self.start(command, where, block.socket)
                if i < len(commands) - 1:
                    self.stop(proc)

    def start(self, command: str, where: str, socket_path: str | None) -> subprocess.Popen:
        named = re.search(r"--socket (\S+)", command)
        assert named or socket_path, f"{where}: which socket does {command!r} listen on?"
        sock = Path(named.group(1) if named else self.text(socket_path))  # type: ignore[union-attr]
        if not sock.is_absolute():
            sock = self.work / sock
        proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.work, env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        self.background.append(proc)

        def answers() -> bool:
            assert proc.poll() is None, f"{where}: {command} ended: {proc.stderr.read()}"
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(sock))
                return True
            except OSError:
                return False

        wait_for(answers, timeout=30, what=f"{where}: {command} to listen")
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]

    def close(self) -> None:
        if self.kernel is not None:
            self.kernel.shutdown()
        for proc in reversed(self.background):
            self.stop(proc)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("page,name", scenarios(),
                         ids=lambda x: page_id(x) if isinstance(x, Path) else x)
def test_scenario(page, name, tmp_path):
    work = tmp_path / name
    work.mkdir()
    if name == "c-program":  # "the example's files are c_driver/examples/minimal.c and ..."
        for f in ("minimal.c", "minimal_messages.h"):
            shutil.copy(ROOT / "c_driver" / "examples" / f, work / f)
    scenario = Scenario(work)
    ran = [b for b in blocks(page) if b.scenario == name]
    try:
        for block in ran:
            scenario.run(block)
    finally:
        scenario.close()
    # what the README's blocks leave behind, as a user would find it
    runners = {b.runner for b in ran}
    if page != README:
        return
    if name == "demo":
        assert runners == {"background", "kernel"}
        return
    if name == "demo-data":  # moved: see the how-to checks below
        assert (work / "run.cbrec").stat().st_size > 1000
        # the exports the README makes, as their own readers see them
        import pyarrow.parquet as pq
        import xarray as xr

        assert xr.open_dataset(work / "run.nc", group="Telemetry", engine="h5netcdf")[
            "samples"].dims == ("record", "samples_dim0")
        assert xr.open_zarr(work / "run.zarr", group="Telemetry")["samples"].size > 0
        assert "streaming" in pq.read_table(work / "status.parquet").column_names
    elif name == "c-program":
        assert runners == {"sh", "background", "kernel"}
        assert {"minimal", "minimal_schema.c", "minimal_schema.h"} <= {p.name for p in work.iterdir()}
