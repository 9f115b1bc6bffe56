"""A driver that raised its payload limit (cb_server_set_max_payload, for camera frames and other
big records): its HELLO says so and the Bridge reads its 2 MiB records whole, directly and
through a relay (in a kernel's thread and in Jupyter Server); a Bridge bounded below the
driver's limit says how to connect. The driver is
tests/c/big_frames.c, built against the installed libcbridge with tables from c-schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cbridge_magics import DriverUnavailable, config, connect
from cbridge_magics.testing import ROOT, DriverProcess, JupyterServerProcess, wait_for

SOURCES = ROOT / "tests" / "c"


@pytest.fixture(scope="module")
def big_frames(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("big")
    subprocess.run([sys.executable, "-m", "cbridge_magics", "c-schema",
                    str(SOURCES / "big_messages.h"), "--prefix", "big",
                    "-o", str(d / "big_schema.c")], check=True, capture_output=True)
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2",
                    f"-I{SOURCES}", f"-I{d}", *config.cflags(), str(SOURCES / "big_frames.c"),
                    str(d / "big_schema.c"), *config.libs(static=True), "-o", str(d / "big")],
                   check=True)
    return d / "big"


@pytest.fixture
def big_driver(big_frames, sock_path):
    with DriverProcess(big_frames, sock_path) as d:
        yield d


def ask_and_check(b, n: int) -> None:
    start = b.history_of("Image").total
    image = b.request(b.types["Ask"](n=n))
    assert image.n == n and len(image.pixels) == 2 << 20
    assert np.all(np.asarray(image.pixels) == n)
    wait_for(lambda: b.history_of("Image").total == start + 1, timeout=10,
             what="the streamed Image")
    assert np.all(b.history("Image")["pixels"][-1] == n)


def test_the_drivers_own_limit_is_honoured(big_driver):
    b = connect(big_driver.url)
    try:
        assert b.schema.max_payload == 4 << 20
        for n in (7, 8, 9):
            ask_and_check(b, n)
        assert b.reconnects == 0 and b.errors_seen == 0 and b.state.value == "connected"
    finally:
        b.close()


def test_through_a_relay(big_driver):
    b = connect(big_driver.url)
    relay = b.serve()
    remote = connect(relay.url)
    try:
        assert remote.schema.max_payload == 4 << 20
        ask_and_check(remote, 11)
        assert remote.reconnects == 0 and remote.errors_seen == 0
    finally:
        remote.close()
        b.close()


def test_through_jupyter_server(big_driver, tmp_path):
    """The server's relay makes its core from the driver's first HELLO: its link reads the
    frames that came with it under the driver's limit, not the default."""
    server = JupyterServerProcess(tmp_path / "server", {"big": big_driver.url})
    try:
        remote = connect(f"{server.ws}cbridge/drivers/big/ws", token=server.TOKEN)
        try:
            ask_and_check(remote, 12)
            assert remote.reconnects == 0 and remote.errors_seen == 0
        finally:
            remote.close()
    finally:
        server.stop()


def test_a_bridge_bounded_below_the_drivers_limit_says_how_to_connect(big_driver):
    with pytest.raises(DriverUnavailable, match=r"up to 4194304 bytes, more than this Bridge "
                                                r"takes \(1048576\): connect with "
                                                r"max_payload=4194304"):
        connect(big_driver.url, max_payload=1 << 20, reconnect=False)


def test_the_history_of_big_records_is_bounded_in_bytes(big_driver):
    """100,000 records of 2 MiB would be 200 GiB: the ring keeps 256 MiB of them."""
    b = connect(big_driver.url)
    try:
        assert b.history_of("Image").capacity == (256 << 20) // b.types["Image"].size == 127
        assert b.history_of("Ask").capacity == 100_000
    finally:
        b.close()
