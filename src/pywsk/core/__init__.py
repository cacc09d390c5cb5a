"""Sans-I/O state machines: no sockets, clocks, threads or IRPs."""
