build-dev/test_registry: tests/test_registry.c include/cbridge.h \
 include/demo_messages.h tests/check.h
include/cbridge.h:
include/demo_messages.h:
tests/check.h:
