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
import subprocess
import sys
import threading
import time

from common import (ROOT, OverloadTally, PlainClient, command_frame, median, muted_note,
                    running_driver, table)
from floor_relay import check_floor, minimal_relay


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

    tally = OverloadTally.install()
    b = connect(url, history=100_000)
    if mode == "stream":
        seconds = float(arg)
        time.sleep(0.5)  # the stream is already running
        n0, t0 = b.stats().types["Telemetry"].records, time.perf_counter()
        time.sleep(seconds)
        n1, t1 = b.stats().types["Telemetry"].records, time.perf_counter()
        print(json.dumps({"records_per_s": (n1 - n0) / (t1 - t0), "dropped": b.dropped_frames,
                          "muted": tally.take()}))
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


def main() -> None:
    from cbridge_magics import connect

    check_floor()
    tally = OverloadTally.install()
    t_url, t_stop = tornado_echo()
    w_url, w_stop = websockets_echo()
    with running_driver() as sock:
        b = connect(f"unix://{sock}", history=1000)
        relay = b.serve()
        m_url, m_stop = minimal_relay(sock)
        urls = {"echo_t": t_url, "echo_w": w_url, "relay": relay.url, "unix": str(sock),
                "minimal": m_url}
        r = run_client("rtt", json.dumps(urls))
        t_stop()
        w_stop()
        m_stop()  # else its link to the driver would take the stream below, in this process
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

        # Readers too slow for the stream are told with ERROR 8 OVERLOADED, and cbridge logs
        # that: here (the Bridge `b`) and in the client. Those lines are counted per run, not
        # printed.
        def stream_run() -> dict:
            tally.take()
            run = run_client("stream", relay.url, "2")
            run["muted_here"] = tally.take()
            return run

        # In turns, alone and beside a client that connects and never reads, best of each: the
        # same number of tries either way, so a noisy moment does not decide the ratio.
        alone = with_stalled = None
        stalled_stats = []
        for _ in range(2):
            run = stream_run()
            if alone is None or run["records_per_s"] > alone["records_per_s"]:
                alone = run
            stalled = websocket.create_connection(relay.url)  # connected, never reads
            time.sleep(0.5)
            run = stream_run()
            if with_stalled is None or run["records_per_s"] > with_stalled["records_per_s"]:
                with_stalled = run
            stalled_stats = [s for s in relay.client_stats() if s.delivered < s.offered / 2]
            stalled.shutdown()
            time.sleep(0.2)
        b.request(Command(op=2))
        ratio = with_stalled["records_per_s"] / alone["records_per_s"]

        def muted(run: dict) -> str:
            return f"{sum(run['muted_here'].values())} / {sum(run['muted'].values())}"

        rows = [["one remote Bridge", f"{alone['records_per_s'] / 1e3:,.0f}", alone["dropped"],
                 muted(alone), ">= 500k/s"],
                ["the same, beside a stalled client", f"{with_stalled['records_per_s'] / 1e3:,.0f}",
                 with_stalled["dropped"], muted(with_stalled), f"{ratio:.2f}x alone (>= 0.8x)"]]
        print(table("Telemetry (batch 64, driver at rate 0) through the relay to a remote Bridge",
                    ["client", "k records/s", "frames dropped for it",
                     "OVERLOADED lines (relay side / client)", "target"], rows), end="")
        counts = [run[k] for run in (alone, with_stalled) for k in ("muted_here", "muted")]
        print(muted_note(*counts)
              + "  relay side: the Bridge the relay serves, itself a reader of the stream\n")
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
