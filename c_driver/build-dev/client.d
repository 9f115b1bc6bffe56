build-dev/client.o: src/client.c include/cbridge.h src/cb_internal.h
include/cbridge.h:
src/cb_internal.h:
