"""The demo driver on the wire: raw stdlib sockets against the real binary (HELLO, framing,
protocol errors, control frames, many clients).

These tests speak docs/reference/protocol.md byte by byte (tests/wire_client.py: ``struct``, ``socket``,
``json`` only), so they check the C side independently of the Python package.
"""

from __future__ import annotations

import struct
import threading

import pytest

from wire_client import (
    FLAG_REPLY, FLAG_STREAM, T_HELLO, T_ERROR, T_PING, T_COMMAND, T_STATUS, E_BAD_MAGIC,
    E_BAD_VERSION, E_TOO_LARGE, E_UNKNOWN_TYPE, E_BAD_LENGTH, E_BAD_REQUEST, E_UNAVAILABLE,
    MAX_PAYLOAD, COMMAND, STATUS, TELEMETRY, OP_GET_STATUS, command, header, error_of, Conn,
    wait_for_log, newest_client_id, wait_no_clients,
)


# --------------------------------------------------------------------------
# HELLO
# --------------------------------------------------------------------------

EXPECTED_TYPES = {
    "Command": (256, 32, [("op", 0, 4, "enum demo_op", 1), ("waveform", 4, 4, "enum demo_wave", 1),
                          ("frequency_hz", 8, 8, "double", 1), ("amplitude", 16, 8, "double", 1),
                          ("rate_hz", 24, 4, "uint32_t", 1), ("batch", 28, 4, "uint32_t", 1)]),
    # the flags word: bit-fields in one 4-byte unit, (bit offset, width, signed) each
    "Status": (257, 32, [("code", 0, 4, "int32_t", 1),
                         ("streaming", 4, 4, "uint32_t", 1, 0, 1, False),
                         ("paced", 4, 4, "uint32_t", 1, 1, 1, False),
                         ("waveform", 4, 4, "enum demo_wave", 1, 2, 3, False),
                         ("clients", 4, 4, "uint32_t", 1, 8, 8, False),
                         ("level_db", 4, 4, "int32_t", 1, 16, 8, True),
                         ("frames_sent", 8, 8, "uint64_t", 1),
                         ("records_sent", 16, 8, "uint64_t", 1),
                         ("frequency_hz", 24, 8, "double", 1)]),
    "Telemetry": (258, 280, [("seq", 0, 4, "uint32_t", 1), ("count", 4, 4, "uint32_t", 1),
                             ("t0", 8, 8, "double", 1), ("dt", 16, 8, "double", 1),
                             ("samples", 24, 256, "float", 64)]),
}
ENUMS = {"enum demo_op": {"DEMO_OP_GET_STATUS": 0, "DEMO_OP_START": 1, "DEMO_OP_STOP": 2,
                          "DEMO_OP_SET_WAVE": 3},
         "enum demo_wave": {"DEMO_WAVE_SINE": 0, "DEMO_WAVE_SQUARE": 1, "DEMO_WAVE_SAW": 2,
                            "DEMO_WAVE_NOISE": 3}}


def test_hello_first_on_every_connection_with_the_demo_schema(driver):
    for _ in range(3):
        with Conn(driver.path) as c:
            h = c.hello
            assert h["protocol"] == 1
            assert h["driver"] == "cbridge-demo-driver"
            assert h["driver_version"] == "0.2.0"
            assert h["max_payload"] == MAX_PAYLOAD
            got = {t["name"]: t for t in h["types"]}
            assert set(got) == set(EXPECTED_TYPES)
            for name, (tid, size, fields) in EXPECTED_TYPES.items():
                t = got[name]
                assert (t["id"], t["size"], t["align"]) == (tid, size, 8)
                assert [(f["name"], f["offset"], f["size"], f["ctype"], f["count"])
                        + ((f["bit_offset"], f["bit_width"], f["signed"]) if "bit_width" in f
                           else ()) for f in t["fields"]] == fields
            assert h["enums"] == ENUMS
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


@pytest.mark.parametrize("type_id", [0, 5, 200, 255, 259, 0xFFFFFFFF])
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
