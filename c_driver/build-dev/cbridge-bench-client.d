build-dev/cbridge-bench-client: ../bench/c_client.c include/cbridge.h \
 include/demo_messages.h
include/cbridge.h:
include/demo_messages.h:
