"""A driver process, and waiting for a condition."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable


ROOT = Path(__file__).resolve().parents[2]  # the source checkout, when run from one


def demo_driver() -> Path:
    """The demo driver binary: $CBRIDGE_DRIVER (another build of it, such as the ASan one), else
    the one installed with the package (``cbridge-config --demo-driver``)."""
    from ..config import demo_driver as installed

    return Path(os.environ.get("CBRIDGE_DRIVER") or installed())


class DriverProcess:
    """A driver started on a socket path; ready (accepting connections) when the constructor
    returns. ``stop()`` is safe to call twice and returns its exit code. Its stderr goes to
    ``<socket>.log`` (``log()`` reads it), or nowhere with ``quiet``."""

    def __init__(self, binary: str | os.PathLike[str], sock_path: str | os.PathLike[str], *extra: str,
                 quiet: bool = False, timeout: float = 10.0) -> None:
        self.binary = Path(binary)
        self.path = Path(sock_path)
        self.log_path = self.path.with_suffix(".log")
        self._log = open(os.devnull if quiet else self.log_path, "wb")
        # as given: Path("./minimal") would print as "minimal", which is looked for on PATH
        self.proc = subprocess.Popen([os.fspath(binary), "--socket", str(self.path), *extra],
                                     stdout=subprocess.DEVNULL, stderr=self._log)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.binary.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(str(self.path))
                return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError(f"{self.binary.name} did not listen on {self.path}:\n{self.log()}")

    def log(self) -> str:
        """What the driver wrote to stderr so far ("" when started quiet)."""
        if not self._log.closed:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

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

    def __enter__(self) -> "DriverProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")
