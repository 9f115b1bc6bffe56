# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The frame codec: turn a byte stream into protocol frames, fast.

A FrameReader owns one receive buffer big enough for the largest frame (16 + max_payload bytes).
``recv_fd(fd)`` reads from a blocking socket without holding the GIL, then ``frames()`` returns every
complete frame as ``(type_id, flags, seq, payload)`` tuples and keeps an incomplete tail for the next
read. ``feed(data)`` does both for bytes that arrived some other way (a WebSocket message).

    reader = FrameReader(1 << 20)
    for type_id, flags, seq, payload in reader.feed(data):
        ...
"""

from libc.errno cimport errno, EINTR
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memmove
from cpython.bytes cimport PyBytes_FromStringAndSize

cdef extern from "<sys/socket.h>" nogil:
    ssize_t recv(int fd, void *buf, size_t n, int flags)

cdef enum:
    HEADER_SIZE = 16
    # The read size is a compromise: big enough that a stream of 18 KiB frames costs few syscalls,
    # small enough that the tail memmove after each batch stays cheap.
    READ_CHUNK = 262144
cdef uint16_t MAGIC = 0x4243
cdef uint8_t VERSION = 1

# Error codes of the protocol, repeated here so the codec can say which rule a header broke.
BAD_MAGIC = 1
BAD_VERSION = 2
TOO_LARGE = 3


class FrameError(Exception):
    """A header broke the protocol; ``code`` is the protocol error code, ``seq`` the header's seq."""

    def __init__(self, code, seq, message):
        super().__init__(message)
        self.code = code
        self.seq = seq


cdef inline uint32_t _u32(const uint8_t *p) noexcept nogil:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef class FrameReader:
    cdef uint8_t *buf
    cdef Py_ssize_t cap, start, end
    cdef readonly uint32_t max_payload
    cdef readonly unsigned long long bytes_in, frames_out

    def __cinit__(self, uint32_t max_payload=1048576):
        self.max_payload = max_payload
        self.cap = HEADER_SIZE + <Py_ssize_t>max_payload + READ_CHUNK
        self.buf = <uint8_t *>malloc(self.cap)
        if self.buf == NULL:
            raise MemoryError()
        self.start = 0
        self.end = 0

    def __dealloc__(self):
        free(self.buf)

    @property
    def pending(self):
        """Bytes held that do not make a whole frame yet."""
        return self.end - self.start

    cdef void _compact(self) noexcept nogil:
        if self.start > 0:
            if self.end > self.start:
                memmove(self.buf, self.buf + self.start, self.end - self.start)
            self.end -= self.start
            self.start = 0

    def recv_fd(self, int fd):
        """Read once from a blocking socket, GIL released. Returns bytes read; 0 means the peer closed."""
        cdef ssize_t n
        cdef Py_ssize_t room
        self._compact()
        room = self.cap - self.end
        if room > READ_CHUNK:
            room = READ_CHUNK
        while True:
            with nogil:
                n = recv(fd, self.buf + self.end, room, 0)
            if n >= 0:
                break
            if errno != EINTR:
                raise OSError(errno, "recv failed")
        self.end += n
        self.bytes_in += n
        return n

    def feed(self, data):
        """Append bytes (any buffer, any size) and return the complete frames, as ``frames()`` does."""
        cdef const uint8_t[::1] view = data
        cdef Py_ssize_t n = view.shape[0], done = 0, take
        cdef list out = []
        while done < n:
            self._compact()
            take = min(n - done, self.cap - self.end)
            memcpy(self.buf + self.end, &view[done], take)
            self.end += take
            self.bytes_in += take
            done += take
            out.extend(self.frames())
        return out

    def frames(self):
        """Every complete frame buffered, as (type_id, flags, seq, payload) tuples; payload is bytes."""
        cdef list out = []
        cdef const uint8_t *p
        cdef uint32_t length, type_id, seq
        cdef uint16_t magic
        while self.end - self.start >= HEADER_SIZE:
            p = self.buf + self.start
            magic = <uint16_t>(p[0] | (p[1] << 8))
            seq = _u32(p + 8)
            if magic != MAGIC:
                raise FrameError(BAD_MAGIC, seq, f"bad magic 0x{magic:04x} (expected 0x4243)")
            if p[2] != VERSION:
                raise FrameError(BAD_VERSION, seq, f"unsupported protocol version {p[2]}")
            length = _u32(p + 12)
            if length > self.max_payload:
                raise FrameError(TOO_LARGE, seq, f"payload of {length} bytes exceeds the maximum {self.max_payload}")
            if self.end - self.start < HEADER_SIZE + <Py_ssize_t>length:
                break
            type_id = _u32(p + 4)
            out.append((type_id, p[3], seq,
                        PyBytes_FromStringAndSize(<const char *>p + HEADER_SIZE, length)))
            self.start += HEADER_SIZE + length
            self.frames_out += 1
        if self.start == self.end:
            self.start = self.end = 0
        return out


def decode_records(data, uint32_t type_id, Py_ssize_t record_size, dtype=None):
    """Every record of one type in a buffer of whole frames, copied into one new array.

    Frames of other types are skipped. Raises FrameError on a header that breaks the protocol and
    ValueError when the buffer ends inside a frame or a payload is not whole records. With
    ``dtype`` the result is a numpy structured array, else a uint8 array of the records' bytes.

        recs = decode_records(stream, 258, Telemetry.size, Telemetry.dtype)
    """
    cdef const uint8_t[::1] view = data
    cdef Py_ssize_t n = view.shape[0], off = 0, total = 0, at = 0
    cdef const uint8_t *p
    cdef uint32_t length
    if record_size <= 0:
        raise ValueError("record_size must be positive")
    # Two passes over the headers: size the output once, then one memcpy per frame.
    while off < n:
        if n - off < HEADER_SIZE:
            raise ValueError(f"the buffer ends inside a frame header at byte {off}")
        p = &view[off]
        if <uint16_t>(p[0] | (p[1] << 8)) != MAGIC:
            raise FrameError(BAD_MAGIC, _u32(p + 8), f"bad magic at byte {off}")
        if p[2] != VERSION:
            raise FrameError(BAD_VERSION, _u32(p + 8), f"unsupported protocol version {p[2]}")
        length = _u32(p + 12)
        if n - off - HEADER_SIZE < <Py_ssize_t>length:
            raise ValueError(f"the buffer ends inside the frame at byte {off}")
        if _u32(p + 4) == type_id:
            if length % record_size:
                raise ValueError(f"a frame at byte {off} holds {length} bytes, not whole records")
            total += length
        off += HEADER_SIZE + length
    # numpy.empty, not bytearray: no zero-filling of memory that is overwritten at once.
    import numpy
    out = numpy.empty(total, numpy.uint8)
    cdef uint8_t[::1] dst = out
    off = 0
    while off < n and total:
        p = &view[off]
        length = _u32(p + 12)
        if _u32(p + 4) == type_id and length:
            memcpy(&dst[at], p + HEADER_SIZE, length)
            at += length
        off += HEADER_SIZE + length
    return out if dtype is None else out.view(dtype)
