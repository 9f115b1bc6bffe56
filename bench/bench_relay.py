"""The relay, with the server side (Bridge + relay) in this process and each remote client in a
process of its own, as it would be on another host:

- request round trip notebook -> relay -> driver -> back, against a bare websocket-client echo round
  trip of the same bytes against a tornado echo server (the relay's server library) and against a
  `websockets` echo server (the alternative we did not pick); target <= 1.5x the tornado echo.
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

from common import ROOT, median, running_driver, table

N_RTT = 3000


def client_main(mode: str, url: str, arg: str) -> None:
    """Runs in a child process: prints one JSON line of results."""
    if mode == "echo":
        import websocket

        ws = websocket.create_connection(url)
        msg = b"\0" * 48  # a Command request frame's size
        times = []
        for _ in range(N_RTT):
            t0 = time.perf_counter()
            ws.send_binary(msg)
            ws.recv()
            times.append(time.perf_counter() - t0)
        ws.close()
        print(json.dumps({"median_us": median(times) * 1e6}))
        return
    from cbridge_magics import connect

    b = connect(url, history=100_000)
    Command = b.types["Command"]
    if mode == "rtt":
        cmd = Command(op=0)
        times = []
        for _ in range(N_RTT):
            t0 = time.perf_counter()
            b.request(cmd)
            times.append(time.perf_counter() - t0)
        print(json.dumps({"median_us": median(times) * 1e6}))
    elif mode == "stream":
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
    from websockets.sync.server import serve

    def echo(ws):
        for message in ws:
            ws.send(message)

    server = serve(echo, "127.0.0.1", 0, compression=None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"ws://127.0.0.1:{server.socket.getsockname()[1]}/", server.shutdown


def main() -> None:
    from cbridge_magics import connect

    t_url, t_stop = tornado_echo()
    w_url, w_stop = websockets_echo()
    echo_t = run_client("echo", t_url)["median_us"]
    echo_w = run_client("echo", w_url)["median_us"]
    t_stop()
    w_stop()
    with running_driver() as sock:
        b = connect(f"unix://{sock}", history=1000)
        relay = b.serve()
        rtt = run_client("rtt", relay.url)["median_us"]
        print(table(f"round trip over WebSocket, median of {N_RTT} (client in its own process)",
                    ["what", "us", "vs tornado echo", "target"],
                    [["websocket-client echo, tornado server", f"{echo_t:.0f}", "1.00x", "floor"],
                     ["websocket-client echo, websockets server", f"{echo_w:.0f}", f"{echo_w / echo_t:.2f}x", ""],
                     ["remote Bridge.request via relay -> driver", f"{rtt:.0f}", f"{rtt / echo_t:.2f}x", "<= 1.5x"]]))
        Command = b.types["Command"]
        b.request(Command(op=1, waveform=0, frequency_hz=50.0, amplitude=1.0, rate_hz=0, batch=64))
        alone = run_client("stream", relay.url, "3")
        import websocket

        stalled = websocket.create_connection(relay.url)  # connected, never reads
        time.sleep(0.5)
        with_stalled = run_client("stream", relay.url, "3")
        stalled_stats = [s for s in relay.client_stats() if s.delivered < s.offered / 2]
        stalled.shutdown()
        # Alone again, after: the better of the two runs alone is the rate to compare with.
        again = run_client("stream", relay.url, "3")
        if again["records_per_s"] > alone["records_per_s"]:
            alone = again
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
