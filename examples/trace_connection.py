"""Trace a connection of your own program and draw it the way ``pywsk probe`` does.

Usage: ``python examples/trace_connection.py HOST PORT OUTDIR``

The program connects to HOST:PORT with the driver-style client runtime
(:class:`pywsk.client.Client`), sends a request, ends its side gracefully (our FIN,
acknowledged when the WskDisconnect completes), reads the reply to the server's end, and
closes.  A :class:`pywsk.trace.Recorder` given to the client records every WSK call, IRP
completion (status, Information, IRQL, thread) and event callback; when a packet capture can
run (root and tcpdump), the connection's segments join the same timeline.  It writes
``timeline.txt`` (as ``pywsk probe`` prints it), ``timeline.svg`` (the sequence diagram of
``--diagram``) and ``timeline.json``, and prints how each side ended the connection.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pywsk.client import Client, Context
from pywsk.testing.capture import WireCapture
from pywsk.trace import Recorder, record_capture
from pywsk.wsk import WSK_EVENT_DISCONNECT

WAIT = 5.0


def main(argv: list[str]) -> int:
    host, port, out = argv[1], int(argv[2]), Path(argv[3])
    recorder = Recorder()
    capture = WireCapture(ports=[port]).start() if WireCapture.available() else None
    try:
        with Client(tracer=recorder) as client:
            context = Context("example")
            sock = client.socket_connect(
                (host, port), timeout=WAIT, context=context, events=WSK_EVENT_DISCONNECT
            )
            local = client.local_address(sock)
            client.send(sock, b"hello, server").wait(WAIT)
            client.disconnect(sock).wait(WAIT)  # our FIN, acknowledged
            reply = b""
            while chunk := client.receive(sock, 4096).wait(WAIT).data:
                reply += chunk
            ends = client.ends(sock)
            client.close_socket(sock)
        if capture is not None and local is not None:
            capture.sync()
            record_capture(recorder, capture, int(local[1]), port)
    finally:
        if capture is not None:
            capture.stop()
    out.mkdir(parents=True, exist_ok=True)
    (out / "timeline.txt").write_text(recorder.text("my connection"))
    (out / "timeline.svg").write_text(recorder.svg("my connection"))
    (out / "timeline.json").write_text(json.dumps(recorder.report("my connection").as_dict()))
    ours = ends.ours.describe() if ends.ours else "nothing"
    theirs = ends.peer.describe() if ends.peer else "nothing"
    print(f"reply: {len(reply)} B; we ended it with {ours}; the server with {theirs}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
