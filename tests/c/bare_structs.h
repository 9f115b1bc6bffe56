/* bare_structs.h -- the records of bare_structs.c, a test program that knows
 * nothing of cbridge. The Python side compiles this header with %%cstruct and
 * reaches the program with connect("raw+unix://...", recv=..., send=...). */
#ifndef BARE_STRUCTS_H
#define BARE_STRUCTS_H

#include <stdint.h>

enum bare_op {
    BARE_START = 1, /* stream Measurements at rate_hz a second (0: as fast as sockets take) */
    BARE_STOP = 2,  /* stop streaming */
    BARE_CUT = 3,   /* write half a record to this client, then close it */
    BARE_TRICKLE = 4 /* write one record to this client in three pieces, 20 ms apart */
};

/* What clients write: 16 bytes. */
typedef struct BareCommand {
    uint32_t op;
    uint32_t rate_hz;
    double value;   /* the level of the streamed signal */
} BareCommand;

/* What the program streams to every client: 280 bytes. */
typedef struct Measurement {
    uint32_t seq;   /* record number, no gaps on the program's side */
    uint32_t flags;
    double t0;
    double dt;
    float samples[64];
} Measurement;

#endif /* BARE_STRUCTS_H */
