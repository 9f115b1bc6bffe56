/* fuzz_frames.c -- libFuzzer harness of the frame parser (make fuzz).
 *
 * The input is a byte stream as a client would send it; it is split into
 * frames the way the server does, and every answer of cb_frame_parse is
 * checked against the header it decoded. The first byte picks a small or
 * the default max_payload so that both boundaries get explored. */

#include "cbridge.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(c) \
    do {              \
        if (!(c)) abort(); \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint32_t max_payload;
    size_t off = 1;

    if (size < 1) return 0;
    max_payload = (data[0] & 1) ? 64u + data[0] : CB_DEFAULT_MAX_PAYLOAD;
    while (off <= size) {
        const unsigned char *p = data + off;
        size_t len = size - off, flen = 12345, cut;
        cb_header h;
        unsigned char re[CB_HEADER_SIZE];
        int r = cb_frame_parse(p, len, max_payload, &h, &flen);

        /* every prefix of an incomplete frame is also incomplete */
        cut = len / 2;
        if (r == CB_PARSE_NEED_MORE)
            FUZZ_CHECK(cb_frame_parse(p, cut, max_payload, &h, &flen) == CB_PARSE_NEED_MORE);
        if (len < CB_HEADER_SIZE) {
            FUZZ_CHECK(r == CB_PARSE_NEED_MORE && flen == CB_HEADER_SIZE);
            break;
        }
        r = cb_frame_parse(p, len, max_payload, &h, &flen);
        cb_header_encode(&h, re);
        FUZZ_CHECK(memcmp(re, p, CB_HEADER_SIZE) == 0); /* decode/encode round trip */
        switch (r) {
        case CB_E_BAD_MAGIC:
            FUZZ_CHECK(h.magic != CB_MAGIC && flen == 0);
            return 0;
        case CB_E_BAD_VERSION:
            FUZZ_CHECK(h.magic == CB_MAGIC && h.version != CB_PROTO_VERSION);
            return 0;
        case CB_E_TOO_LARGE:
            FUZZ_CHECK(h.version == CB_PROTO_VERSION && h.length > max_payload);
            return 0;
        case CB_PARSE_NEED_MORE:
            FUZZ_CHECK(h.length <= max_payload && flen == CB_HEADER_SIZE + h.length &&
                       flen > len);
            return 0;
        case CB_PARSE_FRAME:
            FUZZ_CHECK(h.magic == CB_MAGIC && h.version == CB_PROTO_VERSION &&
                       h.length <= max_payload && flen == CB_HEADER_SIZE + h.length &&
                       flen <= len);
            off += flen;
            break;
        default:
            abort();
        }
    }
    return 0;
}
