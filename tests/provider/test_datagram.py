"""Datagram sockets against plain Linux UDP peers on loopback: WskSendTo, WskReceiveFrom,
WskSendMessages, control information, statuses, ordering, close, and basic sockets."""

from __future__ import annotations

import ctypes
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from pywsk.nt import (
    STATUS_BUFFER_OVERFLOW,
    STATUS_CANCELLED,
    STATUS_INVALID_BUFFER_SIZE,
    STATUS_INVALID_DEVICE_STATE,
    STATUS_INVALID_PARAMETER,
    STATUS_PENDING,
    STATUS_PORT_UNREACHABLE,
    STATUS_SUCCESS,
    IoCancelIrp,
)
from pywsk.testing.driver import Request, WskTestClient, make_buffer
from pywsk.wsk import (
    AF_INET,
    AF_INET6,
    CMSGHDR,
    IN6_PKTINFO,
    IN_PKTINFO,
    IP_ECN,
    IP_PKTINFO,
    IP_RECVECN,
    IP_TTL,
    IPPROTO_IP,
    IPPROTO_IPV6,
    IPPROTO_UDP,
    IPV6_ECN,
    IPV6_PKTINFO,
    IPV6_RECVECN,
    IPV6_UNICAST_HOPS,
    MSG_CTRUNC,
    MSG_TRUNC,
    PULONG,
    SIO_WSK_SET_REMOTE_ADDRESS,
    SIO_WSK_SET_SENDTO_ADDRESS,
    SO_BROADCAST,
    SO_RCVBUF,
    SOCK_DGRAM,
    SOCKADDR_STORAGE,
    SOL_SOCKET,
    WSA_CMSG_DATA,
    WSA_CMSG_LEN,
    WSA_CMSG_SPACE,
    WSK_BUF_LIST,
    WSK_FLAG_BASIC_SOCKET,
    WSK_FLAG_DATAGRAM_SOCKET,
    WSK_PROVIDER_BASIC_DISPATCH,
    WSK_PROVIDER_DATAGRAM_DISPATCH,
    WSK_SOCKET,
    WskGetOption,
    WskIoctl,
    WskSetOption,
    sockaddr_from_tuple,
)

WAIT = 10.0
LOOP = {AF_INET: "127.0.0.1", AF_INET6: "::1"}
PY_FAMILY = {AF_INET: socket.AF_INET, AF_INET6: socket.AF_INET6}


class Dgram:
    """A bound WSK datagram socket and the calls tests make on it."""

    def __init__(
        self, wsk: WskTestClient, family: int, host: str | None = None, sock: Any = None
    ) -> None:
        self.wsk = wsk
        self.family = family
        self.sock = sock if sock is not None else make_datagram_socket(wsk, family)
        self.d: WSK_PROVIDER_DATAGRAM_DISPATCH = self.sock.Dispatch
        bind = wsk.call(
            "WskBind", self.d.WskBind, self.sock, sockaddr_from_tuple((host or LOOP[family], 0)), 0
        )
        assert bind.status == STATUS_SUCCESS
        local = SOCKADDR_STORAGE()
        assert (
            wsk.call("WskGetLocalAddress", self.d.WskGetLocalAddress, self.sock, local).status == 0
        )
        self.address = local.to_tuple()

    @classmethod
    def bind_existing(cls, wsk: WskTestClient, family: int, sock: Any) -> Dgram:
        return cls(wsk, family, None, sock)

    def send_to(
        self, data: bytes, to: tuple[Any, ...] | None, control: bytearray | None = None
    ) -> Request:
        _pool, buf = make_buffer(data)
        remote = sockaddr_from_tuple(to) if to is not None else None
        length = len(control) if control is not None else 0
        return self.wsk.call(
            "WskSendTo", self.d.WskSendTo, self.sock, buf, 0, remote, length, control
        )

    def receive_from(self, size: int, control: int = 0) -> tuple[Request, Any, dict[str, Any]]:
        pool, buf = make_buffer(size)
        out: dict[str, Any] = {
            "remote": SOCKADDR_STORAGE(),
            "length": PULONG(control) if control else None,
            "control": bytearray(control) if control else None,
            "flags": PULONG(0),
        }
        request = self.wsk.start(
            "WskReceiveFrom",
            self.d.WskReceiveFrom,
            self.sock,
            buf,
            0,
            out["remote"],
            out["length"],
            out["control"],
            out["flags"],
        )
        return request, pool, out

    def option(self, kind: int, level: int, code: int, value: Any = 0) -> Request:
        box = PULONG(0)
        request = self.wsk.call(
            "WskControlSocket",
            self.d.WskControlSocket,
            self.sock,
            kind,
            code,
            level,
            4,
            value if kind == WskSetOption else None,
            4,
            box,
            None,
        )
        request.information = box.value if kind == WskGetOption else request.information
        return request

    def close(self) -> Request:
        return self.wsk.close_socket(self.sock)


def make_datagram_socket(
    wsk: WskTestClient,
    family: int,
    context: Any = None,
    dispatch: Any = None,
    transport: tuple[int, int, int] = (SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_DATAGRAM_SOCKET),
) -> Any:
    """WskSocket of ``transport`` (type, protocol, category): a datagram socket by default."""
    assert wsk.provider.Dispatch is not None
    kind, protocol, category = transport
    made = wsk.call(
        "WskSocket",
        wsk.provider.Dispatch.WskSocket,
        wsk.provider.Client,
        family,
        kind,
        protocol,
        category,
        context,
        dispatch,
        None,
        None,
        None,
    )
    assert made.status == STATUS_SUCCESS, made
    assert isinstance(made.information, WSK_SOCKET)
    return made.information


def udp_peer(family: int) -> socket.socket:
    peer = socket.socket(PY_FAMILY[family], socket.SOCK_DGRAM)
    peer.bind((LOOP[family], 0))
    peer.settimeout(WAIT)
    return peer


def pktinfo(family: int, address: str) -> bytearray:
    """A ControlInfo buffer holding one IN_PKTINFO / IN6_PKTINFO naming ``address``."""
    kind = IN_PKTINFO if family == AF_INET else IN6_PKTINFO
    control = bytearray(WSA_CMSG_SPACE(ctypes.sizeof(kind)))
    header = CMSGHDR(control)
    header.cmsg_len = WSA_CMSG_LEN(ctypes.sizeof(kind))
    if family == AF_INET:
        header.cmsg_level, header.cmsg_type = IPPROTO_IP, IP_PKTINFO
        IN_PKTINFO.from_buffer(WSA_CMSG_DATA(header)).ipi_addr[:] = socket.inet_pton(
            socket.AF_INET, address
        )
    else:
        header.cmsg_level, header.cmsg_type = IPPROTO_IPV6, IPV6_PKTINFO
        IN6_PKTINFO.from_buffer(WSA_CMSG_DATA(header)).ipi6_addr[:] = socket.inet_pton(
            socket.AF_INET6, address
        )
    return control


@pytest.fixture(params=[AF_INET, AF_INET6], ids=["ipv4", "ipv6"])
def family(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def dgram(wsk: WskTestClient, family: int) -> Iterator[Dgram]:
    made = Dgram(wsk, family)
    yield made
    made.close()


def test_send_to_and_receive_from_a_plain_udp_peer(dgram: Dgram, family: int) -> None:
    peer = udp_peer(family)
    sent = dgram.send_to(b"to the peer", peer.getsockname())
    assert (sent.returned, sent.status, sent.information) == (STATUS_SUCCESS, STATUS_SUCCESS, 11)
    data, source = peer.recvfrom(100)
    assert data == b"to the peer"
    assert source[:2] == dgram.address[:2]
    request, pool, out = dgram.receive_from(100)
    assert request.returned == STATUS_PENDING
    peer.sendto(b"to WSK", dgram.address[:2])
    request.wait(WAIT)
    assert (request.status, request.information) == (STATUS_SUCCESS, 6)
    assert bytes(pool[:6]) == b"to WSK"
    assert out["remote"].to_tuple()[:2] == peer.getsockname()[:2]
    assert out["flags"].value == 0
    peer.close()


def test_pktinfo_chooses_the_source_and_reports_the_destination(wsk: WskTestClient) -> None:
    # Bound to the wildcard address: the source of each datagram is the one IN_PKTINFO names.
    any4 = Dgram(wsk, AF_INET, "0.0.0.0")
    peer = udp_peer(AF_INET)
    for source in ("127.0.0.2", "127.0.0.3"):
        assert any4.send_to(b"s", peer.getsockname(), pktinfo(AF_INET, source)).status == 0
        assert peer.recvfrom(10)[1] == (source, any4.address[1])
    assert any4.option(WskSetOption, IPPROTO_IP, IP_PKTINFO, 1).status == STATUS_SUCCESS
    assert any4.option(WskGetOption, IPPROTO_IP, IP_PKTINFO).information == 1
    request, _pool, out = any4.receive_from(10, control=64)
    peer.sendto(b"r", ("127.0.0.9", any4.address[1]))
    request.wait(WAIT)
    assert request.status == STATUS_SUCCESS
    assert out["length"].value == WSA_CMSG_SPACE(ctypes.sizeof(IN_PKTINFO))
    header = CMSGHDR(out["control"])
    assert (header.cmsg_level, header.cmsg_type) == (IPPROTO_IP, IP_PKTINFO)
    assert header.cmsg_len == WSA_CMSG_LEN(ctypes.sizeof(IN_PKTINFO))
    info = IN_PKTINFO.from_buffer(WSA_CMSG_DATA(header))
    assert socket.inet_ntop(socket.AF_INET, bytes(info.ipi_addr)) == "127.0.0.9"
    assert info.ipi_ifindex == socket.if_nametoindex("lo")
    # Room for less than one object: none is written, MSG_CTRUNC says so.
    request, _pool, out = any4.receive_from(10, control=8)
    peer.sendto(b"r", ("127.0.0.9", any4.address[1]))
    request.wait(WAIT)
    assert out["length"].value == 0
    assert out["flags"].value & MSG_CTRUNC
    any4.close()
    peer.close()


def test_ipv6_pktinfo(wsk: WskTestClient) -> None:
    six = Dgram(wsk, AF_INET6, "::")
    peer = udp_peer(AF_INET6)
    assert six.send_to(b"6", peer.getsockname(), pktinfo(AF_INET6, "::1")).status == 0
    assert peer.recvfrom(10)[1][:2] == ("::1", six.address[1])
    assert six.option(WskSetOption, IPPROTO_IPV6, IPV6_PKTINFO, 1).status == STATUS_SUCCESS
    request, _pool, out = six.receive_from(10, control=64)
    peer.sendto(b"r", ("::1", six.address[1]))
    request.wait(WAIT)
    header = CMSGHDR(out["control"])
    assert (header.cmsg_level, header.cmsg_type) == (IPPROTO_IPV6, IPV6_PKTINFO)
    info = IN6_PKTINFO.from_buffer(WSA_CMSG_DATA(header))
    assert socket.inet_ntop(socket.AF_INET6, bytes(info.ipi6_addr)) == "::1"
    six.close()
    peer.close()


def test_a_datagram_larger_than_the_buffer_is_truncated(dgram: Dgram, family: int) -> None:
    peer = udp_peer(family)
    peer.sendto(b"0123456789", dgram.address[:2])
    request, pool, out = dgram.receive_from(4)
    request.wait(WAIT)
    assert (request.status, request.information) == (STATUS_BUFFER_OVERFLOW, 4)
    assert bytes(pool[:4]) == b"0123"
    assert out["flags"].value & MSG_TRUNC
    # The rest of that datagram is gone; the next receive gets the next datagram.
    peer.sendto(b"next", dgram.address[:2])
    request, pool, _out = dgram.receive_from(100)
    request.wait(WAIT)
    assert (request.status, bytes(pool[:4])) == (STATUS_SUCCESS, b"next")
    peer.close()


def test_a_send_larger_than_the_largest_udp_payload(dgram: Dgram, family: int) -> None:
    peer = udp_peer(family)
    largest = 65507 if family == AF_INET else 65527
    assert dgram.send_to(b"x" * (largest + 1), peer.getsockname()).status == (
        STATUS_INVALID_BUFFER_SIZE
    )
    ok = dgram.send_to(b"x" * largest, peer.getsockname())
    assert (ok.status, ok.information) == (STATUS_SUCCESS, largest)
    assert len(peer.recv(70000)) == largest
    peer.close()


def test_icmp_port_unreachable_is_reported_once_to_a_later_receive(
    dgram: Dgram, family: int
) -> None:
    gone = udp_peer(family)
    address = gone.getsockname()
    gone.close()
    assert dgram.send_to(b"nobody", address).status == STATUS_SUCCESS
    request, _pool, _out = dgram.receive_from(100)
    request.wait(WAIT)
    assert (request.status, request.information) == (STATUS_PORT_UNREACHABLE, 0)
    peer = udp_peer(family)
    peer.sendto(b"after", dgram.address[:2])
    request, pool, _out = dgram.receive_from(100)
    request.wait(WAIT)
    assert (request.status, bytes(pool[:5])) == (STATUS_SUCCESS, b"after")
    peer.close()


def test_receives_complete_in_order_and_a_pending_one_is_cancelled_at_close(
    wsk: WskTestClient, family: int
) -> None:
    dgram = Dgram(wsk, family)
    peer = udp_peer(family)
    receives = [dgram.receive_from(16) for _ in range(4)]
    assert all(r.returned == STATUS_PENDING for r, _p, _o in receives)
    for n in range(3):
        peer.sendto(b"datagram %d" % n, dgram.address[:2])
    for n, (request, pool, _out) in enumerate(receives[:3]):
        request.wait(WAIT)
        assert bytes(pool[: request.information]) == b"datagram %d" % n
    assert [r.completed_at for r, _p, _o in receives[:3]] == sorted(
        r.completed_at for r, _p, _o in receives[:3] if r.completed_at is not None
    )
    last = receives[3][0]
    assert not last.done
    closed = dgram.close()
    assert closed.status == STATUS_SUCCESS
    assert last.status == STATUS_CANCELLED  # completed by the close, before its own IRP
    assert last.completed_at is not None
    assert closed.completed_at is not None
    assert last.completed_at <= closed.completed_at
    peer.close()


def test_a_pending_receive_can_be_cancelled(dgram: Dgram) -> None:
    request, _pool, _out = dgram.receive_from(16)
    assert request.returned == STATUS_PENDING
    IoCancelIrp(request.irp)
    request.wait(WAIT)
    assert request.status == STATUS_CANCELLED


def test_send_messages_sends_a_batch_in_order(
    dgram: Dgram, family: int, wsk: WskTestClient
) -> None:
    peer = udp_peer(family)
    payloads = [b"first", b"second", b"third" * 100]
    head: WSK_BUF_LIST | None = None
    for payload in reversed(payloads):
        _pool, buf = make_buffer(payload)
        head = WSK_BUF_LIST(head, buf)
    control = pktinfo(family, LOOP[family])
    batch = wsk.call(
        "WskSendMessages",
        dgram.d.WskSendMessages,
        dgram.sock,
        head,
        0,
        sockaddr_from_tuple(peer.getsockname()),
        len(control),
        control,
    )
    assert (batch.status, batch.information) == (STATUS_SUCCESS, sum(map(len, payloads)))
    assert [peer.recv(1000) for _ in payloads] == payloads
    peer.close()


def test_fixed_destinations(dgram: Dgram, family: int) -> None:
    peer, other = udp_peer(family), udp_peer(family)
    target = sockaddr_from_tuple(peer.getsockname())

    def ioctl(code: int, address: Any) -> int:
        return (
            dgram.wsk.call(
                "WskControlSocket",
                dgram.d.WskControlSocket,
                dgram.sock,
                WskIoctl,
                code,
                0,
                0 if address is None else 28,
                address,
                0,
                None,
                None,
            ).status
            or 0
        )

    assert dgram.send_to(b"?", None).status == STATUS_INVALID_PARAMETER  # no destination
    assert ioctl(SIO_WSK_SET_SENDTO_ADDRESS, target) == STATUS_SUCCESS
    assert dgram.send_to(b"default", None).status == STATUS_SUCCESS
    assert peer.recv(100) == b"default"
    assert ioctl(SIO_WSK_SET_SENDTO_ADDRESS, None) == STATUS_SUCCESS
    assert ioctl(SIO_WSK_SET_REMOTE_ADDRESS, target) == STATUS_SUCCESS
    # Datagrams from other addresses are discarded; the fixed peer's arrive.
    request, pool, out = dgram.receive_from(100)
    other.sendto(b"stranger", dgram.address[:2])
    peer.sendto(b"friend", dgram.address[:2])
    request.wait(WAIT)
    assert bytes(pool[: request.information]) == b"friend"
    assert out["remote"].to_tuple()[:2] == peer.getsockname()[:2]
    assert dgram.send_to(b"fixed", None).status == STATUS_SUCCESS
    assert peer.recv(100) == b"fixed"
    assert ioctl(SIO_WSK_SET_REMOTE_ADDRESS, None) == STATUS_SUCCESS
    request, pool, _out = dgram.receive_from(100)
    other.sendto(b"welcome", dgram.address[:2])
    request.wait(WAIT)
    assert bytes(pool[: request.information]) == b"welcome"
    peer.close()
    other.close()


def test_datagram_options(dgram: Dgram, family: int) -> None:
    assert dgram.option(WskSetOption, SOL_SOCKET, SO_BROADCAST, 1).status == STATUS_SUCCESS
    assert dgram.option(WskGetOption, SOL_SOCKET, SO_BROADCAST).information == 1
    assert dgram.option(WskSetOption, SOL_SOCKET, SO_RCVBUF, 65536).status == STATUS_SUCCESS
    assert dgram.option(WskGetOption, SOL_SOCKET, SO_RCVBUF).information >= 65536
    if family == AF_INET:
        level, hops = IPPROTO_IP, IP_TTL
        wrong = (IPPROTO_IPV6, IPV6_UNICAST_HOPS)
    else:
        level, hops = IPPROTO_IPV6, IPV6_UNICAST_HOPS
        wrong = (IPPROTO_IP, IP_TTL)
    assert dgram.option(WskSetOption, level, hops, 7).status == STATUS_SUCCESS
    assert dgram.option(WskGetOption, level, hops).information == 7
    assert dgram.option(WskSetOption, *wrong, 7).status == STATUS_INVALID_PARAMETER


def test_calls_before_bind(wsk: WskTestClient) -> None:
    sock = make_datagram_socket(wsk, AF_INET)
    _pool, buf = make_buffer(b"x")
    d = sock.Dispatch
    early = wsk.call(
        "WskSendTo", d.WskSendTo, sock, buf, 0, sockaddr_from_tuple(("127.0.0.1", 9)), 0, None
    )
    assert early.status == STATUS_INVALID_DEVICE_STATE
    local = SOCKADDR_STORAGE()
    assert wsk.call("gla", d.WskGetLocalAddress, sock, local).status == STATUS_INVALID_DEVICE_STATE
    assert wsk.close_socket(sock).status == STATUS_SUCCESS


def test_basic_socket_has_control_and_close_only(wsk: WskTestClient) -> None:
    for kind, proto in ((SOCK_DGRAM, IPPROTO_UDP), (1, 6)):
        sock = make_datagram_socket(wsk, AF_INET, transport=(kind, proto, WSK_FLAG_BASIC_SOCKET))
        assert isinstance(sock.Dispatch, WSK_PROVIDER_BASIC_DISPATCH)
        box = PULONG(0)
        status = sock.Dispatch.WskControlSocket(
            sock, WskGetOption, SO_RCVBUF, SOL_SOCKET, 0, None, 4, box, None, None
        )
        assert status == STATUS_SUCCESS
        assert box.value > 0
        assert wsk.close_socket(sock).status == STATUS_SUCCESS


def ecn_control(family: int, codepoint: int) -> bytearray:
    control = bytearray(WSA_CMSG_SPACE(4))
    header = CMSGHDR(control)
    header.cmsg_len = WSA_CMSG_LEN(4)
    header.cmsg_level = IPPROTO_IP if family == AF_INET else IPPROTO_IPV6
    header.cmsg_type = IP_ECN if family == AF_INET else IPV6_ECN
    WSA_CMSG_DATA(header)[:4] = codepoint.to_bytes(4, "little")
    return control


def test_ecn_codepoints_both_ways(dgram: Dgram, family: int) -> None:
    peer = udp_peer(family)
    if family == AF_INET:
        peer.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
        peer.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x02)  # ECT(0)
        level, receive_option, kind = IPPROTO_IP, IP_RECVECN, IP_ECN
    else:
        peer.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
        peer.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, 0x02)
        level, receive_option, kind = IPPROTO_IPV6, IPV6_RECVECN, IPV6_ECN
    assert dgram.option(WskSetOption, level, receive_option, 1).status == STATUS_SUCCESS
    request, _pool, out = dgram.receive_from(10, control=64)
    peer.sendto(b"ecn", dgram.address[:2])
    request.wait(WAIT)
    header = CMSGHDR(out["control"])
    assert (header.cmsg_level, header.cmsg_type) == (level, kind)
    assert int.from_bytes(WSA_CMSG_DATA(header)[:4], "little") == 2
    # Sending with a codepoint (CE, 3): the peer sees it in the TOS / traffic class.
    assert dgram.send_to(b"ce", peer.getsockname(), ecn_control(family, 3)).status == 0
    _data, ancillary, _flags, _source = peer.recvmsg(10, 64)
    assert [data[0] & 3 for _level, _kind, data in ancillary] == [3]
    assert dgram.send_to(b"?", peer.getsockname(), ecn_control(family, 4)).status == (
        STATUS_INVALID_PARAMETER
    )
    peer.close()
