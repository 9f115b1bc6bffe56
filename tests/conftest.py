"""Fixtures shared by the suites: the real demo driver on a private socket, the cstruct build cache.

The driver process itself is cbridge_magics.testing.DriverProcess, which the benches and
``make demo`` use too; CBRIDGE_DRIVER points the suites at another build of it (the ASan one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from cbridge_magics.testing import DriverProcess, demo_driver
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
