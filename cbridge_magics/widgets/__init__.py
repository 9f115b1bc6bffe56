"""ipywidgets for a driver: a control panel made from a struct class, and a console of the link.

    from cbridge_magics.widgets import Panel, Console
    p = Panel(Command, bridge, choices={"op": "DEMO_OP_"})     # %cbridge panel Command --choices op=DEMO_OP_
    c = Console(bridge)                                         # %cbridge console

``form`` turns a class's layout into inputs, ``panel`` and ``console`` are the two widgets,
``tables`` their HTML tables, and ``threads`` how they work off the kernel's own threads (see its
docstring).
"""

from __future__ import annotations

from .console import Console
from .form import Form
from .panel import Panel, reply_table

__all__ = ["Panel", "Console", "Form", "reply_table", "stop_all"]


def stop_all() -> None:
    """Stop every panel worker and console thread (``%cbridge disconnect``, unload, exit)."""
    from . import console, threads

    console.stop_all()
    threads.stop_all()
