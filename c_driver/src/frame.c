/* frame.c -- the wire framing of libcbridge: header encode/decode, the
 * frame parser and the error names. Pure (no I/O, no allocation, no server
 * state) and built on its own by the Python extension, so that both sides
 * share this fuzzed parser: keep it needing only cbridge.h, cb_internal.h
 * (for the LE helpers) and libc. */

#include "cbridge.h"
#include "cb_internal.h"

void cb_header_encode(const cb_header *h, unsigned char out[CB_HEADER_SIZE]) {
    cb_put_u16(out + 0, h->magic);
    out[2] = h->version;
    out[3] = h->flags;
    cb_put_u32(out + 4, h->type_id);
    cb_put_u32(out + 8, h->seq);
    cb_put_u32(out + 12, h->length);
}

void cb_header_decode(const unsigned char in[CB_HEADER_SIZE], cb_header *h) {
    h->magic = cb_get_u16(in + 0);
    h->version = in[2];
    h->flags = in[3];
    h->type_id = cb_get_u32(in + 4);
    h->seq = cb_get_u32(in + 8);
    h->length = cb_get_u32(in + 12);
}

cb_header cb_header_make(uint8_t flags, uint32_t type_id, uint32_t seq, uint32_t length) {
    cb_header h;
    h.magic = CB_MAGIC;
    h.version = CB_PROTO_VERSION;
    h.flags = flags;
    h.type_id = type_id;
    h.seq = seq;
    h.length = length;
    return h;
}

int cb_frame_parse(const unsigned char *buf, size_t len, uint32_t max_payload,
                   cb_header *h, size_t *frame_len) {
    if (len < CB_HEADER_SIZE) {
        *frame_len = CB_HEADER_SIZE;
        return CB_PARSE_NEED_MORE;
    }
    cb_header_decode(buf, h);
    *frame_len = 0;
    if (h->magic != CB_MAGIC) return CB_E_BAD_MAGIC;
    if (h->version != CB_PROTO_VERSION) return CB_E_BAD_VERSION;
    if (h->length > max_payload) return CB_E_TOO_LARGE;
    *frame_len = (size_t)CB_HEADER_SIZE + h->length;
    return len < *frame_len ? CB_PARSE_NEED_MORE : CB_PARSE_FRAME;
}

const char *cb_error_name(int code) {
    static const char *const names[] = {
        "UNKNOWN", "BAD_MAGIC", "BAD_VERSION", "TOO_LARGE", "UNKNOWN_TYPE",
        "BAD_LENGTH", "BAD_REQUEST", "UNAVAILABLE", "OVERLOADED"};
    if (code < 1 || code > CB_E_OVERLOADED) return names[0];
    return names[code];
}
