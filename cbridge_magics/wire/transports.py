"""How frames travel: a small interface with one class per kind of link.

``UnixTransport`` talks to the driver's Unix socket, ``WebSocketTransport`` to a relay, and
``wire.raw.RawTransport`` to a program that speaks bare structs. Every transport has the same six
calls, used by the Bridge's reader thread (``read``) and by callers
(``send``, under the Bridge's send lock):

    t = transport_for("unix:///tmp/cbridge-demo.sock")
    t.open(timeout=5.0)
    frames = t.read(reader)        # blocks; [(type_id, flags, seq, payload), ...]
    t.send(frame_bytes)
    t.finish()                     # no more sends: the peer reads what we sent, then closes
    t.shutdown(); t.close()        # shutdown wakes a read blocked in another thread
"""

from __future__ import annotations

import select
import socket
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..errors import DriverUnavailable, ProtocolError
from ._wire import FrameError, FrameReader

Frame = tuple[int, int, int, bytes]


class ConnectionClosed(DriverUnavailable):
    """The peer closed the link (or it broke) while we were using it."""


class Transport(Protocol):
    url: str

    def open(self, timeout: float) -> None: ...
    def read(self, reader: FrameReader, timeout: float | None = None) -> list[Frame]: ...
    def send(self, data: bytes) -> None: ...
    def finish(self) -> None: ...
    def shutdown(self) -> None: ...
    def close(self) -> None: ...


class SocketTransport:
    """A stream socket (Unix or TCP): opening, sending and the two ways of ending it. Reading is
    the subclass's: framed (UnixTransport) or bare records (wire.raw.RawTransport)."""

    def __init__(self, url: str, family: int, address: Any) -> None:
        self.url = url
        self.family = family
        self.address = address
        self._sock: socket.socket | None = None

    def open(self, timeout: float) -> None:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.address)
        except OSError as e:
            sock.close()
            raise DriverUnavailable(f"cannot connect to {self.url}: {e.strerror or e}") from None
        if self.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Blocking from here on: the reader thread waits in recv() with the GIL released, and
        # shutdown() is what wakes it.
        sock.settimeout(None)
        self._sock = sock

    def _fd(self) -> int:
        if self._sock is None:
            raise ConnectionClosed(f"{self.url} is not open")
        return self._sock.fileno()

    def _wait(self, fd: int, timeout: float | None) -> None:
        if timeout is not None and not select.select([fd], [], [], timeout)[0]:
            raise TimeoutError(f"nothing from {self.url} within {timeout} s")

    def send(self, data: bytes) -> None:
        if self._sock is None:
            raise ConnectionClosed(f"{self.url} is not open")
        try:
            self._sock.sendall(data)
        except OSError as e:
            raise ConnectionClosed(f"{self.url}: {e.strerror or e}") from None

    def finish(self) -> None:
        """Half-close: the peer reads everything sent so far, then end of file, and closes in
        turn (our reads go on until then). Closing both ways at once instead can make the
        peer's next write fail before it has read what we sent last."""
        self._shut(socket.SHUT_WR)

    def shutdown(self) -> None:
        self._shut(socket.SHUT_RDWR)  # wakes a read blocked in the reader thread

    def _shut(self, how: int) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(how)
            except OSError:
                pass  # already disconnected

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class UnixTransport(SocketTransport):
    """The driver's Unix socket; reads go straight into the FrameReader without the GIL."""

    def __init__(self, path: str) -> None:
        super().__init__(f"unix://{path}", socket.AF_UNIX, path)
        self.path = path

    def read(self, reader: FrameReader, timeout: float | None = None) -> list[Frame]:
        fd = self._fd()
        while True:
            self._wait(fd, timeout)
            try:
                n = reader.recv_fd(fd)
            except OSError as e:
                raise ConnectionClosed(f"{self.url}: {e.strerror or e}") from None
            if n == 0:
                raise ConnectionClosed(f"{self.url} closed the connection")
            try:
                frames = reader.frames()
            except FrameError as e:
                raise ProtocolError(f"{self.url} sent a bad frame: {e}") from None
            if frames:
                return frames


MAX_MESSAGE = 16 << 20
"""The largest WebSocket message a remote Bridge accepts. A relay sends at most its max_message
(1 MiB and a header by default) in one message, or one frame when a frame is larger; this bound is
what keeps a foreign server from filling the kernel's memory."""


class WebSocketTransport:
    """A relay's WebSocket (websocket-client). One binary message holds whole frames."""

    def __init__(self, url: str, token: str | None = None, max_message: int = MAX_MESSAGE,
                 ca_file: str | None = None) -> None:
        self.url = url
        self.token = token
        self.ca_file = ca_file  # wss://: the certificates to verify the server with
        self.max_message = max_message
        self._ws: Any = None
        self._broken = False  # mid-frame after a refused message: no polite close, only the end

    def open(self, timeout: float) -> None:
        import websocket

        header = [f"Authorization: token {self.token}"] if self.token else []
        try:
            # wss:// is always verified: against ca_file when given, else the system's CAs
            ssl = {"ca_certs": self.ca_file} if self.ca_file else None
            ws = websocket.create_connection(self.url, timeout=timeout, header=header, sslopt=ssl,
                                             enable_multithread=True, skip_utf8_validation=True)
        except websocket.WebSocketBadStatusException as e:
            code = getattr(e, "status_code", "?")
            hint = " (wrong or missing token, or Origin not allowed)" if code == 403 else ""
            raise DriverUnavailable(f"{_safe(self.url)} refused the connection: HTTP {code}{hint}") from None
        except (OSError, websocket.WebSocketException) as e:
            raise DriverUnavailable(f"cannot connect to {_safe(self.url)}: {e}") from None
        ws.settimeout(None)  # the reader thread blocks in recv; shutdown() wakes it
        _bound_messages(ws, self.max_message)
        self._ws = ws

    def read(self, reader: FrameReader, timeout: float | None = None) -> list[Frame]:
        import websocket

        ws = self._ws
        if ws is None:
            raise ConnectionClosed(f"{_safe(self.url)} is not open")
        while True:
            try:
                if timeout is not None:
                    ws.settimeout(timeout)
                opcode, data = ws.recv_data()  # answers the relay's pings on the way
            except websocket.WebSocketTimeoutException:
                raise TimeoutError(f"nothing from {_safe(self.url)} within {timeout} s") from None
            except _TooLarge as e:
                self._broken = True
                raise ProtocolError(f"{_safe(self.url)} sent {e}") from None
            except (OSError, websocket.WebSocketException) as e:
                raise ConnectionClosed(f"{_safe(self.url)}: {e or 'connection closed'}") from None
            finally:
                if timeout is not None and self._ws is not None:
                    ws.settimeout(None)
            if opcode == websocket.ABNF.OPCODE_CLOSE:  # websocket-client has answered it
                raise ConnectionClosed(f"{_safe(self.url)} closed the connection{_close_reason(data)}")
            if opcode != websocket.ABNF.OPCODE_BINARY:
                raise ProtocolError(f"{_safe(self.url)} sent a non-binary message (opcode {opcode})")
            try:
                frames = reader.feed(data)
            except FrameError as e:
                raise ProtocolError(f"{_safe(self.url)} sent a bad frame: {e}") from None
            if reader.pending:
                raise ProtocolError(f"{_safe(self.url)} sent a message that ends inside a frame")
            if frames:
                return frames

    def send(self, data: bytes) -> None:
        import websocket

        if self._ws is None:
            raise ConnectionClosed(f"{_safe(self.url)} is not open")
        try:
            self._ws.send_bytes(data)
        except (OSError, websocket.WebSocketException) as e:
            raise ConnectionClosed(f"{_safe(self.url)}: {e}") from None

    def finish(self) -> None:
        """The WebSocket closing handshake: a close frame after our last message; the relay
        handles what came before it, answers with its own close frame and closes. Closing the
        TCP socket with data still unread would reset it instead, and a reset discards what
        the network has not delivered yet."""
        import websocket

        if self._ws is not None and not self._broken:
            try:
                self._ws.send_close(websocket.STATUS_NORMAL, b"bridge closed")
            except (OSError, websocket.WebSocketException):
                pass  # already disconnected

    def shutdown(self) -> None:
        ws = self._ws
        if ws is not None and ws.sock is not None:
            try:
                ws.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already disconnected: nothing to wake

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            if not self._broken:  # its wait for the peer's close frame would read the message
                try:
                    ws.close(timeout=0.5)  # a polite close frame, if the link still stands
                except Exception:  # websocket-client raises its own errors besides OSError
                    pass
            ws.shutdown()  # close() skips the socket itself once the peer has gone


class _TooLarge(Exception):
    """A message above the bound, refused before its payload is read."""


def _bound_messages(ws: Any, limit: int) -> None:
    """Refuse a message above ``limit`` bytes as soon as a frame header announces it, before its
    payload is read (or allocated). websocket-client has no bound of its own: it reads a frame of
    any length it is told, and joins continuation frames without end."""
    frames, parts = ws.frame_buffer, ws.cont_frame
    recv_length = frames.recv_length

    def checked_length() -> None:
        recv_length()
        so_far = len(parts.cont_data[1]) if parts.cont_data else 0
        if frames.length + so_far > limit:
            raise _TooLarge(f"a message of at least {frames.length + so_far} bytes, above the "
                            f"bound of {limit}")

    frames.recv_length = checked_length


def _close_reason(payload: bytes) -> str:
    """' (code 1012: why)' from a close frame's payload, or '' when it has none."""
    if len(payload) < 2:
        return ""
    code = int.from_bytes(payload[:2], "big")
    why = payload[2:].decode("utf-8", "replace")
    return f" (code {code}: {why})" if why else f" (code {code})"


def _safe(url: str) -> str:
    """The URL without its query string, which may hold a token: never log that."""
    return url.split("?", 1)[0]


def socket_address(url: str) -> tuple[int, Any, str]:
    """(family, address, url) of ``unix:///path`` or ``tcp://host:port`` (any ``X+`` prefix
    ignored, as in ``raw+unix://``)."""
    parts = urlsplit(url)
    scheme = parts.scheme.rsplit("+", 1)[-1]
    if scheme == "unix":
        path = parts.path or parts.netloc
        if not path:
            raise ValueError(f"{url!r} names no socket path (write {parts.scheme}:///path/to.sock)")
        return socket.AF_UNIX, path, f"{parts.scheme}://{path}"
    if scheme == "tcp":
        if not parts.hostname or parts.port is None:
            raise ValueError(f"{url!r} needs a host and a port ({parts.scheme}://host:port)")
        return socket.AF_INET6 if ":" in parts.hostname else socket.AF_INET, \
            (parts.hostname, parts.port), f"{parts.scheme}://{parts.netloc}"
    raise ValueError(f"{_safe(url)!r}: unsupported scheme {parts.scheme!r}")


def transport_for(url: str, token: str | None = None, ca_file: str | None = None) -> Transport:
    """The transport a URL names: ``unix:///path/to.sock``, or ``ws://host:port/?token=...``.
    (``raw+unix://`` and ``raw+tcp://`` links are opened by ``wire.raw``: they need the record
    class.)"""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        _family, path, _url = socket_address(url)
        return UnixTransport(path)
    if parts.scheme in ("ws", "wss"):
        if not parts.hostname:
            raise ValueError(f"{_safe(url)!r} names no host")
        return WebSocketTransport(url, token, ca_file=ca_file)
    if parts.scheme in ("raw+unix", "raw+tcp"):
        raise ValueError(f"{_safe(url)!r} is a raw link: connect(url, recv=Class) opens it")
    raise ValueError(f"{_safe(url)!r}: unsupported scheme {parts.scheme!r} (use "
                     "unix:///path/to.sock, ws://host:port/?token=..., raw+unix:///path or "
                     "raw+tcp://host:port)")
