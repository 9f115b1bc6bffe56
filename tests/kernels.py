"""A real IPython kernel driven through jupyter_client, for the suites that need one."""

from __future__ import annotations

import queue
import time
from typing import Any

from jupyter_client.manager import start_new_kernel


class Kernel:
    """One kernel process; ``run(code)`` executes a cell and returns its reply and IOPub messages."""

    def __init__(self, kernel_name: str = "python3", cwd: str | None = None) -> None:
        kw = {"cwd": cwd} if cwd else {}
        self.km, self.kc = start_new_kernel(kernel_name=kernel_name, startup_timeout=60, **kw)
        self.messages: list[dict[str, Any]] = []  # every IOPub message seen, in order

    def run(self, code: str, timeout: float = 30.0, allow_error: bool = False) -> dict[str, Any]:
        """Execute ``code``; returns {"reply", "outputs", "stdout", "stderr", "seconds"}."""
        t0 = time.perf_counter()
        msg_id = self.kc.execute(code)
        reply = self.kc.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=timeout)
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

    def _drain_until_idle(self, msg_id: str, timeout: float) -> list[dict[str, Any]]:
        mine = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.messages.append(msg)
            if msg["parent_header"].get("msg_id") == msg_id:
                mine.append(msg)
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    return mine
        raise AssertionError(f"no idle status for {msg_id} within {timeout} s")

    def collect(self, seconds: float) -> list[dict[str, Any]]:
        """Every IOPub message that arrives in the next ``seconds``."""
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.kc.get_iopub_msg(timeout=left))
            except queue.Empty:
                break
        self.messages.extend(got)
        return got

    def value(self, expr: str) -> Any:
        """Evaluate ``expr`` in the kernel and return its repr's literal value."""
        import ast

        res = self.run(f"print(repr({expr}))")
        return ast.literal_eval(res["stdout"].strip())

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
