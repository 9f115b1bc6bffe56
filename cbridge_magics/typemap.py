"""Which class stands for each of a driver's types, and what a Bridge keeps per type.

The user's compiled classes are matched by name against the driver's schema with the one layout
comparator (``wire.layout``); a type no class describes gets a class built from its HELLO entry
(``cstruct.from_schema``). Per type name a history, counters and subscribers outlive reconnects.

    types = TypeMap([Command, Status], history=100_000)
    types.install(schema)          # raises nothing; types.check(schema) raises LayoutMismatch
    types.report(schema)           # per driver type: matches, mismatch, schema-built
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from .cstruct.from_schema import record_class
from .errors import DriverUnavailable, LayoutMismatch, ProtocolError, driver_error
from .history import History
from .wire.codes import ControlType
from .wire.frames import parse_error
from .wire.hello import Schema, TypeInfo
from .wire.layout import LayoutReport, check_layout, layout_of, match

log = logging.getLogger(__name__)

Subscriber = Callable[[np.ndarray], Any]


@dataclass
class TypeStats:
    frames: int = 0
    records: int = 0
    bad_frames: int = 0


@dataclass
class TypeEntry:
    """What the reader needs to handle one type id of the current schema."""

    info: TypeInfo
    cls: type
    dtype: np.dtype
    history: History
    stats: TypeStats
    subscribers: list[Subscriber] = field(default_factory=list)


class TypeMap:
    """The classes, histories, counters and subscribers of one Bridge; see the module docstring."""

    def __init__(self, classes: Iterable[type], history: int) -> None:
        self.history_size = history
        self.classes: dict[str, type] = {layout_of(c)["name"]: c for c in classes}
        self.entries: dict[int, TypeEntry] = {}  # by type id, for the current schema
        self.histories: dict[str, History] = {}
        self.stats: dict[str, TypeStats] = {}
        self.subscribers: dict[str, list[Subscriber]] = {}
        self._checked: dict[type, int] = {}  # class -> type id, for the current schema
        self.schema: Schema | None = None

    def report(self, schema: Schema, classes: Iterable[type] | None = None) -> LayoutReport:
        """``classes`` (default: the ones in use) against every type of ``schema``."""
        return match(schema, self.classes.values() if classes is None else classes)

    def check(self, schema: Schema) -> None:
        """Raise LayoutMismatch for the first class in use whose layout differs from the schema's."""
        self.report(schema).check()

    def install(self, schema: Schema) -> None:
        """Build the type table for a (new) schema; keep histories whose dtype still fits."""
        entries: dict[int, TypeEntry] = {}
        for info in schema.types:
            enums = getattr(schema, "enums", None)
            cls = self.classes.get(info.name) or record_class(info.layout, enums=enums)
            dtype = getattr(cls, "dtype", None)
            if not isinstance(dtype, np.dtype) or dtype.itemsize != info.size:
                dtype = record_class(info.layout, enums=enums).dtype
            hist = self.histories.get(info.name)
            if hist is None or hist.dtype != dtype:
                if hist is not None:
                    log.warning("%s: layout changed on reconnect; its history starts again", info.name)
                hist = self.histories[info.name] = History(dtype, self.history_size)
            stats = self.stats.setdefault(info.name, TypeStats())
            subs = self.subscribers.setdefault(info.name, [])
            entries[info.id] = TypeEntry(info, cls, dtype, hist, stats, subs)
        self.entries = entries
        self._checked = {}
        self.schema = schema

    def register(self, classes: Iterable[type]) -> None:
        """Use these classes for their types from now on; LayoutMismatch (and no change) if one
        differs from the current schema."""
        classes = list(classes)
        if self.schema is not None:
            self.report(self.schema, classes).check()
        for cls in classes:
            self.classes[layout_of(cls)["name"]] = cls
        if self.schema is not None:
            self.install(self.schema)

    def type_id(self, obj: Any, where: str) -> int:
        """The wire type id of a struct instance; its layout checked once per class and schema."""
        cls = type(obj)
        tid = self._checked.get(cls)
        if tid is not None:
            return tid
        layout = layout_of(cls)
        if self.schema is None:
            raise DriverUnavailable(f"{where}: not connected")
        info = self.schema.by_name.get(layout["name"])
        if info is None:
            raise LayoutMismatch(f"the driver has no type {layout['name']!r} "
                                 f"(it has {', '.join(self.schema.by_name) or 'none'})")
        check_layout(layout, info.layout)
        self._checked[cls] = info.id
        return info.id

    def entry(self, type_name: str) -> TypeEntry:
        for entry in self.entries.values():
            if entry.info.name == type_name:
                return entry
        known = ", ".join(e.info.name for e in self.entries.values()) or "none"
        raise KeyError(f"the driver has no type {type_name!r} (it has {known})")

    def subscribe(self, type_name: str, callback: Subscriber) -> Callable[[], None]:
        """Add ``callback`` for the records of ``type_name`` (kept across reconnects); returns
        the function that removes it."""
        self.entry(type_name)
        subs = self.subscribers.setdefault(type_name, [])
        subs.append(callback)

        def unsubscribe() -> None:
            if callback in subs:
                subs.remove(callback)

        return unsubscribe

    def decode(self, type_id: int, payload: bytes) -> Any:
        """A reply's payload as an instance (a list for a batch); DriverError for an ERROR."""
        if type_id == ControlType.ERROR:
            raise driver_error(*parse_error(payload))
        entry = self.entries.get(type_id)
        if entry is None:
            raise ProtocolError(f"reply of unknown type {type_id}")
        size = entry.info.size
        if not payload or len(payload) % size:
            raise ProtocolError(f"{entry.info.name} reply of {len(payload)} bytes is not whole records")
        cls = entry.cls
        if len(payload) == size:
            return cls.unpack(payload)
        return [cls.unpack(payload[i:i + size]) for i in range(0, len(payload), size)]
