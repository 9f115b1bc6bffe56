"""A client that speaks docs/reference/protocol.md byte by byte (``struct``, ``socket``, ``json`` only), for the
suites that check the C driver independently of the Python package, and the demo's messages as
``struct`` formats (their layout is checked against the schema by the tests)."""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from collections import namedtuple

HEADER = struct.Struct("<HBBIII")
MAGIC = 0x4243
FLAG_REPLY, FLAG_STREAM = 0x01, 0x02
T_HELLO, T_ERROR, T_PING = 1, 2, 3
T_COMMAND, T_STATUS, T_TELEMETRY = 256, 257, 258
E_BAD_MAGIC, E_BAD_VERSION, E_TOO_LARGE, E_UNKNOWN_TYPE = 1, 2, 3, 4
E_BAD_LENGTH, E_BAD_REQUEST, E_UNAVAILABLE, E_OVERLOADED = 5, 6, 7, 8
MAX_PAYLOAD = 1048576

COMMAND = struct.Struct("<IIddII")  # op waveform frequency_hz amplitude rate_hz batch
STATUS = struct.Struct("<iIQQd")  # code, a flags word of bit-fields, frames_sent, records_sent, frequency_hz
TELEMETRY = struct.Struct("<IIdd64f")  # seq count t0 dt samples[64]
OP_GET_STATUS, OP_START, OP_STOP, OP_SET_WAVE = 0, 1, 2, 3
SINE, SQUARE, SAW, NOISE = 0, 1, 2, 3
NOMINAL_DT = 1.0 / 64000  # rate_hz = 0 runs on a 1000 records/s timebase

Frame = namedtuple("Frame", "magic version flags type_id seq length payload")
def flags(streaming=0, paced=0, waveform=0, clients=0, level_db=0):
    """Status's flags word, with the bit placement the demo's HELLO gives (test_driver_wire)."""
    return streaming | paced << 1 | waveform << 2 | clients << 8 | (level_db & 0xFF) << 16


class Status(namedtuple("Status", "code flags frames_sent records_sent frequency_hz")):
    @property
    def streaming(self):
        return self.flags & 1  # bit 0 of the flags word, as the HELLO says (test_driver_wire)


def command(op, waveform=SINE, frequency_hz=1000.0, amplitude=1.0, rate_hz=0, batch=64):
    return COMMAND.pack(op, waveform, frequency_hz, amplitude, rate_hz, batch)


def header(type_id, length, seq=0, flags=0, magic=MAGIC, version=1):
    return HEADER.pack(magic, version, flags, type_id, seq, length)


def error_of(frame):
    assert frame.type_id == T_ERROR, frame
    (code,) = struct.unpack_from("<i", frame.payload)
    return code, frame.payload[4:].decode()


def telemetry(frame):
    """The Telemetry records of a STREAM frame, as tuples."""
    assert frame.type_id == T_TELEMETRY and frame.flags == FLAG_STREAM, frame
    assert frame.length % TELEMETRY.size == 0
    return list(TELEMETRY.iter_unpack(frame.payload))


class Conn:
    """One client connection with a frame reader; every read has a deadline."""

    def __init__(self, path, timeout=5.0, read_hello=True):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.buf = bytearray()
        self.hello = None
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(str(path))
            if read_hello:
                f = self.frame()
                assert (f.type_id, f.flags, f.seq) == (T_HELLO, 0, 0), f
                self.hello = json.loads(f.payload)
        except BaseException:
            self.sock.close()
            raise

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, type_id, payload=b"", seq=0, flags=0, **hdr):
        self.send_raw(header(type_id, len(payload), seq, flags, **hdr) + payload)

    def frame(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            if len(self.buf) >= HEADER.size:
                fields = HEADER.unpack_from(self.buf)
                end = HEADER.size + fields[5]
                if len(self.buf) >= end:
                    payload = bytes(self.buf[HEADER.size : end])
                    del self.buf[:end]
                    return Frame(*fields, payload)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame from the driver in time")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("the driver closed the connection")
            self.buf += chunk

    def reply(self, seq, timeout=None):
        """The next frame that is not a STREAM frame or an OVERLOADED notice."""
        while True:
            f = self.frame(timeout)
            if f.flags & FLAG_STREAM or (f.type_id == T_ERROR and f.flags == 0 and f.seq == 0):
                continue
            assert f.flags == FLAG_REPLY and f.seq == seq, f
            return f

    def request(self, type_id, payload, seq, flags=0):
        self.send(type_id, payload, seq, flags)
        return self.reply(seq)

    def commands(self, *cmds, seq=1):
        """Send a batch of Commands; return their Status records."""
        f = self.request(T_COMMAND, b"".join(cmds), seq)
        assert f.type_id == T_STATUS, error_of(f) if f.type_id == T_ERROR else f
        assert f.length == len(cmds) * STATUS.size
        return [Status(*s) for s in STATUS.iter_unpack(f.payload)]

    def status(self, seq=1):
        return self.commands(command(OP_GET_STATUS), seq=seq)[0]

    def is_closed(self, timeout=3.0):
        """True once the driver closed this connection (no frame came first)."""
        try:
            self.frame(timeout)
        except (EOFError, ConnectionResetError):
            return True
        return False

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_for_log(drv, text, timeout=5.0):
    deadline = time.monotonic() + timeout
    while text not in drv.log():
        assert time.monotonic() < deadline, f"{text!r} not in the log:\n{drv.log()}"
        time.sleep(0.01)


def newest_client_id(drv):
    """The id the driver gave the latest connection (its HELLO came after the log line)."""
    return max(int(i) for i in re.findall(r"client (\d+) connected", drv.log()))


def wait_no_clients(drv, seen=1, timeout=5.0):
    """Until `seen` connections (the fixture's readiness probe) were accepted and all closed."""
    deadline = time.monotonic() + timeout
    while True:
        log = drv.log()
        if seen <= log.count(" connected (") == log.count(" disconnected: "):
            return
        assert time.monotonic() < deadline, log
        time.sleep(0.01)
