"""The relay, with the server side (Bridge + relay) in this process and each remote client in a
process of its own, as it would be on another host:

- request round trip notebook -> relay -> driver -> back, against a bare websocket-client echo round
  trip of the same bytes against a tornado echo server (the relay's server library) and against a
  `websockets` asyncio echo server (the alternative we did not pick); target <= 1.5x the tornado echo.
  One client process takes turns, block by block, between the echoes, the relay (a remote Bridge,
  and bare frames) and the driver's own socket, so a noisy machine skews them all alike. Two floors
  close the table: the echo plus the driver's own round trip, and a minimal relay (below) that does
  nothing but pass frames, which a remote Bridge then uses like the real one.
- Telemetry streamed through the relay to one remote Bridge (batch 64); target >= 500,000 records/s.
- the same with a second client that stalls (reads nothing): target >= 0.8x the rate alone.
"""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
import threading
import time

from common import ROOT, PlainClient, command_frame, median, running_driver, table

from cbridge_magics.wire import frames

BLOCKS, PER_BLOCK = 12, 250


def round_trips(urls: dict[str, str]) -> dict[str, float]:
    """Median round trip (us) of each kind, measured in turns of PER_BLOCK."""
    import websocket

    from cbridge_magics import connect

    msg = b"\0" * 48  # a Command request frame's size
    status = command_frame(1, 0)  # GET_STATUS
    echo_t = websocket.create_connection(urls["echo_t"])
    echo_w = websocket.create_connection(urls["echo_w"])
    bare = websocket.create_connection(urls["relay"])
    bare.recv()  # HELLO
    plain = PlainClient(urls["unix"])
    b = connect(urls["relay"], history=1000)
    cmd = b.types["Command"](op=0)
    minimal = websocket.create_connection(urls["minimal"])
    minimal.recv()  # HELLO
    mb = connect(urls["minimal"], history=1000, reconnect=False)

    def ws_echo(ws):
        ws.send_binary(msg)
        ws.recv()

    def ws_bare(ws):
        ws.send_binary(status)
        ws.recv()

    kinds = {"echo_t": lambda: ws_echo(echo_t), "echo_w": lambda: ws_echo(echo_w),
             "bridge": lambda: b.request(cmd), "bare": lambda: ws_bare(bare),
             "unix": lambda: plain.round_trip(status),
             "minimal_bridge": lambda: mb.request(cmd), "minimal_bare": lambda: ws_bare(minimal)}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(BLOCKS):
        for kind, call in kinds.items():
            out = times[kind]
            for _ in range(PER_BLOCK):
                t0 = time.perf_counter()
                call()
                out.append(time.perf_counter() - t0)
    b.close()
    mb.close()
    for ws in (echo_t, echo_w, bare):
        ws.close()
    minimal.shutdown()  # the minimal relay knows no close handshake
    return {k: median(v) * 1e6 for k, v in times.items()}


def client_main(mode: str, url: str, arg: str) -> None:
    """Runs in a child process: prints one JSON line of results."""
    if mode == "rtt":
        print(json.dumps(round_trips(json.loads(url))))
        return
    from cbridge_magics import connect

    b = connect(url, history=100_000)
    if mode == "stream":
        seconds = float(arg)
        time.sleep(0.5)  # the stream is already running
        n0, t0 = b.stats()["types"]["Telemetry"]["records"], time.perf_counter()
        time.sleep(seconds)
        n1, t1 = b.stats()["types"]["Telemetry"]["records"], time.perf_counter()
        print(json.dumps({"records_per_s": (n1 - n0) / (t1 - t0), "dropped": b.dropped_frames}))
    b.close()


def run_client(mode: str, url: str, arg: str = "") -> dict:
    out = subprocess.run([sys.executable, __file__, "client", mode, url, arg],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def tornado_echo() -> tuple[str, callable]:
    import tornado.web
    import tornado.websocket
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    class Echo(tornado.websocket.WebSocketHandler):
        def open(self):
            self.set_nodelay(True)

        def on_message(self, message):
            self.write_message(message, binary=True)

    ready, box = threading.Event(), {}

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        socks = bind_sockets(0, "127.0.0.1")
        HTTPServer(tornado.web.Application([(r"/", Echo)])).add_sockets(socks)
        box["port"], box["loop"] = socks[0].getsockname()[1], loop
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait()
    return f"ws://127.0.0.1:{box['port']}/", lambda: box["loop"].call_soon_threadsafe(box["loop"].stop)


def websockets_echo() -> tuple[str, callable]:
    """The websockets library's asyncio server, as a relay built on it would run."""
    from websockets.asyncio.server import serve

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    ready, box = threading.Event(), {}

    async def start():
        return await serve(echo, "127.0.0.1", 0, compression=None)

    def run():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(start())
        box["port"], box["loop"] = server.sockets[0].getsockname()[1], loop
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait()
    return f"ws://127.0.0.1:{box['port']}/", lambda: box["loop"].call_soon_threadsafe(box["loop"].stop)


class _MinimalRelay(asyncio.Protocol):
    """The least a relay can do, as a floor to measure against (never a product): accept any
    upgrade, unmask small client frames, pass requests to the driver and replies back. No auth,
    queues, fan-out, keepalive or checks; one driver link shared by its clients."""

    def __init__(self, driver: "_MinimalLink") -> None:
        self.driver, self.buf, self.open = driver, b"", False

    def connection_made(self, transport) -> None:
        import socket

        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes) -> None:
        n = len(data)
        head = (bytes([0x82, n]) if n < 126 else struct.pack("!BBH", 0x82, 126, n) if n < 65536
                else struct.pack("!BBQ", 0x82, 127, n))
        self.transport.write(head + data)

    def data_received(self, data: bytes) -> None:
        import base64
        import hashlib

        self.buf += data
        if not self.open:
            if b"\r\n\r\n" not in self.buf:
                return
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key"))
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            self.open = True
            self.send(self.driver.hello)
        while len(self.buf) >= 6 and len(self.buf) >= 6 + (self.buf[1] & 0x7F):
            n = self.buf[1] & 0x7F  # the floor's clients send frames under 126 bytes
            mask, payload, self.buf = self.buf[2:6], self.buf[6:6 + n], self.buf[6 + n:]
            key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
            payload = (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")
            type_id, _flags, seq, body = self.driver.reader.feed(payload)[0]
            self.driver.forward(self, type_id, seq, body)


class _MinimalLink(asyncio.Protocol):
    def __init__(self) -> None:
        from cbridge_magics.wire._wire import FrameReader

        self.reader, self.hello, self.pending, self.seq = FrameReader(), b"", {}, 0
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def forward(self, client: _MinimalRelay, type_id: int, seq: int, body: bytes) -> None:
        self.seq += 1
        self.pending[self.seq] = (client, seq)
        self.transport.write(frames.pack_frame(type_id, self.seq, body))

    def data_received(self, data: bytes) -> None:
        for type_id, flags, seq, body in self.reader.feed(data):
            if not self.hello:
                self.hello = frames.pack_frame(type_id, 0, body)
                self.ready.set_result(None)
            elif flags & 1 and seq in self.pending:
                client, client_seq = self.pending.pop(seq)
                client.send(frames.pack_frame(type_id, client_seq, body, 1))


def minimal_relay(sock) -> str:
    ready, box = threading.Event(), {}

    async def start():
        loop = asyncio.get_running_loop()
        _, link = await loop.create_unix_connection(_MinimalLink, str(sock))
        await link.ready
        server = await loop.create_server(lambda: _MinimalRelay(link), "127.0.0.1", 0)
        box["port"] = server.sockets[0].getsockname()[1]

    def run():
        loop = asyncio.new_event_loop()
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait()
    return f"ws://127.0.0.1:{box['port']}/"


def main() -> None:
    from cbridge_magics import connect

    t_url, t_stop = tornado_echo()
    w_url, w_stop = websockets_echo()
    with running_driver() as sock:
        b = connect(f"unix://{sock}", history=1000)
        relay = b.serve()
        urls = {"echo_t": t_url, "echo_w": w_url, "relay": relay.url, "unix": str(sock),
                "minimal": minimal_relay(sock)}
        r = run_client("rtt", json.dumps(urls))
        t_stop()
        w_stop()
        echo = r["echo_t"]

        def row(what, us, target=""):
            return [what, f"{us:.0f}", f"{us / echo:.2f}x", target]

        print(table(f"round trip over WebSocket, median of {BLOCKS * PER_BLOCK} each, in turns "
                    "(client in its own process)", ["what", "us", "vs tornado echo", "target"],
                    [row("websocket-client echo, tornado server", echo, "the peer"),
                     row("websocket-client echo, websockets server", r["echo_w"]),
                     row("remote Bridge.request via relay -> driver", r["bridge"], "<= 1.5x"),
                     row("bare frames (websocket-client) via relay -> driver", r["bare"]),
                     row("the driver's own Unix round trip (plain Python)", r["unix"]),
                     row("floor: tornado echo + the driver's round trip", echo + r["unix"]),
                     row("floor: bare frames via a minimal relay", r["minimal_bare"]),
                     row("floor: remote Bridge.request via a minimal relay", r["minimal_bridge"])]))
        Command = b.types["Command"]
        b.request(Command(op=1, waveform=0, frequency_hz=50.0, amplitude=1.0, rate_hz=0, batch=64))
        import websocket

        # In turns, alone and beside a client that connects and never reads, best of each: the
        # same number of tries either way, so a noisy moment does not decide the ratio.
        alone = with_stalled = None
        stalled_stats = []
        for _ in range(2):
            run = run_client("stream", relay.url, "2")
            if alone is None or run["records_per_s"] > alone["records_per_s"]:
                alone = run
            stalled = websocket.create_connection(relay.url)  # connected, never reads
            time.sleep(0.5)
            run = run_client("stream", relay.url, "2")
            if with_stalled is None or run["records_per_s"] > with_stalled["records_per_s"]:
                with_stalled = run
            stalled_stats = [s for s in relay.client_stats() if s.delivered < s.offered / 2]
            stalled.shutdown()
            time.sleep(0.2)
        b.request(Command(op=2))
        ratio = with_stalled["records_per_s"] / alone["records_per_s"]
        rows = [["one remote Bridge", f"{alone['records_per_s'] / 1e3:,.0f}", alone["dropped"], ">= 500k/s"],
                ["the same, beside a stalled client", f"{with_stalled['records_per_s'] / 1e3:,.0f}",
                 with_stalled["dropped"], f"{ratio:.2f}x alone (>= 0.8x)"]]
        print(table("Telemetry (batch 64, driver at rate 0) through the relay to a remote Bridge",
                    ["client", "k records/s", "frames dropped for it", "target"], rows))
        if stalled_stats:
            s = stalled_stats[0]
            print(f"stalled client: offered {s.offered}, delivered {s.delivered}, dropped {s.dropped}, "
                  f"queued {s.queued_bytes / 2**20:.1f} MiB (bound {relay.queue_bytes / 2**20:.0f} MiB)\n")
        b.close()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        client_main(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "")
    else:
        main()
