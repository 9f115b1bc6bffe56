"""The live scope: streamed fields drawn in the browser from numbers (``widget.Scope``).

    from cbridge_magics.scope import Scope
    Scope(bridge, "Telemetry.samples", window=100_000, time="t0:dt").show()

or ``%cbridge scope Telemetry.samples --window 100000 --time t0:dt``.
"""

from .widget import Scope

__all__ = ["Scope"]
