"""A client's last words are carried out: a command sent just before a close is never dropped.

A client sends START, later STOP, and closes at once. The driver, the relay and the Bridge must
each carry the STOP out, at full rate (rate_hz 0) and paced (1 kHz), whether or not the client
read what was streamed to it. An observer stays connected all along: with nobody left the driver
would stop the stream by itself (its safe state, tested at the end), which would hide a lost STOP.

Each end guards on its own. This driver and relay read what a client sent whatever way it
closes, so the Bridge tests here pass with or without Bridge.close()'s polite close and stand
guard for the Bridge's side; the test that fails without it, at both speeds, is in test_raw.py,
against a program that drops a client at its first hangup, unread input and all.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
import websocket

from cbridge_magics import connect
from cbridge_magics.testing import wait_for
from wire_client import (OP_START, OP_STOP, T_COMMAND, Conn, command, header, newest_client_id,
                         wait_for_log)

SPEEDS = pytest.mark.parametrize("rate", [0, 1000], ids=["full-rate", "paced-1kHz"])
TRIES = 3
# Seconds until a client that does not read has a full socket (about 200 KB on Linux) and the
# driver queues output for it: the state in which a close made the driver lose the STOP.
FILL = {0: 0.3, 1000: 1.2}


def start_stop(rate: int) -> tuple[bytes, bytes]:
    start, stop = command(OP_START, rate_hz=rate, batch=64), command(OP_STOP)
    return (header(T_COMMAND, len(start), seq=1) + start, header(T_COMMAND, len(stop), seq=2) + stop)


def streaming(observer: Conn) -> int:
    return observer.status(seq=99).streaming


def stopped(observer, Command) -> None:
    """The relay forwards on its own connection to the driver, which the driver may serve after
    the observer's: so wait a little for the STOP to take, and fail if it never does."""
    wait_for(lambda: observer.request(Command(op=0)).streaming == 0, timeout=3.0,
             what="the STOP sent through the relay before the client went")


@SPEEDS
def test_the_driver_carries_out_what_a_client_sent_before_it_closed(driver, rate):
    """The client never reads, so the driver has stream data queued for it when it closes: the
    driver's next write fails, and the STOP it has not read yet must still be dispatched."""
    start, stop = start_stop(rate)
    with Conn(driver.path) as observer:
        for _ in range(TRIES):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(driver.path))
            s.recv(1 << 16)  # the HELLO: the driver has logged this client's id
            cid = newest_client_id(driver)
            s.sendall(start)
            time.sleep(FILL[rate])  # the stream fills the socket: the driver queues output for it
            s.sendall(stop)
            s.close()
            # the driver's write failed first: the case where it used to drop the STOP
            wait_for_log(driver, f"client {cid} disconnected: connection reset")
            assert streaming(observer) == 0, "the STOP sent before the close was dropped"


@SPEEDS
@pytest.mark.parametrize("stalled", [False, True], ids=["reading", "stalled-reader"])
def test_a_bridge_send_then_close_is_carried_out(driver, rate, stalled):
    with Conn(driver.path) as observer:
        for _ in range(TRIES):
            b = connect(driver.url, history=1000)
            gate = threading.Event()
            if stalled:  # the reader thread stops reading: every queue toward it fills
                b.subscribe("Telemetry", lambda records: gate.wait(5))
            Command = b.types["Command"]
            b.send(Command(op=OP_START, rate_hz=rate, batch=64, frequency_hz=1000.0, amplitude=1.0))
            time.sleep(0.3)
            b.send(Command(op=OP_STOP))
            b.close(timeout=1.0)
            gate.set()
            assert streaming(observer) == 0, "Bridge.close() lost the send before it"


@pytest.fixture
def relay(driver):
    b = connect(driver.url, history=0)  # also the observer: it stays connected
    r = b.serve()
    yield b, r
    b.close()


@SPEEDS
def test_a_remote_bridge_send_then_close_is_carried_out(relay, rate):
    observer, r = relay
    Command = observer.types["Command"]
    for _ in range(TRIES):
        b = connect(r.url, history=1000)
        b.send(b.types["Command"](op=OP_START, rate_hz=rate, batch=64, frequency_hz=1000.0,
                                  amplitude=1.0))
        time.sleep(0.3)
        b.send(b.types["Command"](op=OP_STOP))
        b.close(timeout=1.0)
        stopped(observer, Command)


def stall(r, seconds: float) -> threading.Event:
    """Block the relay's event loop for a while, as a kernel busy with a long cell does to a
    relay in its thread; the event is set once the loop is blocked."""
    blocked = threading.Event()

    def block() -> None:
        blocked.set()
        time.sleep(seconds)

    r._loop.call_soon_threadsafe(block)
    assert blocked.wait(5), "the relay's loop never ran the stall"
    return blocked


@SPEEDS
def test_the_relay_forwards_what_a_client_sent_before_it_vanished(relay, rate):
    """A client reads the stream, sends STOP and goes without a WebSocket close: its socket
    resets (SO_LINGER 0, as when a process dies with data unread). The relay's loop is busy
    meanwhile, so when it wakes the driver's frames are handled first and the write to the gone
    client fails before its STOP is read: the STOP must still reach the driver."""
    observer, r = relay
    Command = observer.types["Command"]
    start, stop = start_stop(rate)
    for _ in range(TRIES):
        ws = websocket.create_connection(f"ws://127.0.0.1:{r.port}/", timeout=5,
                                         header=[f"Authorization: token {r.token}"])
        done = threading.Event()

        def read() -> None:
            try:
                while not done.is_set():
                    ws.recv_data()
            except (OSError, websocket.WebSocketException):
                pass  # the socket was closed under it: the end of this client

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        ws.send_bytes(start)
        time.sleep(0.3)
        stall(r, 0.3)
        time.sleep(0.15)  # a driver frame (64 ms apart when paced) waits before the STOP does
        ws.send_bytes(stop)
        done.set()
        sock = ws.sock  # websocket-client closes it when the reader thread sees the end
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # Wake the reader (nothing goes out): a thread blocked in recv() would keep the socket
        # open past its close. When it ends, the socket closes and resets, with no close frame.
        sock.shutdown(socket.SHUT_RD)
        reader.join(5)
        sock.close()
        stopped(observer, Command)


# --- the safe state ----------------------------------------------------------------------------

def test_the_stream_stops_when_the_last_client_has_gone(driver):
    start, _ = start_stop(1000)
    with Conn(driver.path) as c:
        c.send_raw(start)
        time.sleep(0.1)
    wait_for_log(driver, "no client left: streaming stopped")
    with Conn(driver.path) as c:
        assert streaming(c) == 0


def test_keep_streaming_keeps_it_on(start_driver):
    drv = start_driver("--keep-streaming")
    start, stop = start_stop(1000)
    with Conn(drv.path) as c:
        c.send_raw(start)
        time.sleep(0.1)
    wait_for_log(drv, "disconnected")
    time.sleep(0.1)
    with Conn(drv.path) as c:
        assert streaming(c) == 1
        c.send_raw(stop)
    assert "streaming stopped" not in drv.log()
