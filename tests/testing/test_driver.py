"""pywsk.testing.driver frees what it allocates: the buffers of its calls with their IRPs
when it closes, and make_buffer's once no test client is open."""

from __future__ import annotations

from pywsk.nt import STATUS_SUCCESS, IrpState
from pywsk.testing import Close, LoopbackPeer, ReadToEnd, Send
from pywsk.testing.driver import Request, WskTestClient, make_buffer

WAIT = 10.0


def _state(request: Request) -> IrpState:
    return request.irp.state


def test_close_frees_every_irp_mdl_and_pool_block() -> None:
    with LoopbackPeer([Send(b"hello"), ReadToEnd(), Close()]) as peer:
        wsk = WskTestClient()
        sock = wsk.connect(peer.address)
        receive, pool = wsk.receive(sock, 16)
        assert receive.wait(WAIT).status == STATUS_SUCCESS
        assert bytes(pool[: receive.information]) == b"hello" == receive.data
        send = wsk.send(sock, b"x" * 1000).wait(WAIT)
        loose_pool, buf = make_buffer(b"mine")
        own = wsk.start("WskSend", wsk.dispatch(sock).WskSend, sock, buf, 0).wait(WAIT)
        assert own.status == STATUS_SUCCESS
        disconnect = wsk.disconnect(sock, b"final").wait(WAIT)
        data, last = wsk.receive_all(sock)
        assert (data, last.status) == (b"", STATUS_SUCCESS)
        kept = [receive, send, own, disconnect, last]
        assert all(_state(r) is not IrpState.FREED for r in kept)
        wsk.close()
    assert all(_state(r) is IrpState.FREED for r in kept)
    assert pool.closed  # ExFreePoolWithTag closes the block
    assert loose_pool.closed
    assert wsk.sockets == []
    # the suite's verifier (tests/conftest.py) fails this test if anything leaked


def test_make_buffer_waits_for_the_last_open_client() -> None:
    first, second = WskTestClient(), WskTestClient()
    pool, _buf = make_buffer(8)
    first.close()
    assert not pool.closed  # the second client may still be using it
    second.close()
    assert pool.closed
