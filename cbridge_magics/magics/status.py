"""``%cbridge status``: the link, its types and counters, plots, recordings and relay clients, as
lines of text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import cstruct


def lines(b: Any, plots: Mapping[str, Any]) -> list[str]:
    """The report of Bridge ``b`` (None: not connected) and the magics' ``plots``."""
    if b is None:
        return ["cbridge: not connected"]
    st = b.stats()
    out = [f"cbridge: {st.state} to {st.url} ({st.driver}), reconnects {st.reconnects}"]
    if st.last_error:
        out.append(f"  last error: {st.last_error}")
    checks = b.match(cstruct.registry.values()).by_name() if b.schema else {}
    for name, counts in st.types.items():
        off = st.streams is not None and name not in st.streams
        out.append(f"  {name:<20} {counts.records:>12,} records {counts.frames:>10,} frames"
                   f"  {checks.get(name, '')}{'  (not subscribed)' if off else ''}")
    if st.streams is not None:
        how = {True: "the driver filters", False: "filtered here (no SUBSCRIBE in the "
               "driver)", None: "not answered yet"}[b.subscribe_supported]
        out.append(f"  streams: {', '.join(st.streams) or 'none'} ({how})")
    out.append(f"  drops: {st.drops()}; {st.pending} requests waiting")
    if st.lost_bytes:
        out.append(f"  bytes of records cut off by the end of a connection: {st.lost_bytes:,}")
    if st.errors_seen:
        out.append(f"  background errors: {st.errors_seen:,} ({st.errors_unlogged:,} over "
                   "the log's rate, counted only); the latest in bridge.stats().recent_errors")
    out += [f"  plot {plot!r}" for plot in plots.values()]
    out += [f"  recording {recording_line(rec)}" for rec in st.recordings]
    for relay in b.relays:
        out.append(f"  serving ws://{relay.host}:{relay.port}/ (driver link "
                   f"{'up' if relay.driver_connected else 'DOWN'}), {len(relay.clients)} clients")
        clients = [(c, "") for c in relay.client_stats()]
        clients += [(c, " (left)") for c in relay.closed_clients]
        for c, left in clients:
            out.append(f"    client {c.id} from {c.peer}{left}: {c.delivered:,} stream frames "
                       f"delivered, {c.dropped:,} dropped, {c.queued_bytes / 2**20:.1f} MiB "
                       f"queued, {c.requests:,} requests")
    return out


def recording_line(st: dict[str, Any]) -> str:
    """One recording's state: its file, bytes, records per type, and what it dropped."""
    records = ", ".join(f"{n} {c:,}" for n, c in st["records"].items()) or "no records"
    dropped = sum(st["dropped_frames"].values())
    line = f"{st['file']} {st['state']}, {st['bytes']:,} bytes, {records}"
    if dropped:
        line += f"; DROPPED {dropped:,} frames the disk could not keep up with " \
                f"({', '.join(f'{n} {c:,}' for n, c in st['dropped_frames'].items())})"
    if st["error"]:
        line += f"; {st['error']}"
    return line
