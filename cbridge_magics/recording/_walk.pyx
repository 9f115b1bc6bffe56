# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The walk of a recording's entry headers, compiled: opening a 1 GB recording reads one header
per entry (16 bytes, plus the frame's 16), and a Python loop over 60,000 of them took 170 ms.

    ix = walk(memoryview_of_the_map, 16, size)   # dict of numpy arrays, one row per entry

The rules are format.scan's (stop before an entry that runs past the end, whose length is
damage, or of kind 0) and reader._index's (a frame entry must hold one whole frame). HELLO
bodies are left for Python to parse: ``kind == 1`` rows, few.
"""

import numpy as np

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy

cdef enum:
    ENTRY_SIZE = 16  # format.ENTRY_SIZE
    FRAME_HEADER = 16  # wire.codes.HEADER_SIZE
    ALIGN = 8
    RECEIVED = 2
    SENT = 3
    SENT_HEADER = 4

cdef uint32_t MAX_BODY = 0x80000000  # format.MAX_BODY


# The file and the wire are little-endian: decoded byte by byte, so any host reads them.
cdef inline uint32_t _u32(const uint8_t *p) noexcept nogil:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline double _f64(const uint8_t *p) noexcept nogil:
    cdef uint64_t bits = _u32(p) | (<uint64_t>_u32(p + 4) << 32)
    cdef double v
    memcpy(&v, &bits, 8)
    return v


ctypedef packed struct Row:  # one entry: numpy's ROW below, field for field
    int64_t offset
    int64_t length
    double time
    uint32_t kind
    uint32_t type_id
    uint32_t flags
    uint32_t seq

ROW = np.dtype([("offset", "<i8"), ("length", "<i8"), ("time", "<f8"), ("kind", "<u4"),
                ("type_id", "<u4"), ("flags", "<u4"), ("seq", "<u4")])


cdef struct Walk:
    Py_ssize_t pos, end, filled
    uint16_t magic
    uint8_t version
    int bad  # 1: an entry too short for a frame header; 2: a damaged frame
    uint32_t length, plen  # the damaged entry's


cdef bint _fill(const uint8_t[::1] buf, Row[::1] rows, Walk *w) noexcept nogil:
    """Walk on from ``w.pos`` into ``rows[w.filled:]``; False when the walk is over (the end,
    damage, or the next entry would not be whole), True when ``rows`` is full."""
    cdef uint32_t kind, length, plen
    cdef Py_ssize_t pos = w.pos, body
    cdef Row *r
    while pos + ENTRY_SIZE <= w.end:
        if w.filled == rows.shape[0]:
            w.pos = pos
            return True
        kind = _u32(&buf[pos])
        length = _u32(&buf[pos + 4])
        body = pos + ENTRY_SIZE
        if length > MAX_BODY or body + <Py_ssize_t>length > w.end or kind == 0:
            break
        r = &rows[w.filled]
        r.offset, r.kind, r.time = body, kind, _f64(&buf[pos + 8])
        r.type_id = r.flags = r.seq = 0
        plen = length
        if kind == RECEIVED or kind == SENT or kind == SENT_HEADER:
            w.length = length
            if length < FRAME_HEADER:
                w.bad = 1
                break
            plen = _u32(&buf[body + 12])
            w.plen = plen
            if (buf[body] | (<uint16_t>buf[body + 1] << 8)) != w.magic \
                    or buf[body + 2] != w.version \
                    or (kind != SENT_HEADER and <Py_ssize_t>plen + FRAME_HEADER != length):
                w.bad = 2
                break
            r.flags = buf[body + 3]
            r.type_id = _u32(&buf[body + 4])
            r.seq = _u32(&buf[body + 8])
        r.length = plen
        w.filled += 1
        pos = body + length + (-<Py_ssize_t>length & (ALIGN - 1))
    w.pos = pos
    return False


def walk(const uint8_t[::1] buf, Py_ssize_t start, Py_ssize_t end,
         uint16_t magic, uint8_t version):
    """Every whole entry of ``buf[start:end]`` as arrays (offset of the body, kind, time,
    type_id, flags, seq, payload length), the byte after the last one, and what stopped the
    walk early (``None``, or a sentence naming the byte). One pass: each header is a page the
    walk touches, the cost of a walk."""
    cdef Walk w
    w.pos, w.end, w.filled = start, min(end, buf.shape[0]), 0
    w.magic, w.version, w.bad = magic, version, 0
    rows = np.empty(1024, ROW)
    cdef Row[::1] view = rows
    cdef bint full
    while True:
        with nogil:
            full = _fill(buf, view, &w)
        if not full:
            break
        rows = np.concatenate((rows, np.empty(len(rows), ROW)))  # doubled: log2(n) times
        view = rows
    damage = None
    if w.bad == 1:
        damage = f"a frame entry of {w.length} bytes at byte {w.pos + ENTRY_SIZE}"
    elif w.bad == 2:
        damage = f"a damaged frame at byte {w.pos + ENTRY_SIZE} (its header says {w.plen} " \
                 f"bytes, the entry holds {w.length - FRAME_HEADER})"
    rows = rows[:w.filled]
    columns = {name: np.ascontiguousarray(rows[name]) for name in ROW.names}
    return columns, min(w.pos, w.end), damage
