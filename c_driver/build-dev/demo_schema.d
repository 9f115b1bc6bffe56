build-dev/demo_schema.o: build-dev/demo_schema.c include/cbridge.h \
 build-dev/../include/demo_messages.h build-dev/demo_schema.h
include/cbridge.h:
build-dev/../include/demo_messages.h:
build-dev/demo_schema.h:
