"""Magic lines as people paste them: trailing comments, with apostrophes in them, are dropped as
Python drops them; a line that cannot be split is a UsageError saying so, never a traceback."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from cbridge_magics.magics.line import split, strip_comment


@pytest.mark.parametrize("line, kept", [
    ("status", "status"),
    ("status  # it's fine", "status"),
    ("# only a comment", ""),
    ("connect ws://h:1/?token=a#b", "connect ws://h:1/?token=a#b"),  # no space: part of the word
    ('plot T.x --title "a # b"  # c', 'plot T.x --title "a # b"'),
    ("plot T.x --title 'it # is'", "plot T.x --title 'it # is'"),
    (r"send --title a\ #b", r"send --title a\ #b"),  # an escaped space: the # is in a word
    ('x "a \\" # b" # c', 'x "a \\" # b"'),
])
def test_strip_comment(line, kept):
    assert strip_comment(line) == kept


def test_split_takes_quotes_and_refuses_an_open_one():
    assert split('plot T.x --title "two words"  # don\'t mind me') == [
        "plot", "T.x", "--title", "two words"]
    with pytest.raises(UsageError, match="No closing quotation"):
        split('connect "unix:///x.sock')


@pytest.fixture
def ip():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "cbridge_magics")
    yield shell
    shell.run_line_magic("unload_ext", "cbridge_magics")


def test_a_pasted_cell_with_comments_runs_through(ip, driver, tmp_path):
    """The README's lines, comments and all, in one cell: each magic ran."""
    cell = f"""
%cstruct --header demo_messages.h                 # Command, Status, Telemetry: the demo's
%cbridge connect {driver.url} --as b       # the Bridge is bound as `b`, isn't it
%cbridge send Command(op=DEMO_OP_START, frequency_hz=5.0, amplitude=1.0, rate_hz=200, batch=10)  # it's Python
%cbridge plot Telemetry.samples --time t0:dt --fps 5   # x in seconds, as the README's
%cbridge status                                    # state, records and drops
%cbridge record {tmp_path / 'run.cbrec'}          # or rec = b.record(...)
%cbridge wait 0.5                                  # let some records come
%cbridge record --stop                             # the file's closed
%cbridge plot --stop                               # don't leave it drawing
%cbridge serve --port 0                            # prints the relay's URL
%cbridge serve --stop                              # and that's the end of it
%cbridge disconnect                                # stops what cbridge started
"""
    result = ip.run_cell(cell)
    assert result.success, result.error_in_exec or result.error_before_exec
    assert (tmp_path / "run.cbrec").stat().st_size > 0
    assert ip.user_ns["b"].stats().types["Telemetry"].records > 0


def test_an_unclosed_quote_is_a_usage_error(ip):
    result = ip.run_cell("%cbridge connect 'unix:///x.sock")
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    assert "No closing quotation" in str(result.error_in_exec)
    result = ip.run_cell("%cstruct --header 'demo_messages.h")
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
