"""The driver-style client runtime (pywsk.client): calls on IRPs, what it learns of how
connections end (in pywsk.core.ending's words), and what its tracer is told."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pywsk.client import Call, Client, Context
from pywsk.core.ending import Ending
from pywsk.nt import STATUS_PENDING, STATUS_SUCCESS, IrpState
from pywsk.testing import Abort, Close, LoopbackPeer, ReadToEnd, Send, Step, WaitFor
from pywsk.trace import Recorder, Timeline, Tracer, Tracers
from pywsk.wsk import WSK_EVENT_DISCONNECT

WAIT = 10.0


class Facts(Tracer):
    """Every fact, in order, as (kind, name-or-text)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.facts: list[tuple[str, str]] = []

    def returned(self, call: Call) -> None:
        with self.lock:
            self.facts.append(("returned", call.name))

    def completed(self, call: Call) -> None:
        assert call.completion_irql is not None
        assert call.completion_thread_name
        with self.lock:
            self.facts.append(("completed", call.name))

    def callback(self, sock: Any, event: str, flags: int, text: str, at: float) -> None:
        with self.lock:
            self.facts.append(("callback", event))


def test_the_peers_fin_and_our_acknowledged_fin_are_learned_and_traced() -> None:
    facts = Facts()
    script: list[Step] = [ReadToEnd(), Send(b"bye"), Close()]
    with LoopbackPeer(script) as peer, Client(Tracers(facts)) as client:
        context = Context("test")
        sock = client.socket_connect(
            peer.address, timeout=WAIT, context=context, events=WSK_EVENT_DISCONNECT
        )
        assert sock in client.sockets
        assert context.socket is sock
        assert client.send(sock, b"hi").wait(WAIT).status == STATUS_SUCCESS
        disconnect = client.disconnect(sock)
        assert disconnect.wait(WAIT).status == STATUS_SUCCESS
        assert client.ends(sock).ours is Ending.OUR_FIN
        assert client.ends(sock).fin_acked_at is not None
        assert client.receive(sock, 16).wait(WAIT).data == b"bye"
        end = client.receive(sock, 16).wait(WAIT)
        assert (end.status, end.information) == (STATUS_SUCCESS, 0)
        assert context.disconnect_seen.wait(WAIT)
        ends = client.ends(sock)
        assert ends.peer is Ending.PEER_FIN
        assert ends.peer_at is not None
        client.close_socket(sock)
        assert sock not in client.sockets
    with facts.lock:
        seen = list(facts.facts)
    assert ("returned", "WskSocketConnect") in seen
    assert ("completed", "WskDisconnect") in seen
    assert ("callback", "WskDisconnectEvent") in seen
    # a call is traced as returned before it is traced as completed... unless it completed
    # inline, in which case the completion routine ran first (before the call returned)
    assert seen.index(("returned", "WskCloseSocket")) > seen.index(("returned", "WskSend"))


def test_the_peers_rst_is_learned_from_the_event() -> None:
    with LoopbackPeer([Abort()]) as peer, Client() as client:
        context = Context("test")
        sock = client.socket_connect(
            peer.address, timeout=WAIT, context=context, events=WSK_EVENT_DISCONNECT
        )
        assert context.disconnect_seen.wait(WAIT)
        assert client.ends(sock).peer is Ending.PEER_RST
        assert client.ends(sock).ours is None


def _state(call: Call) -> IrpState:
    return call.irp.state


def test_a_call_frees_its_irp_once_it_returned_and_completed() -> None:
    go = threading.Event()
    with LoopbackPeer([WaitFor(go, WAIT), Send(b"x")]) as peer, Client() as client:
        sock = client.socket_connect(peer.address, timeout=WAIT)
        receive = client.receive(sock, 8)
        assert receive.returned == STATUS_PENDING
        assert _state(receive) is IrpState.PENDING
        with pytest.raises(TimeoutError, match="WskReceive: IRP not completed"):
            receive.wait(0.01)
        assert not receive.completed_within(0.01)
        go.set()
        assert receive.wait(WAIT).data == b"x"
        assert _state(receive) is IrpState.FREED
        kept = client.receive(sock, 8, keep=True)
        client.disconnect(sock, abortive=True).wait(WAIT)
        kept.wait(WAIT)
        assert _state(kept) is not IrpState.FREED
        kept.release()
        assert _state(kept) is IrpState.FREED


def test_a_recorder_routes_each_socket_to_its_timeline() -> None:
    main, other = Timeline(), Timeline()
    recorder = Recorder(main)
    with LoopbackPeer([ReadToEnd()]) as peer, Client(recorder) as client:
        sock = client.socket_connect(peer.address, timeout=WAIT)
        recorder.attach(sock, other)
        client.send(sock, b"routed").wait(WAIT)
        recorder.forget(sock)
        client.send(sock, b"back").wait(WAIT)
    assert [e.text for e in other.events() if e.kind == "call"] == [
        "WskSend(b'routed') returned STATUS_SUCCESS"
    ]
    calls = [e.text for e in main.events() if e.kind == "call"]
    assert "WskSend(b'back') returned STATUS_SUCCESS" in calls
    assert calls[0].startswith("WskSocketConnect(")
