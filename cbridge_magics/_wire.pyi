from typing import Any

BAD_MAGIC: int
BAD_VERSION: int
TOO_LARGE: int

class FrameError(Exception):
    code: int
    seq: int
    def __init__(self, code: int, seq: int, message: str) -> None: ...

class FrameReader:
    max_payload: int
    bytes_in: int
    frames_out: int
    def __init__(self, max_payload: int = ...) -> None: ...
    @property
    def pending(self) -> int: ...
    def recv_fd(self, fd: int) -> int: ...
    def feed(self, data: Any) -> list[tuple[int, int, int, bytes]]: ...
    def frames(self) -> list[tuple[int, int, int, bytes]]: ...
