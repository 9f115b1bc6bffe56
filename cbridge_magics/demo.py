"""The demo without a notebook: start the demo driver, stream a waveform, save a plot.

    python -m cbridge_magics.demo --driver c_driver/build/cbridge-demo-driver --out out
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .bridge import connect
from .errors import CBridgeError

log = logging.getLogger("cbridge_magics.demo")


def start_driver(binary: Path, sock: Path, timeout: float = 10.0) -> subprocess.Popen:
    """Run the driver and wait until its socket answers."""
    proc = subprocess.Popen([str(binary), "--socket", str(sock)])
    deadline = time.monotonic() + timeout
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{binary} did not start (exit code {proc.poll()})")
        time.sleep(0.01)
    return proc


def run(binary: Path, out: Path, seconds: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    sock = Path(tempfile.mkdtemp(prefix="cbridge-demo-")) / "driver.sock"
    proc = start_driver(binary, sock)
    try:
        with connect(f"unix://{sock}", history=20_000) as b:
            Command = b.types["Command"]
            print(f"connected to {b.schema.driver} {b.schema.driver_version}: "
                  f"types {', '.join(t.name for t in b.schema.types)}")
            b.request(Command(op=1, waveform=0, frequency_hz=5.0, amplitude=1.0, rate_hz=2000, batch=20))
            time.sleep(seconds / 2)
            b.request(Command(op=3, waveform=1, frequency_hz=3.0, amplitude=0.8))
            time.sleep(seconds / 2)
            status = b.request(Command(op=2))
            hist = b.history("Telemetry")
            print(f"streamed {status.records_sent} records in {status.frames_sent} frames; "
                  f"received {len(hist)} (gaps: {b.stream_gaps})")
        t = (hist["t0"][:, None] + hist["dt"][:, None] * range(hist["samples"].shape[1])).ravel()
        fig = Figure(figsize=(9, 3.5), layout="constrained")
        ax = fig.add_subplot()
        ax.plot(t, hist["samples"].ravel(), lw=0.8)
        ax.set(xlabel="time (s)", ylabel="sample", title="cbridge demo: sine 5 Hz, then square 3 Hz")
        path = out / "demo_waveform.png"
        fig.savefig(path, dpi=110)
        return path
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driver", type=Path, default=Path("c_driver/build/cbridge-demo-driver"))
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if not os.access(args.driver, os.X_OK):
        print(f"{args.driver} is missing: run `make driver` first", file=sys.stderr)
        return 2
    try:
        path = run(args.driver, args.out, args.seconds)
    except CBridgeError as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    print(f"plot written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
