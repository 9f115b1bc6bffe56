/* test_wire.c -- header encode/decode and the frame parser. */

#include "cbridge.h"

#include <stdio.h>
#include <string.h>

#include "check.h"


static void test_byte_order(void) {
    static const unsigned char want[CB_HEADER_SIZE] = {
        'C', 'B', 1, 0x03, 0x04, 0x03, 0x02, 0x01, 0x08, 0x07, 0x06, 0x05, 0x10, 0x00, 0x00, 0x00};
    cb_header h = cb_header_make(0x03, 0x01020304u, 0x05060708u, 16), back;
    unsigned char buf[CB_HEADER_SIZE];

    cb_header_encode(&h, buf);
    CHECK(memcmp(buf, want, sizeof(want)) == 0);
    CHECK(buf[0] == 0x43 && buf[1] == 0x42); /* 0x4243, little-endian */
    cb_header_decode(buf, &back);
    CHECK(back.magic == CB_MAGIC);
    CHECK(back.version == 1);
    CHECK(back.flags == 0x03);
    CHECK(back.type_id == 0x01020304u);
    CHECK(back.seq == 0x05060708u);
    CHECK(back.length == 16);
}

static void test_round_trip(void) {
    static const uint32_t vals[] = {0, 1, 255, 256, 65535, 65536, 0x7fffffffu, 0x80000000u,
                                    0xffffffffu};
    size_t i, j;
    for (i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        for (j = 0; j < sizeof(vals) / sizeof(vals[0]); j++) {
            cb_header h = cb_header_make((uint8_t)vals[i], vals[i], vals[j], vals[(i + j) % 9]), back;
            unsigned char buf[CB_HEADER_SIZE];
            h.magic = (uint16_t)vals[j];
            h.version = (uint8_t)vals[j];
            cb_header_encode(&h, buf);
            cb_header_decode(buf, &back);
            CHECK(memcmp(&h, &back, sizeof(h)) == 0);
        }
    }
}

static void test_parse_partial(void) {
    unsigned char buf[CB_HEADER_SIZE + 64];
    cb_header h = cb_header_make(0, 256, 7, 32), out;
    size_t flen, n;

    memset(buf, 0xaa, sizeof(buf));
    cb_header_encode(&h, buf);
    for (n = 0; n < CB_HEADER_SIZE; n++) {
        CHECK(cb_frame_parse(buf, n, CB_DEFAULT_MAX_PAYLOAD, &out, &flen) == CB_PARSE_NEED_MORE);
        CHECK(flen == CB_HEADER_SIZE);
    }
    for (n = CB_HEADER_SIZE; n < CB_HEADER_SIZE + 32; n++) {
        CHECK(cb_frame_parse(buf, n, CB_DEFAULT_MAX_PAYLOAD, &out, &flen) == CB_PARSE_NEED_MORE);
        CHECK(flen == CB_HEADER_SIZE + 32);
        CHECK(out.seq == 7 && out.length == 32);
    }
    CHECK(cb_frame_parse(buf, CB_HEADER_SIZE + 32, CB_DEFAULT_MAX_PAYLOAD, &out, &flen) ==
          CB_PARSE_FRAME);
    CHECK(flen == CB_HEADER_SIZE + 32);
    /* extra bytes after the frame belong to the next one */
    CHECK(cb_frame_parse(buf, sizeof(buf), CB_DEFAULT_MAX_PAYLOAD, &out, &flen) ==
          CB_PARSE_FRAME);
    CHECK(flen == CB_HEADER_SIZE + 32);
}

static void test_parse_errors(void) {
    unsigned char buf[CB_HEADER_SIZE];
    cb_header h, out;
    size_t flen;

    h = cb_header_make(0, 256, 41, 0);
    h.magic = 0x4342; /* bytes swapped */
    cb_header_encode(&h, buf);
    CHECK(cb_frame_parse(buf, sizeof(buf), CB_DEFAULT_MAX_PAYLOAD, &out, &flen) ==
          CB_E_BAD_MAGIC);
    CHECK(out.seq == 41 && flen == 0);

    h = cb_header_make(0, 256, 42, 0);
    h.version = 2;
    cb_header_encode(&h, buf);
    CHECK(cb_frame_parse(buf, sizeof(buf), CB_DEFAULT_MAX_PAYLOAD, &out, &flen) ==
          CB_E_BAD_VERSION);
    CHECK(out.seq == 42);

    h = cb_header_make(0, 256, 43, CB_DEFAULT_MAX_PAYLOAD + 1);
    cb_header_encode(&h, buf);
    CHECK(cb_frame_parse(buf, sizeof(buf), CB_DEFAULT_MAX_PAYLOAD, &out, &flen) ==
          CB_E_TOO_LARGE);
    CHECK(out.seq == 43);

    h = cb_header_make(0, 256, 44, 0xffffffffu);
    cb_header_encode(&h, buf);
    CHECK(cb_frame_parse(buf, sizeof(buf), CB_DEFAULT_MAX_PAYLOAD, &out, &flen) ==
          CB_E_TOO_LARGE);

    /* magic is judged before version, version before length */
    h = cb_header_make(0, 256, 45, 0xffffffffu);
    h.magic = 0;
    h.version = 9;
    cb_header_encode(&h, buf);
    CHECK(cb_frame_parse(buf, sizeof(buf), CB_DEFAULT_MAX_PAYLOAD, &out, &flen) ==
          CB_E_BAD_MAGIC);
    h.magic = CB_MAGIC;
    cb_header_encode(&h, buf);
    CHECK(cb_frame_parse(buf, sizeof(buf), CB_DEFAULT_MAX_PAYLOAD, &out, &flen) ==
          CB_E_BAD_VERSION);

    /* flags and type ids are not the parser's business */
    h = cb_header_make(0xfc, 0, 46, 0);
    cb_header_encode(&h, buf);
    CHECK(cb_frame_parse(buf, sizeof(buf), CB_DEFAULT_MAX_PAYLOAD, &out, &flen) ==
          CB_PARSE_FRAME);
}

static void test_parse_boundaries(void) {
    static unsigned char buf[CB_HEADER_SIZE + CB_DEFAULT_MAX_PAYLOAD];
    cb_header h, out;
    size_t flen;

    h = cb_header_make(0, CB_TYPE_PING, 1, 0); /* length 0: the header alone is the frame */
    cb_header_encode(&h, buf);
    CHECK(cb_frame_parse(buf, CB_HEADER_SIZE, CB_DEFAULT_MAX_PAYLOAD, &out, &flen) ==
          CB_PARSE_FRAME);
    CHECK(flen == CB_HEADER_SIZE);

    h = cb_header_make(0, 300, 2, CB_DEFAULT_MAX_PAYLOAD); /* exactly max_payload is allowed */
    cb_header_encode(&h, buf);
    CHECK(cb_frame_parse(buf, sizeof(buf) - 1, CB_DEFAULT_MAX_PAYLOAD, &out, &flen) ==
          CB_PARSE_NEED_MORE);
    CHECK(flen == sizeof(buf));
    CHECK(cb_frame_parse(buf, sizeof(buf), CB_DEFAULT_MAX_PAYLOAD, &out, &flen) ==
          CB_PARSE_FRAME);
    CHECK(flen == sizeof(buf));

    /* a smaller max_payload moves the boundary */
    h = cb_header_make(0, 300, 3, 100);
    cb_header_encode(&h, buf);
    CHECK(cb_frame_parse(buf, sizeof(buf), 100, &out, &flen) == CB_PARSE_FRAME);
    CHECK(cb_frame_parse(buf, sizeof(buf), 99, &out, &flen) == CB_E_TOO_LARGE);
}

static void test_error_names(void) {
    CHECK(strcmp(cb_error_name(CB_E_BAD_MAGIC), "BAD_MAGIC") == 0);
    CHECK(strcmp(cb_error_name(CB_E_OVERLOADED), "OVERLOADED") == 0);
    CHECK(strcmp(cb_error_name(0), "UNKNOWN") == 0);
    CHECK(strcmp(cb_error_name(9), "UNKNOWN") == 0);
    CHECK(CB_E_BAD_MAGIC == 1 && CB_E_BAD_VERSION == 2 && CB_E_TOO_LARGE == 3 &&
          CB_E_UNKNOWN_TYPE == 4 && CB_E_BAD_LENGTH == 5 && CB_E_BAD_REQUEST == 6 &&
          CB_E_UNAVAILABLE == 7 && CB_E_OVERLOADED == 8);
}

int main(void) {
    test_byte_order();
    test_round_trip();
    test_parse_partial();
    test_parse_errors();
    test_parse_boundaries();
    test_error_names();
    return check_report();
}
