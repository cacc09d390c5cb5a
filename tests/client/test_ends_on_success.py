"""An end of ours is what a WskDisconnect of ours did on the wire: the client runtime learns
our FIN or our RST only from a disconnect that succeeded, never from one the provider refused
(the peer had reset the connection first) or one that pended and then failed.

Real loopback TCP against plain Linux sockets; when a packet capture can run (root and
tcpdump), the wire is checked to agree with what the runtime recorded."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from pywsk.client import Call, Client, Context
from pywsk.client.ends import Ends
from pywsk.core.ending import Ending
from pywsk.nt import (
    STATUS_CONNECTION_ABORTED,
    STATUS_FILE_FORCED_CLOSED,
    STATUS_INVALID_PARAMETER,
    STATUS_PENDING,
    STATUS_SUCCESS,
)
from pywsk.testing.capture import WireCapture
from pywsk.wsk import WSK_EVENT_DISCONNECT, WSK_SOCKET

WAIT = 10.0
Listener = Callable[..., socket.socket]


class Link:
    """A WSK connection socket of ``client`` and the plain socket that accepted it, with a
    capture of the connection when one can run."""

    def __init__(
        self,
        client: Client,
        listener: Listener,
        stack: ExitStack,
        context: Context | None = None,
        rcvbuf: int | None = None,
    ) -> None:
        lsock = listener("127.0.0.1", rcvbuf)
        port = lsock.getsockname()[1]
        self.cap: WireCapture | None = None
        if WireCapture.available():
            self.cap = stack.enter_context(WireCapture(ports=[port]))
        events = WSK_EVENT_DISCONNECT if context is not None else 0
        self.sock: WSK_SOCKET = client.socket_connect(
            lsock.getsockname()[:2], timeout=WAIT, context=context, events=events
        )
        self.peer, address = lsock.accept()
        stack.callback(self.peer.close)
        self.peer.settimeout(WAIT)
        self.ours, self.theirs = address[1], port

    def reset_by_peer(self) -> None:
        """The peer's RST: SO_LINGER {1, 0}, then close."""
        self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.peer.close()

    def wire(self) -> tuple[list[str], list[str]] | None:
        """What we sent and what the peer sent of FIN and RST, or None without a capture."""
        if self.cap is None:
            return None
        cap = self.cap
        cap.sync()

        def sent(port: int) -> list[str]:
            return [
                flag for flag, seen in (("FIN", cap.fins(port)), ("RST", cap.rsts(port))) if seen
            ]

        return sent(self.ours), sent(self.theirs)


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def client(stack: ExitStack) -> Client:
    return stack.enter_context(Client())


@pytest.mark.parametrize("abortive", [False, True], ids=["graceful", "abortive"])
def test_a_disconnect_after_the_peers_rst_is_refused_and_not_an_end_of_ours(
    client: Client, listener: Listener, stack: ExitStack, abortive: bool
) -> None:
    context = Context("test")
    link = Link(client, listener, stack, context)
    link.reset_by_peer()
    assert context.disconnect_seen.wait(WAIT)

    disc = client.disconnect(link.sock, abortive=abortive).wait(WAIT)

    assert (disc.returned, disc.status) == (STATUS_FILE_FORCED_CLOSED,) * 2
    ends = client.ends(link.sock)
    assert ends.peer is Ending.PEER_RST
    assert (ends.ours, ends.ours_at, ends.fin_acked_at) == (None, None, None)
    # The wire agrees: the peer reset the connection; we sent neither FIN nor RST.
    assert link.wire() in (None, ([], ["RST"]))


@pytest.mark.parametrize("abortive", [False, True], ids=["graceful", "abortive"])
def test_a_disconnect_that_succeeded_is_our_fin_or_rst_as_issued(
    client: Client, listener: Listener, stack: ExitStack, abortive: bool
) -> None:
    link = Link(client, listener, stack)
    disc = client.disconnect(link.sock, abortive=abortive).wait(WAIT)

    assert disc.status == STATUS_SUCCESS
    ends = client.ends(link.sock)
    assert ends.ours is (Ending.OUR_RST if abortive else Ending.OUR_FIN)
    assert ends.ours_at == disc.issued_at
    if abortive:
        assert ends.fin_acked_at is None
        assert link.wire() in (None, (["RST"], []))
    else:
        assert ends.fin_acked_at == disc.completed_at
        assert link.wire() in (None, (["FIN"], []))
    assert ends.peer is None


def test_a_graceful_disconnect_stuck_behind_data_then_aborted_is_our_rst_only(
    client: Client, listener: Listener, stack: ExitStack
) -> None:
    # The peer reads nothing: the graceful disconnect pends behind the data, its FIN unsent.
    link = Link(client, listener, stack, rcvbuf=4096)
    sends = fill(client, link.sock)
    graceful = client.disconnect(link.sock)
    assert graceful.returned == STATUS_PENDING
    assert not graceful.completed_within(0.2)

    abort = client.disconnect(link.sock, abortive=True).wait(WAIT)

    assert abort.status == STATUS_SUCCESS
    assert graceful.wait(WAIT).status == STATUS_CONNECTION_ABORTED
    for send in sends:
        send.wait(WAIT)
    ends = client.ends(link.sock)
    assert (ends.ours, ends.ours_at) == (Ending.OUR_RST, abort.issued_at)
    assert ends.fin_acked_at is None
    assert link.wire() in (None, (["RST"], []))


def test_an_abort_after_a_completed_graceful_disconnect_is_fin_then_rst(
    client: Client, listener: Listener, stack: ExitStack
) -> None:
    link = Link(client, listener, stack)
    graceful = client.disconnect(link.sock).wait(WAIT)
    assert graceful.status == STATUS_SUCCESS
    assert client.disconnect(link.sock, abortive=True).wait(WAIT).status == STATUS_SUCCESS
    ends = client.ends(link.sock)
    assert (ends.ours, ends.ours_at) == (Ending.OUR_FIN_THEN_RST, graceful.issued_at)
    assert link.wire() in (None, (["FIN", "RST"], []))


@pytest.mark.no_verifier  # it reports the Buffer with WSK_FLAG_ABORTIVE (WSK-003): the mistake tested
def test_a_refused_abortive_disconnect_with_a_buffer_leaves_the_connection_ours_to_end(
    client: Client, listener: Listener, stack: ExitStack
) -> None:
    link = Link(client, listener, stack)
    refused = client.disconnect(link.sock, b"data", abortive=True).wait(WAIT)
    assert refused.status == STATUS_INVALID_PARAMETER
    assert client.ends(link.sock).ours is None
    graceful = client.disconnect(link.sock).wait(WAIT)
    assert graceful.status == STATUS_SUCCESS
    assert client.ends(link.sock).ours is Ending.OUR_FIN
    assert client.ends(link.sock).ours_at == graceful.issued_at


def test_ends_learned_out_of_order_are_put_in_the_order_they_were_issued() -> None:
    ends = Ends()
    ends.learn_ours(Ending.OUR_RST, 2.0)  # the abort's completion came first
    ends.learn_ours(Ending.OUR_FIN, 1.0)
    assert (ends.ours, ends.ours_at) == (Ending.OUR_FIN_THEN_RST, 1.0)
    with pytest.raises(ValueError, match="not an end of ours"):
        ends.learn_ours(Ending.PEER_RST, 3.0)


def fill(client: Client, sock: WSK_SOCKET, chunk: int = 256 * 1024) -> list[Call]:
    """Send until a send stays pending (the peer does not read)."""
    sends: list[Call] = []
    for _ in range(64):
        sends.append(client.send(sock, b"d" * chunk))
        if sends[-1].returned == STATUS_PENDING and not sends[-1].done:
            return sends
    raise AssertionError("the send window never filled")
