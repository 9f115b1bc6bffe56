"""The WebSocket relay: a real tornado server in the Bridge's kernel process, real clients
(websocket-client, and the websockets library as a client that is not ours), the real driver."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import struct
import threading
import time

import pytest
import websocket

from cbridge_magics import DriverError, DriverUnavailable, State, connect
from cbridge_magics.wire import frames
from cbridge_magics.testing import wait_for
from cbridge_magics.wire._wire import FrameReader
from relay_client import Raw

HDR = struct.Struct("<HBBIII")
PING, ERROR, HELLO = 3, 2, 1
STATUS_ONLY = struct.pack("<IIddII", 0, 0, 0.0, 0.0, 0, 0)


def frame(type_id, seq, payload=b"", flags=0):
    return frames.pack_frame(type_id, seq, payload, flags)


def command(op=0, waveform=0, freq=0.0, amp=0.0, rate=0, batch=0):
    return struct.pack("<IIddII", op, waveform, freq, amp, rate, batch)


@pytest.fixture(autouse=True)
def close_raw_clients():
    yield
    while Raw.opened:
        ws = Raw.opened.pop().ws
        ws.close()
        ws.shutdown()  # close() leaves the socket open when the relay closed first


@pytest.fixture
def server(driver):
    b = connect(driver.url)
    relay = b.serve(ping_interval=0.5, ping_timeout=0.5)
    yield b, relay
    b.close()


def test_hello_first_then_replies_with_the_clients_own_seq(server, driver):
    b, relay = server
    c = Raw(relay)
    t, f, s, p = c.next()
    assert t == HELLO and p == b.schema.payload
    c.send(frame(256, 4242, command()))
    t, p = c.reply_to(4242)
    assert t == 257 and len(p) == 32
    c.send(frame(PING, 7, b"abc"))
    assert c.reply_to(7) == (PING, b"abc")


@pytest.mark.parametrize("how", ["none", "wrong", "wrong-header"])
def test_bad_token_is_403_before_the_upgrade(server, how):
    _b, relay = server
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    path = "/"
    if how == "wrong":
        path = "/?token=" + "x" * len(relay.token)
    elif how == "wrong-header":
        headers["Authorization"] = "token nope"
    conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=5)
    conn.request("GET", path, headers=headers)
    assert conn.getresponse().status == 403
    conn.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(f"ws://127.0.0.1:{relay.port}{path}", timeout=5,
                                    header=[f"{k}: {v}" for k, v in headers.items() if k == "Authorization"])
    assert e.value.status_code == 403


def test_token_in_query_or_header_and_origins(driver):
    with connect(driver.url) as b:
        relay = b.serve(allowed_origins=["https://lab.example"])
        q = websocket.create_connection(relay.url, timeout=5)  # ?token=
        h = websocket.create_connection(f"ws://127.0.0.1:{relay.port}/", timeout=5,
                                        header=[f"Authorization: token {relay.token}"])
        o = websocket.create_connection(relay.url, timeout=5, origin="https://lab.example")
        same = websocket.create_connection(relay.url, timeout=5, origin=f"http://127.0.0.1:{relay.port}")
        for ws in (q, h, o, same):
            assert ws.recv_data()[1][4:8] == struct.pack("<I", HELLO)
            ws.close()
        with pytest.raises(websocket.WebSocketBadStatusException) as e:
            websocket.create_connection(relay.url, timeout=5, origin="https://evil.example")
        assert e.value.status_code == 403


def test_token_never_in_logs(driver, caplog):
    import logging

    with caplog.at_level(logging.DEBUG):
        with connect(driver.url) as b:
            relay = b.serve()
            r = connect(relay.url)
            r.request(r.types["Command"](op=0))
            r.close()
            with pytest.raises(DriverUnavailable, match="403"):
                connect(f"ws://127.0.0.1:{relay.port}/?token=wrong-{relay.token}")
    assert relay.token not in caplog.text


def test_two_clients_interleave_and_get_only_their_own_replies(server):
    _b, relay = server
    clients = [Raw(relay) for _ in range(2)]
    for c in clients:
        c.next()  # HELLO
    errors = []

    def run(k, c):
        for i in range(300):
            seq = 1000 * (k + 1) + i
            payload = f"{k}:{i}".encode()
            c.send(frame(PING, seq, payload))
            got = c.reply_to(seq)
            if got != (PING, payload):
                errors.append((k, i, got))

    threads = [threading.Thread(target=run, args=(k, c)) for k, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    stats = {s.id: s for s in relay.client_stats()}
    assert all(s.requests == s.replies == 300 for s in stats.values())


def test_stream_fans_out_to_every_client_with_its_own_seq(server):
    b, relay = server
    a, c = Raw(relay), Raw(relay)
    a.next(), c.next()
    a.send(frame(256, 1, command(op=1, freq=5.0, amp=1.0, rate=2000, batch=10)))
    seqs = {0: [], 1: []}
    records = {0: [], 1: []}
    for k, cl in enumerate((a, c)):
        while len(seqs[k]) < 50:
            t, f, s, p = cl.next()
            if f & 2:
                seqs[k].append(s)
                records[k] += [struct.unpack_from("<I", p, i * 280)[0] for i in range(len(p) // 280)]
    a.send(frame(256, 2, command(op=2)))
    for k in (0, 1):
        assert seqs[k] == list(range(seqs[k][0], seqs[k][0] + 50)), "per-client stream seq has no gaps"
        assert records[k] == list(range(records[k][0], records[k][0] + len(records[k])))
    assert set(records[0]) & set(records[1]), "both clients get the same records"


def test_frames_that_come_in_together_leave_in_one_message(server):
    _b, relay = server
    c = Raw(relay)
    c.next()
    # rate 0: the driver streams as fast as it can, so each read of the relay holds many frames
    c.send(frame(256, 1, command(op=1, freq=5.0, amp=1.0, rate=0, batch=8)))
    per_message = []
    reader = FrameReader()
    while sum(per_message) < 2000:
        opcode, data = c.ws.recv_data()
        per_message.append(sum(1 for f in reader.feed(data) if f[1] & 2))
    c.send(frame(256, 2, command(op=2)))
    assert max(per_message) > 10, f"frames per message: {per_message[:40]}"


def test_a_stalled_client_loses_old_stream_frames_counted_exactly(driver):
    with connect(driver.url) as b:
        relay = b.serve(queue_bytes=1 << 20)
        stalled = Raw(relay)  # connected, and reads nothing until the stream stops
        fast = connect(relay.url)
        Command = fast.types["Command"]
        fast.request(Command(op=1, waveform=0, frequency_hz=5.0, amplitude=1.0, rate_hz=100_000, batch=64))
        time.sleep(2.0)
        alone = fast.stats().types["Telemetry"].records
        stats = {s.id: s for s in relay.client_stats()}
        st = stats[1]
        assert st.dropped > 0, "the stalled client must have lost frames"
        assert st.queued_bytes <= relay.queue_bytes + relay.max_message, "memory stays bounded"
        other = stats[2]
        assert alone > 50_000 and other.delivered >= 0.9 * other.offered, \
            "the stalled client does not hold the other back"
        fast.request(Command(op=2))
        time.sleep(0.3)
        st = {s.id: s for s in relay.client_stats()}[1]
        # Now read everything the stalled client was sent: frames + OVERLOADED counts == offered.
        got, told = 0, 0
        while True:
            try:
                t, f, s, p = stalled.next(timeout=2.0)
            except websocket.WebSocketTimeoutException:
                break
            if f & 2:
                got += 1
            elif t == ERROR:
                code, msg = frames.parse_error(p)
                assert code == 8
                told += frames.parse_dropped(msg)
        final = {s.id: s for s in relay.client_stats()}[1]
        assert final.offered == final.delivered + final.dropped
        assert got == final.delivered and told == final.dropped
        fast.close()


def test_requests_while_the_driver_is_down_get_unavailable_at_once(start_driver, sock_path):
    d = start_driver()
    with connect(d.url) as b:
        b.backoff = (0.02, 0.2)
        relay = b.serve(backoff=(0.02, 0.2))
        c = Raw(relay)
        c.next()
        remote = connect(relay.url, reconnect=False)
        os.kill(d.proc.pid, signal.SIGSTOP)  # a request in flight when the driver dies ...
        c.send(frame(256, 98, command()))
        wait_for(lambda: relay.client_stats()[0].requests == 1, what="request forwarded")
        d.stop(signal.SIGKILL)
        t, p = c.reply_to(98)  # ... is answered, not forgotten
        assert t == ERROR and frames.parse_error(p)[0] == 7
        wait_for(lambda: not relay.driver_connected, what="relay to notice")
        t0 = time.monotonic()
        c.send(frame(256, 99, command()))
        t, p = c.reply_to(99)
        assert t == ERROR and frames.parse_error(p)[0] == 7 and time.monotonic() - t0 < 1
        # a remote Bridge gets what a local one gets from a lost link: DriverUnavailable
        with pytest.raises(DriverUnavailable) as away:
            remote.request(remote.types["Command"](op=0), timeout=5)
        assert isinstance(away.value, DriverError) and away.value.code == 7
        remote.close()
        if sock_path.exists():
            os.unlink(sock_path)
        start_driver(path=sock_path)
        wait_for(lambda: relay.driver_connected, what="relay back")
        c.send(frame(256, 100, command()))
        assert c.reply_to(100)[0] == 257, "same schema: clients stay connected and work again"


def test_text_partial_bad_and_oversize_messages_close_the_client(server):
    b, relay = server
    other = Raw(relay)
    other.next()
    cases = [
        (lambda ws: ws.send("hello"), 1003),
        (lambda ws: ws.send_binary(frame(PING, 1, b"abcd")[:10]), 1007),
        (lambda ws: ws.send_binary(b"XX" + frame(PING, 1)[2:]), 1007),
        # Only the start of an oversize message: the relay refuses it from its header alone.
        (lambda ws: ws.sock.sendall(websocket.ABNF.create_frame(
            b"\0" * (relay.max_message + 1), websocket.ABNF.OPCODE_BINARY).format()[:4096]), 1009),
    ]
    for send, code in cases:
        c = Raw(relay)
        c.next()
        send(c.ws)
        c.ws.settimeout(5)
        while True:
            opcode, data = c.ws.recv_data(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
        assert struct.unpack("!H", data[:2])[0] == code
    other.send(frame(PING, 5, b"still here"))
    assert other.reply_to(5) == (PING, b"still here")


def test_a_client_killed_mid_message_frees_its_slot(server):
    _b, relay = server
    s = socket.create_connection(("127.0.0.1", relay.port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /?token={relay.token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    assert b"101" in s.recv(4096).split(b"\r\n")[0]
    s.sendall(bytes([0x82, 0x80 | 126, 0x10, 0x00]) + b"\x01\x02\x03\x04" + b"x" * 100)  # 4096 promised
    wait_for(lambda: len(relay.clients) == 1, what="client registered")
    s.close()
    wait_for(lambda: len(relay.clients) == 0, what="client freed")
    c = Raw(relay)
    c.next()
    c.send(frame(PING, 3))
    assert c.reply_to(3) == (PING, b"")


def test_a_silent_client_is_detected_by_keepalive(server):
    _b, relay = server  # ping every 0.5 s, 0.5 s to answer
    s = socket.create_connection(("127.0.0.1", relay.port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /?token={relay.token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    s.recv(4096)
    wait_for(lambda: len(relay.clients) == 1, what="client registered")
    # It gets pings, answers none, and is told so within about interval + timeout ...
    s.settimeout(3)
    seen = b""
    while b"ping timed out" not in seen:
        seen += s.recv(65536)
    # ... and tornado frees it once its grace period for a clean close (5 s) is over.
    wait_for(lambda: len(relay.clients) == 0, timeout=10, what="the silent client to be dropped")
    s.close()


def test_the_websockets_library_speaks_to_the_relay(server):
    from websockets.sync.client import connect as ws_connect

    b, relay = server
    with ws_connect(f"ws://127.0.0.1:{relay.port}/",
                    additional_headers={"Authorization": f"token {relay.token}"}) as ws:
        hello = ws.recv(timeout=5)
        assert isinstance(hello, bytes) and HDR.unpack_from(hello)[3] == HELLO
        assert json.loads(hello[16:])["driver"] == "cbridge-demo-driver"
        ws.send(frame(PING, 11, b"ours?") + frame(256, 12, command()))
        got = FrameReader().feed(ws.recv(timeout=5))
        while len(got) < 2:
            got += FrameReader().feed(ws.recv(timeout=5))
        assert {(t, s) for t, f, s, p in got} == {(PING, 11), (257, 12)}


def test_a_remote_bridge_works_like_a_local_one(server, driver):
    b, relay = server
    with connect(relay.url, history=5000) as r:
        assert r.schema.payload == b.schema.payload
        Command = r.types["Command"]
        assert r.request(Command(op=0)).code == 0
        r.request(Command(op=1, waveform=0, frequency_hz=5.0, amplitude=1.0, rate_hz=5000, batch=50))
        wait_for(lambda: len(r.history("Telemetry")) >= 2000, what="records over the relay")
        r.request(Command(op=2))
        seq = r.history("Telemetry")["seq"].astype(int)
        assert (seq[1:] - seq[:-1] == 1).all()


def test_a_remote_bridge_answers_keepalive_pings(server):
    _b, relay = server  # ping every 0.5 s, 0.5 s to answer
    with connect(relay.url) as r:
        (cid,) = [c.id for c in relay.client_stats()]
        time.sleep(2.5)  # five pings, each answered by the Bridge's reader
        assert r.state is State.CONNECTED and r.reconnects == 0
        assert [c.id for c in relay.client_stats()] == [cid]
        assert r.request(r.types["Command"](op=0)).code == 0


def test_a_remote_bridge_reconnects_when_the_relay_comes_back(driver, caplog):
    with connect(driver.url) as b:
        relay = b.serve()
        port, token = relay.port, relay.token
        r = connect(relay.url)
        r.backoff = (0.02, 0.2)
        relay.stop()
        wait_for(lambda: r.state is State.RECONNECTING, what="remote reconnecting")
        # the relay's close frame was read, and its reason reaches the user
        assert "closed the connection (code 1001: relay stopping)" in caplog.text
        with pytest.raises(DriverUnavailable):
            r.request(r.types["Command"](op=0))
        b.serve(port=port, token=token)
        wait_for(lambda: r.state is State.CONNECTED, what="remote reconnected")
        assert r.request(r.types["Command"](op=0)).code == 0
        r.close()


def test_stop_is_idempotent_and_closes_clients(server):
    b, relay = server
    c = Raw(relay)
    c.next()
    relay.stop()
    relay.stop()
    assert not relay.running
    c.ws.settimeout(5)
    opcode, data = c.ws.recv_data(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE and struct.unpack("!H", data[:2])[0] == 1001
    assert not any(t.name.startswith("cbridge-relay") for t in threading.enumerate())
