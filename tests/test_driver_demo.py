"""The demo driver as a signal generator, on the wire: its commands, its stream (continuity,
pacing, slow clients), its socket file and signals. Raw stdlib sockets against the real binary,
as in test_driver_wire.py."""

from __future__ import annotations

import itertools
import math
import os
import signal
import socket
import stat
import subprocess
import time

import pytest

from wire_client import (
    FLAG_REPLY, FLAG_STREAM, T_ERROR, T_COMMAND, T_STATUS, T_TELEMETRY, E_BAD_REQUEST,
    E_OVERLOADED, STATUS, OP_GET_STATUS, OP_START, OP_STOP, OP_SET_WAVE, SINE, SQUARE, SAW,
    NOISE, NOMINAL_DT, Status, command, error_of, telemetry, Conn, wait_for_log,
    newest_client_id, flags,
)


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------

def test_each_command_op(driver):
    with Conn(driver.path) as c:
        s = c.status(seq=1)
        assert s == Status(0, flags(clients=1), 0, 0, 1000.0)  # amplitude 1: 0 dB
        s = c.commands(command(OP_START, SINE, 50.0, 1.0, rate_hz=1000, batch=1), seq=2)[0]
        assert (s.code, s.streaming, s.frequency_hz) == (0, 1, 50.0)
        first = c.frame()
        assert first.type_id == T_TELEMETRY and first.flags == FLAG_STREAM
        s = c.commands(command(OP_SET_WAVE, SQUARE, 100.0, 2.0), seq=3)[0]
        assert (s.streaming, s.frequency_hz) == (1, 100.0)
        s = c.commands(command(OP_STOP), seq=4)[0]
        assert s.streaming == 0 and s.frames_sent >= 1 and s.records_sent == s.frames_sent
        s2 = c.status(seq=5)
        assert s2.frames_sent == s.frames_sent and s2.frequency_hz == 100.0


def test_a_batch_of_commands_gets_one_frame_of_statuses_in_order(driver):
    with Conn(driver.path) as c:
        got = c.commands(command(OP_GET_STATUS),
                         command(OP_START, SINE, 10.0, 1.0, rate_hz=1, batch=1),
                         command(OP_SET_WAVE, SAW, 20.0, 1.0),
                         command(OP_STOP), seq=7)
        assert [(s.streaming, s.frequency_hz) for s in got] == [
            (0, 1000.0), (1, 10.0), (1, 20.0), (0, 20.0)]


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("cmd, why", [
    (command(9), "unknown op 9"),
    (command(OP_START, waveform=4), "waveform 4"),
    (command(OP_SET_WAVE, waveform=99), "waveform 99"),
    (command(OP_START, frequency_hz=NAN), "frequency_hz"),
    (command(OP_START, frequency_hz=INF), "frequency_hz"),
    (command(OP_START, frequency_hz=0.0), "frequency_hz"),
    (command(OP_START, frequency_hz=-5.0), "frequency_hz"),
    (command(OP_START, frequency_hz=32000.5, rate_hz=1000), "Nyquist"),
    (command(OP_START, frequency_hz=32000.5, rate_hz=0), "Nyquist"),
    (command(OP_START, frequency_hz=33.0, rate_hz=1), "Nyquist"),
    (command(OP_SET_WAVE, frequency_hz=1e9), "Nyquist"),
    (command(OP_START, amplitude=NAN), "amplitude"),
    (command(OP_START, amplitude=-1.0), "amplitude"),
    (command(OP_SET_WAVE, amplitude=INF), "amplitude"),
    (command(OP_START, batch=3745), "batch 3745"),
    (command(OP_START, rate_hz=10_000_001), "rate_hz 10000001"),
])
def test_invalid_commands_are_bad_request(driver, cmd, why):
    with Conn(driver.path) as c:
        f = c.request(T_COMMAND, cmd, seq=99)
        assert (f.flags, f.seq) == (FLAG_REPLY, 99)
        code, msg = error_of(f)
        assert code == E_BAD_REQUEST
        assert why in msg and msg.startswith("record 0: ")
        assert c.status(seq=100).streaming == 0


def test_limits_themselves_are_accepted(driver):
    with Conn(driver.path) as c:
        ok = c.commands(command(OP_START, frequency_hz=32000.0, rate_hz=1000, batch=3744),
                        command(OP_START, frequency_hz=1.0, amplitude=0.0, rate_hz=10_000_000),
                        command(OP_STOP), seq=2)
        assert [s.streaming for s in ok] == [1, 1, 0]


def test_an_invalid_record_in_a_batch_applies_none_of_it(driver):
    with Conn(driver.path) as c:
        f = c.request(T_COMMAND, command(OP_SET_WAVE, SINE, 123.0, 1.0)
                      + command(OP_START, SINE, 50.0, 1.0, rate_hz=100, batch=1)
                      + command(7), seq=21)
        code, msg = error_of(f)
        assert code == E_BAD_REQUEST and msg == "record 2: unknown op 7"
        s = c.status(seq=22)
        assert (s.streaming, s.frequency_hz) == (0, 1000.0)


# --------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------

def fit_phase(samples, f, dt):
    """Least-squares a*sin + b*cos at frequency f: (amplitude, phase in cycles at k=0)."""
    ss = sc = cc = xs = xc = 0.0
    for k, x in enumerate(samples):
        s, c = math.sin(2 * math.pi * f * k * dt), math.cos(2 * math.pi * f * k * dt)
        ss, sc, cc, xs, xc = ss + s * s, sc + s * c, cc + c * c, xs + x * s, xc + x * c
    det = ss * cc - sc * sc
    a, b = (xs * cc - xc * sc) / det, (xc * ss - xs * sc) / det
    return math.hypot(a, b), (math.atan2(b, a) / (2 * math.pi)) % 1.0


def read_records(c, n, on_frame=None):
    """At least n Telemetry records from the stream, checking the frame seq."""
    records, last_seq = [], None
    while len(records) < n:
        f = c.frame()
        if f.flags != FLAG_STREAM:
            if on_frame:
                on_frame(f)
                continue
            raise AssertionError(f"unexpected {f}")
        if last_seq is not None:
            assert f.seq == last_seq + 1, "a stream frame went missing"
        last_seq = f.seq
        records += telemetry(f)
    return records


def test_stream_has_no_gaps_and_a_continuous_sine(driver):
    f0, amp = 1234.5, 2.0
    with Conn(driver.path, timeout=10) as c:
        assert c.commands(command(OP_START, SINE, f0, amp, rate_hz=0, batch=64))[0].streaming
        recs = read_records(c, 5000)
        c.commands(command(OP_STOP), seq=2)
    dt = NOMINAL_DT
    first_seq, t_first = recs[0][0], recs[0][2]
    a, phase0 = fit_phase(recs[0][4:], f0, dt)
    assert abs(a - amp) < 1e-4
    worst = 0.0
    for i, r in enumerate(recs):
        seq, count, t0, rdt = r[:4]
        assert seq == first_seq + i
        assert count == 64 and rdt == dt
        assert abs(t0 - (t_first + 64 * dt * i)) < 1e-9
        for k, x in enumerate(r[4:]):
            want = amp * math.sin(2 * math.pi * (phase0 + f0 * (t0 - t_first + k * dt)))
            worst = max(worst, abs(x - want))
    assert worst < 1e-5 * amp


def test_set_wave_keeps_the_phase_continuous(start_driver):
    drv = start_driver("--out-buffer", "65536")  # a short queue: the switch comes soon
    f1, f2, amp, dt = 437.0, 2100.0, 1.0, NOMINAL_DT  # no whole cycles per record
    replies = []
    with Conn(drv.path, timeout=10) as c:
        c.commands(command(OP_START, SINE, f1, amp, rate_hz=0, batch=16))
        recs = read_records(c, 200)
        c.send(T_COMMAND, command(OP_SET_WAVE, SINE, f2, amp), seq=2)
        while not replies:
            recs += read_records(c, 16, on_frame=replies.append)
        recs += read_records(c, 200)
        c.commands(command(OP_STOP), seq=3)
    assert Status(*STATUS.unpack(replies[0].payload)).frequency_hz == f2
    # sample to sample, the signal never moves faster than the faster sine allows
    samples = [x for r in recs for x in r[4:]]
    step = max(abs(b - a) for a, b in zip(samples, samples[1:]))
    assert step <= 2 * math.pi * f2 * amp * dt * 1.01

    def fits(r, f):
        a, ph = fit_phase(r[4:], f, dt)
        return max(abs(x - a * math.sin(2 * math.pi * (ph + f * k * dt)))
                   for k, x in enumerate(r[4:])) < 1e-4

    # records fit f1 before the switch and f2 after it; find it by bisection
    assert fits(recs[0], f1) and fits(recs[-1], f2)
    lo, hi = 0, len(recs) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(recs[mid], f1) else (lo, mid)
    switch = hi
    assert all(fits(r, f1) for r in recs[max(0, switch - 20):switch])
    assert all(fits(r, f2) for r in recs[switch:switch + 20])
    # the phase at the switch is where the old frequency left it
    _, ph_before = fit_phase(recs[switch - 1][4:], f1, dt)
    _, ph_after = fit_phase(recs[switch][4:], f2, dt)
    expected = (ph_before + f1 * 64 * dt) % 1.0
    assert min(abs(ph_after - expected), 1 - abs(ph_after - expected)) < 1e-4


def test_seq_time_and_phase_continue_across_stop_and_start(driver):
    f, dt = 437.0, NOMINAL_DT
    with Conn(driver.path, timeout=10) as c:
        c.commands(command(OP_START, SINE, f, 1.0, rate_hz=0, batch=8))
        before = read_records(c, 100)
        c.send(T_COMMAND, command(OP_STOP), seq=2)
        while (fr := c.frame()).flags != FLAG_REPLY:  # all that was made before the STOP
            before += telemetry(fr)
        time.sleep(0.1)  # simulated time stands still while stopped
        c.commands(command(OP_START, SINE, f, 1.0, rate_hz=0, batch=8), seq=3)
        after = read_records(c, 16)
        c.commands(command(OP_STOP), seq=4)
    last, first = before[-1], after[0]
    assert first[0] == last[0] + 1
    assert abs(first[2] - (last[2] + 64 * dt)) < 1e-9
    _, ph_last = fit_phase(last[4:], f, dt)
    _, ph_first = fit_phase(first[4:], f, dt)
    d = abs(ph_first - (ph_last + f * 64 * dt) % 1.0)
    assert min(d, 1 - d) < 1e-4


@pytest.mark.parametrize("wave", [SQUARE, SAW, NOISE])
def test_other_waveforms(driver, wave):
    f, amp, dt = 1000.0, 3.0, NOMINAL_DT
    with Conn(driver.path) as c:
        c.commands(command(OP_START, wave, f, amp, rate_hz=0, batch=4))
        samples = [x for r in read_records(c, 40) for x in r[4:]]
        c.commands(command(OP_STOP), seq=2)
    assert all(-amp <= x <= amp for x in samples)
    if wave == SQUARE:  # +A then -A, half a period each: 32 samples at 1 kHz
        assert set(samples) == {amp, -amp}
        runs = [len(list(g)) for _, g in itertools.groupby(samples)]
        assert all(n == 32 for n in runs[1:-1])
    elif wave == SAW:  # rises by 2*A*f*dt a sample, falls by 2*A once a period
        steps = [b - a for a, b in zip(samples, samples[1:])]
        rises = [d for d in steps if d > 0]
        assert all(abs(d - 2 * amp * f * dt) < 1e-5 for d in rises)
        assert len(steps) - len(rises) == pytest.approx(len(samples) / 64, abs=1)
    else:
        mean = sum(samples) / len(samples)
        assert abs(mean) < 0.1 * amp and len(set(samples)) > len(samples) * 0.9


@pytest.mark.parametrize("rate, batch, lo, hi", [(2000, 10, 1500, 2500), (10000, 1, 8000, 12000)])
def test_paced_rate(driver, rate, batch, lo, hi):
    with Conn(driver.path) as c:
        c.commands(command(OP_START, SINE, 100.0, 1.0, rate_hz=rate, batch=batch))
        t_end, n, sizes = time.monotonic() + 1.0, 0, set()
        while time.monotonic() < t_end:
            f = c.frame()
            recs = telemetry(f)
            sizes.add(len(recs))
            n += len(recs)
        c.commands(command(OP_STOP), seq=2)
    assert sizes == {batch}
    assert lo <= n <= hi, f"{n} records in 1 s at rate_hz={rate}"


def test_a_stalled_client_loses_stream_frames_but_never_blocks_others(start_driver):
    drv = start_driver("--out-buffer", "262144")
    with Conn(drv.path, timeout=10) as fast, Conn(drv.path, timeout=10) as stalled:
        stalled_id = newest_client_id(drv)
        fast.commands(command(OP_START, SINE, 1000.0, 1.0, rate_hz=0, batch=64), seq=1)
        t_end, seq, frames, replies = time.monotonic() + 1.0, 2, 0, 0
        next_request = time.monotonic()
        while time.monotonic() < t_end:
            if time.monotonic() >= next_request:  # requests are answered meanwhile
                fast.send(T_COMMAND, command(OP_GET_STATUS), seq=seq)
                next_request += 0.1
                seq += 1
            f = fast.frame()
            if f.flags == FLAG_REPLY:
                assert f.type_id == T_STATUS and f.seq == 2 + replies
                replies += 1
            else:
                frames += 1
        assert replies >= 5 and frames > 100
        fast.commands(command(OP_STOP), seq=1000)
        fast.close()

        # the stalled client reads at last: its queue, the OVERLOADED notice, new frames
        stalled.send(T_COMMAND, command(OP_START, SINE, 1000.0, 1.0, rate_hz=0, batch=64), seq=1)
        last, reported, gaps, after_notice, started = None, 0, 0, 0, False
        while after_notice < 20:
            f = stalled.frame()
            if f.type_id == T_ERROR:
                assert (f.flags, f.seq) == (0, 0)
                code, msg = error_of(f)
                assert code == E_OVERLOADED and msg.startswith("dropped ")
                assert msg == f"dropped {int(msg.split()[1])} stream frames"
                reported += int(msg.split()[1])
            elif f.flags == FLAG_REPLY:
                started = True
            else:
                if last is not None:
                    gaps += f.seq - last - 1
                assert gaps == reported, "a seq gap that no OVERLOADED notice explained"
                last = f.seq
                after_notice += 1 if reported else 0
        assert reported > 0 and started
        stalled.commands(command(OP_STOP), seq=2)
    wait_for_log(drv, f"client {stalled_id} disconnected")
    line = next(x for x in drv.log().splitlines() if f"client {stalled_id} disconnected" in x)
    assert int(line.rsplit("(", 1)[1].split()[0]) >= reported


def test_stream_goes_to_every_client_with_its_own_seq(driver):
    with Conn(driver.path) as a:
        a.commands(command(OP_START, SINE, 100.0, 1.0, rate_hz=1000, batch=5))
        first_a = a.frame()
        read_records(a, 50)
        with Conn(driver.path) as b:  # joins mid-stream: its frames count from 0
            first_b = b.frame()
            assert first_a.seq == 0 and first_b.seq == 0
            rb = telemetry(first_b) + read_records(b, 20)
            ra = read_records(a, 200)
        a.commands(command(OP_STOP), seq=2)
    seqs_a = [r[0] for r in ra]
    assert [r[0] for r in rb] == seqs_a[seqs_a.index(rb[0][0]):][:len(rb)]  # the same records


# --------------------------------------------------------------------------
# The socket file and the process
# --------------------------------------------------------------------------

def test_socket_file_is_owner_only(driver):
    assert stat.S_IMODE(os.stat(driver.path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(driver.path).st_mode)


def test_a_stale_socket_file_is_replaced(start_driver, sock_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sock_path))
    s.close()  # the file stays, nobody listens
    assert sock_path.exists()
    drv = start_driver()
    with Conn(drv.path) as c:
        assert c.status().code == 0
    assert "replaced stale" in drv.log()


def test_an_empty_regular_file_is_replaced(start_driver, sock_path):
    sock_path.write_bytes(b"")
    drv = start_driver()
    with Conn(drv.path) as c:
        assert c.status().code == 0


def test_a_regular_file_with_data_is_not_replaced(driver_binary, sock_path):
    sock_path.write_bytes(b"precious")
    r = subprocess.run([str(driver_binary), "--socket", str(sock_path)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "not a socket" in r.stderr
    assert sock_path.read_bytes() == b"precious"


def test_a_second_driver_on_a_live_socket_refuses_to_start(driver, driver_binary):
    r = subprocess.run([str(driver_binary), "--socket", str(driver.path)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert f"another server is listening on {driver.path}" in r.stderr
    with Conn(driver.path) as c:  # the first one is untouched
        assert c.status().code == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_cleanly_and_remove_the_socket(start_driver, sig):
    drv = start_driver()
    with Conn(drv.path) as c:  # a client mid-stream does not hold the driver up
        c.commands(command(OP_START, SINE, 100.0, 1.0, rate_hz=0, batch=64))
        c.frame()
        assert drv.stop(sig) == 0
    assert not drv.path.exists()
    # log() flushes the log file, which stop() closed: read the file itself
    log = drv.log_path.read_text()
    assert f"stopping on signal {int(sig)}" in log
    assert "disconnected: server shutting down" in log


def test_usage(driver_binary):
    r = subprocess.run([str(driver_binary), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "--socket PATH" in r.stdout and "--max-clients" in r.stdout
    r = subprocess.run([str(driver_binary), "--bogus"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "usage:" in r.stderr
    r = subprocess.run([str(driver_binary), "--max-clients", "x"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2
