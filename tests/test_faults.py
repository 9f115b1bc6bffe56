"""Faults from outside: what a foreign or broken peer does to a Bridge must end in a clear error,
with memory and the kernel untouched."""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
import time

import pytest

from cbridge_magics import ProtocolError, connect
from cbridge_magics.wire import transports

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455


class ForeignServer:
    """A WebSocket server that is not a relay: it answers the upgrade, then sends ``first`` (raw
    bytes: WebSocket frames of its own making) and whatever ``more()`` gives, and counts what it
    managed to send."""

    def __init__(self, first: bytes, more: bytes = b"") -> None:
        self.first, self.more = first, more
        self.sent = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key"))
            accept = base64.b64encode(hashlib.sha1(key + WS_GUID.encode()).digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            conn.sendall(self.first)
            conn.settimeout(5)
            try:
                for _ in range(64):  # 64 MiB at most: the client should have hung up long before
                    conn.sendall(self.more)
                    self.sent += len(self.more)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


def binary_header(length: int, fin: bool = True, opcode: int = 2) -> bytes:
    """An unmasked server frame header announcing ``length`` payload bytes."""
    return bytes([(0x80 if fin else 0) | opcode, 127]) + struct.pack("!Q", length)


@pytest.mark.parametrize("how", ["one frame", "continuation frames"])
def test_a_remote_bridge_refuses_a_message_above_its_bound_before_reading_it(how):
    limit = transports.MAX_MESSAGE
    if how == "one frame":  # announces 4 GiB, then sends megabytes that nobody should read
        first, more = binary_header(4 << 30), bytes(1 << 20)
    else:  # fragments of 1 MiB, each fine alone, that never end
        chunk = 1 << 20
        first = binary_header(chunk, fin=False) + bytes(chunk)
        more = binary_header(chunk, fin=False, opcode=0) + bytes(chunk)
    server = ForeignServer(first, more)
    try:
        t0 = time.monotonic()
        with pytest.raises(ProtocolError, match=f"above the bound of {limit}"):
            connect(f"ws://127.0.0.1:{server.port}/", timeout=10, reconnect=False)
        assert time.monotonic() - t0 < 5
        server.thread.join(10)
        # Refused from the header: of the 64 MiB offered, at most the bound and what the
        # sockets' buffers took was ever sent.
        assert server.sent <= limit + (8 << 20), server.sent
    finally:
        server.close()


def test_a_flood_of_driver_errors_never_floods_a_kernels_output(driver):
    """10,000 refusals a second from the driver (ERROR frames answering bad commands) reach a
    plain kernel (no extension: its warnings go to stderr, and so to IOPub) as a few log lines a
    second that say how many were left out; the Bridge counts them all."""
    from cbridge_magics.testing import Kernel

    k = Kernel()
    try:
        k.run(f"""
import threading, time
from cbridge_magics import connect
b = connect({driver.url!r})
Command = b.types["Command"]
bad = Command(op=77)
def flood(seconds=3.0, per_second=10_000):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        for _ in range(per_second // 100):
            b.send(bad)
        time.sleep(max(0.0, 0.01 - (time.monotonic() - t)))
""")
        res = k.run("flood()", timeout=30)
        k.run("time.sleep(0.5)")
        seen = k.value("b.errors_seen")
        unlogged = k.value("b.errors_unlogged")
        lines = [line for line in res["stderr"].splitlines() if "driver refused request" in line]
        messages = [m for m in res["outputs"] if m["msg_type"] == "stream"]
        assert seen >= 10_000, seen
        assert len(lines) <= 4 * 5 and unlogged >= seen - 20, (len(lines), seen, unlogged)
        assert any("more errors since the last one logged" in line for line in lines)
        assert len(messages) <= 4 * 5, len(messages)  # a few IOPub messages a second
    finally:
        k.run("b.close()", allow_error=True)
        k.shutdown()


def test_the_driver_killed_under_load_every_request_is_answered_or_failed(start_driver, sock_path):
    """Two remote Bridges send 1,000 requests a second each through the relay; the driver is
    SIGKILLed and started again. Every request is answered or fails at once with an error (no
    timeout: nothing dropped in silence), and traffic resumes within the relay's backoff cap
    plus a second."""
    import signal

    from cbridge_magics import DriverError, DriverUnavailable, RequestTimeout

    cap = 1.0
    drv = start_driver()
    server = connect(drv.url, history=0)
    r = server.serve(backoff=(0.05, cap))
    clients = [connect(r.url, history=0) for _ in range(2)]
    stop = threading.Event()
    tallies = [{"sent": 0, "answered": 0, "failed": 0, "timeouts": 0, "last": 0.0}
               for _ in clients]

    def load(b, tally) -> None:
        cmd = b.types["Command"](op=0)
        tick = time.monotonic()
        while not stop.is_set():
            tally["sent"] += 1
            try:
                b.request(cmd, timeout=2.0)
                tally["answered"] += 1
                tally["last"] = time.monotonic()
            except RequestTimeout:
                tally["timeouts"] += 1
            except (DriverError, DriverUnavailable):
                tally["failed"] += 1
            tick += 0.001
            time.sleep(max(0.0, tick - time.monotonic()))

    threads = [threading.Thread(target=load, args=(b, t), daemon=True)
               for b, t in zip(clients, tallies)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        before = [t["answered"] for t in tallies]
        drv.stop(signal.SIGKILL)
        time.sleep(0.5)
        failed_while_down = [t["failed"] for t in tallies]
        start_driver(path=sock_path)
        restarted = time.monotonic()
        deadline = restarted + cap + 1.0
        while time.monotonic() < deadline and not all(t["last"] > restarted for t in tallies):
            time.sleep(0.01)
        resumed = max(t["last"] for t in tallies) - restarted
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for b in clients:
            b.close()
        server.close()
    for t, b0, f0 in zip(tallies, before, failed_while_down):
        assert t["timeouts"] == 0, t
        assert t["sent"] == t["answered"] + t["failed"], t
        assert b0 > 300 and f0 > 0, t  # the load ran, and the kill was felt
    assert 0 < resumed <= cap + 1.0, resumed
