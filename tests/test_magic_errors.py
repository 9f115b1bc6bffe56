"""An expected failure in a magic, seen in a real kernel: one message and the next step, with the
error's own type for whatever runs the notebook; the whole traceback under %xmode verbose."""

from __future__ import annotations

import pytest

from cbridge_magics.testing import Kernel


@pytest.fixture(scope="module")
def kernel():
    k = Kernel()
    k.run("%load_ext cbridge_magics\n%cstruct --header demo_messages.h", timeout=120)
    yield k
    k.shutdown()


def failure(k: Kernel, code: str) -> dict:
    res = k.run(code, allow_error=True)
    reply = res["reply"]
    assert reply["status"] == "error", reply
    errors = [m["content"] for m in res["outputs"] if m["msg_type"] == "error"]
    assert len(errors) == 1 and errors[0]["ename"] == reply["ename"]
    return errors[0]


def test_a_driver_that_is_not_there(kernel):
    err = failure(kernel, "%cbridge connect unix:///nonexistent/driver.sock  # not running")
    assert err["ename"] == "DriverUnavailable"
    assert err["traceback"][0] == ("DriverUnavailable: cannot connect to "
                                   "unix:///nonexistent/driver.sock: No such file or directory")
    assert "cbridge-demo-driver --socket" in err["traceback"][1]
    assert len(err["traceback"]) == 3 and "bridge.py" not in "".join(err["traceback"])


def test_a_declaration_the_compiler_refuses(kernel):
    err = failure(kernel, "%%cstruct\ntypedef struct { nosuchtype x; } Broken;")
    assert err["ename"] == "CStructError"
    text = "\n".join(err["traceback"])
    assert "nosuchtype" in text and ":2:" in text, text
    assert "build.py" not in text


def test_xmode_verbose_brings_the_traceback_back(kernel):
    kernel.run("%xmode verbose")
    try:
        err = failure(kernel, "%cbridge connect unix:///nonexistent/driver.sock")
        assert "transports.py" in "".join(err["traceback"])
    finally:
        kernel.run("%xmode context")


def test_usage_errors_stay_usage_errors(kernel):
    res = kernel.run("%cbridge send Command(op=0)", allow_error=True)
    assert res["reply"]["ename"] == "UsageError" and "not connected" in res["reply"]["evalue"]


def test_a_refusal_and_a_layout_that_differs(kernel, driver):
    kernel.run(f"%cbridge connect {driver.url} --name b")
    try:
        err = failure(kernel, "%cbridge send Command(op=DEMO_OP_START)  # no frequency")
        assert err["ename"] == "DriverError" and "BAD_REQUEST" in err["traceback"][0]
        assert "The driver refused it" in err["traceback"][1] and len(err["traceback"]) == 3
        kernel.run("%%cstruct -n wrong\n#include <stdint.h>\n"
                   "typedef struct { uint32_t op; double frequency_hz; } Command;")
        err = failure(kernel, "%cbridge send Command(op=0)")
        assert err["ename"] == "LayoutMismatch"
        assert "compile the header the driver was built from" in err["traceback"][1]
    finally:
        kernel.run("%cbridge disconnect")
