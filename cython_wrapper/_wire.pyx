# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The frame codec: turn a byte stream into protocol frames, fast.

Every header is judged by libcbridge's own ``cb_frame_parse`` (c_driver/src/frame.c, compiled into
this module): the parser the driver uses, fuzzed and run under ASan, is the one Python uses too.

A FrameReader owns one receive buffer big enough for the largest frame (16 + max_payload bytes).
``recv_fd(fd)`` reads from a blocking socket without holding the GIL, then ``frames()`` returns every
complete frame as ``(type_id, flags, seq, payload)`` tuples and keeps an incomplete tail for the next
read. ``feed(data)`` does both for bytes that arrived some other way (a WebSocket message).

    reader = FrameReader(1 << 20)
    for type_id, flags, seq, payload in reader.feed(data):
        ...
"""

from libc.errno cimport errno, EINTR
from libc.stdint cimport uint8_t, uint32_t, UINT32_MAX
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memmove
from cpython.bytes cimport PyBytes_FromStringAndSize

from cbridge cimport (cb_header, cb_frame_parse, CB_HEADER_SIZE, CB_PARSE_FRAME,
                      CB_PARSE_NEED_MORE, CB_E_BAD_MAGIC, CB_E_BAD_VERSION, CB_E_TOO_LARGE)

cdef extern from "<sys/socket.h>" nogil:
    ssize_t recv(int fd, void *buf, size_t n, int flags)

cdef enum:
    # The read size is a compromise: big enough that a stream of 18 KiB frames costs few syscalls,
    # small enough that the tail memmove after each batch stays cheap.
    READ_CHUNK = 262144

# The error codes a broken header gets (FrameError.code), from cbridge.h.
BAD_MAGIC = CB_E_BAD_MAGIC
BAD_VERSION = CB_E_BAD_VERSION
TOO_LARGE = CB_E_TOO_LARGE


class FrameError(Exception):
    """A header broke the protocol; ``code`` is the protocol error code, ``seq`` the header's seq."""

    def __init__(self, code, seq, message):
        super().__init__(message)
        self.code = code
        self.seq = seq


cdef object _frame_error(int code, const cb_header *h, uint32_t max_payload, Py_ssize_t at):
    where = f" at byte {at}" if at >= 0 else ""
    if code == CB_E_BAD_MAGIC:
        text = f"bad magic 0x{h.magic:04x}{where} (expected 0x4243)"
    elif code == CB_E_BAD_VERSION:
        text = f"unsupported protocol version {h.version}{where}"
    else:
        text = f"payload of {h.length} bytes{where} exceeds the maximum {max_payload}"
    return FrameError(code, h.seq, text)


cdef class FrameReader:
    cdef uint8_t *buf
    cdef Py_ssize_t cap, start, end
    cdef readonly uint32_t max_payload
    cdef readonly unsigned long long bytes_in, frames_out

    def __cinit__(self, uint32_t max_payload=1048576):
        self.max_payload = max_payload
        self.cap = CB_HEADER_SIZE + <Py_ssize_t>max_payload + READ_CHUNK
        self.buf = <uint8_t *>malloc(self.cap)
        if self.buf == NULL:
            raise MemoryError()
        self.start = 0
        self.end = 0

    def __dealloc__(self):
        free(self.buf)

    def limit(self, uint32_t max_payload):
        """Judge frames against ``max_payload`` from now on, the buffer resized to fit it and the
        bytes held kept (a client learns the driver's limit from its HELLO, with what followed
        it possibly read already)."""
        cdef Py_ssize_t cap = CB_HEADER_SIZE + <Py_ssize_t>max_payload + READ_CHUNK
        cdef uint8_t *buf
        self._compact()
        if cap < self.end:
            cap = self.end
        buf = <uint8_t *>realloc(self.buf, cap)
        if buf == NULL:
            raise MemoryError()
        self.buf = buf
        self.cap = cap
        self.max_payload = max_payload

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
        cdef cb_header h
        cdef size_t flen
        cdef int r
        while True:
            p = self.buf + self.start
            r = cb_frame_parse(p, self.end - self.start, self.max_payload, &h, &flen)
            if r == CB_PARSE_NEED_MORE:
                break
            if r != CB_PARSE_FRAME:
                raise _frame_error(r, &h, self.max_payload, -1)
            out.append((h.type_id, h.flags, h.seq,
                        PyBytes_FromStringAndSize(<const char *>p + CB_HEADER_SIZE, h.length)))
            self.start += flen
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
    cdef cb_header h
    cdef size_t flen
    cdef int r
    if record_size <= 0:
        raise ValueError("record_size must be positive")
    # Two passes over the headers: size the output once, then one memcpy per frame.
    while off < n:
        r = cb_frame_parse(&view[off], n - off, UINT32_MAX, &h, &flen)
        if r == CB_PARSE_NEED_MORE:
            what = "header" if n - off < CB_HEADER_SIZE else "frame"
            raise ValueError(f"the buffer ends inside a frame {what} at byte {off}")
        if r != CB_PARSE_FRAME:
            raise _frame_error(r, &h, UINT32_MAX, off)
        if h.type_id == type_id:
            if h.length % record_size:
                raise ValueError(f"a frame at byte {off} holds {h.length} bytes, not whole records")
            total += h.length
        off += flen
    # numpy.empty, not bytearray: no zero-filling of memory that is overwritten at once.
    import numpy
    out = numpy.empty(total, numpy.uint8)
    cdef uint8_t[::1] dst = out
    off = 0
    while off < n and total:
        cb_frame_parse(&view[off], n - off, UINT32_MAX, &h, &flen)
        if h.type_id == type_id and h.length:
            memcpy(&dst[at], &view[off] + CB_HEADER_SIZE, h.length)
            at += h.length
        off += flen
    return out if dtype is None else out.view(dtype)
