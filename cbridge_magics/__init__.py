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
]
