"""Live plots of streamed fields, drawn off the main thread and pushed through one display.

A LivePlot reads the Bridge's history of each type (the one ring every consumer reads; the plot
keeps no copy of its own) and has a render thread redraw a pyplot-free Figure with Agg at most
``fps`` times a second, only when the history's total count says new data arrived, and once more
when it stops, so the last data always gets a frame.
The display itself is created on the calling thread; the render thread only updates it.

    plot = LivePlot(bridge, ["Telemetry.samples"], window=2000, fps=10)
    plot.start()        # shows the plot in the current cell
    ...
    plot.stop()

The x axis is the value index by default; ``time=("t0", "dt")`` puts it in seconds (each record's
start time plus the per-sample step), ``x="field"`` plots one scalar field against another.
``widget=True`` draws into an ipywidgets Image (binary PNG, no base64), ``plot.widget``, which can
sit in any layout. Agg draws of every plot in the process take one lock: matplotlib's font cache
is shared, and a panel's callback may start a plot on a subshell thread while others render.
"""

from __future__ import annotations

import io
import itertools
import logging
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from . import daemons
from .cstruct import bitfields

log = logging.getLogger(__name__)

_ids = itertools.count(1)
_live: "daemons.Running[LivePlot]" = daemons.Running(lambda plot: plot.stop(timeout=1.0))
_render_lock = threading.Lock()  # one Agg draw at a time in this process (shared font cache)


class Series:
    """One TYPE.FIELD: where its values are in the Bridge's history, its x axis, and what the
    plot last drew."""

    def __init__(self, spec: str, type_name: str, field: str, per_record: int, window: int,
                 time: tuple[str, str] | None = None, x: str | None = None) -> None:
        self.spec, self.type_name, self.field = spec, type_name, field
        self.per_record = per_record  # values one record holds (an array field's element count)
        self.window = window
        self.records = -(-window // per_record)  # records that hold the window's values
        self.time, self.x = time, x
        self.drawn = -1  # the history's total at the last frame
        self.bits: bitfields.Bits | None = None  # a bit-field: decoded from its unit (field)

    def snapshot(self, bridge: Any) -> tuple[np.ndarray, np.ndarray, int]:
        """The x and y of the latest ``window`` values, and the history's total."""
        records, total = bridge.history_of(self.type_name).snapshot(self.records)
        x, y = self.xy(records, total)
        return x[-self.window:], y[-self.window:], total

    def y_of(self, records: np.ndarray) -> np.ndarray:
        """The values of ``records`` as float64, an array field flattened in time order: record
        by record, element by element; shape (records, per_record)."""
        column = records[self.field]
        if self.bits is not None:
            column = bitfields.extract(column, self.bits)
        return np.asarray(column, dtype=np.float64).reshape(len(records), self.per_record)

    def x_of(self, records: np.ndarray, total: int) -> np.ndarray:
        """The x of each value of ``records`` (shaped as ``y_of``'s), the last of them being
        record number ``total - 1`` of the stream."""
        if self.time is not None:
            t0, dt = (np.asarray(records[f], dtype=np.float64) for f in self.time)
            return t0[:, None] + dt[:, None] * np.arange(self.per_record, dtype=np.float64)
        if self.x is not None:
            return np.asarray(records[self.x], dtype=np.float64)[:, None]
        first = (total - len(records)) * self.per_record  # values ever received before these
        return np.arange(first, first + len(records) * self.per_record,
                         dtype=np.float64).reshape(len(records), self.per_record)

    def xy(self, records: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
        """Every value of ``records`` and its x, flat and in time order."""
        return self.x_of(records, total).reshape(-1), self.y_of(records).reshape(-1)


def _bit_field(bridge: Any, type_name: str, field: str) -> tuple[bitfields.Bits | None, str]:
    """(the bit-field, its unit's dtype field) when ``field`` of ``type_name`` is a bit-field of
    the driver's schema, else (None, field)."""
    schema = getattr(bridge, "schema", None)
    info = schema.by_name.get(type_name) if schema is not None else None
    if info is None:
        return None, field
    try:
        bits, unit = bitfields.find(info.layout, field)
    except KeyError:
        return None, field
    return bits, unit


def decimate(x: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """At most 2 * buckets points that draw like the original at that width: each bucket keeps its
    minimum and maximum, so spikes stay visible while Agg draws a fraction of the points."""
    n = len(y)
    if n <= 2 * buckets:
        return x, y
    per = n // buckets
    m = per * buckets
    start = n - m  # drop the oldest few values so every bucket is full
    yb = y[start:].reshape(buckets, per)
    xb = x[start::per][:buckets]
    out_y = np.empty(2 * buckets)
    out_y[0::2] = yb.min(axis=1)
    out_y[1::2] = yb.max(axis=1)
    return np.repeat(xb, 2), out_y


def parse_spec(spec: str) -> tuple[str, str]:
    """``"Telemetry.samples"`` -> ``("Telemetry", "samples")``; ValueError when it is not TYPE.FIELD."""
    type_name, dot, field = spec.partition(".")
    if not dot or not type_name or not field or "." in field:
        raise ValueError(f"{spec!r} is not TYPE.FIELD (for example Telemetry.samples)")
    return type_name, field


def parse_time(time: str | tuple[str, str] | None) -> tuple[str, str] | None:
    """``"t0:dt"`` -> ``("t0", "dt")``; ValueError when it is not two field names."""
    if not isinstance(time, str):
        return time
    t0, sep, dt = time.partition(":")
    if not sep or not t0 or not dt:
        raise ValueError(f"time {time!r} is not T0:DT, two field names (for example t0:dt)")
    return t0, dt


def axis_label(time: Any, x: str | None) -> str:
    return "time (s)" if time is not None else x if x is not None else "value index"


def make_series(source: Any, specs: Sequence[str], window: int,
                time: str | tuple[str, str] | None = None, x: str | None = None) -> list[Series]:
    """The series of TYPE.FIELD ``specs`` of ``source`` (anything with ``history_of``), checked:
    ValueError, naming what to change, for a field that is not there or cannot be drawn."""
    if time is not None and x is not None:
        raise ValueError("plot against time or against a field, not both")
    time = parse_time(time)
    out = []
    for spec in specs:
        type_name, field = parse_spec(spec)
        try:
            history = source.history_of(type_name)
        except KeyError as e:
            raise ValueError(str(e).strip("'\"")) from None
        dtype = history.dtype
        bits, unit = _bit_field(source, type_name, field)
        if field not in (dtype.names or ()) and bits is None:
            raise ValueError(f"{type_name} has no field {field!r} (it has {', '.join(dtype.names)})")
        ftype = dtype.fields[unit][0]
        if not np.issubdtype(ftype.base, np.number):
            raise ValueError(f"{spec} is not numeric, so it cannot be plotted")
        per_record = max(1, int(np.prod(ftype.shape)))
        for axis in (time or ()) + ((x,) if x else ()):
            afield = dtype.fields.get(axis) if dtype.names else None
            if afield is None:
                raise ValueError(f"{type_name} has no field {axis!r} for the x axis (it has "
                                 f"{', '.join(dtype.names)})")
            if afield[0].shape or not np.issubdtype(afield[0].base, np.number):
                raise ValueError(f"{type_name}.{axis} is not a numeric scalar, so it cannot "
                                 "be an x axis")
        if x is not None and per_record != 1:
            raise ValueError(f"{spec} holds {per_record} values a record: against a field, "
                             "plot a scalar (or use --time T0:DT for an array)")
        series = Series(spec, type_name, unit, per_record, window, time, x)
        series.bits = bits
        kept = history.capacity
        # a recording's histories hold all there is: a wider window shows all of it
        if kept < series.records and not getattr(source, "complete_history", False):
            raise ValueError(f"a window of {window} values of {spec} needs {series.records} "
                             f"records, and the bridge keeps {kept} of {type_name} (connect "
                             "with a larger history, or plot a shorter window)")
        out.append(series)
    return out


class LivePlot:
    """A live line plot of one or more TYPE.FIELD series of a Bridge's stream (or of anything
    with ``history_of(type_name)``: a recording, say)."""

    def __init__(
        self,
        bridge: Any,
        specs: Sequence[str],
        *,
        window: int = 2000,
        fps: float = 10.0,
        title: str | None = None,
        size: tuple[float, float] = (8.0, 3.2),
        dpi: int = 90,
        display: Callable[..., Any] | None = None,
        time: str | tuple[str, str] | None = None,
        x: str | None = None,
        widget: bool = False,
    ) -> None:
        if window < 2:
            raise ValueError("window must be at least 2 values")
        if not 0 < fps <= 60:
            raise ValueError("fps must be in (0, 60]")
        if not specs:
            raise ValueError("name at least one TYPE.FIELD to plot")
        self.id = f"p{next(_ids)}"
        self.bridge = bridge
        self.window, self.fps = window, fps
        self.title = title or ", ".join(specs)
        self.series = make_series(bridge, specs, window, time, x)
        self.frames = 0  # images pushed to the display
        self.errors = 0
        self._size, self._dpi = size, dpi
        self._display = display
        self.xlabel = axis_label(time, x)
        self.widget: Any = None  # the ipywidgets Image, with widget=True
        if widget:
            import ipywidgets

            self.widget = ipywidgets.Image(format="png")
        self._handle: Any = None
        self.last_png: bytes | None = None  # the image shown last
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fig: Any = None

    # --- the figure: touched by the render thread only, after start() made it ----------------

    def _make_figure(self) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        # A fixed layout: constrained layout would double the cost of every frame.
        fig = Figure(figsize=self._size, dpi=self._dpi)
        fig.subplots_adjust(left=0.09, right=0.98, bottom=0.15, top=0.9)
        self._canvas = FigureCanvasAgg(fig)
        self._buckets = int(self._size[0] * self._dpi)  # about one bucket per pixel column
        ax = fig.add_subplot()
        ax.set_title(self.title)
        ax.set_xlabel(self.xlabel)
        self._lines = [ax.plot([], [], lw=0.8, label=s.spec)[0] for s in self.series]
        if len(self.series) > 1:
            ax.legend(loc="upper left")
        self._ax, self._fig = ax, fig

    def _fresh(self) -> bool:
        """Whether any series' history has records the last frame did not show."""
        try:
            return any(self.bridge.history_of(s.type_name).total != s.drawn for s in self.series)
        except KeyError:  # the driver came back without this type: nothing new to draw
            return False

    def _png(self) -> bytes:
        with _render_lock:
            for s, line in zip(self.series, self._lines):
                x, y, s.drawn = s.snapshot(self.bridge)
                line.set_data(*decimate(x, y, self._buckets))
            self._ax.relim()
            self._ax.autoscale_view()
            self._canvas.draw()
            image = Image.frombuffer("RGBA", self._canvas.get_width_height(),
                                     self._canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        # Encoding with the fastest zlib level: the image is sent once and replaced soon after;
        # the main thread waits for the GIL while this runs.
        buf = io.BytesIO()
        image.save(buf, format="png", compress_level=1)
        return buf.getvalue()

    def _push(self) -> None:
        from IPython.display import Image

        png = self._png()
        if self.widget is not None:
            self.widget.value = png  # a binary buffer on the comm: no base64
        else:
            self._handle.update(Image(data=png, format="png"))
        self.frames += 1
        self.last_png = png

    # --- life --------------------------------------------------------------------------------

    def start(self, show: bool = True) -> "LivePlot":
        """Show the plot where this is called, then keep it updated. With a widget, ``show=False``
        leaves the showing to a layout that holds ``plot.widget``."""
        from IPython.display import Image
        from IPython.display import display as ipy_display

        display = self._display or ipy_display
        # The figure is made and first drawn here, before the render thread exists; from then on
        # only that thread touches it.
        self._make_figure()
        self.last_png = self._png()
        if self.widget is not None:
            self.widget.value = self.last_png
            if show:
                display(self.widget)
        else:
            self._handle = display(Image(data=self.last_png, format="png"), display_id=True)
        _live.add(self)
        self._thread = daemons.start(self._run, name=f"cbridge-plot {self.id}")
        return self

    def _run(self) -> None:
        interval = 1.0 / self.fps
        next_frame = time.monotonic()
        while True:
            # Waiting out the interval is what bounds the update rate, whatever the data rate.
            stopping = self._stop.wait(max(0.0, next_frame - time.monotonic()))
            if self._fresh():
                next_frame = time.monotonic() + interval
                try:
                    self._push()
                except Exception:
                    self.errors += 1
                    log.exception("live plot %s could not draw", self.id)
            elif not stopping:
                next_frame = time.monotonic() + interval
            if stopping:
                return

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Draw the last data, stop the render thread. Safe to call twice."""
        self._stop.set()
        thread, self._thread = self._thread, None
        daemons.join(thread, timeout)
        _live.discard(self)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LivePlot {self.id} {', '.join(s.spec for s in self.series)} {state}, {self.frames} frames>"


def stop_all() -> None:
    """Stop every live plot in this process (each draws its last data first)."""
    _live.stop_all()
