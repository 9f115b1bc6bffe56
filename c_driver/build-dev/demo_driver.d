build-dev/demo_driver.o: src/demo_driver.c include/cbridge.h \
 include/demo_messages.h build-dev/demo_schema.h
include/cbridge.h:
include/demo_messages.h:
build-dev/demo_schema.h:
