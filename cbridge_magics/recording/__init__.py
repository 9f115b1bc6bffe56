"""Recordings: what a Bridge receives, kept in a file that outlives the kernel; opened as numpy;
served again as a driver.

    rec = bridge.record("run.cbrec", types=["Telemetry"])     # or %cbridge record run.cbrec
    rec.stop()
    r = recording.open("run.cbrec"); r.records("Telemetry")["samples"]
    python -m cbridge_magics replay run.cbrec --socket /tmp/replay.sock [--speed max] [--loop]

The format is docs/RECORDING.md: versioned, append-only, no index to go out of step.
"""

from __future__ import annotations

from .reader import Frame, NotARecording, Recording, open
from .writer import Recorder, RecordingError

__all__ = ["open", "Recording", "Frame", "Recorder", "NotARecording", "RecordingError"]
