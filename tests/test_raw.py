"""Raw links: a program that speaks bare C structs (tests/c/bare_structs.c, written only for these
tests: no header, no HELLO, nothing of libcbridge) reached over raw+unix:// and raw+tcp://.

The program is naive the way many instrument programs are: a client whose socket reports a
hangup is dropped with its input unread. That is what makes Bridge.close()'s polite close matter.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cbridge_magics import NotSupported, connect, cstruct
from cbridge_magics.testing import ROOT, DriverProcess, Kernel, wait_for
from cbridge_magics.wire import transports

SOURCE = ROOT / "tests" / "c" / "bare_structs.c"
HEADER = ROOT / "tests" / "c" / "bare_structs.h"
START, STOP, CUT, TRICKLE = 1, 2, 3, 4


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("bare") / "bare_structs"
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", str(SOURCE), "-o",
                    str(exe)], check=True)
    return exe


@pytest.fixture(scope="module")
def bare(cstruct_cache):
    return cstruct.compile_header(HEADER)


@pytest.fixture
def unix_program(program, sock_path):
    p = DriverProcess(program, sock_path)  # passes --socket PATH
    yield p
    p.stop()


class TcpProgram:
    def __init__(self, exe: Path, *extra: str) -> None:
        self.proc = subprocess.Popen([str(exe), "--tcp", "0", *extra], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("port "), line
        self.url = f"raw+tcp://127.0.0.1:{int(line.split()[1])}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.proc.stdout.close()


@pytest.fixture(params=["unix", "tcp"])
def link(request, program, sock_path):
    """The program's URL, on a Unix socket or on TCP."""
    if request.param == "unix":
        p = DriverProcess(program, sock_path)
        yield f"raw+unix://{p.path}"
    else:
        p = TcpProgram(program)
        yield p.url
    p.stop()


def expected_samples(records: np.ndarray, level: float) -> np.ndarray:
    k = np.arange(64)
    return (level * ((records["seq"][:, None] + k) % 64) / 64.0).astype(np.float32)


def test_a_stream_of_bare_records_fills_the_history(link, bare):
    """Full rate, 256 KiB reads: most reads end inside a record, and the part is kept for the
    next read. Every record arrives whole: its samples are the ones its seq says."""
    got = []
    b = connect(link, recv=bare.Measurement, send=bare.BareCommand, history=200_000)
    try:
        b.subscribe("Measurement", got.append)
        b.send(bare.BareCommand(op=START, rate_hz=0, value=2.0))
        wait_for(lambda: b.history_of("Measurement").total >= 100_000, timeout=10,
                 what="100,000 records")
        b.send(bare.BareCommand(op=STOP))
        h = b.history("Measurement")
        assert np.array_equal(h["samples"], expected_samples(h, 2.0))
        assert np.all(np.diff(h["seq"].astype(np.int64)) > 0)  # skipped batches leave gaps only
        assert sum(len(r) for r in got) == b.history_of("Measurement").total
        st = b.stats()
        assert st.stream_gaps == 0 and st.lost_bytes == 0 and st.errors_seen == 0
        assert st.types["Measurement"].records == b.history_of("Measurement").total
    finally:
        b.close()


def test_a_raw_link_records_like_a_driver(unix_program, bare, tmp_path):
    """The recording of a raw link holds its stand-in HELLO and whole records, and opens as
    numpy: the same records the history got."""
    from cbridge_magics import recording

    b = connect(f"raw+unix://{unix_program.path}", recv=bare.Measurement, send=bare.BareCommand)
    try:
        rec = b.record(tmp_path / "raw.cbrec")
        b.send(bare.BareCommand(op=START, rate_hz=2000, value=1.5))
        wait_for(lambda: b.history_of("Measurement").total >= 500, timeout=5, what="records")
        b.send(bare.BareCommand(op=STOP))
        time.sleep(0.1)
        rec.stop()
        seen = b.history("Measurement")
    finally:
        b.close()
    with recording.open(tmp_path / "raw.cbrec") as r:
        assert r.schema.raw["raw"] is True and r.types == ["Measurement", "BareCommand"]
        got = r.records("Measurement")
        assert np.array_equal(got, seen.astype(got.dtype))
        assert len(r.records("BareCommand")) == 0  # sent: headers only, by default


def test_a_record_that_arrives_in_pieces_is_put_together(link, bare):
    b = connect(link, recv=bare.Measurement, send=bare.BareCommand)
    try:
        b.send(bare.BareCommand(op=TRICKLE))
        wait_for(lambda: len(b.history("Measurement")) == 1, timeout=5, what="the record")
        time.sleep(0.1)
        (rec,) = b.history("Measurement")
        assert (rec["flags"], rec["t0"], rec["dt"]) == (7, 1.5, 0.25)
        assert b.stats().types["Measurement"].frames == 1
    finally:
        b.close()


def test_echo_the_same_class_both_ways(program, sock_path, bare):
    p = DriverProcess(program, sock_path, "--echo")
    b = connect(f"raw+unix://{p.path}", recv=bare.BareCommand, send=bare.BareCommand)
    try:
        assert [t.name for t in b.schema.types] == ["BareCommand"]
        for i in range(1000):
            b.send(bare.BareCommand(op=10 + i, rate_hz=i, value=i * 1.5))
        wait_for(lambda: len(b.history("BareCommand")) >= 1000, timeout=5, what="1000 echoes")
        h = b.history("BareCommand")
        assert list(h["rate_hz"]) == list(range(1000))
        assert np.array_equal(h["value"], np.arange(1000) * 1.5)
    finally:
        b.close()
        p.stop()


def test_a_connection_that_ends_mid_record_says_how_many_bytes_were_lost(link, bare):
    b = connect(link, recv=bare.Measurement, send=bare.BareCommand, reconnect=True)
    try:
        b.send(bare.BareCommand(op=CUT))
        wait_for(lambda: b.lost_bytes == 140, timeout=5, what="the cut record to be counted")
        assert "in the middle of a record: 140 of its 280 bytes lost" in b.last_error
        wait_for(lambda: b.state.value == "connected" and b.reconnects == 1, timeout=5,
                 what="the reconnect")
        assert b.history_of("Measurement").total == 0
    finally:
        b.close()


def test_what_a_raw_link_cannot_do_is_refused_clearly(unix_program, bare):
    url = f"raw+unix://{unix_program.path}"
    b = connect(url, recv=bare.Measurement, send=bare.BareCommand)
    try:
        with pytest.raises(NotSupported, match="pairs a reply with its request"):
            b.request(bare.BareCommand(op=STOP))
        with pytest.raises(NotSupported):
            b.ping()
        with pytest.raises(NotSupported):
            b.serve()
        with pytest.raises(TypeError, match="takes BareCommand, not Measurement"):
            b.send(bare.Measurement())
    finally:
        b.close()
    with pytest.raises(ValueError, match="recv=Class"):
        connect(url)
    with pytest.raises(ValueError, match="raw links"):
        connect(f"unix://{unix_program.path}", recv=bare.Measurement)
    with pytest.raises(ValueError, match="needs a host and a port"):
        connect("raw+tcp://127.0.0.1", recv=bare.Measurement)


def test_send_needs_a_send_class(unix_program, bare):
    b = connect(f"raw+unix://{unix_program.path}", recv=bare.Measurement)
    try:
        with pytest.raises(TypeError, match="connect with send=Class"):
            b.send(bare.BareCommand(op=START))
    finally:
        b.close()


# --- close() carries out what was sent before it ----------------------------------------------

SPEEDS = pytest.mark.parametrize("rate", [0, 1000], ids=["full-rate", "paced-1kHz"])


@SPEEDS
def test_a_send_then_close_reaches_a_program_that_drops_on_hangup(program, sock_path, bare, rate):
    """The program drops a client at the first sign of a hangup, without reading what it sent
    last. close() ends the link with a half-close and reads on until the program closes, so the
    STOP sent just before it is read and carried out (an abrupt close loses it every time)."""
    p = DriverProcess(program, sock_path)
    try:
        for i in range(3):
            b = connect(f"raw+unix://{p.path}", recv=bare.Measurement, send=bare.BareCommand)
            b.send(bare.BareCommand(op=START, rate_hz=rate, value=1.0))
            time.sleep(0.2)
            b.send(bare.BareCommand(op=STOP))
            b.close()
            wait_for(lambda: p.log().count("stop\n") == i + 1, timeout=3,
                     what=f"the STOP sent before close() (try {i + 1}); the program said:\n"
                          f"{p.log()}")
    finally:
        p.stop()


# --- the magics -------------------------------------------------------------------------------

def test_the_magics_connect_plot_and_report_a_raw_link(unix_program, cstruct_cache):
    k = Kernel()
    try:
        # the kernel inherits CBRIDGE_CACHE_DIR from cstruct_cache
        k.run(f"%load_ext cbridge_magics\n%cstruct --header {HEADER}", timeout=120)
        bad = k.run(f"%cbridge connect raw+unix://{unix_program.path} --recv Nope",
                    allow_error=True)
        assert bad["reply"]["ename"] == "UsageError" and "--recv Nope" in bad["reply"]["evalue"]
        out = k.run(f"%cbridge connect raw+unix://{unix_program.path} --recv Measurement "
                    "--send BareCommand --as m")["stdout"]
        assert "raw link" in out and "Measurement in, of BareCommand out" in out
        k.run("%cbridge send --no-reply BareCommand(op=1, rate_hz=1000, value=1.0)")
        k.run("%cbridge plot Measurement.samples --window 640 --fps 5")
        wait_for(lambda: k.value("m.history_of('Measurement').total") > 500, timeout=10,
                 what="records in the kernel")
        status = k.run("%cbridge status")["stdout"]
        assert "Measurement" in status and "plot" in status
        # send on a raw link just sends: nothing there pairs a reply with a request
        sent = k.run("%cbridge send BareCommand(op=2)  # STOP")["stdout"]
        assert "sent BareCommand" in sent and "no replies" in sent, sent
        wait_for(lambda: "stop\n" in unix_program.log(), timeout=5, what="the STOP to arrive")
        wrong = k.run("%cbridge send Measurement()", allow_error=True)
        assert wrong["reply"]["ename"] == "UsageError" and "takes BareCommand" in \
            wrong["reply"]["evalue"]
        k.run("%cbridge disconnect")
    finally:
        k.shutdown()


def test_raw_schemes_are_not_opened_without_a_record_class():
    with pytest.raises(ValueError, match="raw link"):
        transports.transport_for("raw+unix:///tmp/x.sock")
    assert transports.socket_address("raw+tcp://[::1]:5025")[0] == socket.AF_INET6
    assert sys.modules["cbridge_magics"].NotSupported is NotSupported
