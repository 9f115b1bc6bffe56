# cbridge.pxd -- Cython mirror of the wire part of c_driver/include/cbridge.h.
#
# What Cython code needs to read frames: the 16-byte header, its constants, and libcbridge's own
# frame parser (c_driver/src/frame.c, compiled into the extension that cimports this), so the one
# parser that is fuzzed and run under ASan serves C and Python alike. The C header is the authority
# (its static_asserts pin every offset); keep names in step with it.
#
#     from cbridge cimport cb_header, cb_frame_parse, CB_PARSE_FRAME, CB_HEADER_SIZE

from libc.stdint cimport uint8_t, uint16_t, uint32_t

cdef extern from "cbridge.h" nogil:
    enum:
        CB_MAGIC            # 0x4243, 'C','B' on the wire (little-endian)
        CB_PROTO_VERSION    # 1
        CB_FLAG_REPLY       # 0x01: answers the request with the same seq
        CB_FLAG_STREAM      # 0x02: unsolicited data
        CB_HEADER_SIZE      # 16
        CB_E_BAD_MAGIC      # error codes cb_frame_parse returns for a broken header
        CB_E_BAD_VERSION
        CB_E_TOO_LARGE
        CB_PARSE_FRAME      # 0: a whole frame is in the buffer
        CB_PARSE_NEED_MORE  # -1: read more bytes first

    ctypedef struct cb_header:
        uint16_t magic      # CB_MAGIC
        uint8_t version     # CB_PROTO_VERSION
        uint8_t flags       # CB_FLAG_REPLY | CB_FLAG_STREAM
        uint32_t type_id    # a control type (< 256) or a registered struct type id
        uint32_t seq        # request sequence; echoed by the reply
        uint32_t length     # payload bytes after the header

    # Pure: no I/O, no allocation. See cbridge.h for the results.
    int cb_frame_parse(const unsigned char *buf, size_t len, uint32_t max_payload,
                       cb_header *h, size_t *frame_len)
