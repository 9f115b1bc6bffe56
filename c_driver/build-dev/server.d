build-dev/server.o: src/server.c include/cbridge.h src/cb_internal.h
include/cbridge.h:
src/cb_internal.h:
