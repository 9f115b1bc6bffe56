"""Support for tests, benchmarks and demos: a real driver process, a real kernel, a real Jupyter
Server with the cbridge extension, and waiting.

One way to start a driver, used by the test suites (tests/conftest.py), the benchmarks (bench/)
and ``make demo``; it is useful for testing your own driver too:

    with DriverProcess(demo_driver(), "/tmp/t/d.sock", "--out-buffer", "65536") as d:
        b = connect(d.url)
    k = Kernel(); k.run("%load_ext cbridge_magics"); k.shutdown()
    s = JupyterServerProcess(workdir, {"demo": d.url}); connect(f"{s.ws}cbridge/drivers/demo/ws",
                                                                 token=s.TOKEN); s.stop()
"""

from __future__ import annotations

import collections
import json
import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent  # the source checkout, when run from one


def demo_driver() -> Path:
    """The demo driver binary: $CBRIDGE_DRIVER (another build of it, such as the ASan one), else
    the one installed with the package (``cbridge-config --demo-driver``)."""
    from .config import demo_driver as installed

    return Path(os.environ.get("CBRIDGE_DRIVER") or installed())


class DriverProcess:
    """A driver started on a socket path; ready (accepting connections) when the constructor
    returns. ``stop()`` is safe to call twice and returns its exit code. Its stderr goes to
    ``<socket>.log`` (``log()`` reads it), or nowhere with ``quiet``."""

    def __init__(self, binary: str | os.PathLike[str], sock_path: str | os.PathLike[str], *extra: str,
                 quiet: bool = False, timeout: float = 10.0) -> None:
        self.binary = Path(binary)
        self.path = Path(sock_path)
        self.log_path = self.path.with_suffix(".log")
        self._log = open(os.devnull if quiet else self.log_path, "wb")
        self.proc = subprocess.Popen([str(self.binary), "--socket", str(self.path), *extra],
                                     stdout=subprocess.DEVNULL, stderr=self._log)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.binary.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(str(self.path))
                return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError(f"{self.binary.name} did not listen on {self.path}:\n{self.log()}")

    def log(self) -> str:
        """What the driver wrote to stderr so far ("" when started quiet)."""
        if not self._log.closed:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> "DriverProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Kernel:
    """One real kernel process (jupyter_client); ``run(code)`` executes a cell and returns its
    reply and IOPub messages.

    A thread reads IOPub all the time. The kernel publishes between cells too (live plots,
    widgets, threads' output), and ZeroMQ's PUB socket drops what a subscriber leaves unread past
    its high-water mark: a harness that read only while a cell ran would lose that cell's own
    status after a few minutes of plots. What nobody reads waits here, at most ``unread_limit``
    messages; beyond that the oldest are forgotten and counted in ``unread_dropped``.

    ``counts`` tallies every message received by type, ``rate_limited`` the "IOPub message rate
    exceeded" notices; ``messages`` keeps the latest ``history`` messages handed out. When the
    kernel does not answer in time, its threads are dumped (py-spy) to ``dump_dir`` and the
    AssertionError names the file.
    """

    def __init__(self, kernel_name: str = "python3", cwd: str | None = None,
                 unread_limit: int = 2000, history: int = 10_000,
                 dump_dir: str | os.PathLike[str] | None = None) -> None:
        from jupyter_client.manager import start_new_kernel

        kw = {"cwd": cwd} if cwd else {}
        self.km, self.kc = start_new_kernel(kernel_name=kernel_name, startup_timeout=60, **kw)
        self.messages: collections.deque[dict[str, Any]] = collections.deque(maxlen=history)
        self.counts: collections.Counter[str] = collections.Counter()
        self.rate_limited = 0
        self.unread_dropped = 0
        self.dump_dir = Path(dump_dir or os.environ.get("CBRIDGE_OUT", "out"))
        self._unread: collections.deque[dict[str, Any]] = collections.deque()
        self._unread_limit = unread_limit
        self._arrived = threading.Condition()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read_iopub, name="kernel-iopub", daemon=True)
        self._reader.start()

    # --- IOPub ---------------------------------------------------------------------------

    def _read_iopub(self) -> None:
        channel = self.kc.iopub_channel  # this thread is the only one that reads its socket
        while not self._stop.is_set():
            try:
                msg = channel.get_msg(timeout=0.1)
            except queue.Empty:
                continue
            except Exception:  # the channel closed under us at shutdown
                if self._stop.is_set():
                    return
                raise
            kind = msg["msg_type"]
            self.counts[kind] += 1
            if kind == "stream" and "IOPub message rate exceeded" in msg["content"].get("text", ""):
                self.rate_limited += 1
            with self._arrived:
                if len(self._unread) >= self._unread_limit:
                    self._unread.popleft()
                    self.unread_dropped += 1
                self._unread.append(msg)
                self._arrived.notify_all()

    @property
    def unread(self) -> int:
        """IOPub messages received and not handed out yet."""
        return len(self._unread)

    def next_message(self, timeout: float) -> dict[str, Any]:
        """The next IOPub message not yet handed out; queue.Empty after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not self._unread:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise queue.Empty
                self._arrived.wait(left)
            msg = self._unread.popleft()
        self.messages.append(msg)
        return msg

    def collect(self, seconds: float) -> list[dict[str, Any]]:
        """Every IOPub message that arrives in the next ``seconds`` (and any not read yet)."""
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.next_message(left))
            except queue.Empty:
                break
        return got

    # --- cells ---------------------------------------------------------------------------

    def run(self, code: str, timeout: float = 30.0, allow_error: bool = False) -> dict[str, Any]:
        """Execute ``code``; returns {"reply", "outputs", "stdout", "stderr", "seconds"}."""
        t0 = time.perf_counter()
        msg_id = self.kc.execute(code)
        reply = self.shell_reply(msg_id, timeout)
        seconds = time.perf_counter() - t0
        outputs = self._drain_until_idle(msg_id, timeout)
        content = reply["content"]
        if content["status"] != "ok" and not allow_error:
            raise AssertionError(f"cell failed: {content.get('ename')}: {content.get('evalue')}\n"
                                 + "\n".join(content.get("traceback", [])))
        stdout = "".join(m["content"]["text"] for m in outputs
                         if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")
        stderr = "".join(m["content"]["text"] for m in outputs
                         if m["msg_type"] == "stream" and m["content"]["name"] == "stderr")
        return {"reply": content, "outputs": outputs, "stdout": stdout, "stderr": stderr,
                "seconds": seconds}

    def shell_reply(self, msg_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """The shell channel's reply to the request ``msg_id`` (others are skipped)."""
        reply = self._await_shell(msg_id, timeout)
        if reply is None:
            raise AssertionError(f"no reply to {msg_id} within {timeout} s{self._dump_note()}")
        return reply

    def _await_shell(self, msg_id: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                reply = self.kc.get_shell_msg(timeout=left)
            except queue.Empty:
                return None
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply
        return None

    def _drain_until_idle(self, msg_id: str, timeout: float) -> list[dict[str, Any]]:
        mine = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self.next_message(left)
            except queue.Empty:
                break
            if msg["parent_header"].get("msg_id") == msg_id:
                mine.append(msg)
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    return mine
        raise AssertionError(f"no idle status for {msg_id} within {timeout} s{self._dump_note()}")

    def value(self, expr: str) -> Any:
        """Evaluate ``expr`` in the kernel and return its repr's literal value."""
        import ast

        res = self.run(f"print(repr({expr}))")
        return ast.literal_eval(res["stdout"].strip())

    # --- when it does not answer ---------------------------------------------------------

    @property
    def pid(self) -> int | None:
        provisioner = self.km.provisioner
        return getattr(provisioner, "pid", None) if provisioner else None

    def dump_threads(self) -> Path | None:
        """Write what every thread of the kernel process is doing (``py-spy dump``, Python and
        native frames) to ``dump_dir``; returns the file, or None when there is no process or no
        py-spy."""
        pid = self.pid
        if pid is None:
            return None
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        path = self.dump_dir / f"kernel-{pid}-threads-{time.strftime('%H%M%S')}.txt"
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        try:
            done = subprocess.run([spy, "dump", "--native", "--pid", str(pid)],
                                  capture_output=True, text=True, timeout=60)
            text = done.stdout + done.stderr
        except (OSError, subprocess.TimeoutExpired) as e:
            text = f"py-spy could not dump {pid}: {e} (pip install py-spy)\n"
        path.write_text(f"{self.unread} IOPub messages unread, {self.unread_dropped} "
                        f"forgotten unread; received: {dict(self.counts)}\n\n{text}")
        return path

    def _dump_note(self) -> str:
        path = self.dump_threads()
        return f"; the kernel's threads are in {path}" if path else ""

    # --- lifetime ------------------------------------------------------------------------

    def restart(self, now: bool = False, timeout: float = 60.0) -> None:
        """Restart the kernel process and wait until it answers again."""
        self.km.restart_kernel(now=now)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if self._await_shell(self.kc.kernel_info(), min(left, 2.0)) is not None:
                return
        raise AssertionError(f"the kernel did not answer within {timeout} s of its restart")

    def shutdown(self) -> None:
        self._stop.set()
        self._reader.join(5)
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


class WidgetFrontend:
    """What JupyterLab does to a kernel's widgets, by comm messages (typing, choosing, clicking;
    on the main shell or a subshell), and the widget state updates it sees on IOPub."""

    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self.states: dict[str, list[dict[str, Any]]] = {}  # model id -> state updates, in order
        self.parents: dict[str, list[str | None]] = {}  # model id -> each update's parent msg_id
        self.buffers: dict[str, list[list[bytes]]] = {}

    def send(self, comm_id: str, data: dict[str, Any], subshell: str | None = None) -> str:
        """Send a comm message; returns its msg_id."""
        kc = self.k.kc
        msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        if subshell is not None:
            msg["header"]["subshell_id"] = subshell
        kc.shell_channel.send(msg)
        return msg["header"]["msg_id"]

    def click(self, model_id: str, subshell: str | None = None) -> str:
        return self.send(model_id, {"method": "custom", "content": {"event": "click"}}, subshell)

    def type(self, model_id: str, value: Any, subshell: str | None = None) -> None:
        self.send(model_id, {"method": "update", "state": {"value": value},
                             "buffer_paths": []}, subshell)

    def choose(self, model_id: str, index: int, subshell: str | None = None) -> None:
        """Pick a dropdown's option: a Dropdown syncs its index, not its value."""
        self.send(model_id, {"method": "update", "state": {"index": index},
                             "buffer_paths": []}, subshell)

    def pump(self, seconds: float) -> None:
        """Read IOPub for ``seconds``, keeping every widget state update."""
        for msg in self.k.collect(seconds):
            self._keep(msg)

    def _keep(self, msg: dict[str, Any]) -> None:
        if msg["msg_type"] != "comm_msg":
            return
        data = msg["content"]["data"]
        if data.get("method") == "update":
            cid = msg["content"]["comm_id"]
            self.states.setdefault(cid, []).append(data["state"])
            self.parents.setdefault(cid, []).append(msg["parent_header"].get("msg_id"))
            self.buffers.setdefault(cid, []).append(msg.get("buffers", []))

    def wait_for(self, model_id: str, pred, timeout: float = 10.0) -> dict[str, Any]:
        """The first state update of ``model_id`` (from now on) that satisfies ``pred``."""
        seen = len(self.states.get(model_id, []))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for state in self.states.get(model_id, [])[seen:]:
                if pred(state):
                    return state
            seen = len(self.states.get(model_id, []))
            try:
                msg = self.k.next_message(timeout=0.1)
            except queue.Empty:
                continue
            self._keep(msg)
        raise AssertionError(f"no matching update of {model_id} within {timeout} s "
                             f"(last: {self.states.get(model_id, [])[-3:]})")

    def subshell(self) -> str:
        kc = self.k.kc
        msg = kc.session.msg("create_subshell_request", {})
        kc.control_channel.send(msg)
        reply = kc.get_control_msg(timeout=10)
        assert reply["content"]["status"] == "ok", reply["content"]
        return reply["content"]["subshell_id"]


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

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code
