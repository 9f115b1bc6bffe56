"""make lab (python -m cbridge_magics.lab): the demo driver and JupyterLab, the driver served
through JupyterLab's login; Ctrl-C stops both."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request

from cbridge_magics import connect
from cbridge_magics.testing import demo_driver, free_port, wait_for


def test_make_lab_serves_the_driver_through_jupyterlab_and_stops_on_ctrl_c(sock_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cbridge_magics.lab", "--driver",
                             str(demo_driver()), "--socket", str(sock_path), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = []
        while not any("--token" in line for line in lines):
            line = proc.stdout.readline()
            assert line, f"lab ended early: {''.join(lines)}"
            lines.append(line)
        text = "".join(lines)
        token = re.search(r"/lab\?token=(\S+)", text).group(1)
        ws_url = re.search(r"(ws://\S+/cbridge/drivers/demo/ws)", text).group(1)

        def lab_up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}",
                                            timeout=5) as r:
                    return r.status == 200 and b"JupyterLab" in r.read()
            except OSError:
                return False

        wait_for(lab_up, timeout=60, what="JupyterLab to answer")
        wait_for(lambda: b'"state": "connected"' in urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/cbridge/api/drivers",
            headers={"Authorization": f"token {token}"}), timeout=5).read(), timeout=10,
            what="the extension to reach the driver")
        contents = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/contents?token={token}", timeout=5).read())
        assert {"server.ipynb", "client.ipynb"} <= {c["name"] for c in contents["content"]}
        b = connect(ws_url, token=token, reconnect=False)
        try:
            assert b.request(b.types["Command"](op=0)).code == 0
        finally:
            b.close()
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
        proc.stdout.close()
    assert code == 0
    assert not sock_path.exists()  # the driver stopped and removed its socket
