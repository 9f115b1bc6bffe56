"""cbridge: drive a C program from a Jupyter notebook.

    %load_ext cbridge_magics

or, from plain Python:

    from cbridge_magics import connect
    b = connect("unix:///tmp/cbridge-demo.sock")
"""

from __future__ import annotations

from .bridge import Bridge, State, connect
from .errors import (
    CBridgeError,
    CStructError,
    DriverError,
    DriverUnavailable,
    LayoutMismatch,
    ProtocolError,
    RequestTimeout,
)

__version__ = "0.1.0"

_magics = None  # the CBridgeMagics instance of the loaded extension


def load_ipython_extension(ip) -> None:  # type: ignore[no-untyped-def]
    """``%load_ext cbridge_magics``: register %%cstruct/%cstruct and %cbridge."""
    global _magics
    from .magics import CBridgeMagics, CStructMagics

    if _magics is not None:  # loaded again into the same shell: start from a clean state
        _magics.unload()
    ip.register_magics(CStructMagics)
    _magics = CBridgeMagics(ip)
    ip.register_magics(_magics)


def unload_ipython_extension(ip) -> None:  # type: ignore[no-untyped-def]
    """``%unload_ext cbridge_magics``: stop every thread the extension started."""
    global _magics
    if _magics is not None:
        _magics.unload()
        _magics = None

__all__ = [
    "Bridge",
    "State",
    "connect",
    "CBridgeError",
    "CStructError",
    "DriverError",
    "DriverUnavailable",
    "LayoutMismatch",
    "ProtocolError",
    "RequestTimeout",
    "__version__",
    "load_ipython_extension",
    "unload_ipython_extension",
]
