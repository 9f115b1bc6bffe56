"""Malformed input, in bulk, against the real driver and the real relay: more than a thousand
cases of broken frames, broken peers and slow peers. After each batch a fresh client's PING is
answered, and the driver's open descriptors and memory are back where they began."""

from __future__ import annotations

import os
import random
import socket
import struct
import time

import pytest
import websocket

from cbridge_magics import connect
from cbridge_magics.wire._wire import FrameReader
from wire_client import (E_BAD_LENGTH, E_BAD_MAGIC, E_BAD_REQUEST, E_BAD_VERSION, E_TOO_LARGE,
                         E_UNKNOWN_TYPE, FLAG_REPLY, MAX_PAYLOAD, OP_START, OP_STOP, T_COMMAND,
                         T_ERROR, T_PING, Conn, command, error_of, header, wait_no_clients)

RNG = random.Random(1234)  # the same cases every run
COMMAND_SIZE = 32


def proc_state(pid: int) -> tuple[int, int]:
    """(open descriptors, resident KiB) of a process."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return fds, rss


class Batch:
    """Counts the cases of one batch; checks the driver afterwards."""

    def __init__(self, driver) -> None:
        self.driver = driver
        self.pid = driver.proc.pid
        with Conn(driver.path) as c:  # warm: the first client's buffers are allocated
            ping(c)
        wait_no_clients(driver)
        self.fds, self.rss = proc_state(self.pid)
        self.cases = 0

    def case(self) -> None:
        self.cases += 1

    def check(self) -> None:
        with Conn(self.driver.path) as c:
            ping(c)
        wait_no_clients(self.driver)
        fds, rss = proc_state(self.pid)
        assert fds == self.fds, f"descriptors: {self.fds} before, {fds} after"
        # An ASan build keeps freed memory in quarantine: there its own leak check stands in.
        if "asan" not in self.driver.binary.parent.name:
            assert rss <= self.rss + 4096, f"memory: {self.rss} KiB before, {rss} KiB after"
        assert self.driver.proc.poll() is None


def ping(c: Conn, seq: int = 7) -> None:
    c.send(T_PING, b"ok", seq=seq)
    f = c.reply(seq)
    assert (f.type_id, f.payload) == (T_PING, b"ok"), f


def fatal(driver, data: bytes, code: int) -> None:
    """The driver answers ERROR ``code`` and closes the connection."""
    with Conn(driver.path) as c:
        c.send_raw(data)
        f = c.frame()
        assert f.type_id == T_ERROR and error_of(f)[0] == code, f
        assert c.is_closed()


def answered(c: Conn, data: bytes, seq: int, code: int) -> None:
    """The driver answers ERROR ``code`` to the request ``seq`` and keeps the connection."""
    c.send_raw(data)
    f = c.reply(seq)
    assert f.type_id == T_ERROR and error_of(f)[0] == code, (f, error_of(f))


def test_broken_headers(driver):
    b = Batch(driver)
    for magic in RNG.sample(range(0x10000), 100):
        if magic != 0x4243:
            fatal(driver, header(T_PING, 0, seq=1, magic=magic), E_BAD_MAGIC)
            b.case()
    for version in [0, *range(2, 256)]:
        fatal(driver, header(T_PING, 0, seq=1, version=version), E_BAD_VERSION)
        b.case()
    for length in [MAX_PAYLOAD + 1, MAX_PAYLOAD + 16, 1 << 31, (1 << 32) - 1]:
        fatal(driver, header(T_COMMAND, length, seq=1) + bytes(10), E_TOO_LARGE)
        b.case()
    assert b.cases >= 350
    b.check()


def test_bad_requests_keep_the_connection(driver):
    b = Batch(driver)
    with Conn(driver.path) as c:
        seq = 100
        for flags in range(1, 256):
            seq += 1
            answered(c, header(T_COMMAND, COMMAND_SIZE, seq, flags) + command(0), seq,
                     E_BAD_REQUEST)
            b.case()
        for length in [0, 1, 31, 33, 63, 65, 1000, MAX_PAYLOAD - 1]:
            seq += 1
            answered(c, header(T_COMMAND, length, seq) + bytes(length), seq, E_BAD_LENGTH)
            b.case()
        for length in [65, 1000, MAX_PAYLOAD]:  # PING carries at most 64 bytes
            seq += 1
            answered(c, header(T_PING, length, seq) + bytes(length), seq, E_BAD_LENGTH)
            b.case()
        for type_id in [0, 5, 100, 255, 259, 1000, 65536, 0xFFFFFFFF]:
            seq += 1
            answered(c, header(type_id, 0, seq), seq, E_UNKNOWN_TYPE)
            b.case()
        # SUBSCRIBE (type 4): lengths that are not 4 + 4 * count, and ids that are not types
        for body in [b"", b"\x01", b"\x01\x00\x00\x00", struct.pack("<II", 2, 258),
                     struct.pack("<III", 1, 258, 258), struct.pack("<I", 0xFFFFFFFF)]:
            seq += 1
            answered(c, header(4, len(body), seq) + body, seq, E_BAD_LENGTH)
            b.case()
        for ids in [[0], [4], [255], [259], [258, 1000], [0xFFFFFFFF]]:
            seq += 1
            body = struct.pack(f"<I{len(ids)}I", len(ids), *ids)
            answered(c, header(4, len(body), seq) + body, seq, E_UNKNOWN_TYPE)
            b.case()
        for _ in range(300):  # commands with random bytes: refused or carried out, never fatal
            seq += 1
            payload = bytes(RNG.getrandbits(8) for _ in range(COMMAND_SIZE))
            c.send(T_COMMAND, payload, seq=seq)
            f = c.reply(seq)
            assert f.flags == FLAG_REPLY and (f.type_id != T_ERROR
                                             or error_of(f)[0] == E_BAD_REQUEST), f
            b.case()
        c.send(T_COMMAND, command(OP_STOP), seq=seq + 1)  # random ones may have started it
        c.reply(seq + 1)
        ping(c)
    assert b.cases >= 570
    b.check()


def test_garbage_truncation_and_peers_that_die_mid_frame(driver):
    b = Batch(driver)
    for n in range(1, 16):  # a header cut short, then the peer goes
        with Conn(driver.path) as c:
            c.send_raw(header(T_PING, 0, seq=1)[:n])
        b.case()
    for n in [1, 5, 16, 31]:  # a payload cut short
        with Conn(driver.path) as c:
            c.send_raw((header(T_COMMAND, COMMAND_SIZE, seq=1) + command(0))[:16 + n])
        b.case()
    for _ in range(100):  # garbage before a good frame: the garbage is judged first
        junk = bytes(RNG.getrandbits(8) for _ in range(RNG.randint(1, 64)))
        if junk[:2] == b"CB":
            continue
        fatal(driver, junk + header(T_PING, 0, seq=1), E_BAD_MAGIC)
        b.case()
    for _ in range(100):  # a valid header declaring a large payload, 10 bytes of it, gone
        with Conn(driver.path) as c:
            c.send_raw(header(T_COMMAND, RNG.choice([64, 4096, MAX_PAYLOAD]), seq=1) + bytes(10))
        b.case()
    assert b.cases >= 210
    b.check()


def test_slowloris_and_peers_that_never_read(driver):
    b = Batch(driver)
    slow = []
    for _ in range(100):  # 100 peers sending a frame a byte a second
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(driver.path))
        slow.append(s)
        b.case()
    frame = header(T_PING, 0, seq=1)
    with Conn(driver.path) as c:
        for i in range(3):
            for s in slow:
                s.send(frame[i:i + 1])
            t0 = time.monotonic()
            ping(c)  # others are served at once meanwhile
            assert time.monotonic() - t0 < 0.5
            time.sleep(1)
    for s in slow:
        s.close()
    deaf = []
    for _ in range(10):  # peers that never read while the driver streams at full rate
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(driver.path))
        deaf.append(s)
        b.case()
    with Conn(driver.path) as c:
        c.send(T_COMMAND, command(OP_START, rate_hz=0, batch=64), seq=2)
        c.reply(2)
        time.sleep(1.0)
        t0 = time.monotonic()
        c.send(T_COMMAND, command(OP_STOP), seq=3)
        c.reply(3)
        assert time.monotonic() - t0 < 1.0
    for s in deaf:
        s.close()
    assert b.cases == 110
    b.check()


# --- the relay ----------------------------------------------------------------------------------

@pytest.fixture
def relay(driver):
    b = connect(driver.url, history=0)
    r = b.serve()
    yield r
    b.close()


def ws_client(r) -> websocket.WebSocket:
    ws = websocket.create_connection(f"ws://127.0.0.1:{r.port}/", timeout=5,
                                     header=[f"Authorization: token {r.token}"])
    ws.recv()  # the HELLO
    return ws


def closed_with(ws, code: int) -> bool:
    """Whether the relay closed this connection with ``code``, after any frames it sent."""
    try:
        while True:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return int.from_bytes(data[:2], "big") == code
    except (websocket.WebSocketConnectionClosedException, OSError):
        return False
    finally:
        ws.shutdown()


def test_the_relay_refuses_malformed_messages(relay, driver):
    r = relay
    fds = len(os.listdir("/proc/self/fd"))
    cases = 0
    for _ in range(40):
        ws = ws_client(r)
        ws.send("a text message")
        assert closed_with(ws, 1003)
        cases += 1
    for n in [1, 8, 15, 17, 40]:  # a message that ends inside a frame
        for _ in range(8):
            ws = ws_client(r)
            ws.send_bytes((header(T_COMMAND, COMMAND_SIZE, seq=1) + command(0))[:n])
            assert closed_with(ws, 1007)
            cases += 1
    for magic in RNG.sample(range(0x10000), 60):
        if magic == 0x4243:
            continue
        ws = ws_client(r)
        ws.send_bytes(header(T_PING, 0, seq=1, magic=magic))
        assert closed_with(ws, 1007)
        cases += 1
    for version in [0, 2, 3, 255]:
        ws = ws_client(r)
        ws.send_bytes(header(T_PING, 0, seq=1, version=version))
        assert closed_with(ws, 1007)
        cases += 1
    ws = ws_client(r)  # requests with flags: refused, the connection stays
    reader = FrameReader()
    for flags in range(1, 256):
        ws.send_bytes(header(T_COMMAND, COMMAND_SIZE, seq=flags, flags=flags) + command(0))
        frames: list = []
        while not frames:
            frames = [f for f in reader.feed(ws.recv_data()[1]) if not f[1] & 0x02]
        type_id, fl, seq, payload = frames[0]
        assert (type_id, fl, seq) == (T_ERROR, FLAG_REPLY, flags)
        assert struct.unpack_from("<i", payload)[0] == E_BAD_REQUEST
        cases += 1
    ws.shutdown()
    assert cases >= 390
    b = connect(r.url)  # the relay still serves
    assert b.ping() < 1.0
    b.close()
    time.sleep(0.2)
    assert len(os.listdir("/proc/self/fd")) <= fds + 2

