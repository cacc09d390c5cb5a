"""A client that resets its connection before WskAccept takes it (issue 14, section 7).

Winsock's accept page reports such a connection (WSAECONNRESET: "an incoming connection
was indicated, but was subsequently terminated by the remote peer prior to accepting the
call").  pywsk reports it too: WskAccept delivers the connection, and its first call says
it was reset - no connection is ever lost silently, and the data sent before the reset is
not discarded (docs/fidelity.md, "A connection reset before WskAccept").
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from pywsk.nt import STATUS_CONNECTION_RESET, STATUS_PENDING, STATUS_SUCCESS
from pywsk.testing.capture import WireCapture
from pywsk.testing.driver import WskTestClient
from pywsk.testing.tcp import abort_with_rst
from pywsk.wsk import WSK_SOCKET

Capture = Callable[[int], WireCapture]
WAIT = 10.0


def listening_port(listener: WSK_SOCKET) -> int:
    kernel: Any = listener
    return int(kernel.sock.getsockname()[1])


def test_a_connection_reset_before_wskaccept_is_delivered_then_reports_the_reset(
    wsk: WskTestClient, capture_port: Capture
) -> None:
    listener = wsk.listen()
    port = listening_port(listener)
    cap = capture_port(port)
    client = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    client.sendall(b"sent before the reset")
    abort_with_rst(client)
    cap.wait_rst(timeout=WAIT)  # the RST is on the wire before WskAccept is called
    accept = wsk.accept(listener)
    if accept.returned == STATUS_PENDING:
        accept.wait(WAIT)
    assert accept.status == STATUS_SUCCESS, accept
    sock = accept.information
    data, final = wsk.receive_all(sock, timeout=WAIT)
    assert data == b"sent before the reset"
    assert final.status == STATUS_CONNECTION_RESET
    assert wsk.send(sock, b"x").wait(WAIT).status == STATUS_CONNECTION_RESET
    # The next connection is accepted as usual: the listener goes on.
    other = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    second = wsk.accept(listener)
    if second.returned == STATUS_PENDING:
        second.wait(WAIT)
    assert second.status == STATUS_SUCCESS
    other.close()
    client.close()
