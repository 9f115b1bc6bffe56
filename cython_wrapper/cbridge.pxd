# cbridge.pxd -- Cython mirror of the wire part of c_driver/include/cbridge.h.
#
# Only what Cython code needs to read frames: the 16-byte header struct and its constants.
# The C header is the authority (its static_asserts pin every offset); keep names in step with it.
#
#     from cbridge cimport cb_header, CB_MAGIC, CB_HEADER_SIZE

from libc.stdint cimport uint8_t, uint16_t, uint32_t

cdef extern from "cbridge.h":
    enum:
        CB_MAGIC            # 0x4243, 'C','B' on the wire (little-endian)
        CB_PROTO_VERSION    # 1
        CB_FLAG_REPLY       # 0x01: answers the request with the same seq
        CB_FLAG_STREAM      # 0x02: unsolicited data
        CB_HEADER_SIZE      # 16

    ctypedef struct cb_header:
        uint16_t magic      # CB_MAGIC
        uint8_t version     # CB_PROTO_VERSION
        uint8_t flags       # CB_FLAG_REPLY | CB_FLAG_STREAM
        uint32_t type_id    # a control type (< 256) or a registered struct type id
        uint32_t seq        # request sequence; echoed by the reply
        uint32_t length     # payload bytes after the header
