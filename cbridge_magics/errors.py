"""The exception family of cbridge: everything cbridge raises on purpose derives from CBridgeError."""

from __future__ import annotations

from .wire.codes import ErrorCode, error_name


class CBridgeError(Exception):
    """Base of every error cbridge raises on purpose (bugs raise whatever they raise)."""


class ProtocolError(CBridgeError):
    """A peer sent bytes that break the wire protocol (bad magic, version, length...)."""


class DriverError(CBridgeError):
    """The driver answered a request with an ERROR frame.

    ``code`` is the protocol error code (see ``wire.ErrorCode``), ``message`` the driver's text.
    """

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"driver error {code} {error_name(code)}: {message}")


class DriverUnavailable(CBridgeError):
    """There is no working connection to the driver (not yet, or not any more)."""


class DriverAway(DriverError, DriverUnavailable):
    """ERROR 7 UNAVAILABLE: a relay answered for a driver it has lost (or a replay has no reply
    left). Both a DriverError (``code``, ``message``) and DriverUnavailable, as a request over a
    lost local link raises: ``except DriverUnavailable`` catches the driver being away whatever
    the hop."""


def driver_error(code: int, message: str) -> DriverError:
    """The exception for an ERROR frame answering a request."""
    return (DriverAway if code == ErrorCode.UNAVAILABLE else DriverError)(code, message)


class LayoutMismatch(CBridgeError):
    """A struct's layout here differs from the driver's schema; nothing of that type is sent or decoded."""


class RequestTimeout(CBridgeError, TimeoutError):
    """A request got no reply within its timeout."""


class NotSupported(CBridgeError):
    """The link cannot do this: ``request()`` on a raw link, say, where nothing pairs a reply
    with its request."""


class CStructError(CBridgeError):
    """A C declaration could not be turned into a compiled class (the message carries the compiler's words)."""
