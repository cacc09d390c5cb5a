"""WskReceiveFromEvent (retention, WskRelease, STATUS_DATA_NOT_ACCEPTED, static callbacks),
the CMSGHDR macros, and bad input on datagram calls."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from test_datagram import WAIT, Dgram, make_datagram_socket, pktinfo, udp_peer

from pywsk.nt import (
    DISPATCH_LEVEL,
    STATUS_DATA_NOT_ACCEPTED,
    STATUS_INVALID_HANDLE,
    STATUS_INVALID_PARAMETER,
    STATUS_NOT_SUPPORTED,
    STATUS_PENDING,
    STATUS_SUCCESS,
    KeGetCurrentIrql,
)
from pywsk.testing.driver import WskTestClient, make_buffer
from pywsk.wsk import (
    AF_INET,
    AF_INET6,
    CMSGHDR,
    NPI_WSK_INTERFACE_ID,
    WSA_CMSG_DATA,
    WSA_CMSG_FIRSTHDR,
    WSA_CMSG_LEN,
    WSA_CMSG_NXTHDR,
    WSA_CMSG_SPACE,
    WSABUF,
    WSAMSG,
    WSK_BUF,
    WSK_BUF_LIST,
    WSK_CLIENT_DATAGRAM_DISPATCH,
    WSK_DATAGRAM_INDICATION,
    WSK_EVENT_CALLBACK_CONTROL,
    WSK_EVENT_RECEIVE_FROM,
    WSK_FLAG_AT_DISPATCH_LEVEL,
    WSK_SET_STATIC_EVENT_CALLBACKS,
    sockaddr_from_tuple,
)


class Indications:
    """A WskReceiveFromEvent that records each datagram and answers with ``answer``."""

    def __init__(self, answer: int = STATUS_SUCCESS) -> None:
        self.answer = answer
        self.datagrams: list[tuple[bytes, tuple[Any, ...]]] = []
        self.lists: list[WSK_DATAGRAM_INDICATION] = []
        self.flags: list[int] = []
        self.irqls: list[int] = []
        self.cond = threading.Condition()

    def __call__(self, context: Any, flags: int, head: WSK_DATAGRAM_INDICATION | None) -> int:
        with self.cond:
            self.flags.append(flags)
            self.irqls.append(KeGetCurrentIrql())
            if head is not None:
                self.lists.append(head)
            element = head
            while element is not None:
                mdl = element.Buffer.Mdl
                assert mdl is not None
                start = element.Buffer.Offset
                data = bytes(mdl._view[start : start + element.Buffer.Length])
                assert element.RemoteAddress is not None
                self.datagrams.append((data, element.RemoteAddress.to_tuple()))
                element = element.Next
            self.cond.notify_all()
        return self.answer

    def wait_for(self, count: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.datagrams) >= count, WAIT), self.datagrams


def enable(wsk: WskTestClient, dgram: Dgram, mask: int = WSK_EVENT_RECEIVE_FROM) -> int:
    control = WSK_EVENT_CALLBACK_CONTROL(NPI_WSK_INTERFACE_ID, mask)
    from pywsk.wsk import SO_WSK_EVENT_CALLBACK, SOL_SOCKET, WskSetOption

    status: int = dgram.d.WskControlSocket(
        dgram.sock, WskSetOption, SO_WSK_EVENT_CALLBACK, SOL_SOCKET, 0, control, 0, None, None, None
    )
    return status


def static_client() -> WskTestClient:
    """A fresh client with WskReceiveFromEvent enabled statically (before any socket)."""
    wsk = WskTestClient()
    control = WSK_EVENT_CALLBACK_CONTROL(NPI_WSK_INTERFACE_ID, WSK_EVENT_RECEIVE_FROM)
    assert wsk.provider.Dispatch is not None
    status = wsk.provider.Dispatch.WskControlClient(
        wsk.provider.Client, WSK_SET_STATIC_EVENT_CALLBACKS, 0, control, 0, None, None, None
    )
    assert status == STATUS_SUCCESS
    return wsk


def event_socket(wsk: WskTestClient, family: int, events: Indications) -> Dgram:
    dispatch = WSK_CLIENT_DATAGRAM_DISPATCH(WskReceiveFromEvent=events)
    sock = make_datagram_socket(wsk, family, context="ctx", dispatch=dispatch)
    return Dgram.bind_existing(wsk, family, sock)


def test_indications_arrive_in_order_with_their_senders(wsk: WskTestClient) -> None:
    events = Indications()
    dgram = event_socket(wsk, AF_INET, events)
    peer = udp_peer(AF_INET)
    peer.sendto(b"queued before enabling", dgram.address[:2])
    assert enable(wsk, dgram) == STATUS_SUCCESS
    for n in range(20):
        peer.sendto(b"d%02d" % n, dgram.address[:2])
    events.wait_for(21)
    assert [d for d, _ in events.datagrams] == [b"queued before enabling"] + [
        b"d%02d" % n for n in range(20)
    ]
    assert {sender[:2] for _, sender in events.datagrams} == {peer.getsockname()}
    assert all(flags & WSK_FLAG_AT_DISPATCH_LEVEL for flags in events.flags)
    assert set(events.irqls) == {DISPATCH_LEVEL}
    assert dgram.close().status == STATUS_SUCCESS
    peer.close()


def test_retained_lists_stay_the_clients_until_released(wsk: WskTestClient) -> None:
    events = Indications(answer=STATUS_PENDING)
    dgram = event_socket(wsk, AF_INET6, events)
    assert enable(wsk, dgram) == STATUS_SUCCESS
    peer = udp_peer(AF_INET6)
    peer.sendto(b"kept", dgram.address[:2])
    events.wait_for(1)
    head = events.lists[0]
    mdl = head.Buffer.Mdl
    assert mdl is not None
    assert bytes(mdl._view[:4]) == b"kept"  # still readable: the client holds it
    assert dgram.d.WskRelease(dgram.sock, head) == STATUS_SUCCESS
    assert dgram.d.WskRelease(dgram.sock, head) == STATUS_INVALID_PARAMETER  # given back already
    assert dgram.d.WskRelease(dgram.sock, WSK_DATAGRAM_INDICATION()) == STATUS_INVALID_PARAMETER
    assert dgram.close().status == STATUS_SUCCESS
    peer.close()


def test_data_not_accepted_disables_the_event_and_keeps_the_datagram(
    wsk: WskTestClient,
) -> None:
    events = Indications(answer=STATUS_DATA_NOT_ACCEPTED)
    dgram = event_socket(wsk, AF_INET, events)
    assert enable(wsk, dgram) == STATUS_SUCCESS
    peer = udp_peer(AF_INET)
    peer.sendto(b"refused", dgram.address[:2])
    events.wait_for(1)
    request, pool, _out = dgram.receive_from(100)
    request.wait(WAIT)
    assert bytes(pool[: request.information]) == b"refused"
    peer.sendto(b"later", dgram.address[:2])
    request, pool, _out = dgram.receive_from(100)
    request.wait(WAIT)
    assert bytes(pool[: request.information]) == b"later"
    assert len(events.datagrams) == 1  # the event stayed disabled
    assert dgram.close().status == STATUS_SUCCESS
    peer.close()


def test_static_receive_from_event() -> None:
    with static_client() as wsk:
        events = Indications()
        dgram = event_socket(wsk, AF_INET, events)
        peer = udp_peer(AF_INET)
        peer.sendto(b"static", dgram.address[:2])
        events.wait_for(1)
        assert events.datagrams[0][0] == b"static"
        assert dgram.close().status == STATUS_SUCCESS
        peer.close()


def test_cmsg_macros_follow_ws2def() -> None:
    assert (WSA_CMSG_LEN(0), WSA_CMSG_LEN(8), WSA_CMSG_SPACE(8), WSA_CMSG_SPACE(20)) == (
        16,
        24,
        24,
        40,
    )
    control = pktinfo(AF_INET, "127.0.0.1") + pktinfo(AF_INET6, "::1")
    msg = WSAMSG(Control=WSABUF(len(control), control))
    first = WSA_CMSG_FIRSTHDR(msg)
    assert first is not None
    second = WSA_CMSG_NXTHDR(msg, first)
    assert second is not None
    assert second.offset == 24
    assert second.cmsg_len == WSA_CMSG_LEN(20)
    assert bytes(WSA_CMSG_DATA(second)[:16]) == socket.inet_pton(socket.AF_INET6, "::1")
    assert WSA_CMSG_NXTHDR(msg, second) is None
    assert WSA_CMSG_FIRSTHDR(WSAMSG(Control=WSABUF(8, bytearray(8)))) is None


@pytest.mark.no_verifier  # it reports the bad WSK_BUFs (WSK-004); here the statuses are checked
def test_bad_input_completes_the_irp_and_spares_other_sockets(wsk: WskTestClient) -> None:
    victim, bystander = Dgram(wsk, AF_INET), Dgram(wsk, AF_INET)
    peer = udp_peer(AF_INET)
    waiting, pool, _out = bystander.receive_from(100)
    to = peer.getsockname()
    _p, good = make_buffer(b"ok")
    d, s = victim.d, victim.sock

    def send_to(buf: Any, remote: Any, length: int = 0, control: Any = None) -> int | None:
        request = wsk.call("WskSendTo", d.WskSendTo, s, buf, 0, remote, length, control)
        assert request.done
        return request.status

    assert send_to(WSK_BUF(good.Mdl, 0, 99), sockaddr_from_tuple(to)) == STATUS_INVALID_PARAMETER
    assert send_to(good, None) == STATUS_INVALID_PARAMETER  # NULL RemoteAddress, no fixed peer
    assert send_to(good, sockaddr_from_tuple(("::1", 9))) == STATUS_INVALID_PARAMETER
    control = pktinfo(AF_INET, "127.0.0.1")
    assert send_to(good, sockaddr_from_tuple(to), len(control) + 1, control) == (
        STATUS_INVALID_PARAMETER
    )
    malformed = bytearray(control)
    CMSGHDR(malformed).cmsg_len = 8  # shorter than a header
    assert send_to(good, sockaddr_from_tuple(to), len(malformed), malformed) == (
        STATUS_INVALID_PARAMETER
    )
    CMSGHDR(malformed).cmsg_len = 999  # beyond ControlInfoLength
    assert send_to(good, sockaddr_from_tuple(to), len(malformed), malformed) == (
        STATUS_INVALID_PARAMETER
    )
    assert send_to(good, sockaddr_from_tuple(to), 4, None) == STATUS_INVALID_PARAMETER
    unknown = bytearray(control)
    CMSGHDR(unknown).cmsg_type = 77
    assert send_to(good, sockaddr_from_tuple(to), len(unknown), unknown) == STATUS_NOT_SUPPORTED
    wrong_family = pktinfo(AF_INET6, "::1")
    assert send_to(good, sockaddr_from_tuple(to), len(wrong_family), wrong_family) == (
        STATUS_INVALID_PARAMETER
    )
    _b, first = make_buffer(b"batch")
    bad_list = WSK_BUF_LIST(WSK_BUF_LIST(None, WSK_BUF(good.Mdl, 5, 10)), first)
    batch = wsk.call(
        "WskSendMessages", d.WskSendMessages, s, bad_list, 0, sockaddr_from_tuple(to), 0, None
    )
    assert batch.status == STATUS_INVALID_PARAMETER
    # A datagram call on a connection socket, and a connection call on a datagram socket.
    conn = wsk.socket(AF_INET).information
    refused = wsk.call("WskSendTo", d.WskSendTo, conn, good, 0, sockaddr_from_tuple(to), 0, None)
    assert refused.status == STATUS_INVALID_HANDLE
    from pywsk.provider.client import _WskSend

    assert wsk.call("WskSend", _WskSend, s, good, 0).status == STATUS_INVALID_HANDLE
    assert wsk.close_socket(conn).status == STATUS_SUCCESS
    # The victim still works, and the bystander's pending receive was never touched.
    assert send_to(good, sockaddr_from_tuple(to)) == STATUS_SUCCESS
    peer.settimeout(WAIT)
    assert peer.recv(10) == b"ok"  # nothing of the refused batch went out before it
    assert not waiting.done
    peer.sendto(b"bystander", bystander.address[:2])
    waiting.wait(WAIT)
    assert bytes(pool[: waiting.information]) == b"bystander"
    victim.close()
    bystander.close()
    peer.close()


def test_each_retained_element_can_be_released_on_its_own(wsk: WskTestClient) -> None:
    events = Indications(answer=STATUS_PENDING)
    dgram = event_socket(wsk, AF_INET, events)
    peer = udp_peer(AF_INET)
    for n in range(5):
        peer.sendto(b"%d" % n, dgram.address[:2])  # queued before enabling: one list
    assert enable(wsk, dgram) == STATUS_SUCCESS
    events.wait_for(5)
    elements = []
    for head in events.lists:
        element: WSK_DATAGRAM_INDICATION | None = head
        while element is not None:
            elements.append(element)
            element = element.Next
    for element in elements:
        element.Next = None  # unlinked by the client, as a driver that queues them does
    for element in reversed(elements):
        assert dgram.d.WskRelease(dgram.sock, element) == STATUS_SUCCESS
    assert dgram.d.WskRelease(dgram.sock, elements[0]) == STATUS_INVALID_PARAMETER
    assert dgram.close().status == STATUS_SUCCESS
    peer.close()


def test_an_empty_control_object_after_pktinfo_is_accepted(wsk: WskTestClient) -> None:
    from pywsk.wsk import IP_OPTIONS, IPPROTO_IP

    dgram = Dgram(wsk, AF_INET, "0.0.0.0")
    peer = udp_peer(AF_INET)
    control = pktinfo(AF_INET, "127.0.0.4") + bytearray(WSA_CMSG_SPACE(0))
    empty = CMSGHDR(control, WSA_CMSG_SPACE(8))
    empty.cmsg_len, empty.cmsg_level, empty.cmsg_type = WSA_CMSG_LEN(0), IPPROTO_IP, IP_OPTIONS
    assert dgram.send_to(b"x", peer.getsockname(), control).status == STATUS_SUCCESS
    assert peer.recvfrom(10)[1] == ("127.0.0.4", dgram.address[1])
    dgram.close()
    peer.close()


def test_multicast_membership_and_fixed_addresses_before_bind(wsk: WskTestClient) -> None:
    from pywsk.nt import STATUS_INVALID_DEVICE_STATE
    from pywsk.wsk import (
        IP_ADD_MEMBERSHIP,
        IP_DROP_MEMBERSHIP,
        IP_MREQ,
        IPPROTO_IP,
        SIO_WSK_SET_REMOTE_ADDRESS,
        WskIoctl,
        WskSetOption,
    )

    sock = make_datagram_socket(wsk, AF_INET)
    d = sock.Dispatch
    early = wsk.call(
        "WskControlSocket", d.WskControlSocket, sock, WskIoctl, SIO_WSK_SET_REMOTE_ADDRESS, 0,
        16, sockaddr_from_tuple(("127.0.0.1", 9)), 0, None, None,
    )  # fmt: skip
    assert early.status == STATUS_INVALID_DEVICE_STATE
    assert wsk.close_socket(sock).status == STATUS_SUCCESS
    dgram = Dgram(wsk, AF_INET, "0.0.0.0")
    request = IP_MREQ()
    request.imr_multiaddr[:] = socket.inet_aton("239.1.2.3")
    request.imr_interface[:] = socket.inet_aton("127.0.0.1")

    def membership(code: int, size: int = 8) -> int | None:
        return wsk.call(
            "WskControlSocket", dgram.d.WskControlSocket, dgram.sock, WskSetOption, code,
            IPPROTO_IP, size, request, 0, None, None,
        ).status  # fmt: skip

    assert membership(IP_ADD_MEMBERSHIP) == STATUS_SUCCESS
    assert membership(IP_DROP_MEMBERSHIP) == STATUS_SUCCESS
    assert membership(IP_DROP_MEMBERSHIP) != STATUS_SUCCESS  # not a member any more
    assert membership(IP_ADD_MEMBERSHIP, 4) == STATUS_INVALID_PARAMETER
    dgram.close()


def test_a_static_event_stays_on_after_data_not_accepted() -> None:
    with static_client() as wsk:
        events = Indications(answer=STATUS_DATA_NOT_ACCEPTED)
        dgram = event_socket(wsk, AF_INET, events)
        peer = udp_peer(AF_INET)
        peer.sendto(b"one", dgram.address[:2])
        events.wait_for(1)
        peer.sendto(b"two", dgram.address[:2])
        events.wait_for(2)  # still enabled: the next datagram is offered too
        assert [d for d, _ in events.datagrams] == [b"one", b"two"]  # each offered once
        for expected in (b"one", b"two"):  # refused datagrams wait for WskReceiveFrom
            request, pool, _out = dgram.receive_from(100)
            request.wait(WAIT)
            assert bytes(pool[: request.information]) == expected
        assert dgram.close().status == STATUS_SUCCESS
        peer.close()
