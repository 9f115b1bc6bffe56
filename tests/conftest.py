"""Fixtures shared by the suites: the real demo driver, started on a private socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# CBRIDGE_DRIVER points the suites at another build of the same driver (the ASan one, say).
DRIVER = Path(os.environ.get("CBRIDGE_DRIVER", ROOT / "c_driver" / "build" / "cbridge-demo-driver"))


class DriverProcess:
    """One running demo driver; ``stop()`` is safe to call twice and returns its exit code."""

    def __init__(self, sock_path: Path, *extra: str) -> None:
        self.path = sock_path
        self.log_path = sock_path.with_suffix(".log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(DRIVER), "--socket", str(sock_path), *extra],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"driver exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(str(self.path))
                return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError(f"driver did not listen on {self.path}:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def driver_binary() -> Path:
    if not DRIVER.exists():
        pytest.fail(f"{DRIVER} is missing: build it with `make -C c_driver` (make test does)")
    return DRIVER


@pytest.fixture
def sock_path(tmp_path_factory) -> Path:
    # AF_UNIX paths are limited to 108 bytes, so keep them short and out of deep pytest dirs.
    d = Path(tmp_path_factory.mktemp("cb", numbered=True))
    short = Path("/tmp") / f"cbt-{os.getpid()}-{d.name}"
    short.mkdir(exist_ok=True)
    return short / "d.sock"


@pytest.fixture
def start_driver(driver_binary, sock_path):
    """Factory: ``start_driver(*args)`` runs the driver on this test's socket; all are stopped after."""
    procs: list[DriverProcess] = []

    def start(*extra: str, path: Path | None = None) -> DriverProcess:
        p = DriverProcess(path or sock_path, *extra)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


@pytest.fixture
def driver(start_driver) -> DriverProcess:
    return start_driver()
