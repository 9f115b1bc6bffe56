/* test_registry.c -- type registry, CB_FIELD/CB_ARRAY, HELLO JSON. */

#include "cbridge.h"
#include "demo_messages.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

static const cb_field command_fields[] = {
    CB_FIELD(Command, op, "enum demo_op"),      CB_FIELD(Command, waveform, "enum demo_wave"),
    CB_FIELD(Command, frequency_hz, "double"),  CB_FIELD(Command, amplitude, "double"),
    CB_FIELD(Command, rate_hz, "uint32_t"),     CB_FIELD(Command, batch, "uint32_t"),
};

/* Bit-fields have no offsetof: their rows are c-schema's measurements (x86-64, gcc). */
static const cb_field status_fields[] = {
    CB_FIELD(Status, code, "int32_t"),
    {"streaming", "uint32_t", 4, 4, 1, 0, 1, 0},
    {"level_db", "int32_t", 4, 4, 1, 16, 8, 1},
    CB_FIELD(Status, frames_sent, "uint64_t"),  CB_FIELD(Status, records_sent, "uint64_t"),
    CB_FIELD(Status, frequency_hz, "double"),
};

static const cb_field telemetry_fields[] = {
    CB_FIELD(Telemetry, seq, "uint32_t"), CB_FIELD(Telemetry, count, "uint32_t"),
    CB_FIELD(Telemetry, t0, "double"),    CB_FIELD(Telemetry, dt, "double"),
    CB_ARRAY(Telemetry, samples, "float"),
};

typedef struct Matrix {
    uint8_t tag;             /* forces padding before m */
    double m[3][4];          /* a 2-D array: 12 elements */
    int16_t v[5];            /* a 1-D array */
    struct { int32_t a; } s[2]; /* an array of structs: 2 elements */
} Matrix;

static const cb_field matrix_fields[] = {
    CB_FIELD(Matrix, tag, "uint8_t"),
    CB_ARRAY(Matrix, m, "double"),
    CB_ARRAY(Matrix, v, "int16_t"),
    CB_ARRAY(Matrix, s, "struct"),
};

static void test_field_macros(void) {
    CHECK(command_fields[0].offset == offsetof(Command, op) && command_fields[0].size == 4);
    CHECK(command_fields[1].offset == offsetof(Command, waveform));
    CHECK(command_fields[2].offset == offsetof(Command, frequency_hz) &&
          command_fields[2].size == 8);
    CHECK(command_fields[3].offset == offsetof(Command, amplitude));
    CHECK(command_fields[4].offset == offsetof(Command, rate_hz));
    CHECK(command_fields[5].offset == offsetof(Command, batch) && command_fields[5].count == 1);
    CHECK(strcmp(command_fields[2].name, "frequency_hz") == 0);
    CHECK(strcmp(command_fields[2].ctype, "double") == 0);

    CHECK(status_fields[0].offset == offsetof(Status, code));
    CHECK(status_fields[3].offset == offsetof(Status, frames_sent) && status_fields[3].size == 8);
    CHECK(status_fields[4].offset == offsetof(Status, records_sent));
    CHECK(status_fields[5].offset == offsetof(Status, frequency_hz));
    CHECK(command_fields[0].bit_width == 0 && telemetry_fields[4].bit_width == 0);

    CHECK(telemetry_fields[0].offset == offsetof(Telemetry, seq));
    CHECK(telemetry_fields[1].offset == offsetof(Telemetry, count));
    CHECK(telemetry_fields[2].offset == offsetof(Telemetry, t0));
    CHECK(telemetry_fields[3].offset == offsetof(Telemetry, dt));
    CHECK(telemetry_fields[4].offset == offsetof(Telemetry, samples));
    CHECK(telemetry_fields[4].size == sizeof(float) * DEMO_SAMPLES_PER_RECORD);
    CHECK(telemetry_fields[4].count == DEMO_SAMPLES_PER_RECORD);

    CHECK(matrix_fields[1].offset == offsetof(Matrix, m));
    CHECK(matrix_fields[1].size == sizeof(double) * 12);
    CHECK(matrix_fields[1].count == 12);
    CHECK(matrix_fields[2].offset == offsetof(Matrix, v) && matrix_fields[2].count == 5);
    CHECK(matrix_fields[3].count == 2 && matrix_fields[3].size == 8);
}

static cb_server *new_server(void) {
    cb_server *s = cb_server_new("test \"driver\"", "1.2\\3");
    if (s) cb_server_set_log_file(s, NULL);
    return s;
}

static void test_registry(void) {
    cb_server *s = new_server();
    CHECK(s != NULL);
    if (!s) return;
    CHECK(CB_REGISTER_STRUCT(s, DEMO_TYPE_COMMAND, Command, command_fields) == CB_OK);
    CHECK(CB_REGISTER_STRUCT(s, DEMO_TYPE_STATUS, Status, status_fields) == CB_OK);
    /* duplicate id */
    CHECK(CB_REGISTER_STRUCT(s, DEMO_TYPE_COMMAND, Telemetry, telemetry_fields) == CB_ERR);
    CHECK(strstr(cb_server_error(s), "256") != NULL);
    /* duplicate name */
    CHECK(CB_REGISTER_STRUCT(s, 300, Status, status_fields) == CB_ERR);
    CHECK(strstr(cb_server_error(s), "Status") != NULL);
    /* reserved ids */
    CHECK(cb_register_type(s, 255, "Low", 8, 8, NULL, 0) == CB_ERR);
    CHECK(cb_register_type(s, CB_TYPE_PING, "Ping", 8, 8, NULL, 0) == CB_ERR);
    CHECK(cb_register_type(s, 0, "Zero", 8, 8, NULL, 0) == CB_ERR);
    /* nonsense layouts */
    CHECK(cb_register_type(s, 301, "", 8, 8, NULL, 0) == CB_ERR);
    CHECK(cb_register_type(s, 302, "NoSize", 0, 8, NULL, 0) == CB_ERR);
    CHECK(cb_register_type(s, 303, "OddAlign", 8, 3, NULL, 0) == CB_ERR);
    CHECK(cb_register_type(s, 304, "Overflow", 16, 8, telemetry_fields, 5) == CB_ERR);
    /* the refused ones left nothing behind */
    CHECK(CB_REGISTER_STRUCT(s, DEMO_TYPE_TELEMETRY, Telemetry, telemetry_fields) == CB_OK);
    CHECK(cb_register_type(s, 256 + 1000, "Empty", 1, 1, NULL, 0) == CB_OK);
    /* handlers only for registered types */
    CHECK(cb_on(s, 999, NULL, NULL) == CB_ERR);
    CHECK(cb_on(s, DEMO_TYPE_COMMAND, NULL, NULL) == CB_OK);
    cb_server_free(s);
}

static void test_hello(void) {
    cb_server *s = new_server();
    const char *json;
    size_t len = 0;
    char weird[] = "We\"ird\\Na\nme\x01";
    cb_field wf[] = {{"a\"b", "uint8_t", 0, 1, 1, 0, 0, 0}};
    cb_field wt[] = {{"ab", "uint8_t *", 0, 1, 1, 0, 0, 0}};
    cb_server *named = cb_server_new(weird, "1");

    CHECK(s != NULL);
    if (!s) return;
    json = cb_server_hello(s, &len);
    CHECK(json && strcmp(json, "{\"protocol\": 1, \"driver\": \"test \\\"driver\\\"\", "
                               "\"driver_version\": \"1.2\\\\3\", \"max_payload\": 1048576, "
                               "\"types\": []}") == 0);
    CHECK(json && len == strlen(json));

    CHECK(CB_REGISTER_STRUCT(s, DEMO_TYPE_COMMAND, Command, command_fields) == CB_OK);
    CHECK(CB_REGISTER_STRUCT(s, DEMO_TYPE_TELEMETRY, Telemetry, telemetry_fields) == CB_OK);
    /* names that clients refuse are refused here first */
    CHECK(cb_register_type(s, 400, weird, 1, 1, NULL, 0) == CB_ERR);
    CHECK(cb_register_type(s, 400, "Weird", 1, 1, wf, 1) == CB_ERR);
    CHECK(cb_register_type(s, 400, "Weird", 1, 1, wt, 1) == CB_ERR);
    CHECK(strstr(cb_server_error(s), "not a C identifier, or its ctype") != NULL);
    /* the driver's name is any text: escaped in the JSON */
    CHECK(named != NULL);
    if (named) {
        cb_server_set_log_file(named, NULL);
        json = cb_server_hello(named, NULL);
        CHECK(json && strstr(json, "\"driver\": \"We\\\"ird\\\\Na\\nme\\u0001\"") != NULL);
        cb_server_free(named);
    }
    json = cb_server_hello(s, &len);
    CHECK(json != NULL);
    if (!json) goto done;
    CHECK(len == strlen(json));
    CHECK(strstr(json, "{\"id\": 256, \"name\": \"Command\", \"size\": 32, \"align\": 8, "
                       "\"fields\": [{\"name\": \"op\", \"offset\": 0, \"size\": 4, "
                       "\"ctype\": \"enum demo_op\", \"count\": 1}, ") != NULL);
    CHECK(strstr(json, "{\"name\": \"batch\", \"offset\": 28, \"size\": 4, "
                       "\"ctype\": \"uint32_t\", \"count\": 1}]}") != NULL);
    CHECK(strstr(json, "{\"id\": 258, \"name\": \"Telemetry\", \"size\": 280, \"align\": 8") !=
          NULL);
    CHECK(strstr(json, "{\"name\": \"samples\", \"offset\": 24, \"size\": 256, "
                       "\"ctype\": \"float\", \"count\": 64}") != NULL);
    CHECK(json[len - 1] == '}' && strncmp(json + len - 4, "]}]}", 4) == 0);

    /* max_payload is part of HELLO */
    CHECK(cb_server_set_max_payload(s, 4096) == CB_OK);
    json = cb_server_hello(s, &len);
    CHECK(json && strstr(json, "\"max_payload\": 4096,") != NULL);
done:
    cb_server_free(s);
}

/* cb_check_bits: a generated table's bit-field rows against the compiler's placement. */
static void test_check_bits(void) {
    cb_server *s = new_server();
    Status v;
    cb_field moved = status_fields[2];
    CHECK(s != NULL);
    if (!s) return;
    memset(&v, 0, sizeof v);
    v.level_db = -1;
    CHECK(cb_check_bits(s, "Status", &status_fields[2], &v, sizeof v) == CB_OK);
    moved.bit_offset = 17;
    CHECK(cb_check_bits(s, "Status", &moved, &v, sizeof v) == CB_ERR);
    CHECK(strstr(cb_server_error(s), "Status.level_db") != NULL);
    CHECK(strstr(cb_server_error(s), "out of date") != NULL);
    moved = status_fields[2];
    moved.bit_width = 7;
    CHECK(cb_check_bits(s, "Status", &moved, &v, sizeof v) == CB_ERR);
    memset(&v, 0, sizeof v);
    v.streaming = 1;
    CHECK(cb_check_bits(s, "Status", &status_fields[1], &v, sizeof v) == CB_OK);
    CHECK(cb_check_bits(s, "Status", &status_fields[2], &v, sizeof v) == CB_ERR);
    cb_server_free(s);
}

/* Bit-fields and enums in the registry and the HELLO. */
static void test_bits_and_enums(void) {
    cb_server *s = new_server();
    const char *json;
    size_t len = 0;
    cb_field bad[] = {{"x", "uint32_t", 0, 4, 1, 30, 3, 0}};   /* past its unit */
    cb_field wide[] = {{"x", "uint64_t", 0, 8, 1, 0, 65, 0}};  /* more than 64 bits */
    cb_enum_const ops[] = {{"DEMO_OP_GET_STATUS", 0}, {"DEMO_OP_START", 1}, {"NEG", -5}};
    cb_enum_const again[] = {{"DEMO_OP_START", 1}};
    CHECK(s != NULL);
    if (!s) return;
    CHECK(cb_register_type(s, 500, "Bad", 8, 4, bad, 1) == CB_ERR);
    CHECK(strstr(cb_server_error(s), "bit-field x") != NULL);
    CHECK(cb_register_type(s, 501, "Wide", 8, 8, wide, 1) == CB_ERR);
    CHECK(cb_register_enum(s, "enum demo_op", ops, 3) == CB_OK);
    CHECK(cb_register_enum(s, "enum demo_op", ops, 3) == CB_ERR);        /* the name again */
    CHECK(cb_register_enum(s, "enum other", again, 1) == CB_ERR);        /* a constant again */
    CHECK(strstr(cb_server_error(s), "DEMO_OP_START") != NULL);
    CHECK(cb_register_enum(s, "enum none", ops, 0) == CB_ERR);
    {
        cb_enum_const spaced[] = {{"NOT A NAME", 1}};
        cb_field twice[] = {{"x", "uint8_t", 0, 1, 1, 0, 0, 0}, {"x", "uint8_t", 1, 1, 1, 0, 0, 0}};
        cb_field odd[] = {{"1x", "uint8_t", 0, 1, 1, 0, 0, 0}};
        CHECK(cb_register_enum(s, "enum spaced", spaced, 1) == CB_ERR);
        CHECK(strstr(cb_server_error(s), "not a C identifier") != NULL);
        CHECK(cb_register_type(s, 502, "Twice", 2, 1, twice, 2) == CB_ERR);
        CHECK(strstr(cb_server_error(s), "two fields named x") != NULL);
        CHECK(cb_register_type(s, 503, "Odd", 1, 1, odd, 1) == CB_ERR);
    }
    CHECK(CB_REGISTER_STRUCT(s, DEMO_TYPE_STATUS, Status, status_fields) == CB_OK);
    json = cb_server_hello(s, &len);
    CHECK(json != NULL);
    if (json) {
        CHECK(strstr(json, "{\"name\": \"streaming\", \"offset\": 4, \"size\": 4, \"ctype\": "
                           "\"uint32_t\", \"count\": 1, \"bit_offset\": 0, \"bit_width\": 1, "
                           "\"signed\": false}") != NULL);
        CHECK(strstr(json, "\"bit_offset\": 16, \"bit_width\": 8, \"signed\": true}") != NULL);
        CHECK(strstr(json, "{\"name\": \"code\", \"offset\": 0, \"size\": 4, \"ctype\": "
                           "\"int32_t\", \"count\": 1}") != NULL);
        CHECK(strstr(json, "], \"enums\": {\"enum demo_op\": {\"DEMO_OP_GET_STATUS\": 0, "
                           "\"DEMO_OP_START\": 1, \"NEG\": -5}}}") != NULL);
    }
    cb_server_free(s);
}

int main(void) {
    test_field_macros();
    test_registry();
    test_hello();
    test_check_bits();
    test_bits_and_enums();
    return check_report();
}
