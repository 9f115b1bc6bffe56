"""Fixtures shared by the suites: the real demo driver on a private socket, the cstruct build cache,
a recorded run of the demo driver, and a second driver with another schema (examples/minimal.c).

The driver process itself is cbridge_magics.testing.DriverProcess, which the benches and
``make demo`` use too; CBRIDGE_DRIVER points the suites at another build of it (the ASan one).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

import recording_helpers
from cbridge_magics import connect
from cbridge_magics.testing import ROOT, DriverProcess, demo_driver
from cstruct_helpers import API_SOURCE, test_cache_dir

DRIVER = demo_driver()


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
        p = DriverProcess(DRIVER, path or sock_path, *extra)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


@pytest.fixture
def driver(start_driver) -> DriverProcess:
    return start_driver()


@pytest.fixture(scope="module")
def cstruct_cache() -> Iterator[Path]:
    """Point the cstruct cache at the suites' private cache for one test module."""
    path = test_cache_dir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CBRIDGE_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def ns(cstruct_cache):
    """The definitions of cstruct_helpers.API_SOURCE, compiled (or loaded from the cache)."""
    from cbridge_magics import cstruct

    return cstruct.compile(API_SOURCE, filename="<api>")


# --- recordings -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minimal(tmp_path_factory) -> Path:
    """examples/minimal.c, a driver with another schema, built on the installed libcbridge.a."""
    from cbridge_magics import config

    d = tmp_path_factory.mktemp("minimal")
    ex = ROOT / "c_driver" / "examples"
    subprocess.run([sys.executable, "-m", "cbridge_magics", "c-schema", str(ex / "minimal_messages.h"),
                    "--prefix", "minimal", "-o", str(d / "minimal_schema.c")], check=True,
                   capture_output=True)
    subprocess.run(["cc", "-std=c11", "-O2", f"-I{ex}", f"-I{d}", *config.cflags(),
                    str(ex / "minimal.c"), str(d / "minimal_schema.c"),
                    *config.libs(static=True), "-o", str(d / "minimal")], check=True)
    return d / "minimal"


@pytest.fixture
def recorded(driver, tmp_path):
    """A recording of GET_STATUS, START (20 kHz), 0.4 s of stream, STOP; and the Bridge's view."""
    path = tmp_path / "run.cbrec"
    b = connect(driver.url, history=1_000_000)
    rec = b.record(path)
    recording_helpers.run_demo(b, 20_000, 0.4)
    stats = rec.stop()
    seen = b.history("Telemetry")
    b.close()
    return path, stats, seen


@pytest.fixture
def replay_sock(sock_path) -> Path:
    return sock_path.with_name("replay.sock")  # the recorded driver is still on sock_path
