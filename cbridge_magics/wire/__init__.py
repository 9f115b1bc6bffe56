"""The wire: what crosses a socket, in the terms of docs/reference/protocol.md.

- ``codes``: the protocol's numbers (imports nothing; C has the same in cbridge.h).
- ``frames``: frame headers and control payloads as bytes.
- ``hello``: the driver's HELLO schema, parsed and checked.
- ``layout``: the one layout comparator, and the report of classes against a schema.
- ``transports``: Unix socket and WebSocket links (imported on use).
- ``_wire``: the compiled frame codec, on libcbridge's own ``cb_frame_parse``.

This package's __init__ imports nothing, so ``errors`` can use ``codes`` without a cycle:

    from cbridge_magics.wire.frames import pack_frame
    from cbridge_magics.wire.hello import parse_hello
"""
