build-dev/frame.o: src/frame.c include/cbridge.h src/cb_internal.h
include/cbridge.h:
src/cb_internal.h:
