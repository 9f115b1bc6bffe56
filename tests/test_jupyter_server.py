"""The relay inside a real Jupyter Server (cbridge_magics.relay.jupyter_host): routes under the
server's base_url, Jupyter's token, Origin check and authorizer, the drivers API, against the real
demo driver and remote Bridges.
"""

from __future__ import annotations

import http.cookiejar
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import websocket

from cbridge_magics import DriverUnavailable, connect
from cbridge_magics.testing import DriverProcess, JupyterServerProcess, demo_driver, wait_for

TOKEN = JupyterServerProcess.TOKEN
DENY_CBRIDGE = '''
from jupyter_server.auth import Authorizer

class DenyCBridge(Authorizer):
    def is_authorized(self, handler, user, action, resource):
        return resource != "cbridge"
'''


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("jsd")
    sock = Path("/tmp") / f"cbj-{os.getpid()}-{d.name}.sock"
    drv = DriverProcess(demo_driver(), sock)
    yield drv
    drv.stop()


@pytest.fixture(scope="module")
def server(demo, tmp_path_factory):
    s = JupyterServerProcess(tmp_path_factory.mktemp("jupyter"),
                      {"demo": demo.url, "absent": "unix:///tmp/cbridge-nobody-here.sock"})
    yield s
    s.stop()


def test_a_remote_bridge_through_the_extension(server):
    b = connect(f"{server.ws}cbridge/drivers/demo/ws", token=TOKEN, history=100_000)
    try:
        assert b.schema.driver == "cbridge-demo-driver"
        Command = b.types["Command"]
        assert b.request(Command(op=0)).code == 0
        b.request(Command(op=1, waveform=0, frequency_hz=50.0, amplitude=1.0, rate_hz=20_000,
                          batch=16))
        wait_for(lambda: b.history_of("Telemetry").total > 1000, timeout=10, what="the stream")
        api = server.get_json("cbridge/api/drivers")["drivers"]
        demo = next(d for d in api if d["name"] == "demo")
        assert demo["state"] == "connected" and demo["types"] == ["Command", "Status", "Telemetry"]
        assert len(demo["clients"]) == 1 and demo["clients"][0]["requests"] >= 2
        b.request(Command(op=2))
        assert b.stream_gaps == b.dropped_frames
    finally:
        b.close()


def test_subscriptions_through_the_extension(server):
    b = connect(f"{server.ws}cbridge/drivers/demo/ws", token=TOKEN, streams=["Status"])
    try:
        assert b.subscribe_supported is True
        Command = b.types["Command"]
        b.request(Command(op=1, waveform=0, frequency_hz=50.0, amplitude=1.0, rate_hz=20_000,
                          batch=16))
        time.sleep(0.3)
        b.request(Command(op=2))
        assert b.history_of("Telemetry").total == 0
    finally:
        b.close()


@pytest.mark.parametrize("how", ["query", "header"])
def test_the_token_works_either_way(server, how):
    url = f"{server.ws}cbridge/drivers/demo/ws"
    if how == "query":
        ws = websocket.create_connection(f"{url}?token={TOKEN}", timeout=5)
    else:
        ws = websocket.create_connection(url, timeout=5, header=[f"Authorization: token {TOKEN}"])
    try:
        opcode, data = ws.recv_data()
        assert opcode == websocket.ABNF.OPCODE_BINARY and b"cbridge-demo-driver" in data  # HELLO
    finally:
        ws.close()


@pytest.mark.parametrize("token", [None, "wrong"])
def test_no_token_or_a_wrong_one_is_refused_before_the_upgrade(server, token):
    header = [f"Authorization: token {token}"] if token else []
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(f"{server.ws}cbridge/drivers/demo/ws", timeout=5,
                                    header=header)
    assert e.value.status_code == 403
    assert server.status("cbridge/api/drivers", {"Authorization": f"token {token}"}) == 403


def test_a_foreign_origin_is_refused_before_the_upgrade(server):
    """Jupyter's Origin check, as for its own kernel sockets: a browser session (the login
    cookie) from another site's page gets 403; the same session from the server's own pages
    connects. (A request that carries the token itself skips the check, by Jupyter's rule: the
    token is the secret.)"""
    jar = http.cookiejar.CookieJar()
    urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar)).open(
        f"{server.http}?token={TOKEN}", timeout=5)
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    url = f"{server.ws}cbridge/drivers/demo/ws"
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(url, timeout=5, cookie=cookie, origin="http://evil.example")
    assert e.value.status_code == 403
    ws = websocket.create_connection(url, timeout=5, cookie=cookie,
                                     origin=f"http://127.0.0.1:{server.port}")
    try:
        assert b"cbridge-demo-driver" in ws.recv_data()[1]
    finally:
        ws.close()


def test_unknown_and_unreachable_drivers(server):
    for name, code in (("nope", 404), ("absent", 503)):
        with pytest.raises(websocket.WebSocketBadStatusException) as e:
            websocket.create_connection(f"{server.ws}cbridge/drivers/{name}/ws", timeout=5,
                                        header=[f"Authorization: token {TOKEN}"])
        assert e.value.status_code == code
    absent = next(d for d in server.get_json("cbridge/api/drivers")["drivers"]
                  if d["name"] == "absent")
    assert absent["state"] == "unreachable" and "nobody-here" in absent["last_error"]


def test_an_authorizer_that_denies_cbridge(demo, tmp_path):
    (tmp_path / "deny").mkdir()
    (tmp_path / "deny" / "deny_cbridge.py").write_text(DENY_CBRIDGE)
    s = JupyterServerProcess(tmp_path / "deny", {"demo": demo.url},
                             'c.ServerApp.authorizer_class = "deny_cbridge.DenyCBridge"\n')
    try:
        assert s.status("api/status") == 200  # the rest of the server is allowed
        with pytest.raises(DriverUnavailable, match="403"):
            connect(f"{s.ws}cbridge/drivers/demo/ws", token=TOKEN, reconnect=False)
        assert s.status("cbridge/api/drivers") == 403
    finally:
        s.stop()


def test_wss_verifies_the_server_against_a_ca_file(demo, tmp_path):
    """A Jupyter Server with a self-signed certificate made here: the remote Bridge connects over
    wss:// when told to trust that certificate, and refuses the server when not."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    s = JupyterServerProcess(tmp_path / "tls", {"demo": demo.url}, tls=(cert, key))
    try:
        url = f"{s.ws}cbridge/drivers/demo/ws"
        assert url.startswith("wss://")
        b = connect(url, token=TOKEN, ca_file=str(cert), reconnect=False)
        try:
            assert b.request(b.types["Command"](op=0)).code == 0
        finally:
            b.close()
        with pytest.raises(DriverUnavailable, match="CERTIFICATE_VERIFY_FAILED|certificate"):
            connect(url, token=TOKEN, reconnect=False)
    finally:
        s.stop()


def test_jupyter_server_extension_enable_turns_it_on(demo, tmp_path):
    """The package is known to Jupyter Server, disabled; `jupyter server extension enable
    cbridge_magics` (this environment's config) turns it on, `disable` off again."""
    jupyter = [sys.executable, "-m", "jupyter_server", "extension"]
    listed = subprocess.run([*jupyter, "list"], capture_output=True, text=True)
    assert "cbridge_magics" in listed.stdout + listed.stderr
    try:
        on = subprocess.run([*jupyter, "enable", "cbridge_magics"], capture_output=True, text=True)
        assert "successfully enabled" in on.stdout + on.stderr, on.stdout + on.stderr
        s = JupyterServerProcess(tmp_path / "enabled", {"demo": demo.url}, enable=False)
        try:
            assert s.status("cbridge/api/drivers") == 200
        finally:
            s.stop()
    finally:
        off = subprocess.run([*jupyter, "disable", "cbridge_magics"], capture_output=True,
                             text=True)
        assert "successfully disabled" in off.stdout + off.stderr
    s = JupyterServerProcess(tmp_path / "disabled", {"demo": demo.url}, enable=False)
    try:
        assert s.status("cbridge/api/drivers") == 404
    finally:
        s.stop()
