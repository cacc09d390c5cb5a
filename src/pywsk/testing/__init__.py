"""Test support for pywsk: real loopback peers, packet capture and kernel faults.

The modules below use the standard library only and import nothing else from pywsk but
the vocabulary of endings (:mod:`pywsk.core.ending`), so they check pywsk from the outside
(only they are re-exported here).

* :mod:`pywsk.testing.peer` - :class:`LoopbackPeer`, a scripted plain-socket TCP peer that
  reports what it saw (:class:`PeerObservation`: bytes, and whether the client ended with a
  FIN, an RST, or a FIN and then an RST).
* :mod:`pywsk.testing.capture` - :class:`WireCapture`, ``tcpdump`` on ``lo`` decoded into
  :class:`Segment` objects, with waits such as "until the RST is on the wire".
* :mod:`pywsk.testing.netfault` - :class:`PacketDropper`, nftables rules that drop a
  port's TCP segments on loopback, then heal.
* :mod:`pywsk.testing.tcp` - ``TCP_INFO`` state, ``SIOCOUTQ``, ``connect(AF_UNSPEC)`` abort.
* :mod:`pywsk.testing.contract` - :func:`check_disconnect_contract`, the disconnect
  contract (graceful, abortive, half-open, stuck, peer FIN / RST, close) checked on the
  peer and on the wire for any layer, through a factory of :class:`Subject` pairs.

Capture and packet dropping need root (plus ``tcpdump`` / ``nft``); gate tests on
:meth:`WireCapture.available` and :meth:`PacketDropper.available` and mark them
``pytest.mark.root``.
"""

from pywsk.testing.capture import Segment, WireCapture
from pywsk.testing.contract import ContractFailure, Subject, check_disconnect_contract
from pywsk.testing.netfault import NftError, PacketDropper
from pywsk.testing.peer import (
    Abort,
    AwaitRstAfterFin,
    Close,
    End,
    LoopbackPeer,
    PeerConnection,
    PeerObservation,
    PeerScriptError,
    PeerStopped,
    QuickAck,
    Read,
    ReadToEnd,
    Script,
    Send,
    ShutdownWrite,
    Step,
    WaitFor,
)
from pywsk.testing.tcp import (
    CLOSE,
    CLOSE_WAIT,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT1,
    FIN_WAIT2,
    LAST_ACK,
    LISTEN,
    SYN_RECV,
    SYN_SENT,
    TIME_WAIT,
    TcpState,
    abort_with_rst,
    has_ipv6_loopback,
    set_linger_abort,
    set_quickack,
    set_user_timeout,
    siocinq,
    siocoutq,
    siocoutqnsd,
    so_error,
    tcp_state,
    tcp_state_name,
)

__all__ = [
    # peer
    "LoopbackPeer",
    "PeerConnection",
    "PeerObservation",
    "PeerScriptError",
    "PeerStopped",
    "End",
    "Step",
    "Script",
    "ReadToEnd",
    "Read",
    "Send",
    "ShutdownWrite",
    "Abort",
    "Close",
    "WaitFor",
    "AwaitRstAfterFin",
    "QuickAck",
    # capture
    "WireCapture",
    "Segment",
    # the disconnect contract
    "check_disconnect_contract",
    "ContractFailure",
    "Subject",
    # faults
    "PacketDropper",
    "NftError",
    # tcp probes
    "TcpState",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "tcp_state",
    "tcp_state_name",
    "siocinq",
    "siocoutq",
    "siocoutqnsd",
    "so_error",
    "abort_with_rst",
    "set_linger_abort",
    "set_quickack",
    "set_user_timeout",
    "has_ipv6_loopback",
]
