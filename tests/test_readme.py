"""The README's code, run as a user pastes it: every fenced block carries a marker
``<!-- readme-test: SCENARIO RUNNER -->`` (or ``skip: why``) on the line above it, and the blocks
of a scenario run in README order, verbatim, from one folder:

- ``kernel``: one cell in the scenario's real kernel (jupyter_client), which must not fail;
- ``python``: a script run by the environment's Python;
- ``sh``: a bash script (``set -e``), with the environment's bin first on PATH;
- ``background``: each line a long-running program (a driver, a replay), started and waited for
  until its socket answers; the last one runs until the scenario ends.

The only change made to the text: the sockets under /tmp and port 8765 become private ones, so
that a driver a user runs on this machine is never touched. A block without a marker fails the
test, so the README cannot grow code that nobody runs or says why not.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cbridge_magics.testing import ROOT, Kernel, wait_for

README = ROOT / "README.md"
BLOCK = re.compile(r"^(?:<!-- readme-test: (?P<marker>[^\n]*?) -->\n)?```(?P<lang>\w*)\n"
                   r"(?P<body>.*?)^```$", re.S | re.M)
RUNNERS = ("kernel", "python", "sh", "background")


@dataclass
class Block:
    line: int
    lang: str
    body: str
    scenario: str | None  # None: skipped
    runner: str


def blocks() -> list[Block]:
    text = README.read_text()
    out = []
    for m in BLOCK.finditer(text):
        line = text[:m.start("lang")].count("\n") + 1
        marker = m.group("marker")
        if not m.group("lang"):
            continue  # a drawing, not code
        assert marker, f"README.md:{line}: a code block without <!-- readme-test: ... -->"
        if marker.startswith("skip:"):
            assert marker[5:].strip(), f"README.md:{line}: skip says why"
            out.append(Block(line, m.group("lang"), m.group("body"), None, ""))
            continue
        scenario, runner = marker.split()
        assert runner in RUNNERS, f"README.md:{line}: runner {runner!r}"
        out.append(Block(line, m.group("lang"), m.group("body"), scenario, runner))
    return out


def test_every_code_block_is_run_or_says_why_not():
    found = blocks()
    assert len(found) > 20
    assert {b.scenario for b in found} == {None, "demo", "kernelspec", "c-program"}


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
        where = f"README.md:{block.line}"
        if block.runner == "kernel":
            if self.kernel is None:
                self.kernel = Kernel(cwd=str(self.work))
            res = self.kernel.run(text, timeout=180, allow_error=True)
            reply = res["reply"]
            assert reply["status"] == "ok", (f"{where}: {reply.get('ename')}: "
                                             f"{reply.get('evalue')}\n{res['stderr']}")
            assert "Traceback" not in res["stderr"] + res["stdout"], (where, res["stderr"])
        elif block.runner == "python":
            script = self.work / f"readme_{block.line}.py"
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
                proc = self.start(command, where)
                if i < len(commands) - 1:
                    self.stop(proc)

    def start(self, command: str, where: str) -> subprocess.Popen:
        sock = Path(re.search(r"--socket (\S+)", command).group(1))  # type: ignore[union-attr]
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
@pytest.mark.parametrize("name", ["demo", "kernelspec", "c-program"])
def test_scenario(name, tmp_path):
    work = tmp_path / name
    work.mkdir()
    if name == "c-program":  # "the example's files are c_driver/examples/minimal.c and ..."
        for f in ("minimal.c", "minimal_messages.h"):
            shutil.copy(ROOT / "c_driver" / "examples" / f, work / f)
    scenario = Scenario(work)
    ran = [b for b in blocks() if b.scenario == name]
    try:
        for block in ran:
            scenario.run(block)
    finally:
        scenario.close()
    # what the blocks leave behind, as a user would find it
    runners = {b.runner for b in ran}
    if name == "demo":
        assert runners == {"background", "kernel", "python", "sh"}
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
