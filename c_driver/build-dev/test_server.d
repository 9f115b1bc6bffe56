build-dev/test_server: tests/test_server.c include/cbridge.h \
 tests/check.h
include/cbridge.h:
tests/check.h:
