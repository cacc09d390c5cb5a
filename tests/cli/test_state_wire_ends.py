"""Without a packet capture, a report reads how a connection ended from our socket's TCP
state and the client runtime's ends (pywsk.cli.wire.StateWire).  A disconnect of ours that
came after the peer's RST was refused and sent nothing: the report says the peer reset the
connection, never that we did - and when a capture can run, the wire agrees."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from contextlib import ExitStack

import pytest

from pywsk.cli.session import Session
from pywsk.cli.timeline import Report
from pywsk.cli.wire import StateWire
from pywsk.nt import STATUS_CONNECTION_RESET, STATUS_FILE_FORCED_CLOSED
from pywsk.testing.capture import WireCapture
from pywsk.trace import Timeline

WAIT = 10.0


@pytest.mark.parametrize("abortive", [False, True], ids=["graceful", "abortive"])
def test_a_disconnect_after_the_peers_rst_is_reported_as_the_peers_reset(
    listener: Callable[..., socket.socket], abortive: bool
) -> None:
    timeline = Timeline()
    report = Report("probe", "reset first", "the server resets first", "", timeline)
    lsock = listener()
    server = lsock.getsockname()[1]
    with ExitStack() as stack:
        cap = None
        if WireCapture.available():
            cap = stack.enter_context(WireCapture(ports=[server]))
        session = stack.enter_context(Session(timeline))
        wire = StateWire(session, timeline)
        stack.callback(wire.stop)
        sock = session.socket_connect(lsock.getsockname()[:2], timeout=WAIT)
        peer, address = lsock.accept()
        wire.track(sock, "probe")
        # A receive the report does not show: the runtime learns of the RST from it, while
        # the state is sampled next only after our disconnect.
        receive = session.receive(sock, 16, record=False)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        assert receive.wait(WAIT).status == STATUS_CONNECTION_RESET

        disc = session.disconnect(sock, abortive=abortive).wait(WAIT)

        assert disc.status == STATUS_FILE_FORCED_CLOSED
        wire.finish(report, ("probe", "server"))
        if cap is not None:
            cap.sync()
            assert cap.rsts(server)
            assert cap.fins(server) == []
            assert cap.rsts(address[1]) == cap.fins(address[1]) == []
    states = [e.text for e in timeline.events() if e.kind == "state"]
    assert states[:2] == [
        "probe TCP ESTABLISHED: connected",
        "probe TCP ESTABLISHED -> CLOSE: reset by the peer (or the transport gave up)",
    ]
    assert report.wire_summary == "probe sent neither FIN nor RST; server sent RST"
