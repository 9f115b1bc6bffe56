build-dev/registry.o: src/registry.c include/cbridge.h src/cb_internal.h
include/cbridge.h:
src/cb_internal.h:
