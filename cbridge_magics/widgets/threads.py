"""Widget work off the kernel's own threads: one worker per widget, and the parent header.

A click reaches the kernel as a comm message. JupyterLab 4.4 and later send comm messages to a
kernel subshell when the kernel has them (ipykernel 7), so a click handler may run on a subshell
thread while a cell runs on the main one. A handler here never waits on the driver: it reads the
form and queues the work on the widget's ``Worker``, a daemon thread, which does the request and
shows the outcome. Each widget's state is changed by its worker only (and by the frontend), so two
threads never write the same widget.

ipykernel 7.4 routes what the frontend sends to a comm to the subshell of the last message that comm
published, whatever subshell the frontend chose: a widget made in a cell (on the main shell) would
take its clicks on the main shell, behind the running cell. ``free_routing`` lets the frontend's
choice stand again for the inputs and buttons of our widgets, after they were made or filled from
a cell; an input the frontend changes is echoed from the subshell that handled it, which keeps its
updates and the clicks after them on one subshell, in order.

ipykernel 7 keeps the parent header (which request a message answers) per thread, in ContextVars;
a thread started in a fresh ``contextvars.Context()`` has none and falls back to whatever request
the kernel handled last. So a worker runs each job under the parent of the click that queued it
(the reply's widget update answers that click), and the console's thread under the cell that made
it (``adopt_parent``).

Two of these have no public API in ipykernel, so this module, and no other, names its private
attributes: the kernel's ``_shell_parent`` (the ContextVar of the shell's parent header) and a
comm's ``_reply_subshell_id`` under ``_reply_subshell_lock`` (its routing of frontend messages).
When a kernel that has subshell routing lacks them, a warning says so once (widgets then work, but
a click may wait behind a running cell). tests/test_kernel_internals.py checks, in a real kernel,
that they still do what this module expects; pyproject.toml pins ipykernel to the minors tested.
What we would ask of ipykernel upstream: a public ``Comm.route_frontend_messages(subshell_id |
None)`` (None: where the frontend sends them), and a public ``Kernel.set_parent_for_context(
parent)`` that makes a thread's comm messages answer ``parent``.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from typing import Any, Callable, Iterable

from .. import daemons

log = logging.getLogger(__name__)
_warned: set[str] = set()


def _warn_once(what: str, message: str) -> None:
    if what not in _warned:
        _warned.add(what)
        log.warning("%s (cbridge is tested with ipykernel 7.1 to 7.4)", message)

_workers: "daemons.Running[Worker]" = daemons.Running(lambda w: w.stop(timeout=1.0))


def current_parent() -> dict[str, Any] | None:
    """The parent header of the request this thread is handling (the cell, or a click)."""
    try:
        from ipykernel.kernelbase import Kernel
    except ImportError:
        return None
    if not Kernel.initialized():
        return None
    parent = Kernel.instance().get_parent()
    return parent if parent.get("header") else None


def adopt_parent(parent: dict[str, Any] | None) -> None:
    """In a thread of ours (its own Context): what it sends from now on answers ``parent``.
    Output (print, display) follows the shell's thread parent, ipykernel 7's public way; comm
    messages (widget state) follow the kernel's per-context parent, set here in this thread's
    Context only, so no other thread's routing changes."""
    if parent is None:
        return
    from IPython import get_ipython

    shell = get_ipython()
    set_thread_parent = getattr(shell, "set_thread_parent", None)
    if set_thread_parent is not None:
        set_thread_parent(parent)
    kernel = getattr(shell, "kernel", None)
    var = getattr(kernel, "_shell_parent", None)
    if isinstance(var, contextvars.ContextVar):
        var.set(parent)
    elif kernel is not None:
        _warn_once("_shell_parent", "this ipykernel has no kernel._shell_parent ContextVar: "
                   "widget updates from cbridge's threads may be shown under another cell")


def free_routing(widgets: Iterable[Any]) -> None:
    """Let each widget's comm take frontend messages on the subshell the frontend sends them to
    (see the module docstring). A kernel without this routing is left alone."""
    for widget in widgets:
        comm = getattr(widget, "comm", None)
        lock = getattr(comm, "_reply_subshell_lock", None)
        if lock is None:
            if hasattr(comm, "_reply_subshell_for"):  # routing there, but not as we know it
                _warn_once("_reply_subshell_lock", "this ipykernel routes comm messages to "
                           "subshells in a way cbridge does not know: a panel's clicks may wait "
                           "behind a running cell")
            continue
        with lock:
            comm.__dict__.pop("_reply_subshell_id", None)


class Worker:
    """A daemon thread that runs queued jobs in order, started by the first job and again after a
    ``stop()`` (``%cbridge disconnect`` stops every worker; a later click starts its own again).
    ``submit`` never blocks: past ``limit`` waiting jobs it raises ``queue.Full``, for the caller
    to show, instead of piling up clicks."""

    def __init__(self, name: str, limit: int = 64) -> None:
        self.name = name
        self._jobs: queue.Queue[tuple[Callable[[], None], Any] | None] = queue.Queue(limit)
        self._parent = current_parent()  # the cell that made the widget
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job``, to run under the parent header of the request handled now (a click)."""
        with self._lock:
            self._jobs.put_nowait((job, current_parent() or self._parent))
            if self._thread is None or not self._thread.is_alive():
                self._thread = daemons.start(self._run, name=f"cbridge-widget {self.name}")
                _workers.add(self)

    @property
    def waiting(self) -> int:
        return self._jobs.qsize()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, parent = item
            adopt_parent(parent)
            try:
                job()
            except Exception:  # a job's bug is logged; the worker goes on with the next
                log.exception("%s: a job failed", self.name)

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the queued jobs, then end the thread. Safe to call twice."""
        # Under the lock, join included: a new thread must not start (and take the stop mark)
        # while this one finishes.
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None or not thread.is_alive():
                return
            try:
                self._jobs.put(None, timeout=timeout)
            except queue.Full:
                log.warning("%s: %d jobs still waiting at stop", self.name, self.waiting)
            daemons.join(thread, timeout)
        _workers.discard(self)


def stop_all() -> None:
    _workers.stop_all()
