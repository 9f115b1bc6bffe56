"""cbridge: drive a C program from a Jupyter notebook.

    %load_ext cbridge_magics

or, from plain Python:

    from cbridge_magics import connect, cstruct
    b = connect("unix:///tmp/cbridge-demo.sock")

The package's rooms: ``wire`` (the protocol: codes, frames, HELLO, layouts, transports, the
compiled codec), ``cstruct`` (C declarations -> compiled classes), ``bridge`` and ``history`` (one
link to a driver and the ring its streams fill), ``relay`` (remote notebooks over a WebSocket),
``live`` (plots), ``magics`` (the IPython front), ``__main__`` (the command line). Importing this
package is cheap: the Bridge, numpy and the compiler tools load when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    CBridgeError,
    CStructError,
    DriverAway,
    DriverError,
    DriverUnavailable,
    LayoutMismatch,
    NotSupported,
    ProtocolError,
    RequestTimeout,
)

if TYPE_CHECKING:
    from . import cstruct
    from .bridge import Bridge, State, connect

from ._version import __version__  # written by the build, from pyproject.toml

# name -> module that defines it, imported on first use (PEP 562)
_LAZY = {"Bridge": "bridge", "State": "bridge", "connect": "bridge", "cstruct": "cstruct",
         "LinkStats": "link_stats"}

_magics = None  # the CBridgeMagics instance of the loaded extension


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    mod = importlib.import_module(f".{module}", __name__)
    value = mod if name == module else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Jupyter Server's entry: ``jupyter server extension enable cbridge_magics`` loads the relay
    host of cbridge_magics.relay.jupyter_host (configured as ``c.CBridgeApp.drivers``)."""
    from .relay.jupyter_host import CBridgeApp

    return [{"module": "cbridge_magics.relay.jupyter_host", "app": CBridgeApp}]


def load_ipython_extension(ip) -> None:  # type: ignore[no-untyped-def]
    """``%load_ext cbridge_magics``: register %%cstruct/%cstruct and %cbridge."""
    global _magics
    from .magics import CBridgeMagics, CStructMagics

    if _magics is not None:  # loaded again into the same shell: start from a clean state
        _magics.unload()
    ip.register_magics(CStructMagics)
    _magics = CBridgeMagics(ip)
    ip.register_magics(_magics)
    # %config finds the configurables the shell lists; ipython_config.py reached it through
    # the shell's config when it was made (Magics are configured by their shell)
    if _magics not in ip.configurables:
        ip.configurables.append(_magics)


def unload_ipython_extension(ip) -> None:  # type: ignore[no-untyped-def]
    """``%unload_ext cbridge_magics``: stop every thread the extension started."""
    global _magics
    if _magics is not None:
        _magics.unload()
        _magics = None


__all__ = [
    "Bridge",
    "LinkStats",
    "State",
    "connect",
    "cstruct",
    "CBridgeError",
    "CStructError",
    "DriverAway",
    "DriverError",
    "DriverUnavailable",
    "LayoutMismatch",
    "NotSupported",
    "ProtocolError",
    "RequestTimeout",
    "__version__",
    "load_ipython_extension",
    "unload_ipython_extension",
]
