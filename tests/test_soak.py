"""The soak (tests/soak.py): 1 minute in make test; `make soak MINUTES=N` for longer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import soak

MINUTES = float(os.environ.get("CBRIDGE_SOAK_MINUTES", "1"))


@pytest.mark.timeout(int(MINUTES * 60) + 180)
def test_soak(sock_path):
    report = soak.Report(MINUTES)
    try:
        soak.Soak(MINUTES, sock_path, report).run()
    except BaseException as e:
        report.error = f"{type(e).__name__}: {e}"
        raise
    finally:
        soak.write(report, Path(__file__).resolve().parent.parent / "out")
        print(report.text())
    for t in report.tallies:
        # every request accounted for; a timeout (a loud failure) only when its reply came late
        assert t.sent == t.answered + t.failed + t.timeouts and t.timeouts == t.late, t
        assert t.answered > 0
    assert report.driver_kills == int(MINUTES) and report.client_kills >= int(MINUTES * 2)
    assert min(report.records_fast) > 0
    # Every frame the relay dropped for the slow client was told to it, and shows as a hole in
    # its stream: the drops are told with the frame after them (the relay holds a driver's late
    # notice until the stream goes on).
    assert report.slow_told > 0
    assert report.slow_told == report.slow_relay_dropped == report.slow_gaps
    first, last = report.kernel_samples[0], report.kernel_samples[-1]
    assert last[1] <= first[1] + 4, report.kernel_samples  # descriptors flat
    if MINUTES >= 20:  # memory levels off after its warm-up (about 15 minutes on a 2-core VM)
        assert report.slope_mib_per_min(0.5) <= 0.5, report.kernel_samples
    assert report.iopub_rate_exceeded == 0
