"""The scope's fast path: the page reads the driver itself, and the kernel is out of the data path.

When the Bridge reaches its driver through a Jupyter Server's cbridge route
(``.../cbridge/drivers/<name>/ws``), the page that shows the scope may be served by that same
server. Then it opens the route itself (same origin: Jupyter's own login cookie, its authorizer
and its Origin rules), checks that the HELLO it gets is the kernel's, asks for the scoped types
only (SUBSCRIBE), and decodes their records from the layout given here. When the route cannot be
reached, or serves another driver, the page says why and the kernel sends frames as usual.

    plan(bridge, series)  -> ({"route": ..., "hello": ..., "series": [...]}, "")  or  ({}, why not)
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

ROUTE = re.compile(r"^wss?://[^/]+(?:/.*)?/(cbridge/drivers/[^/?#]+/ws)$")
_KINDS = {"f": "float", "i": "int", "u": "uint"}


def _number(dtype: np.dtype, what: str) -> dict[str, Any]:
    """How the page reads one value of ``dtype`` (a DataView getter's name and size)."""
    if dtype.kind not in _KINDS or dtype.byteorder == ">" or dtype.itemsize not in (1, 2, 4, 8):
        raise ValueError(f"{what} is {dtype}, which the page does not decode")
    if dtype.kind == "f" and dtype.itemsize not in (4, 8):
        raise ValueError(f"{what} is {dtype}, which the page does not decode")
    return {"kind": _KINDS[dtype.kind], "size": dtype.itemsize}


def _field(dtype: np.dtype, name: str, what: str) -> dict[str, Any]:
    ftype, offset = dtype.fields[name][:2]
    count = max(1, int(np.prod(ftype.shape)))
    return {"offset": int(offset), "count": count, **_number(ftype.base, what)}


def plan(source: Any, series: Sequence[Any]) -> tuple[dict[str, Any], str]:
    """What the page needs to read ``series`` from the driver's route, or ({}, the reason)."""
    url = getattr(source, "url", None)
    schema = getattr(source, "schema", None)
    if not isinstance(url, str) or schema is None or getattr(source, "raw", False):
        return {}, "the source is not a Bridge to a driver"
    match = ROUTE.match(url.split("?", 1)[0])
    if match is None:
        return {}, "the Bridge does not reach its driver through a Jupyter Server route"
    out = []
    try:
        for s in series:
            if s.bits is not None:
                raise ValueError(f"{s.spec} is a bit-field")
            info = schema.by_name[s.type_name]
            dtype = source.history_of(s.type_name).dtype
            if dtype.itemsize != info.size:
                raise ValueError(f"{s.type_name}'s records are {dtype.itemsize} bytes here and "
                                 f"{info.size} in the driver")
            entry: dict[str, Any] = {"type_id": info.id, "size": info.size,
                                     "y": _field(dtype, s.field, s.spec), "window": s.window}
            if s.time is not None:
                entry["t0"] = _field(dtype, s.time[0], f"{s.type_name}.{s.time[0]}")
                entry["dt"] = _field(dtype, s.time[1], f"{s.type_name}.{s.time[1]}")
            elif s.x is not None:
                entry["x"] = _field(dtype, s.x, f"{s.type_name}.{s.x}")
            out.append(entry)
    except (KeyError, ValueError) as e:
        return {}, str(e).strip("'\"")
    return {"route": match.group(1), "hello": schema.payload.decode("utf-8", "replace"),
            "series": out}, ""
