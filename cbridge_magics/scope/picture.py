"""The scope's view as a PNG drawn in the kernel, for notebooks saved or rendered without one.

The page draws the scope from numbers; a notebook opened later without a kernel (or rendered to
HTML by nbconvert) has no page code that runs, so the widget's output carries this picture too.
Drawn with Agg from the points of the last frame sent: what the page showed.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

from ..live import _render_lock


def png_of(title: str, labels: Sequence[str], xlabel: str,
           points: Sequence[tuple[np.ndarray, np.ndarray]], xrange: Sequence[float] | None,
           yrange: Sequence[float] | None, size: tuple[float, float] = (8.0, 3.2),
           dpi: int = 90) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with _render_lock:
        fig = Figure(figsize=size, dpi=dpi)
        fig.subplots_adjust(left=0.09, right=0.98, bottom=0.15, top=0.9)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        for label, (x, y) in zip(labels, points):
            ax.plot(x, y, lw=0.8, label=label)
        if len(labels) > 1:
            ax.legend(loc="upper left")
        if xrange is not None and xrange[1] > xrange[0]:
            ax.set_xlim(*xrange)
        if yrange:
            ax.set_ylim(*yrange)
        buf = io.BytesIO()
        canvas.print_png(buf)
    return buf.getvalue()
