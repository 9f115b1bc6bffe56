"""A real Jupyter Server with the cbridge extension, and make lab's JupyterLab."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from .processes import demo_driver, wait_for


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServerProcess:
    """``python -m jupyter_server`` on a free loopback port, with the cbridge extension enabled
    (unless ``enable`` is False: then it is on only if enabled otherwise) and ``drivers`` configured (``extra``: more lines of jupyter_server_config.py; ``tls``: its
    certificate and key). The workdir's modules are importable by the server (an authorizer,
    say). ``http``/``ws`` are its URLs, base_url included; ``stop()`` ends it."""

    TOKEN = "cbridge-test-token"
    BASE = "/jh/user/"  # a base_url, as under JupyterHub

    def __init__(self, workdir: Path, drivers: dict[str, str], extra: str = "",
                 tls: tuple[Path, Path] | None = None, enable: bool = True) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "jupyter_server_config.py").write_text(
            ('c.ServerApp.jpserver_extensions = {"cbridge_magics": True}\n' if enable else "")
            + f"c.CBridgeApp.drivers = {drivers!r}\n" + extra)
        self.port = free_port()
        self.log = open(workdir / "server.log", "wb")
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(workdir),
                   PYTHONPATH=os.pathsep.join([str(workdir), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--allow-root", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", f"--ServerApp.token={self.TOKEN}",
             f"--ServerApp.base_url={self.BASE}", "--ServerApp.open_browser=False",
             f"--ServerApp.root_dir={workdir}",
             *([f"--ServerApp.certfile={tls[0]}", f"--ServerApp.keyfile={tls[1]}"] if tls else [])],
            env=env, stdout=self.log, stderr=self.log)
        scheme = "s" if tls else ""
        self.http = f"http{scheme}://127.0.0.1:{self.port}{self.BASE}"
        self.ws = f"ws{scheme}://127.0.0.1:{self.port}{self.BASE}"
        self.context = ssl.create_default_context(cafile=str(tls[0])) if tls else None
        wait_for(lambda: self.proc.poll() is not None or self.status() == 200, timeout=60,
                 what="Jupyter Server to answer")
        assert self.proc.poll() is None, (workdir / "server.log").read_text()

    def status(self, path: str = "api/status", headers: dict[str, str] | None = None) -> int:
        req = urllib.request.Request(self.http + path,
                                     headers={"Authorization": f"token {self.TOKEN}", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=5, context=self.context) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return 0

    def get_json(self, path: str) -> dict:
        req = urllib.request.Request(self.http + path, headers={"Authorization": f"token {self.TOKEN}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


class LabProcess:
    """``python -m cbridge_magics.lab`` (what ``make lab`` runs) on a free port, with the demo
    driver on ``sock_path``; ready (JupyterLab answers) when the constructor returns. ``token``,
    ``http`` and ``ws_url`` (the driver through the extension) come from what it prints;
    ``stop()`` sends Ctrl-C and returns the exit code."""

    def __init__(self, sock_path: str | os.PathLike[str],
                 notebooks: str | os.PathLike[str] | None = None) -> None:
        import re

        self.port = free_port()
        argv = [sys.executable, "-m", "cbridge_magics.lab", "--driver", str(demo_driver()),
                "--socket", str(sock_path), "--port", str(self.port)]
        if notebooks is not None:
            argv += ["--notebooks", str(notebooks)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        text = ""
        while "--token" not in text:
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                self.stop()
                raise RuntimeError(f"lab ended early: {text}")
            text += line
        self.token = re.search(r"/lab\?token=(\S+)", text).group(1)  # type: ignore[union-attr]
        self.ws_url = re.search(r"(ws://\S+/cbridge/drivers/demo/ws)", text).group(1)  # type: ignore[union-attr]
        self.http = f"http://127.0.0.1:{self.port}/"
        wait_for(lambda: self.get("api/status") is not None, timeout=60,
                 what="JupyterLab to answer")

    def get(self, path: str) -> bytes | None:
        """The body of GET ``path`` with the token, or None if it does not answer 200."""
        req = urllib.request.Request(self.http + path,
                                     headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.read() if r.status == 200 else None
        except OSError:
            return None

    def delete(self, path: str) -> None:
        """DELETE ``path`` with the token (a session, a kernel)."""
        req = urllib.request.Request(self.http + path, method="DELETE",
                                     headers={"Authorization": f"token {self.token}"})
        urllib.request.urlopen(req, timeout=30).close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


class LabKernel:
    """A second client of the kernel of the notebook a LabProcess runs (its connection file,
    found through JupyterLab's sessions): ``eval(expr)`` asks the kernel while the page is busy
    or cannot answer. It runs in a thread of its own: jupyter_client's blocking calls cannot
    share the thread of Playwright's event loop."""

    def __init__(self, lab: LabProcess, notebook: str | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(1)
        self.client = self.pool.submit(self._connect, lab, notebook).result(60)

    @staticmethod
    def _connect(lab: LabProcess, notebook: str | None):
        import json

        from jupyter_client import BlockingKernelClient
        from jupyter_core.paths import jupyter_runtime_dir

        sessions = [s for s in json.loads(lab.get("api/sessions") or b"[]")
                    if notebook is None or s["path"] == notebook]
        if len(sessions) != 1:
            raise RuntimeError(f"no one session of {notebook or 'a notebook'}: {sessions}")
        kernel_id = sessions[0]["kernel"]["id"]
        client = BlockingKernelClient(
            connection_file=str(Path(jupyter_runtime_dir()) / f"kernel-{kernel_id}.json"))
        client.load_connection_file()
        client.start_channels()  # no wait_for_ready: it waits for IOPub to fall quiet
        return client

    def _execute(self, code: str, **expressions: str) -> dict:
        """Execute ``code`` (silently); the reply's content. No IOPub is read: a scope or a
        plot keeps it busy, and the reply carries what is asked in ``expressions``."""
        msg_id = self.client.execute(code, silent=True, store_history=False,
                                     user_expressions=expressions)
        while True:
            reply = self.client.get_shell_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]

    def _eval(self, expr: str):
        import ast

        value = self._execute("", v=expr)["user_expressions"]["v"]
        if value["status"] != "ok":
            raise RuntimeError(f"{expr}: {value.get('ename')}: {value.get('evalue')}")
        return ast.literal_eval(value["data"]["text/plain"])

    def eval(self, expr: str):
        """The value of ``expr`` in the notebook's kernel (a literal: numbers, str, lists...)."""
        return self.pool.submit(self._eval, expr).result(60)

    def round_trip(self, code: str = "1+1") -> float:
        """Seconds from sending ``code`` to its execute reply: what a person's cell waits."""
        import time

        def run() -> float:
            t0 = time.perf_counter()
            assert self._execute(code)["status"] == "ok"
            return time.perf_counter() - t0

        return self.pool.submit(run).result(60)

    def close(self) -> None:
        def stop() -> None:
            import asyncio
            import warnings

            self.client.stop_channels()
            with warnings.catch_warnings():  # the thread's loop, made by jupyter_client
                warnings.simplefilter("ignore", DeprecationWarning)
                loop = asyncio.get_event_loop()
            loop.close()

        self.pool.submit(stop).result(30)
        self.pool.shutdown()
