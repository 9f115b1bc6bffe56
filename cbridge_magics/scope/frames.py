"""What one scope frame holds: per series the points that draw a view at the page's width.

Following the stream, the view is the latest ``window`` values of each series; zoomed or panned,
it is the x range the page asked for, read from every record the source keeps (the Bridge's
history, a recording's records), so zooming in brings back the detail the wide view had folded
into min/max pairs. Records are picked by their x span before their values are expanded, and
when more records than pixel columns fall in the view, each record gives its own min and max
first: a view of a whole recording costs a pass over its records, not over every sample.

    frame = follow_frame(source, series, columns=800)    # Frame(range, points, arrived, totals)
    frame = view_frame(snapshots, series, lo, hi, columns)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..live import Series
from ._decimate import minmax


@dataclass
class Frame:
    range: tuple[float, float]  # the x range the page draws
    points: list[tuple[np.ndarray, np.ndarray]]  # per series: x (float64), y (float32)
    arrived: float  # time.time() when the newest record shown reached this process (0: unknown)
    totals: tuple[int, ...]  # each series' history total at the snapshot


def _range(xs: Sequence[np.ndarray]) -> tuple[float, float]:
    finite = [x[np.isfinite(x)] for x in xs if len(x)]
    finite = [x for x in finite if len(x)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(float(x.min()) for x in finite), max(float(x.max()) for x in finite)
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


def _points(x: np.ndarray, y: np.ndarray, lo: float, hi: float,
            columns: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = minmax(np.ascontiguousarray(x, np.float64), np.ascontiguousarray(y, np.float64),
                    lo, hi, columns)
    return xs, ys.astype(np.float32)


def follow_frame(source: Any, series: Sequence[Series], columns: int) -> Frame:
    """The latest ``window`` values of each series, at ``columns`` pixel columns."""
    data, totals, arrived = [], [], 0.0
    for s in series:
        history = source.history_of(s.type_name)
        x, y, total = s.snapshot(source)
        data.append((x, y))
        totals.append(total)
        arrived = max(arrived, getattr(history, "last_time", 0.0))
    lo, hi = _range([x for x, _ in data])
    return Frame((lo, hi), [_points(x, y, lo, hi, columns) for x, y in data], arrived,
                 tuple(totals))


def snapshots(source: Any, series: Sequence[Series]) -> list[tuple[np.ndarray, int]]:
    """Every record the source keeps of each series' type, and the total they end at."""
    taken: dict[str, tuple[np.ndarray, int]] = {}
    for s in series:
        if s.type_name not in taken:
            taken[s.type_name] = source.history_of(s.type_name).snapshot(None)
    return [taken[s.type_name] for s in series]


def _spans(s: Series, records: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Each record's first and last x."""
    if s.time is not None:
        t0, dt = (np.asarray(records[f], dtype=np.float64) for f in s.time)
        return t0, t0 + dt * (s.per_record - 1)
    if s.x is not None:
        x = np.asarray(records[s.x], dtype=np.float64)
        return x, x
    first = (total - len(records) + np.arange(len(records), dtype=np.float64)) * s.per_record
    return first, first + (s.per_record - 1)


def _in_view(s: Series, records: np.ndarray, total: int, lo: float, hi: float,
             columns: int) -> tuple[np.ndarray, np.ndarray]:
    start, end = _spans(s, records, total)
    inside = np.flatnonzero((end >= lo) & (start <= hi))
    if not len(inside):
        return np.zeros(0), np.zeros(0)
    if s.x is not None:  # x from a field: its records in any order, one value each
        picked = records[inside]
        return s.x_of(picked, total).reshape(-1), s.y_of(picked).reshape(-1)
    # One record beyond each edge, so the line runs to the edges of the view.
    a, b = max(int(inside[0]) - 1, 0), min(int(inside[-1]) + 2, len(records))
    picked = records[a:b]
    if s.per_record > 1 and b - a > 2 * columns:  # narrower than a pixel: each record's envelope
        y = s.y_of(picked)
        x = np.stack((start[a:b], end[a:b]), axis=1).reshape(-1)
        with warnings.catch_warnings():  # a record of NaNs only: a gap, as NaN is elsewhere
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanmin(y, axis=1), np.nanmax(y, axis=1)
        return x, np.stack((low, high), axis=1).reshape(-1)
    return s.xy(picked, total - (len(records) - b))


def view_frame(taken: Sequence[tuple[np.ndarray, int]], series: Sequence[Series], lo: float,
               hi: float, columns: int) -> Frame:
    """The x range [lo, hi] of each series, from ``snapshots``' records."""
    points = []
    for s, (records, total) in zip(series, taken):
        x, y = _in_view(s, records, total, lo, hi, columns)
        points.append(_points(x, y, lo, hi, columns) if len(x) else
                      (np.zeros(0), np.zeros(0, np.float32)))
    return Frame((lo, hi), points, 0.0, tuple(total for _, total in taken))
