"""The two ipykernel internals cbridge_magics/widgets/threads.py relies on, checked in a real
kernel: the kernel's ``_shell_parent`` ContextVar (a thread of ours answers the request it
adopts) and a comm's ``_reply_subshell_id`` under ``_reply_subshell_lock`` (where the frontend's
messages to a widget go). When an ipykernel release changes either, this fails before a user's
panel does; pyproject.toml pins ipykernel to the minors that pass it.
"""

from __future__ import annotations

import logging

import pytest

from cbridge_magics.testing import Kernel

PROBE = '''
import contextvars, ipywidgets as w
from cbridge_magics.widgets import threads

kernel = get_ipython().kernel
assert isinstance(kernel._shell_parent, contextvars.ContextVar), type(kernel._shell_parent)

# a thread of ours, in a fresh Context, answers the request it adopts
parent = threads.current_parent()
assert parent and parent["header"]["msg_type"] == "execute_request", parent
def in_a_fresh_context():
    threads.adopt_parent(parent)
    return kernel._shell_parent.get(), threads.current_parent()
seen, current = contextvars.Context().run(in_a_fresh_context)
assert seen is parent and current is parent

# a comm that last published from a subshell takes the frontend's messages there...
button = w.Button()
comm = button.comm
assert hasattr(comm, "_reply_subshell_for") and hasattr(comm, "_reply_subshell_lock")
with comm._reply_subshell_lock:
    comm._reply_subshell_id = "a-subshell"
assert comm._reply_subshell_for({}, "the-frontends-choice") == "a-subshell"
# ... and free_routing lets the frontend's choice stand again
threads.free_routing([button])
assert comm._reply_subshell_for({}, "the-frontends-choice") == "the-frontends-choice"
assert not threads._warned, threads._warned
print("internals as expected")
'''


@pytest.mark.timeout(120)
def test_the_ipykernel_internals_cbridge_uses_still_do_what_it_expects():
    kernel = Kernel()
    try:
        res = kernel.run(PROBE, timeout=60, allow_error=True)
    finally:
        kernel.shutdown()
    reply = res["reply"]
    assert reply["status"] == "ok", f"{reply.get('ename')}: {reply.get('evalue')}\n{res['stderr']}"
    assert "internals as expected" in res["stdout"]


def test_a_kernel_without_them_is_warned_about_once(caplog):
    """Objects shaped like another ipykernel's: the routing there, the lock not."""
    from cbridge_magics.widgets import threads

    class Comm:
        def _reply_subshell_for(self, data, default):
            return default

    class Widget:
        comm = Comm()

    threads._warned.clear()
    with caplog.at_level(logging.WARNING, logger="cbridge_magics.widgets.threads"):
        threads.free_routing([Widget(), Widget()])
        threads.free_routing([Widget()])
    warnings = [r for r in caplog.records if "does not know" in r.getMessage()]
    assert len(warnings) == 1 and "7.1 to 7.4" in warnings[0].getMessage()
    threads._warned.clear()
