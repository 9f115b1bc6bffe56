"""Recordings: what a Bridge receives, kept in a file that outlives the kernel; opened as numpy;
served again as a driver.

    rec = bridge.record("run.cbrec", types=["Telemetry"])     # or %cbridge record run.cbrec
    rec.stop()
    r = recording.open("run.cbrec"); r.records("Telemetry")["samples"]
    r.to_xarray("Telemetry", chunks=100_000); r.to_pandas("Status"); r.export("run.nc")
    runs = recording.open_many(["a.cbrec", "b.cbrec"]); runs.to_xarray("Telemetry")
    python -m cbridge_magics replay run.cbrec --socket /tmp/replay.sock [--speed max] [--loop]

The format is docs/reference/recording-format.md: versioned, append-only, no index to go out of step.
"""

from __future__ import annotations

from .reader import Frame, NotARecording, Recording, open
from .runs import Runs
from .writer import Recorder, RecordingError

__all__ = ["open", "open_many", "Recording", "Runs", "Frame", "Recorder", "NotARecording",
           "RecordingError"]


def open_many(paths) -> Runs:  # noqa: ANN001 - any iterable of paths
    """Several recordings end to end, each (file, epoch) kept apart: ``runs.to_xarray(name)``."""
    return Runs(paths)
