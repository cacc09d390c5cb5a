"""Fairness: a receive chain at full speed on one socket holds up no other call - on the wire.

Socket A downloads 128 MiB from a plain-Python sender in a process of its own, through the
usual driver receive chain (:class:`pywsk.testing.fairness.ReceiveChain`: one IRP, 64 KiB
receives, re-issued by the completion routine after a pended receive and by the issuing
loop while they complete inside the call).  The chain checks what it receives (a BLAKE2b digest), so
it is slower than the sender and never runs dry.  Once 8 MiB have arrived, this thread makes
a graceful WskDisconnect:

* on socket B, connected to another peer: the call returns promptly, and B's FIN is on the
  wire while A's download is still running (before the FIN that ends A's download);
* on socket A itself: our FIN is on the wire before the peer's FIN - the peer sends its FIN
  only after its whole stream, so a FIN that waited for the chain would come after it.

The capture (root) sees only SYN/FIN/RST segments.  The bound on the return is generous
(green on two busy cores); the goals - 5 ms p99 to return, the FIN within 1 ms of it - are
measured by ``python -m benchmarks.fairness``.
"""

from __future__ import annotations

import pytest

from pywsk.nt import STATUS_PENDING, STATUS_SUCCESS
from pywsk.testing.capture import WireCapture
from pywsk.testing.driver import WskTestClient
from pywsk.testing.fairness import FairnessTry, disconnect_other, disconnect_same

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not WireCapture.available(), reason="packet capture needs root and tcpdump"),
    pytest.mark.timeout(40),
    # The chain re-issues its receive from its completion routine - the driver pattern whose
    # effect on other calls is measured here - which the verifier's soft check WSK-007
    # reports (Microsoft's advice is to queue such work to a thread).
    pytest.mark.no_verifier,
]

#: Seconds a fair call may take to return here: 40x the goal, for two busy cores.
RETURN_BOUND = 0.2


def check_common(run: FairnessTry) -> None:
    """What both scenarios share: the call returns promptly and completes, our FIN is on the
    wire before the download's end, and the download is whole."""
    why = run.describe()
    assert run.disconnect is not None
    assert run.disconnect.returned in (STATUS_PENDING, STATUS_SUCCESS), why
    assert run.disconnect.status == STATUS_SUCCESS, why
    assert run.disconnect.completions == 1, why
    assert run.returned_after < RETURN_BOUND, why
    assert run.our_fin is not None, why
    assert run.download_end is not None, why
    # Our FIN left no earlier than the call began, and within the bound.
    assert run.call_start_wall - 1e-6 <= run.our_fin.time < run.call_start_wall + RETURN_BOUND, why
    # The download was whole and exact, and the chain ended with the peer's FIN.
    assert run.chain_status == STATUS_SUCCESS, why
    assert run.chain_intact, why
    assert run.download["sent"] == run.chain_received, why
    # Crucially: our FIN went out while A's download was still running, before the FIN
    # that ends it.
    assert run.our_fin_first is True, why
    assert run.our_fin.time <= run.download_end.time, why


def test_disconnect_on_another_socket_is_not_held_up_by_a_receive_chain(
    wsk: WskTestClient,
) -> None:
    run = disconnect_other(wsk)
    why = run.describe()
    check_common(run)
    # B's peer saw a FIN (and nothing else).
    assert run.peer_end == "fin", why


def test_disconnect_on_the_downloading_socket_puts_our_fin_before_the_peers(
    wsk: WskTestClient,
) -> None:
    run = disconnect_same(wsk)
    why = run.describe()
    check_common(run)
    # The peer read our FIN; it kept sending after it (half-close), and its stream was whole.
    assert run.download["end"] == "fin", why
    assert run.download.get("send_error") is None, why
