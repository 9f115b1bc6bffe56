"""make lab (python -m cbridge_magics.lab): the demo driver and JupyterLab, the driver served
through JupyterLab's login; Ctrl-C stops both."""

from __future__ import annotations

import json

from cbridge_magics import connect
from cbridge_magics.testing import LabProcess, wait_for


def test_make_lab_serves_the_driver_through_jupyterlab_and_stops_on_ctrl_c(sock_path):
    lab = LabProcess(sock_path)
    try:
        assert b"JupyterLab" in (lab.get(f"lab?token={lab.token}") or b"")
        wait_for(lambda: b'"state": "connected"' in (lab.get("cbridge/api/drivers") or b""),
                 timeout=10, what="the extension to reach the driver")
        contents = json.loads(lab.get("api/contents") or b"{}")
        assert {"server.ipynb", "client.ipynb"} <= {c["name"] for c in contents["content"]}
        b = connect(lab.ws_url, token=lab.token, reconnect=False)
        try:
            assert b.request(b.types["Command"](op=0)).code == 0
        finally:
            b.close()
    finally:
        code = lab.stop()
    assert code == 0
    assert not sock_path.exists()  # the driver stopped and removed its socket
