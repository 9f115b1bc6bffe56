/* demo_messages.h -- the messages of cbridge-demo-driver, a simulated
 * signal generator.
 *
 * Plain C11 with <stdint.h> only: the Python side compiles this header with
 * Cython and parses it with pycparser, so no extensions here. The driver's
 * field tables are generated from it (python -m cbridge_magics c-schema,
 * which finds each type id as DEMO_TYPE_<NAME>). Layouts are native; the
 * driver announces sizes and offsets in its HELLO, and where every bit-field's
 * bits are (measured from the compiler; C has no offsetof for them). */
#ifndef DEMO_MESSAGES_H
#define DEMO_MESSAGES_H

#include <stdint.h>

/* Command.op */
enum demo_op {
    DEMO_OP_GET_STATUS = 0, /* only report the status */
    DEMO_OP_START = 1,      /* start streaming with waveform .. batch */
    DEMO_OP_STOP = 2,       /* stop streaming */
    DEMO_OP_SET_WAVE = 3    /* change waveform, frequency, amplitude (phase continuous) */
};

/* Command.waveform */
enum demo_wave {
    DEMO_WAVE_SINE = 0,     /* A * sin(2 pi phase) */
    DEMO_WAVE_SQUARE = 1,   /* +A for phase < 0.5, else -A */
    DEMO_WAVE_SAW = 2,      /* A * (2 phase - 1) */
    DEMO_WAVE_NOISE = 3     /* A * uniform(-1, 1) */
};

#define DEMO_SAMPLES_PER_RECORD 64
#define DEMO_TYPE_COMMAND 256
#define DEMO_TYPE_STATUS 257
#define DEMO_TYPE_TELEMETRY 258

/* Type id 256: a request; every Command is answered by one Status. */
typedef struct Command {
    enum demo_op op;        /* what to do */
    enum demo_wave waveform; /* START, SET_WAVE */
    double frequency_hz;    /* > 0, at most the Nyquist rate (START, SET_WAVE) */
    double amplitude;       /* >= 0 (START, SET_WAVE) */
    uint32_t rate_hz;       /* records per second, 0 = as fast as clients read (START) */
    uint32_t batch;         /* records per Telemetry frame, 0 means 1 (START) */
} Command;

/* Type id 257: the reply to every Command, one record per Command. */
typedef struct Status {
    int32_t code;           /* 0: the command was applied */
    /* A flags word of bit-fields, as instruments report their state: */
    uint32_t streaming : 1;        /* 1 while Telemetry is being streamed */
    uint32_t paced : 1;            /* streaming at rate_hz; 0: as fast as clients read */
    enum demo_wave waveform : 3;   /* the waveform being generated */
    uint32_t : 3;                  /* reserved */
    uint32_t clients : 8;          /* clients connected, at most 255 */
    int32_t level_db : 8;          /* amplitude in dB (20 log10), rounded, -128..127 */
    uint64_t frames_sent;   /* Telemetry frames streamed since the driver started */
    uint64_t records_sent;  /* Telemetry records streamed since the driver started */
    double frequency_hz;    /* current signal frequency */
} Status;

/* Type id 258: streamed (flag STREAM) to every client, batch records a frame. */
typedef struct Telemetry {
    uint32_t seq;           /* record number over the driver's life, no gaps */
    uint32_t count;         /* valid samples: DEMO_SAMPLES_PER_RECORD */
    double t0;              /* simulated time of samples[0], seconds */
    double dt;              /* seconds between samples: 1 / sample rate */
    float samples[DEMO_SAMPLES_PER_RECORD]; /* the signal */
} Telemetry;

#endif /* DEMO_MESSAGES_H */
