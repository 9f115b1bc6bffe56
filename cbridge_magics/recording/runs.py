"""Several recordings end to end (``recording.open_many``): each (file, epoch) a segment of its
own, told apart by the ``run`` and ``epoch`` coordinates of the datasets they give.

    runs = recording.open_many(["monday.cbrec", "tuesday.cbrec"])
    runs.to_xarray("Telemetry", chunks=100_000)
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

import numpy as np

from .datasets import need, to_xarray
from .reader import Recording


class Runs:
    """Recordings opened together; a type whose layout differs between segments is refused,
    naming them."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        self.recordings = [Recording(p) for p in paths]
        if not self.recordings:
            raise ValueError("open_many needs at least one recording")

    def segments(self, name: str) -> list[tuple[int, "Recording", int]]:
        """(run index, recording, epoch) of every schema that has ``name``, in order."""
        out = [(i, r, e) for i, r in enumerate(self.recordings)
               for e, s in enumerate(r.schemas) if name in s.by_name]
        if not out:
            raise KeyError(f"none of the recordings has a type {name!r}")
        first = out[0][1].schemas[out[0][2]].by_name[name].layout
        for i, r, e in out[1:]:
            layout = r.schemas[e].by_name[name].layout
            if {**layout, "id": 0} != {**first, "id": 0}:
                raise ValueError(f"{name} has another layout in {r.path} (epoch {e}) than in "
                                 f"{out[0][1].path} (epoch {out[0][2]}): open them apart")
        return out

    def to_xarray(self, name: str, **options: Any) -> Any:
        """The runs' datasets of ``name``, concatenated along ``record`` (see to_xarray)."""
        xr = need("xarray", "open_many(...).to_xarray")
        parts = []
        for i, r, e in self.segments(name):
            ds = to_xarray(r, name, epoch=e, **options)
            dim = "time" if options.get("flat") else "record"
            ds = ds.assign_coords(run=(dim, np.full(ds.sizes[dim], i)),
                                  epoch=(dim, np.full(ds.sizes[dim], e)))
            parts.append(ds)
        out = xr.concat(parts, dim="time" if options.get("flat") else "record",
                        combine_attrs="drop_conflicts")
        if not options.get("flat"):
            out = out.assign_coords(record=np.arange(out.sizes["record"]))
        out.attrs["recordings"] = json.dumps([str(r.path) for r in self.recordings])
        return out

    def close(self) -> None:
        for r in self.recordings:
            r.close()

    def __enter__(self) -> "Runs":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
