"""A real kernel (jupyter_client) that loses nothing it publishes, and what a frontend does to
its widgets."""

from __future__ import annotations

import collections
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


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
        outputs = self.wait_idle(msg_id, timeout)
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

    def wait_idle(self, msg_id: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The IOPub messages of request ``msg_id`` up to its idle status. After a cell that
        failed, ipykernel aborts what reaches it before it has finished with that cell: wait
        for this before sending the next one."""
        mine = self._until_idle(msg_id, timeout)
        if mine is None:
            raise AssertionError(f"no idle status for {msg_id} within {timeout} s"
                                 f"{self._dump_note()}")
        return mine

    def _until_idle(self, msg_id: str, timeout: float) -> list[dict[str, Any]] | None:
        mine = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self.next_message(left)
            except queue.Empty:
                return None
            if msg["parent_header"].get("msg_id") == msg_id:
                mine.append(msg)
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    return mine
        return None

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
        """Restart the kernel process and wait until it answers again, on the shell channel and
        on IOPub: the new process's IOPub reaches this subscriber only once ZeroMQ has
        reconnected, and what it publishes before that is lost (the cell after a restart would
        never see its idle status)."""
        self.km.restart_kernel(now=now)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            msg_id = self.kc.kernel_info()
            if (self._await_shell(msg_id, min(left, 2.0)) is not None
                    and self._until_idle(msg_id, min(left, 2.0)) is not None):
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
