"""MSG_MCAST / MSG_BCAST in WskReceiveFrom's ControlFlags, derived from each datagram's
destination address (Linux reports neither): a multicast datagram on lo end to end, the
derivation itself for every kind of destination, and the destination kept from a client
that did not ask for PKTINFO."""

from __future__ import annotations

import socket
import struct

from test_datagram import WAIT, Dgram, udp_peer

from pywsk.mechanics import datagram as udp
from pywsk.nt import STATUS_SUCCESS
from pywsk.testing.driver import WskTestClient
from pywsk.wsk import (
    AF_INET,
    IP_ADD_MEMBERSHIP,
    IP_PKTINFO,
    IPPROTO_IP,
    MSG_BCAST,
    MSG_MCAST,
    WskGetOption,
    WskSetOption,
)

GROUP = "239.7.7.7"


def test_a_multicast_datagram_carries_msg_mcast_and_a_unicast_one_neither(
    wsk: WskTestClient,
) -> None:
    receiver = Dgram(wsk, AF_INET, "0.0.0.0")
    membership = bytearray(socket.inet_aton(GROUP) + socket.inet_aton("127.0.0.1"))  # IP_MREQ
    joined = wsk.call(
        "WskControlSocket", receiver.d.WskControlSocket, receiver.sock, WskSetOption,
        IP_ADD_MEMBERSHIP, IPPROTO_IP, len(membership), membership, 0, None, None,
    )  # fmt: skip
    assert joined.status == STATUS_SUCCESS
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    try:
        # No IP_PKTINFO asked for: the flags are there, the destination object is not.
        assert receiver.option(WskGetOption, IPPROTO_IP, IP_PKTINFO).information == 0
        request, pool, out = receiver.receive_from(64, control=64)
        sender.sendto(b"to the group", (GROUP, receiver.address[1]))
        request.wait(WAIT)
        assert request.status == STATUS_SUCCESS
        assert bytes(pool[: request.information]) == b"to the group"
        assert out["flags"].value & MSG_MCAST
        assert not out["flags"].value & MSG_BCAST
        assert out["length"].value == 0
        peer = udp_peer(AF_INET)
        request, _pool, out = receiver.receive_from(64, control=64)
        peer.sendto(b"unicast", ("127.0.0.1", receiver.address[1]))
        request.wait(WAIT)
        assert request.status == STATUS_SUCCESS
        assert out["flags"].value & (MSG_MCAST | MSG_BCAST) == 0
        peer.close()
    finally:
        sender.close()
        receiver.close()


def _pktinfo4(ifindex: int, destination: str) -> list[tuple[int, int, bytes]]:
    data = struct.pack("=i4s4s", ifindex, bytes(4), socket.inet_aton(destination))
    return [(socket.IPPROTO_IP, udp.LINUX_IP_PKTINFO, data)]


def _pktinfo6(destination: str) -> list[tuple[int, int, bytes]]:
    data = socket.inet_pton(socket.AF_INET6, destination) + struct.pack("=i", 1)
    return [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, data)]


def test_the_flags_follow_the_destination_address() -> None:
    lo = socket.if_nametoindex("lo")
    assert udp.destination_flags(_pktinfo4(lo, "255.255.255.255")) == MSG_BCAST
    assert udp.destination_flags(_pktinfo4(lo, "224.0.0.1")) == MSG_MCAST
    assert udp.destination_flags(_pktinfo4(lo, "239.255.255.250")) == MSG_MCAST
    assert udp.destination_flags(_pktinfo4(lo, "127.0.0.1")) == 0
    assert udp.destination_flags(_pktinfo6("ff02::1")) == MSG_MCAST
    assert udp.destination_flags(_pktinfo6("::1")) == 0
    assert udp.destination_flags(_pktinfo6("::ffff:239.1.1.1")) == MSG_MCAST
    assert udp.destination_flags(_pktinfo6("::ffff:255.255.255.255")) == MSG_BCAST
    assert udp.destination_flags([]) == 0  # no destination known: no flag claimed
