"""The relay stopped at an awkward moment: while its own link waits to reach a driver that went
away. Nothing may be left pending behind it."""

from __future__ import annotations

import subprocess
import sys


def test_a_relay_stopped_while_it_reconnects_leaves_no_task_behind(driver):
    """Stopping the relay while its own link waits to reach a driver that went away cancels
    that wait: asyncio used to log "Task was destroyed but it is pending" for it. In a process
    of its own, as a notebook's kernel would: the task is collected when the relay is gone."""
    script = f"""
import logging, time
from cbridge_magics import connect
logging.basicConfig(level=logging.INFO)
b = connect({driver.url!r})
relay = b.serve()
print("serving", flush=True)
input()  # the test stops the driver now
while relay.driver_connected:
    time.sleep(0.05)
time.sleep(0.3)  # the relay's link waits to reconnect
relay.stop()
b.close()
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "serving"
    driver.stop()
    out, err = proc.communicate("\n", timeout=60)
    assert proc.returncode == 0, err
    assert "reconnecting" in err  # it was waiting to reconnect when it stopped
    assert "Task was destroyed" not in err, err
