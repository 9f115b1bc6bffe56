build-dev/test_wire: tests/test_wire.c include/cbridge.h tests/check.h
include/cbridge.h:
tests/check.h:
