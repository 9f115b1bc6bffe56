"""Expected failures in a magic are one message with the next step, not cbridge's traceback.

A ``CBridgeError`` raised by a magic keeps its type (a notebook run by nbclient still fails on a
``DriverUnavailable``), and IPython shows it through ``_render_traceback_`` as its message and
a hint of what to do. ``%xmode verbose`` brings the whole traceback back, for bug reports.
"""

from __future__ import annotations

from typing import Any

from ..errors import (
    CBridgeError,
    CStructError,
    DriverAway,
    DriverError,
    DriverUnavailable,
    LayoutMismatch,
    ProtocolError,
    RequestTimeout,
)


def next_step(e: CBridgeError, command: str) -> str | None:
    """What the user can do about ``e``, raised by ``%cbridge command`` (or ``%cstruct``)."""
    if isinstance(e, DriverAway):
        return ("The relay has lost its driver (ERROR 7); it reconnects by itself: retry in a "
                "moment, or ask whoever runs the driver's side (%cbridge status there says why).")
    if isinstance(e, DriverUnavailable):
        if command == "connect":
            return ("Is the driver running, on that socket? Start it (the demo: "
                    "cbridge-demo-driver --socket /tmp/cbridge-demo.sock), then connect again.")
        return ("The link to the driver is down: %cbridge status says why. It reconnects by "
                "itself; or %cbridge connect again.")
    if isinstance(e, RequestTimeout):
        return ("The driver did not answer in time: is it busy, or stopped? "
                "%cbridge send --timeout S waits longer.")
    if isinstance(e, DriverError):
        return "The driver refused it, for the reason it gives: change what it names and retry."
    if isinstance(e, LayoutMismatch):
        return ("Your declaration of that struct is not the driver's: compile the header the "
                "driver was built from (%cstruct --header FILE.h), or rebuild the driver.")
    if isinstance(e, CStructError):
        return None  # its message is the compiler's, on the cell's own line numbers
    if isinstance(e, ProtocolError):
        return "Is that address a cbridge driver or relay? Its bytes are not the protocol."
    return None


def briefly(e: CBridgeError, shell: Any, command: str) -> None:
    """Have IPython show ``e`` as its message and the next step (unless %xmode is verbose)."""
    hint = next_step(e, command)

    def render() -> list[str]:
        tb = shell.InteractiveTB
        if getattr(tb, "mode", None) == "Verbose":
            return tb.structured_traceback(type(e), e, e.__traceback__)
        return [f"{type(e).__name__}: {e}", *([hint] if hint else []),
                "(%xmode verbose, then run the cell again, shows the traceback)"]

    e._render_traceback_ = render  # type: ignore[attr-defined]
