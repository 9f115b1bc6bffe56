/* minimal_messages.h -- the messages of examples/minimal.c, a simulated
 * thermometer that drifts toward its setpoint.
 *
 * The one description of the messages: the Python side compiles it with
 * %cstruct --header, and c-schema generates the C side's field tables from
 * it (each type id is found as MINIMAL_TYPE_<NAME>). */
#ifndef MINIMAL_MESSAGES_H
#define MINIMAL_MESSAGES_H

#include <stdint.h>

#define MINIMAL_TYPE_SETPOINT 256
#define MINIMAL_TYPE_ACK 257
#define MINIMAL_TYPE_READING 258

/* A request: the temperature to reach, and readings per second (1..1000). */
typedef struct Setpoint {
    double celsius;
    uint32_t rate_hz;
} Setpoint;

/* The reply to every Setpoint. */
typedef struct Ack {
    int32_t code;
    double celsius;
} Ack;

/* Streamed to every client, rate_hz a second; its flags are bit-fields. */
typedef struct Reading {
    uint64_t n;
    double celsius;
    uint32_t heating : 1;   /* below the setpoint: the heater is on */
    uint32_t settled : 1;   /* within half a degree of the setpoint */
} Reading;

#endif /* MINIMAL_MESSAGES_H */
