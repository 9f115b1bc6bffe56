"""The demo driver on the wire: raw stdlib sockets against the real binary.

These tests speak PROTOCOL.md byte by byte (``struct``, ``socket``, ``json``
only), so they check the C side independently of the Python package.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
from collections import namedtuple

import pytest

HEADER = struct.Struct("<HBBIII")
MAGIC = 0x4243
FLAG_REPLY, FLAG_STREAM = 0x01, 0x02
T_HELLO, T_ERROR, T_PING = 1, 2, 3
T_COMMAND, T_STATUS, T_TELEMETRY = 256, 257, 258
E_BAD_MAGIC, E_BAD_VERSION, E_TOO_LARGE, E_UNKNOWN_TYPE = 1, 2, 3, 4
E_BAD_LENGTH, E_BAD_REQUEST, E_UNAVAILABLE, E_OVERLOADED = 5, 6, 7, 8
MAX_PAYLOAD = 1048576

COMMAND = struct.Struct("<IIddII")  # op waveform frequency_hz amplitude rate_hz batch
STATUS = struct.Struct("<iIQQd")  # code streaming frames_sent records_sent frequency_hz
TELEMETRY = struct.Struct("<IIdd64f")  # seq count t0 dt samples[64]
OP_GET_STATUS, OP_START, OP_STOP, OP_SET_WAVE = 0, 1, 2, 3
SINE, SQUARE, SAW, NOISE = 0, 1, 2, 3
NOMINAL_DT = 1.0 / 64000  # rate_hz = 0 runs on a 1000 records/s timebase

Frame = namedtuple("Frame", "magic version flags type_id seq length payload")
Status = namedtuple("Status", "code streaming frames_sent records_sent frequency_hz")


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


# --------------------------------------------------------------------------
# HELLO
# --------------------------------------------------------------------------

EXPECTED_TYPES = {
    "Command": (256, 32, [("op", 0, 4, "uint32_t", 1), ("waveform", 4, 4, "uint32_t", 1),
                          ("frequency_hz", 8, 8, "double", 1), ("amplitude", 16, 8, "double", 1),
                          ("rate_hz", 24, 4, "uint32_t", 1), ("batch", 28, 4, "uint32_t", 1)]),
    "Status": (257, 32, [("code", 0, 4, "int32_t", 1), ("streaming", 4, 4, "uint32_t", 1),
                         ("frames_sent", 8, 8, "uint64_t", 1),
                         ("records_sent", 16, 8, "uint64_t", 1),
                         ("frequency_hz", 24, 8, "double", 1)]),
    "Telemetry": (258, 280, [("seq", 0, 4, "uint32_t", 1), ("count", 4, 4, "uint32_t", 1),
                             ("t0", 8, 8, "double", 1), ("dt", 16, 8, "double", 1),
                             ("samples", 24, 256, "float", 64)]),
}


def test_hello_first_on_every_connection_with_the_demo_schema(driver):
    for _ in range(3):
        with Conn(driver.path) as c:
            h = c.hello
            assert h["protocol"] == 1
            assert h["driver"] == "cbridge-demo-driver"
            assert h["driver_version"] == "0.1.0"
            assert h["max_payload"] == MAX_PAYLOAD
            got = {t["name"]: t for t in h["types"]}
            assert set(got) == set(EXPECTED_TYPES)
            for name, (tid, size, fields) in EXPECTED_TYPES.items():
                t = got[name]
                assert (t["id"], t["size"], t["align"]) == (tid, size, 8)
                assert [(f["name"], f["offset"], f["size"], f["ctype"], f["count"])
                        for f in t["fields"]] == fields
    # the struct formats these tests use agree with the schema
    assert (COMMAND.size, STATUS.size, TELEMETRY.size) == (32, 32, 280)


def test_connect_and_disconnect_are_logged_with_client_ids(driver):
    with Conn(driver.path) as c:
        cid = newest_client_id(driver)
        c.status()
    wait_for_log(driver, f"client {cid} disconnected: peer closed (0 stream frames dropped)")


# --------------------------------------------------------------------------
# Errors on the wire
# --------------------------------------------------------------------------

@pytest.mark.parametrize("bad, code", [
    (dict(magic=0x1234), E_BAD_MAGIC),
    (dict(magic=0x4342), E_BAD_MAGIC),
    (dict(version=2), E_BAD_VERSION),
    (dict(version=0), E_BAD_VERSION),
])
def test_bad_magic_or_version_closes_that_connection_only(driver, bad, code):
    with Conn(driver.path) as other, Conn(driver.path) as c:
        c.send_raw(header(T_COMMAND, 32, seq=77, **bad))
        f = c.frame()
        assert (f.flags, f.seq) == (0, 77)
        assert error_of(f)[0] == code
        assert c.is_closed()
        assert other.status(seq=5).code == 0
    wait_for_log(driver, "protocol error")


def test_too_large_closes_that_connection_only(driver):
    with Conn(driver.path) as other, Conn(driver.path) as c:
        c.send_raw(header(T_COMMAND, MAX_PAYLOAD + 1, seq=9))
        f = c.frame()
        assert (f.flags, f.seq) == (0, 9)
        code, msg = error_of(f)
        assert code == E_TOO_LARGE and "1048577" in msg
        assert c.is_closed()
        assert other.status().code == 0


def test_exactly_max_payload_is_accepted(driver):
    n = MAX_PAYLOAD // COMMAND.size
    with Conn(driver.path, timeout=10) as c:
        statuses = c.commands(*[command(OP_GET_STATUS)] * n, seq=3)
        assert len(statuses) == n and all(s.code == 0 for s in statuses)


@pytest.mark.parametrize("type_id", [0, 4, 200, 255, 259, 0xFFFFFFFF])
def test_unknown_type_is_answered_and_the_connection_stays(driver, type_id):
    with Conn(driver.path) as c:
        f = c.request(type_id, b"x" * 8, seq=1234)
        assert (f.flags, f.seq) == (FLAG_REPLY, 1234)
        assert error_of(f)[0] == E_UNKNOWN_TYPE
        assert c.status(seq=1235).code == 0


@pytest.mark.parametrize("length", [0, 1, 31, 33, 63])
def test_bad_length_is_answered_and_the_connection_stays(driver, length):
    with Conn(driver.path) as c:
        f = c.request(T_COMMAND, (command(OP_GET_STATUS) * 2)[:length], seq=56)
        assert (f.flags, f.seq) == (FLAG_REPLY, 56)
        code, msg = error_of(f)
        assert code == E_BAD_LENGTH and f"length {length} " in msg
        assert c.status(seq=57).code == 0


def test_a_reply_only_type_sent_as_a_request_is_refused(driver):
    with Conn(driver.path) as c:
        f = c.request(T_STATUS, bytes(STATUS.size), seq=8)
        code, msg = error_of(f)
        assert code == E_BAD_REQUEST and "no handler" in msg
        assert c.status(seq=9).code == 0


def test_a_peer_that_stops_mid_frame_never_blocks_others(driver):
    with Conn(driver.path) as other, Conn(driver.path) as stuck:
        frame = header(T_COMMAND, 32, seq=1) + command(OP_GET_STATUS)
        stuck.send_raw(frame[:8])  # half a header
        for seq in range(10):
            assert other.status(seq=seq).code == 0
        stuck.send_raw(frame[8:26])  # the header and half the payload
        for seq in range(10, 20):
            assert other.status(seq=seq).code == 0
        stuck.close()
        wait_for_log(driver, "mid-frame")
        assert other.status(seq=20).code == 0
    assert driver.proc.poll() is None


def test_a_frame_split_in_single_bytes_is_reassembled(driver):
    with Conn(driver.path) as c:
        for b in header(T_COMMAND, 32, seq=31) + command(OP_GET_STATUS):
            c.send_raw(bytes([b]))
        f = c.reply(31)
        assert f.type_id == T_STATUS


# --------------------------------------------------------------------------
# Control frames
# --------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 64])
def test_ping_is_echoed(driver, n):
    payload = bytes(range(n))
    with Conn(driver.path) as c:
        f = c.request(T_PING, payload, seq=0xFFFFFFFF)
        assert (f.type_id, f.flags, f.seq, f.payload) == (T_PING, FLAG_REPLY, 0xFFFFFFFF, payload)


def test_ping_above_64_bytes_is_bad_length(driver):
    with Conn(driver.path) as c:
        f = c.request(T_PING, b"p" * 65, seq=4)
        assert error_of(f)[0] == E_BAD_LENGTH
        assert c.request(T_PING, b"ok", seq=5).payload == b"ok"


def test_hello_from_a_client_is_bad_request(driver):
    with Conn(driver.path) as c:
        f = c.request(T_HELLO, b"{}", seq=6)
        assert error_of(f)[0] == E_BAD_REQUEST


def test_error_from_a_client_is_logged_not_answered(driver):
    with Conn(driver.path) as c:
        c.send(T_ERROR, struct.pack("<i", 6) + b"client says no", seq=3)
        f = c.request(T_PING, b"after", seq=4)  # the next frame is the PING's echo
        assert f.type_id == T_PING
    wait_for_log(driver, "sent ERROR 6 (seq 3): client says no")


@pytest.mark.parametrize("flags", [FLAG_REPLY, FLAG_STREAM, 0x04, 0x80])
def test_request_flags_must_be_zero(driver, flags):
    with Conn(driver.path) as c:
        f = c.request(T_COMMAND, command(OP_GET_STATUS), seq=12, flags=flags)
        code, msg = error_of(f)
        assert code == E_BAD_REQUEST and "flags" in msg
        assert c.status(seq=13).code == 0


# --------------------------------------------------------------------------
# Many clients
# --------------------------------------------------------------------------

def test_64_clients_at_once_each_get_their_own_replies(driver):
    n_clients, n_requests = 64, 20
    barrier = threading.Barrier(n_clients, timeout=10)
    errors = []

    def client(idx):
        try:
            with Conn(driver.path, timeout=10) as c:
                barrier.wait()
                for i in range(n_requests):
                    seq = idx * 1000 + i
                    c.send(T_COMMAND, command(OP_GET_STATUS), seq=seq)
                    f = c.reply(seq)
                    assert f.type_id == T_STATUS and f.length == STATUS.size
                barrier.wait()  # all still connected at the end
        except Exception as e:  # reported below, with the client's index
            errors.append((idx, repr(e)))
            barrier.abort()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_beyond_max_clients_is_unavailable(start_driver):
    drv = start_driver("--max-clients", "2")
    wait_no_clients(drv)  # the fixture's readiness probe is gone
    with Conn(drv.path) as a, Conn(drv.path) as b:
        with Conn(drv.path, read_hello=False) as c:
            f = c.frame()
            assert (f.flags, f.seq) == (0, 0)
            assert error_of(f) == (E_UNAVAILABLE, "too many clients")
            assert c.is_closed()
        assert a.status().code == 0 and b.status().code == 0
    wait_for_log(drv, "too many clients")


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------

def test_each_command_op(driver):
    with Conn(driver.path) as c:
        s = c.status(seq=1)
        assert s == Status(0, 0, 0, 0, 1000.0)
        s = c.commands(command(OP_START, SINE, 50.0, 1.0, rate_hz=1000, batch=1), seq=2)[0]
        assert (s.code, s.streaming, s.frequency_hz) == (0, 1, 50.0)
        first = c.frame()
        assert first.type_id == T_TELEMETRY and first.flags == FLAG_STREAM
        s = c.commands(command(OP_SET_WAVE, SQUARE, 100.0, 2.0), seq=3)[0]
        assert (s.streaming, s.frequency_hz) == (1, 100.0)
        s = c.commands(command(OP_STOP), seq=4)[0]
        assert s.streaming == 0 and s.frames_sent >= 1 and s.records_sent == s.frames_sent
        s2 = c.status(seq=5)
        assert s2.frames_sent == s.frames_sent and s2.frequency_hz == 100.0


def test_a_batch_of_commands_gets_one_frame_of_statuses_in_order(driver):
    with Conn(driver.path) as c:
        got = c.commands(command(OP_GET_STATUS),
                         command(OP_START, SINE, 10.0, 1.0, rate_hz=1, batch=1),
                         command(OP_SET_WAVE, SAW, 20.0, 1.0),
                         command(OP_STOP), seq=7)
        assert [(s.streaming, s.frequency_hz) for s in got] == [
            (0, 1000.0), (1, 10.0), (1, 20.0), (0, 20.0)]


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("cmd, why", [
    (command(9), "unknown op 9"),
    (command(OP_START, waveform=4), "waveform 4"),
    (command(OP_SET_WAVE, waveform=99), "waveform 99"),
    (command(OP_START, frequency_hz=NAN), "frequency_hz"),
    (command(OP_START, frequency_hz=INF), "frequency_hz"),
    (command(OP_START, frequency_hz=0.0), "frequency_hz"),
    (command(OP_START, frequency_hz=-5.0), "frequency_hz"),
    (command(OP_START, frequency_hz=32000.5, rate_hz=1000), "Nyquist"),
    (command(OP_START, frequency_hz=32000.5, rate_hz=0), "Nyquist"),
    (command(OP_START, frequency_hz=33.0, rate_hz=1), "Nyquist"),
    (command(OP_SET_WAVE, frequency_hz=1e9), "Nyquist"),
    (command(OP_START, amplitude=NAN), "amplitude"),
    (command(OP_START, amplitude=-1.0), "amplitude"),
    (command(OP_SET_WAVE, amplitude=INF), "amplitude"),
    (command(OP_START, batch=3745), "batch 3745"),
    (command(OP_START, rate_hz=10_000_001), "rate_hz 10000001"),
])
def test_invalid_commands_are_bad_request(driver, cmd, why):
    with Conn(driver.path) as c:
        f = c.request(T_COMMAND, cmd, seq=99)
        assert (f.flags, f.seq) == (FLAG_REPLY, 99)
        code, msg = error_of(f)
        assert code == E_BAD_REQUEST
        assert why in msg and msg.startswith("record 0: ")
        assert c.status(seq=100).streaming == 0


def test_limits_themselves_are_accepted(driver):
    with Conn(driver.path) as c:
        ok = c.commands(command(OP_START, frequency_hz=32000.0, rate_hz=1000, batch=3744),
                        command(OP_START, frequency_hz=1.0, amplitude=0.0, rate_hz=10_000_000),
                        command(OP_STOP), seq=2)
        assert [s.streaming for s in ok] == [1, 1, 0]


def test_an_invalid_record_in_a_batch_applies_none_of_it(driver):
    with Conn(driver.path) as c:
        f = c.request(T_COMMAND, command(OP_SET_WAVE, SINE, 123.0, 1.0)
                      + command(OP_START, SINE, 50.0, 1.0, rate_hz=100, batch=1)
                      + command(7), seq=21)
        code, msg = error_of(f)
        assert code == E_BAD_REQUEST and msg == "record 2: unknown op 7"
        s = c.status(seq=22)
        assert (s.streaming, s.frequency_hz) == (0, 1000.0)


# --------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------

def fit_phase(samples, f, dt):
    """Least-squares a*sin + b*cos at frequency f: (amplitude, phase in cycles at k=0)."""
    ss = sc = cc = xs = xc = 0.0
    for k, x in enumerate(samples):
        s, c = math.sin(2 * math.pi * f * k * dt), math.cos(2 * math.pi * f * k * dt)
        ss, sc, cc, xs, xc = ss + s * s, sc + s * c, cc + c * c, xs + x * s, xc + x * c
    det = ss * cc - sc * sc
    a, b = (xs * cc - xc * sc) / det, (xc * ss - xs * sc) / det
    return math.hypot(a, b), (math.atan2(b, a) / (2 * math.pi)) % 1.0


def read_records(c, n, on_frame=None):
    """At least n Telemetry records from the stream, checking the frame seq."""
    records, last_seq = [], None
    while len(records) < n:
        f = c.frame()
        if f.flags != FLAG_STREAM:
            if on_frame:
                on_frame(f)
                continue
            raise AssertionError(f"unexpected {f}")
        if last_seq is not None:
            assert f.seq == last_seq + 1, "a stream frame went missing"
        last_seq = f.seq
        records += telemetry(f)
    return records


def test_stream_has_no_gaps_and_a_continuous_sine(driver):
    f0, amp = 1234.5, 2.0
    with Conn(driver.path, timeout=10) as c:
        assert c.commands(command(OP_START, SINE, f0, amp, rate_hz=0, batch=64))[0].streaming
        recs = read_records(c, 5000)
        c.commands(command(OP_STOP), seq=2)
    dt = NOMINAL_DT
    first_seq, t_first = recs[0][0], recs[0][2]
    a, phase0 = fit_phase(recs[0][4:], f0, dt)
    assert abs(a - amp) < 1e-4
    worst = 0.0
    for i, r in enumerate(recs):
        seq, count, t0, rdt = r[:4]
        assert seq == first_seq + i
        assert count == 64 and rdt == dt
        assert abs(t0 - (t_first + 64 * dt * i)) < 1e-9
        for k, x in enumerate(r[4:]):
            want = amp * math.sin(2 * math.pi * (phase0 + f0 * (t0 - t_first + k * dt)))
            worst = max(worst, abs(x - want))
    assert worst < 1e-5 * amp


def test_set_wave_keeps_the_phase_continuous(start_driver):
    drv = start_driver("--out-buffer", "65536")  # a short queue: the switch comes soon
    f1, f2, amp, dt = 437.0, 2100.0, 1.0, NOMINAL_DT  # no whole cycles per record
    replies = []
    with Conn(drv.path, timeout=10) as c:
        c.commands(command(OP_START, SINE, f1, amp, rate_hz=0, batch=16))
        recs = read_records(c, 200)
        c.send(T_COMMAND, command(OP_SET_WAVE, SINE, f2, amp), seq=2)
        while not replies:
            recs += read_records(c, 16, on_frame=replies.append)
        recs += read_records(c, 200)
        c.commands(command(OP_STOP), seq=3)
    assert Status(*STATUS.unpack(replies[0].payload)).frequency_hz == f2
    # sample to sample, the signal never moves faster than the faster sine allows
    samples = [x for r in recs for x in r[4:]]
    step = max(abs(b - a) for a, b in zip(samples, samples[1:]))
    assert step <= 2 * math.pi * f2 * amp * dt * 1.01

    def fits(r, f):
        a, ph = fit_phase(r[4:], f, dt)
        return max(abs(x - a * math.sin(2 * math.pi * (ph + f * k * dt)))
                   for k, x in enumerate(r[4:])) < 1e-4

    # records fit f1 before the switch and f2 after it; find it by bisection
    assert fits(recs[0], f1) and fits(recs[-1], f2)
    lo, hi = 0, len(recs) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(recs[mid], f1) else (lo, mid)
    switch = hi
    assert all(fits(r, f1) for r in recs[max(0, switch - 20):switch])
    assert all(fits(r, f2) for r in recs[switch:switch + 20])
    # the phase at the switch is where the old frequency left it
    _, ph_before = fit_phase(recs[switch - 1][4:], f1, dt)
    _, ph_after = fit_phase(recs[switch][4:], f2, dt)
    expected = (ph_before + f1 * 64 * dt) % 1.0
    assert min(abs(ph_after - expected), 1 - abs(ph_after - expected)) < 1e-4


def test_seq_time_and_phase_continue_across_stop_and_start(driver):
    f, dt = 437.0, NOMINAL_DT
    with Conn(driver.path, timeout=10) as c:
        c.commands(command(OP_START, SINE, f, 1.0, rate_hz=0, batch=8))
        before = read_records(c, 100)
        c.send(T_COMMAND, command(OP_STOP), seq=2)
        while (fr := c.frame()).flags != FLAG_REPLY:  # all that was made before the STOP
            before += telemetry(fr)
        time.sleep(0.1)  # simulated time stands still while stopped
        c.commands(command(OP_START, SINE, f, 1.0, rate_hz=0, batch=8), seq=3)
        after = read_records(c, 16)
        c.commands(command(OP_STOP), seq=4)
    last, first = before[-1], after[0]
    assert first[0] == last[0] + 1
    assert abs(first[2] - (last[2] + 64 * dt)) < 1e-9
    _, ph_last = fit_phase(last[4:], f, dt)
    _, ph_first = fit_phase(first[4:], f, dt)
    d = abs(ph_first - (ph_last + f * 64 * dt) % 1.0)
    assert min(d, 1 - d) < 1e-4


@pytest.mark.parametrize("wave", [SQUARE, SAW, NOISE])
def test_other_waveforms(driver, wave):
    f, amp, dt = 1000.0, 3.0, NOMINAL_DT
    with Conn(driver.path) as c:
        c.commands(command(OP_START, wave, f, amp, rate_hz=0, batch=4))
        samples = [x for r in read_records(c, 40) for x in r[4:]]
        c.commands(command(OP_STOP), seq=2)
    assert all(-amp <= x <= amp for x in samples)
    if wave == SQUARE:  # +A then -A, half a period each: 32 samples at 1 kHz
        assert set(samples) == {amp, -amp}
        runs = [len(list(g)) for _, g in itertools.groupby(samples)]
        assert all(n == 32 for n in runs[1:-1])
    elif wave == SAW:  # rises by 2*A*f*dt a sample, falls by 2*A once a period
        steps = [b - a for a, b in zip(samples, samples[1:])]
        rises = [d for d in steps if d > 0]
        assert all(abs(d - 2 * amp * f * dt) < 1e-5 for d in rises)
        assert len(steps) - len(rises) == pytest.approx(len(samples) / 64, abs=1)
    else:
        mean = sum(samples) / len(samples)
        assert abs(mean) < 0.1 * amp and len(set(samples)) > len(samples) * 0.9


@pytest.mark.parametrize("rate, batch, lo, hi", [(2000, 10, 1500, 2500), (10000, 1, 8000, 12000)])
def test_paced_rate(driver, rate, batch, lo, hi):
    with Conn(driver.path) as c:
        c.commands(command(OP_START, SINE, 100.0, 1.0, rate_hz=rate, batch=batch))
        t_end, n, sizes = time.monotonic() + 1.0, 0, set()
        while time.monotonic() < t_end:
            f = c.frame()
            recs = telemetry(f)
            sizes.add(len(recs))
            n += len(recs)
        c.commands(command(OP_STOP), seq=2)
    assert sizes == {batch}
    assert lo <= n <= hi, f"{n} records in 1 s at rate_hz={rate}"


def test_a_stalled_client_loses_stream_frames_but_never_blocks_others(start_driver):
    drv = start_driver("--out-buffer", "262144")
    with Conn(drv.path, timeout=10) as fast, Conn(drv.path, timeout=10) as stalled:
        stalled_id = newest_client_id(drv)
        fast.commands(command(OP_START, SINE, 1000.0, 1.0, rate_hz=0, batch=64), seq=1)
        t_end, seq, frames, replies = time.monotonic() + 1.0, 2, 0, 0
        next_request = time.monotonic()
        while time.monotonic() < t_end:
            if time.monotonic() >= next_request:  # requests are answered meanwhile
                fast.send(T_COMMAND, command(OP_GET_STATUS), seq=seq)
                next_request += 0.1
                seq += 1
            f = fast.frame()
            if f.flags == FLAG_REPLY:
                assert f.type_id == T_STATUS and f.seq == 2 + replies
                replies += 1
            else:
                frames += 1
        assert replies >= 5 and frames > 100
        fast.commands(command(OP_STOP), seq=1000)
        fast.close()

        # the stalled client reads at last: its queue, the OVERLOADED notice, new frames
        stalled.send(T_COMMAND, command(OP_START, SINE, 1000.0, 1.0, rate_hz=0, batch=64), seq=1)
        last, reported, gaps, after_notice, started = None, 0, 0, 0, False
        while after_notice < 20:
            f = stalled.frame()
            if f.type_id == T_ERROR:
                assert (f.flags, f.seq) == (0, 0)
                code, msg = error_of(f)
                assert code == E_OVERLOADED and msg.startswith("dropped ")
                assert msg == f"dropped {int(msg.split()[1])} stream frames"
                reported += int(msg.split()[1])
            elif f.flags == FLAG_REPLY:
                started = True
            else:
                if last is not None:
                    gaps += f.seq - last - 1
                assert gaps == reported, "a seq gap that no OVERLOADED notice explained"
                last = f.seq
                after_notice += 1 if reported else 0
        assert reported > 0 and started
        stalled.commands(command(OP_STOP), seq=2)
    wait_for_log(drv, f"client {stalled_id} disconnected")
    line = next(x for x in drv.log().splitlines() if f"client {stalled_id} disconnected" in x)
    assert int(line.rsplit("(", 1)[1].split()[0]) >= reported


def test_stream_goes_to_every_client_with_its_own_seq(driver):
    with Conn(driver.path) as a:
        a.commands(command(OP_START, SINE, 100.0, 1.0, rate_hz=1000, batch=5))
        first_a = a.frame()
        read_records(a, 50)
        with Conn(driver.path) as b:  # joins mid-stream: its frames count from 0
            first_b = b.frame()
            assert first_a.seq == 0 and first_b.seq == 0
            rb = telemetry(first_b) + read_records(b, 20)
            ra = read_records(a, 200)
        a.commands(command(OP_STOP), seq=2)
    seqs_a = [r[0] for r in ra]
    assert [r[0] for r in rb] == seqs_a[seqs_a.index(rb[0][0]):][:len(rb)]  # the same records


# --------------------------------------------------------------------------
# The socket file and the process
# --------------------------------------------------------------------------

def test_socket_file_is_owner_only(driver):
    assert stat.S_IMODE(os.stat(driver.path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(driver.path).st_mode)


def test_a_stale_socket_file_is_replaced(start_driver, sock_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sock_path))
    s.close()  # the file stays, nobody listens
    assert sock_path.exists()
    drv = start_driver()
    with Conn(drv.path) as c:
        assert c.status().code == 0
    assert "replaced stale" in drv.log()


def test_an_empty_regular_file_is_replaced(start_driver, sock_path):
    sock_path.write_bytes(b"")
    drv = start_driver()
    with Conn(drv.path) as c:
        assert c.status().code == 0


def test_a_regular_file_with_data_is_not_replaced(driver_binary, sock_path):
    sock_path.write_bytes(b"precious")
    r = subprocess.run([str(driver_binary), "--socket", str(sock_path)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "not a socket" in r.stderr
    assert sock_path.read_bytes() == b"precious"


def test_a_second_driver_on_a_live_socket_refuses_to_start(driver, driver_binary):
    r = subprocess.run([str(driver_binary), "--socket", str(driver.path)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert f"another server is listening on {driver.path}" in r.stderr
    with Conn(driver.path) as c:  # the first one is untouched
        assert c.status().code == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_cleanly_and_remove_the_socket(start_driver, sig):
    drv = start_driver()
    with Conn(drv.path) as c:  # a client mid-stream does not hold the driver up
        c.commands(command(OP_START, SINE, 100.0, 1.0, rate_hz=0, batch=64))
        c.frame()
        assert drv.stop(sig) == 0
    assert not drv.path.exists()
    # log() flushes the log file, which stop() closed: read the file itself
    log = drv.log_path.read_text()
    assert f"stopping on signal {int(sig)}" in log
    assert "disconnected: server shutting down" in log


def test_usage(driver_binary):
    r = subprocess.run([str(driver_binary), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "--socket PATH" in r.stdout and "--max-clients" in r.stdout
    r = subprocess.run([str(driver_binary), "--bogus"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "usage:" in r.stderr
    r = subprocess.run([str(driver_binary), "--max-clients", "x"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2
