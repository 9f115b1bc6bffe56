"""The scope: a widget that draws streamed fields in the browser, from numbers.

A thread per scope builds frames (``frames.py``: at most a min and a max per pixel column of the
page's plot) and sends them as binary buffers on the widget's comm; the page draws the newest at
its next animation frame and acknowledges it. At most ``in_flight`` frames are unacknowledged:
a hidden tab, a paused scope or a slow browser costs the kernel nothing and never floods IOPub.

    scope = Scope(bridge, ["Telemetry.samples"], window=100_000, time="t0:dt")
    scope.show()                  # in this cell's output
    scope.paused = True           # or the page's buttons: pause, y auto/fixed, follow, PNG
    scope.stats()                 # frames sent and drawn, in flight, latency
    scope.close()                 # stops its thread (so do %cbridge disconnect and exit)

A saved notebook, or one rendered to HTML without a kernel, shows the scope's last view as a
PNG drawn in the kernel: beside the widget while it runs (what a notebook saved without widget
state shows), and in place of it once the scope stops (``stop()``, ``close()``, ``%cbridge
disconnect``): a stopped scope is a picture of its last view, in every renderer.
"""

from __future__ import annotations

import base64
import collections
import itertools
import logging
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import anywidget
import numpy as np
import traitlets as t

from .. import daemons
from ..errors import CBridgeError
from ..live import axis_label, make_series
from ..widgets.threads import free_routing
from . import direct
from . import frames as fr
from .picture import png_of

log = logging.getLogger(__name__)

_ids = itertools.count(1)
_running: "daemons.Running[Scope]" = daemons.Running(lambda scope: scope._halt())


def _static(name: str) -> str:
    """The bundled file ``name`` (built with the package, from js/): its text."""
    from . import __path__ as here

    for folder in here:  # an editable install has the sources' folder and the built one
        path = Path(folder) / "static" / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise CBridgeError(f"the scope's bundle ({name}) is not installed with this package: install "
                       "cbridge from its wheel or sdist (pip install cbridge), whose build makes it")


class Scope(anywidget.AnyWidget):
    """A live scope of TYPE.FIELD series of a Bridge, or of a recording; see the module doc."""

    _esm = _static("scope.js")
    _css = _static("scope.css")

    title = t.Unicode("").tag(sync=True)
    labels = t.List(t.Unicode()).tag(sync=True)
    xlabel = t.Unicode("").tag(sync=True)
    height = t.Int(320).tag(sync=True)
    paused = t.Bool(False).tag(sync=True)
    follow = t.Bool(True).tag(sync=True)  # False once the page zooms or pans
    view = t.List(t.Float()).tag(sync=True)  # [lo, hi] when not following
    view_seq = t.Int(0).tag(sync=True)  # counts the page's view changes: stale frames are skipped
    yrange = t.List(t.Float()).tag(sync=True)  # [] autoscales
    columns = t.Int(800).tag(sync=True)  # the plot's width in CSS pixels, told by the page
    path = t.Unicode("comm").tag(sync=True)  # how frames reach the page: "comm" or "direct"
    direct = t.Dict().tag(sync=True)  # the fast path's plan (direct.py), {} when there is none
    status = t.Unicode("").tag(sync=True)

    def __init__(self, source: Any, specs: Sequence[str] | str, *, window: int = 2000,
                 fps: float = 60.0, time: str | tuple[str, str] | None = None,
                 x: str | None = None, title: str | None = None, height: int = 320,
                 in_flight: int = 6, fast_path: bool = True) -> None:
        specs = [specs] if isinstance(specs, str) else list(specs)
        if window < 2:
            raise ValueError("window must be at least 2 values")
        if not 0 < fps <= 120:
            raise ValueError("fps must be in (0, 120]")
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1 frame")
        if not specs:
            raise ValueError("name at least one TYPE.FIELD to draw")
        series = make_series(source, specs, window, time, x)  # ValueError: what to change
        plan, why = direct.plan(source, series) if fast_path else ({}, "fast_path=False")
        super().__init__(title=title or ", ".join(specs), labels=specs,
                         xlabel=axis_label(time, x), height=height, direct=plan)
        self.fast_path_unavailable = why  # why the page cannot read the driver itself
        self.id = f"s{next(_ids)}"
        self.source, self.series = source, series
        self.window, self.fps, self.in_flight = window, fps, in_flight
        self.frames_sent = 0  # frame numbers: 1, 2, ...
        self.acked = 0  # the newest frame the page drew (every one before it is settled too)
        self.draws = 0  # canvas draws the page counted
        self.held = 0  # times a frame was ready and waited for the page to catch up
        self.bytes_sent = 0
        self.errors = 0
        self.latencies: collections.deque[float] = collections.deque(maxlen=4096)
        self.sent_at: collections.deque[float] = collections.deque(maxlen=256)  # monotonic
        self._arrived: dict[int, float] = {}  # frame -> when its newest record arrived
        self._served = (-1, ())  # (view_seq, totals) of the last frame sent
        self._last: tuple[dict[str, Any], list[Any]] | None = None
        self._frozen: list[tuple[np.ndarray, int]] | None = None  # what a pause holds still
        self._lock = threading.Lock()  # the counters and _last: the thread and the comm handler
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: Any = None
        self.on_msg(self._on_msg)
        self.observe(self._on_change, names=["paused", "view_seq", "columns", "follow", "path"])
        free_routing([self])  # acks may arrive on a subshell while a cell runs

    # --- the page's messages (on the shell or a subshell thread) ------------------------------

    def _on_msg(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        kind = content.get("type")
        if kind == "ack":
            # frame: every frame up to it is settled (drawn, or passed over for a newer one);
            # drawn: the one on screen since drawn_at (the page's clock: this machine's)
            frame, drawn = int(content.get("frame", 0)), int(content.get("drawn", -1))
            with self._lock:
                if frame > self.acked:
                    self.acked = frame
                self.draws = max(self.draws, int(content.get("draws", 0)))
                arrived = self._arrived.get(drawn, 0.0)
                for f in [f for f in self._arrived if f <= frame]:
                    del self._arrived[f]
                if arrived:
                    self.latencies.append(float(content.get("drawn_at", 0)) - arrived)
            self._wake.set()
        elif kind == "ready":  # a new view of the widget: it gets the last frame at once
            with self._lock:
                last = self._last
            if last is not None:
                self.send({**last[0], "reply": True}, last[1])
        elif kind == "close":
            self.close()

    def _on_change(self, change: dict[str, Any]) -> None:
        if change["name"] == "paused":
            # Paused, zoom and pan read what was kept at the moment of the pause.
            self._frozen = fr.snapshots(self.source, self.series) if change["new"] else None
        self._wake.set()

    # --- frames ------------------------------------------------------------------------------

    def _next_frame(self) -> tuple[fr.Frame, int] | None:
        """The frame to send now, and the view it serves; None when there is nothing new (or
        the page reads the driver itself)."""
        if self.path == "direct":
            return None
        seq, columns = self.view_seq, max(16, self.columns)
        new_view = seq != self._served[0]
        if not self.follow and len(self.view) == 2:
            if not new_view:
                return None
            taken = self._frozen or fr.snapshots(self.source, self.series)
            return fr.view_frame(taken, self.series, self.view[0], self.view[1], columns), seq
        if self.paused and not new_view:
            return None
        if self.paused:
            taken = self._frozen or fr.snapshots(self.source, self.series)
            frame = fr.follow_frame(_Frozen(self.source, self.series, taken), self.series, columns)
            return frame, seq
        totals = tuple(self.source.history_of(s.type_name).total for s in self.series)
        if not new_view and totals == self._served[1]:
            return None
        return fr.follow_frame(self.source, self.series, columns), seq

    def _send_frame(self, frame: fr.Frame, seq: int) -> None:
        buffers: list[Any] = []
        series = []
        for x, y in frame.points:
            series.append({"n": len(x), "x": len(buffers), "y": len(buffers) + 1})
            buffers += [memoryview(np.ascontiguousarray(x, np.float64)),
                        memoryview(np.ascontiguousarray(y, np.float32))]
        with self._lock:
            self.frames_sent += 1
            number = self.frames_sent
            content = {"type": "data", "frame": number, "range": list(frame.range),
                       "view_seq": seq, "series": series, "sent": time.time()}
            self._last = (content, buffers)
            self._served = (seq, frame.totals)
            if frame.arrived:
                self._arrived[number] = frame.arrived
            self.bytes_sent += sum(b.nbytes for b in buffers)
            self.sent_at.append(time.monotonic())
        self.send(content, buffers)

    def _run(self) -> None:
        interval = 1.0 / self.fps
        next_frame = 0.0
        while not self._stop.is_set():
            wait = next_frame - time.monotonic()
            if wait > 0:
                self._stop.wait(wait)
                continue
            if self.frames_sent - self.acked >= self.in_flight:
                self.held += 1
                self._wake.clear()
                if self.frames_sent - self.acked >= self.in_flight:
                    self._wake.wait(0.25)  # an ack, a view change, or a look again
                continue
            self._wake.clear()
            try:
                made = self._next_frame()
            except KeyError:  # the driver came back without a type: nothing to draw
                made = None
            except Exception:
                self.errors += 1
                log.exception("scope %s could not make a frame", self.id)
                made = None
            if made is None:
                self._wake.wait(interval)
                continue
            # On a steady grid (a frame's own time does not add to the interval), never
            # catching up on frames missed: the page gets an even cadence.
            now = time.monotonic()
            next_frame = next_frame + interval if now - next_frame < interval else now + interval
            self._send_frame(*made)

    # --- life --------------------------------------------------------------------------------

    def start(self) -> "Scope":
        """Start sending frames (``show`` does, after showing the widget)."""
        if self._thread is None:
            _running.add(self)
            self._thread = daemons.start(self._run, name=f"cbridge-scope {self.id}")
        return self

    def show(self) -> None:
        """Show the scope in this cell's output (with its picture for saved notebooks), and
        start it. Returns nothing: a cell ending in ``.show()`` would show the widget twice."""
        from IPython.display import display

        self._handle = display(self, display_id=True)
        self.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _halt(self) -> None:
        """Tell the thread to end (at exit: nothing more, no picture)."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sending; the saved notebook's picture becomes the last view. Safe to call twice."""
        self._halt()
        thread, self._thread = self._thread, None
        daemons.join(thread, timeout)
        _running.discard(self)
        if thread is None or self._handle is None:
            return
        try:  # the output becomes the picture: what a saved notebook shows, in any renderer
            png = base64.b64encode(self.picture()).decode("ascii")
            self._handle.update({"image/png": png, "text/plain": repr(self)}, raw=True)
        except Exception:  # the kernel is shutting down: no picture to update
            log.debug("scope %s: the picture was not updated", self.id, exc_info=True)

    def close(self) -> None:
        self.stop()
        super().close()

    # --- what it reports ---------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._lock:
            lat = sorted(self.latencies)
        pct = (lambda q: round(1e3 * lat[min(len(lat) - 1, int(q * len(lat)))], 2)) if lat else \
            (lambda q: None)
        return {"path": self.path, "frames_sent": self.frames_sent, "frames_drawn": self.acked,
                "in_flight": self.frames_sent - self.acked, "in_flight_limit": self.in_flight,
                "held_for_page": self.held, "page_draws": self.draws,
                "bytes_sent": self.bytes_sent, "errors": self.errors,
                "latency_ms_p50": pct(0.5), "latency_ms_p99": pct(0.99)}

    def picture(self) -> bytes:
        """The view the page shows (the last frame sent), drawn as a PNG in the kernel."""
        if self.path == "direct":  # the kernel sent nothing lately: the window as it is now
            frame = fr.follow_frame(self.source, self.series, max(16, self.columns))
            return png_of(self.title, self.labels, self.xlabel, frame.points, frame.range,
                          self.yrange or None)
        with self._lock:
            last = self._last
        points = [] if last is None else [
            (np.frombuffer(last[1][s["x"]], np.float64), np.frombuffer(last[1][s["y"]], np.float32))
            for s in last[0]["series"]]
        return png_of(self.title, self.labels, self.xlabel, points,
                      None if last is None else last[0]["range"], self.yrange or None)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle
        data["image/png"] = base64.b64encode(self.picture()).decode("ascii")
        return data, metadata

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Scope {self.id} {', '.join(self.labels)} {state}, {self.frames_sent} frames>"


class _Frozen:
    """A source that answers ``history_of`` with what a pause kept."""

    def __init__(self, source: Any, series: Sequence[Any], taken: list[tuple[np.ndarray, int]]):
        self._source = source
        self._kept = {s.type_name: kept for s, kept in zip(series, taken)}

    def history_of(self, name: str) -> "_Kept":
        return _Kept(*self._kept[name])

    def __getattr__(self, name: str) -> Any:  # the schema, for bit-fields
        return getattr(self._source, name)


class _Kept:
    def __init__(self, records: np.ndarray, total: int) -> None:
        self.records, self.total, self.last_time = records, total, 0.0

    def snapshot(self, n: int | None = None) -> tuple[np.ndarray, int]:
        return (self.records if n is None else self.records[-n:]), self.total



