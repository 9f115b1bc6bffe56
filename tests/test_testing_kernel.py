"""cbridge_magics.testing.Kernel, the harness the kernel tests, the soak and users' own tests drive
kernels with: it must not lose what the kernel publishes between cells, and a kernel that does
not answer must leave a record of what its threads were doing."""

from __future__ import annotations

import time

import pytest

from cbridge_magics.testing import Kernel, wait_for

# A thread in the kernel publishes N 20 kB outputs while the test reads nothing: as a live plot
# does between cells. ZeroMQ keeps about 2,000 such messages for a subscriber that does not read
# (both high-water marks and the socket buffers), then drops the rest, cells' status included.
FLOOD = """
import threading
from IPython.display import display
def flood(n):
    for i in range(n):
        display({"text/plain": "x" * 20000}, raw=True)
threading.Thread(target=flood, args=(%d,), daemon=True).start()
"""


@pytest.fixture
def kernel(tmp_path):
    k = Kernel(dump_dir=tmp_path)
    yield k
    k.shutdown()


def test_output_published_between_cells_is_read_and_counted(kernel):
    kernel.run(FLOOD % 4000)
    wait_for(lambda: kernel.counts["display_data"] >= 4000, timeout=60,
             what="the kernel's 4,000 outputs")
    time.sleep(1.0)  # the test itself reads nothing for a while, as the soak does for minutes
    assert kernel.run("1 + 1", timeout=30)["outputs"][-1]["content"]["execution_state"] == "idle"
    assert kernel.counts["display_data"] == 4000
    # What nobody read is bounded (2,000 by default): the oldest beyond that were forgotten,
    # and counted, while the cell's own messages came through.
    assert kernel.unread <= 2000 and kernel.unread_dropped >= 1000


def test_a_kernel_that_does_not_answer_has_its_threads_dumped(kernel, tmp_path):
    with pytest.raises(AssertionError) as failure:
        kernel.run("import time\ntime.sleep(20)", timeout=2)
    message = str(failure.value)
    assert "the kernel's threads are in" in message
    dump = next(tmp_path.glob("kernel-*-threads-*.txt"))
    assert str(dump) in message
    text = dump.read_text()
    assert "MainThread" in text and "sleep" in text, text
    kernel.km.interrupt_kernel()
