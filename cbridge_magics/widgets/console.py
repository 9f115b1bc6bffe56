"""The driver console: what the link is doing, live, with reconnect, disconnect and stop plots.

    from cbridge_magics.widgets import Console
    c = Console(bridge)      # shows: state, driver, reconnects; per type records/s; drops;
    c                        # the latest errors with counts; the relay's clients

A thread of its own redraws it at most twice a second (``interval``), and only when what it shows
changed, so an idle console sends nothing. The buttons act at once; what came of it shows in the
next redraw. ``%cbridge disconnect`` and unloading the extension stop the thread.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections import Counter
from typing import Any, Callable

import ipywidgets as w

from .. import daemons
from .tables import as_getter, html_table
from .threads import adopt_parent, current_parent, free_routing

log = logging.getLogger(__name__)

_consoles: "daemons.Running[Console]" = daemons.Running(lambda c: c.stop(timeout=1.0))
MIN_INTERVAL = 0.5  # at most 2 redraws a second


class Console(w.VBox):
    """A live view of a Bridge (or of a callable giving the current one); see the module doc."""

    def __init__(self, bridge: Any, *, interval: float = MIN_INTERVAL,
                 on_disconnect: Callable[[], None] | None = None,
                 on_stop_plots: Callable[[], None] | None = None, **kwargs: Any) -> None:
        self._bridge = as_getter(bridge)
        self.interval = max(MIN_INTERVAL, interval)
        self._on_disconnect = on_disconnect
        self._on_stop_plots = on_stop_plots
        self.view = w.HTML("")
        self.reconnect_button = w.Button(description="Reconnect", icon="refresh")
        self.disconnect_button = w.Button(description="Disconnect", icon="unlink")
        self.stop_plots_button = w.Button(description="Stop plots", icon="stop")
        self.reconnect_button.on_click(lambda _b: self._act(self._reconnect))
        self.disconnect_button.on_click(lambda _b: self._act(self._disconnect))
        self.stop_plots_button.on_click(lambda _b: self._act(self._stop_plots))
        self.updates = 0  # redraws sent
        self.note = ""  # what the last button did
        self._last: dict[str, tuple[float, int]] = {}  # type -> (time, records) of the last look
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._parent = current_parent()
        super().__init__([self.view, w.HBox([self.reconnect_button, self.disconnect_button,
                                             self.stop_plots_button])], **kwargs)
        self.add_class("cbridge-console")
        free_routing([self.reconnect_button, self.disconnect_button, self.stop_plots_button])
        self.view.value = self.render()
        self.start()

    # --- what it shows ---------------------------------------------------------------------

    def render(self) -> str:
        """The console's HTML now (also what the thread pushes when it changed)."""
        b = self._bridge()
        if b is None:
            return "<b>cbridge</b>: not connected" + self._note_html()
        st = b.stats()
        schema = b.schema
        driver = f"{schema.driver} {schema.driver_version}" if schema else "?"
        parts = [f"<b>{html.escape(driver)}</b> at {html.escape(st.url)}: "
                 f"<span class='cbridge-state'>{st.state}</span>, "
                 f"{st.reconnects} reconnects, {st.pending} requests waiting"]
        now = time.monotonic()
        rows = []
        for name, t in st.types.items():
            if not t.frames and not t.bad_frames:
                continue  # a type never streamed (a request or reply type): nothing to show
            then, before = self._last.get(name, (now, t.records))
            rate = (t.records - before) / (now - then) if now > then else 0.0
            self._last[name] = (now, t.records)
            rows.append([name, f"{t.records:,}", f"{rate:,.0f}", f"{t.frames:,}", t.bad_frames])
        parts.append(html_table(["type", "records", "records/s", "frames", "bad frames"], rows)
                     if rows else "no stream yet")
        parts.append(f"drops: {html.escape(st.drops())}")
        errors = Counter(st.recent_errors)
        if errors:
            lines = "".join(f"<li>{html.escape(text)}{f' (x{n})' if n > 1 else ''}</li>"
                            for text, n in list(errors.items())[-5:])
            parts.append(f"errors ({st.errors_seen} in all):<ul>{lines}</ul>")
        for relay in getattr(b, "relays", []):
            clients = [[c.id, c.peer, f"{c.delivered:,}", f"{c.dropped:,}", c.queued_frames]
                       for c in relay.client_stats()]
            parts.append(f"relay {html.escape(relay.url.split('?')[0])}: "
                         f"{len(clients)} clients" + (html_table(
                             ["id", "peer", "delivered", "dropped", "queued"], clients)
                             if clients else ""))
        return "<div class='cbridge-console-view'>" + "<br>".join(parts) + \
            self._note_html() + "</div>"

    def _note_html(self) -> str:
        return f"<br><i>{html.escape(self.note)}</i>" if self.note else ""

    # --- the buttons -----------------------------------------------------------------------

    def _act(self, action: Callable[[], str]) -> None:
        try:
            self.note = action()
        except Exception as e:  # shown in the console and logged, never lost
            self.note = f"{type(e).__name__}: {e}"
            log.warning("console: %s", self.note)

    def _reconnect(self) -> str:
        b = self._bridge()
        if b is None:
            return "not connected: %cbridge connect first"
        b.reconnect_now()
        return f"reconnecting to {b.name}"

    def _disconnect(self) -> str:
        b = self._bridge()
        if self._on_disconnect is not None:
            self._on_disconnect()
        elif b is not None:
            b.close()
        return f"disconnected from {b.name}" if b is not None else "not connected"

    def _stop_plots(self) -> str:
        if self._on_stop_plots is not None:
            self._on_stop_plots()
        else:
            from ..live import stop_all

            stop_all()
        return "plots stopped"

    # --- life ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = daemons.start(self._run, name="cbridge-console")
        _consoles.add(self)

    def _run(self) -> None:
        adopt_parent(self._parent)
        while True:
            stopping = self._stop.wait(self.interval)
            try:
                text = self.render()
                if text != self.view.value:
                    self.view.value = text
                    self.updates += 1
            except Exception:
                log.exception("console could not redraw")
            if stopping:  # the last state always gets drawn
                return

    def stop(self, timeout: float = 5.0) -> None:
        """Draw once more, then end the thread. Safe to call twice."""
        if not hasattr(self, "_stop"):  # __init__ failed (ipywidgets' __del__ closes it)
            return
        self._stop.set()
        thread, self._thread = self._thread, None
        daemons.join(thread, timeout)
        _consoles.discard(self)

    def close(self) -> None:
        self.stop()
        super().close()


def stop_all() -> None:
    _consoles.stop_all()
