"""What the recording and replay tests share: a run of the demo driver, and a replay process.
(Their fixtures, ``recorded``, ``minimal`` and ``replay_sock``, are in conftest.py.)"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


START = dict(op=1, waveform=0, frequency_hz=50.0, amplitude=1.0, batch=64)


def run_demo(b, rate: int, seconds: float) -> None:
    Command = b.types["Command"]
    b.request(Command(op=0))
    b.request(Command(rate_hz=rate, **START))
    time.sleep(seconds)
    b.request(Command(op=2))
    time.sleep(0.05)


def start_replay(path: Path, sock: Path, *options: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "cbridge_magics", "replay", str(path),
                             "--socket", str(sock), *options], stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()  # logged once it listens (a probing connect would play)
    assert first.startswith("replay: replaying"), first + proc.stderr.read()
    return proc


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    return err
