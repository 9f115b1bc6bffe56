"""Small HTML tables for widgets (a reply, the console's counters), every cell escaped."""

from __future__ import annotations

import html
from typing import Any, Callable, Sequence

import numpy as np


def cell_text(value: Any) -> str:
    """A field's value as a person reads it: arrays short, char arrays up to their NUL, floats
    to 6 significant digits."""
    if isinstance(value, np.ndarray):
        value = np.array2string(value, threshold=8, edgeitems=3, separator=", ")
    elif isinstance(value, bytes):
        value = value.split(b"\0", 1)[0].decode(errors="replace")
    elif isinstance(value, float):
        value = f"{value:.6g}"
    return str(value)


def html_table(head: Sequence[str], rows: Sequence[Sequence[Any]], css_class: str = "",
               caption: str = "") -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(cell_text(c))}</td>" for c in r) + "</tr>"
                  for r in rows)
    cls = f" class='{css_class}'" if css_class else ""
    cap = f"<caption style='caption-side: bottom'>{html.escape(caption)}</caption>" \
        if caption else ""
    return f"<table{cls}><thead><tr>{th}</tr></thead><tbody>{trs}</tbody>{cap}</table>"


def as_getter(bridge: Any) -> Callable[[], Any]:
    """A widget's link: a Bridge, or a callable giving the current one (the magic's, which
    %cbridge connect may replace)."""
    return bridge if callable(bridge) and not hasattr(bridge, "request") else (lambda: bridge)
