"""A control panel for one struct class: its form, Request and Send buttons, the reply, the errors.

    from cbridge_magics.widgets import Panel
    p = Panel(Command, bridge, choices={"op": "DEMO_OP_", "waveform": "DEMO_WAVE_"})
    p                       # shows it
    p.value                 # the Command the form describes
    p.value = Command(op=1, frequency_hz=5.0)    # fills the form
    p.request()             # what the Request button does; p.send() the Send button

A click never waits on the driver: the form is read at once (a bad value shows in the panel), and
the request goes to the panel's worker thread, which shows the typed reply as a table, or the
error. Every error is shown, counted in ``p.error_count``, kept in ``p.errors`` (the latest 50) and
logged; none is dropped.
"""

from __future__ import annotations

import html
import logging
import queue
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Callable

import ipywidgets as w

from ..errors import CBridgeError, DriverUnavailable
from .form import Form, enum_constants
from .tables import as_getter, html_table
from .threads import Worker, free_routing

log = logging.getLogger(__name__)

ERRORS_KEPT = 50
ROWS_SHOWN = 8  # records of a batch reply shown in its table; the rest are counted


def reply_table(reply: Any) -> str:
    """A reply (one struct, or a list of them) as a small HTML table, a row per record."""
    records = reply if isinstance(reply, list) else [reply]
    if not records:
        return "<i>an empty reply</i>"
    cls = type(records[0])
    fields = cls.__layout__["fields"]
    names = [f["name"] for f in fields]
    # an enum-typed field shows its constant's name beside the value
    consts = {f["name"]: {v: k for k, v in enum_constants(cls, f["ctype"], f["name"]).items()}
              for f in fields}

    def cell(name: str, value: Any) -> Any:
        known = consts[name].get(value) if isinstance(value, int) else None
        return value if known is None else f"{known} ({value})"

    more = len(records) - ROWS_SHOWN
    return html_table(names, [[cell(n, getattr(r, n)) for n in names]
                              for r in records[:ROWS_SHOWN]],
                      "cbridge-reply", f"and {more} more records" if more > 0 else "")


class Panel(w.VBox):
    """An ipywidgets form for ``cls`` bound to a Bridge (or a callable giving the current one)."""

    def __init__(self, cls: type, bridge: Any, *, choices: Mapping[str, Any] | None = None,
                 constants: Mapping[str, Any] | None = None, timeout: float = 1.0,
                 title: str | None = None, **kwargs: Any) -> None:
        self.cls = cls
        self._bridge = as_getter(bridge)
        self.timeout = timeout
        self.form = Form(cls, choices=choices, constants=constants)
        self.request_button = w.Button(description="Request", button_style="primary",
                                       tooltip="send, and show the reply")
        self.send_button = w.Button(description="Send", tooltip="send without waiting")
        self.status = w.HTML("")  # the last outcome, or the last error
        self.reply = w.HTML("")   # the last reply, as a table
        self.errors: deque[str] = deque(maxlen=ERRORS_KEPT)
        self.error_count = 0
        self.replies = 0
        self.last_reply: Any = None
        self.last_seconds: float | None = None  # the last request's round trip
        self._worker = Worker(f"panel {cls.__name__}")
        self.request_button.on_click(lambda _b: self.request())
        self.send_button.on_click(lambda _b: self.send())
        header = w.HTML(f"<b>{html.escape(title or cls.__name__)}</b>")
        super().__init__([header, self.form.box, w.HBox([self.request_button, self.send_button]),
                          self.status, self.reply], **kwargs)
        self.add_class("cbridge-panel")
        free_routing([*self.form.inputs(), self.request_button, self.send_button])

    # --- the form --------------------------------------------------------------------------

    @property
    def value(self) -> Any:
        """The struct instance the form describes (ValueError names a bad field)."""
        return self.form.value

    @value.setter
    def value(self, obj: Any) -> None:
        self.form.value = obj

    # --- the buttons -----------------------------------------------------------------------

    def request(self) -> None:
        """Queue a request of the form's value; the reply (or error) shows when it comes."""
        self._click(self._do_request)

    def send(self) -> None:
        """Queue a send of the form's value, without waiting for a reply."""
        self._click(self._do_send)

    def _click(self, action: Callable[[Any], None]) -> None:
        """Read the form now (what the person saw when they clicked), act on the worker. A bad
        value's error is shown by the worker too, so the worker writes the panel's state; the
        one exception is a click refused because the worker's queue is full, which this thread
        shows at once (the worker is busy, and waiting for it is what must not happen)."""
        try:
            obj = self.form.value
            job = lambda: action(obj)  # noqa: E731
        except (ValueError, TypeError) as e:
            message = f"not sent: {e}"
            job = lambda: self._error(message)  # noqa: E731
        try:
            self._worker.submit(job)
        except queue.Full:
            self._error(f"not sent: {self._worker.waiting} earlier clicks are still waiting "
                        "for the driver")

    def _link(self) -> Any:
        bridge = self._bridge()
        if bridge is None:
            raise DriverUnavailable("no link: %cbridge connect (or connect()) first")
        return bridge

    def _do_request(self, obj: Any) -> None:
        t0 = time.perf_counter()
        try:
            reply = self._link().request(obj, timeout=self.timeout)
        except Exception as e:  # CBridgeError and its family, and whatever else: all shown
            self._error(f"{type(e).__name__}: {e}", expected=isinstance(e, CBridgeError))
            return
        seconds = time.perf_counter() - t0
        self.last_reply, self.last_seconds = reply, seconds
        self.replies += 1
        name = type(reply[0] if isinstance(reply, list) and reply else reply).__name__
        with self.hold_sync():
            self.reply.value = reply_table(reply)
            self.status.value = (f"<span class='cbridge-ok'>reply {self.replies}: {name} in "
                                 f"{seconds * 1e3:.1f} ms</span>")

    def _do_send(self, obj: Any) -> None:
        try:
            seq = self._link().send(obj)
        except Exception as e:
            self._error(f"{type(e).__name__}: {e}", expected=isinstance(e, CBridgeError))
            return
        self.status.value = f"<span class='cbridge-ok'>sent {type(obj).__name__} (seq {seq})</span>"

    def _error(self, text: str, expected: bool = True) -> None:
        self.error_count += 1
        self.errors.append(text)
        # an error that is not the driver's or the link's may be a bug: its traceback is logged
        log.warning("panel %s: %s", self.cls.__name__, text, exc_info=not expected)
        self.status.value = (f"<span class='cbridge-error' style='color: var(--jp-error-color1, "
                             f"#d32f2f)'>error {self.error_count}: {html.escape(text)}</span>")

    # --- life ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the worker thread after the queued clicks; a later click starts it again."""
        worker = getattr(self, "_worker", None)  # None: __init__ failed (ipywidgets' __del__)
        if worker is not None:
            worker.stop()

    def close(self) -> None:
        """Stop the worker and close the widgets."""
        self.stop()
        super().close()
