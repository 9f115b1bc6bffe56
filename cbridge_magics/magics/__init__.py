"""The IPython magics of cbridge, one class per topic.

- ``cstruct_magic``: ``%%cstruct`` / ``%cstruct`` (C declarations -> compiled classes).
- ``cbridge_magic``: ``%cbridge`` (connect, send, plot, serve...), its subcommands in ``commands``.
- ``thread_log``: what background threads log, reported under the next cell.
"""

from __future__ import annotations

from .cbridge_magic import CBridgeMagics
from .cstruct_magic import CStructMagics

__all__ = ["CBridgeMagics", "CStructMagics"]
