"""A peer's RST behind data the client has not read: is the client told?

A stalled server (no WskReceive pending, receive indications off) whose client resets the
connection: the RST is on the wire and the kernel's TCP state is CLOSE; the provider tells
WskDisconnectEvent(WSK_FLAG_ABORTIVE) when the RST arrives, without waiting for a receive
to read the data in front of it (a stalled server never reads).  The client side of pywsk
is the same code (this test is the smallest reproduction)."""

from __future__ import annotations

import threading

from pywsk.client import Client, Context
from pywsk.core.ending import Ending
from pywsk.testing import Abort, LoopbackPeer, Send, Step, TcpState, WaitFor
from pywsk.wsk import WSK_EVENT_DISCONNECT, WSK_FLAG_ABORTIVE

WAIT = 10.0
#: How long the client waits for WskDisconnectEvent after the RST is known to be there.
GRACE = 2.0


def _reset_after_reading_nothing(data: bytes) -> tuple[bool, int | None, Ending | None]:
    """The peer sends ``data`` (never read), then resets; whether WskDisconnectEvent came
    within GRACE, with which flags, and what the client learned."""
    go, reset = threading.Event(), threading.Event()
    script: list[Step] = [Send(data)] if data else []
    script += [WaitFor(go, WAIT), Abort(), lambda _conn: reset.set()]
    with LoopbackPeer(script) as peer, Client() as client:
        context = Context("stalled")
        sock = client.socket_connect(
            peer.address, timeout=WAIT, context=context, events=WSK_EVENT_DISCONNECT
        )
        go.set()
        assert reset.wait(WAIT)  # the RST is sent
        seen = context.disconnect_seen.wait(GRACE)
        assert client.tcp_state(sock) == TcpState.CLOSE  # the kernel knows of the reset
        flags = context.disconnect_events[0][1] if seen else None
        return seen, flags, client.ends(sock).peer


def test_an_rst_with_nothing_unread_is_reported_at_once() -> None:
    seen, flags, end = _reset_after_reading_nothing(b"")
    assert seen
    assert flags is not None
    assert flags & WSK_FLAG_ABORTIVE
    assert end is Ending.PEER_RST


def test_an_rst_behind_unread_data_is_reported_without_a_read() -> None:
    seen, flags, end = _reset_after_reading_nothing(b"unread" * 1000)
    assert seen, "no WskDisconnectEvent after the RST"
    assert flags is not None
    assert flags & WSK_FLAG_ABORTIVE
    assert end is Ending.PEER_RST
