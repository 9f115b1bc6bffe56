/* big_messages.h -- the messages of big_frames.c: records larger than the protocol's default
 * 1 MiB payload limit, as a camera driver has. */
#ifndef BIG_MESSAGES_H
#define BIG_MESSAGES_H

#include <stdint.h>

#define BIG_TYPE_ASK 256
#define BIG_TYPE_IMAGE 257
#define BIG_PIXELS (2u * 1024u * 1024u)

/* A request: make one image, every pixel n. */
typedef struct Ask {
    uint32_t n;
} Ask;

/* The reply to an Ask, and streamed once per Ask: 2 MiB of pixels. */
typedef struct Image {
    uint32_t n;
    uint8_t pixels[BIG_PIXELS];
} Image;

#endif /* BIG_MESSAGES_H */
