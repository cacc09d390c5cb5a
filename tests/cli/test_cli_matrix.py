"""``pywsk probe`` against ``pywsk serve``: both sides' reports of the same connection agree.

The representative matrix below pairs every probe scenario, every serve mode, every serve
disconnect behaviour and both accept styles at least once, with what each side must see.
The full product of modes x disconnects x scenarios is checked for consistency only, and
only when ``PYWSK_FULL_MATRIX=1`` (it takes minutes).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Any

import pytest
from cli_helpers import probe_json, probe_result, pywsk, serve_fixture

GET = r"GET / HTTP/1.0\r\n\r\n"

serve = serve_fixture()


@dataclass(frozen=True)
class Pairing:
    serve: tuple[str, ...]
    probe: tuple[str, ...]
    server_end: str
    """How the probe must see the server end the connection (fin / rst / none)."""
    client_end: str | tuple[str, ...]
    """How the server must see the probe end it (fin / rst / none), or the choices."""
    received: int | None = None
    """Bytes the probe must get back, if fixed."""

    @property
    def stalled(self) -> bool:
        """The server stops reading (``--disconnect stall``)."""
        return "stall" in self.serve


PAIRINGS: dict[str, Pairing] = {
    "echo-graceful/graceful": Pairing(
        ("--mode", "echo"), ("-s", "graceful", "--send", "hello"), "fin", "fin", 5
    ),
    "echo-graceful/graceful-with-data": Pairing(
        ("--mode", "echo"), ("-s", "graceful-with-data", "--send", "hello"), "fin", "fin", 5
    ),
    "echo-graceful/half-open": Pairing(
        ("--mode", "echo"), ("-s", "half-open", "--send", "hello"), "fin", "fin", 5
    ),
    "echo-graceful-after-bytes/wait-for-peer": Pairing(
        ("--mode", "echo", "--after", "5"),
        ("-s", "wait-for-peer", "--send", "hello"),
        "fin",
        "fin",
        5,
    ),
    "echo-graceful-after-time/wait-for-peer": Pairing(
        ("--mode", "echo", "--after", "200ms"),
        ("-s", "wait-for-peer", "--send", "hi"),
        "fin",
        "fin",
        2,
    ),
    "echo-abortive/wait-for-peer": Pairing(
        ("--mode", "echo", "--disconnect", "abortive", "--after", "5"),
        ("-s", "wait-for-peer", "--send", "hello"),
        "rst",
        "none",
    ),
    "echo-abortive/abortive": Pairing(
        ("--mode", "echo", "--disconnect", "abortive"),
        ("-s", "abortive", "--send", "hi", "--await-reply"),
        "none",
        "rst",
        2,
    ),
    "echo-graceful/close-without-disconnect": Pairing(
        ("--mode", "echo"),
        ("-s", "close-without-disconnect", "--send", "hi", "--await-reply"),
        "none",
        "rst",
        2,
    ),
    "echo-never-irp/graceful": Pairing(
        ("--mode", "echo", "--disconnect", "never", "--accept", "irp"),
        ("-s", "graceful", "--send", "hi"),
        "fin",
        "fin",
        2,
    ),
    # A server that stops reading: the transfer is still in progress at the abort (an echo
    # server keeps up with 4 MiB, which makes the scenario inconclusive).
    "sink-stall-irp/abortive-mid-transfer": Pairing(
        (
            "--mode",
            "sink",
            "--disconnect",
            "stall",
            "--after",
            "0",
            "--accept",
            "irp",
            "--linger",
            "1",
        ),
        ("-s", "abortive-mid-transfer", "--size", "64MiB"),
        "none",
        ("rst", "none"),
    ),
    "sink-half-open/wait-for-peer": Pairing(
        ("--mode", "sink", "--disconnect", "half-open", "--after", "0"),
        ("-s", "wait-for-peer", "--send-size", "100k"),
        "fin",
        "fin",
        0,
    ),
    # A stalled server has unread data; pywsk reports the client's RST when it arrives
    # (WskDisconnectEvent with WSK_FLAG_ABORTIVE), but under load the server's --linger may
    # close the connection before the RST came, so it may see no end.
    "sink-stall/stall-then-abort": Pairing(
        ("--mode", "sink", "--disconnect", "stall", "--after", "0", "--linger", "1"),
        ("-s", "stall-then-abort", "--stall", "0.3", "--size", "64MiB"),
        "none",
        ("rst", "none"),
        0,
    ),
    "sink-stall/stall-then-close": Pairing(
        ("--mode", "sink", "--disconnect", "stall", "--after", "0", "--linger", "1"),
        ("-s", "stall-then-close", "--stall", "0.3", "--size", "64MiB"),
        "none",
        ("rst", "none"),
        0,
    ),
    "sink-stall/graceful": Pairing(
        ("--mode", "sink", "--disconnect", "stall", "--after", "0", "--linger", "30"),
        ("-s", "graceful", "--send-size", "20k", "--timeout", "2"),
        "none",
        "fin",
        0,
    ),
    "source-graceful/wait-for-peer": Pairing(
        ("--mode", "source"), ("-s", "wait-for-peer"), "fin", "fin", 65536
    ),
    "source-graceful-after-time/wait-for-peer": Pairing(
        ("--mode", "source", "--after", "300ms"), ("-s", "wait-for-peer"), "fin", "fin"
    ),
    "source-abortive/wait-for-peer": Pairing(
        ("--mode", "source", "--disconnect", "abortive", "--after", "64k"),
        ("-s", "wait-for-peer"),
        "rst",
        "none",
    ),
    "source-half-open/wait-for-peer": Pairing(
        ("--mode", "source", "--disconnect", "half-open", "--after", "64k"),
        ("-s", "wait-for-peer", "--send", "hi"),
        "fin",
        "fin",
        65536,
    ),
    "source-never/half-open": Pairing(
        ("--mode", "source", "--disconnect", "never"), ("-s", "half-open"), "fin", "fin", 65536
    ),
    "http-ok-graceful/wait-for-peer": Pairing(
        ("--mode", "http-ok"), ("-s", "wait-for-peer", "--send", GET), "fin", "fin", 86
    ),
    "http-ok-abortive/wait-for-peer": Pairing(
        ("--mode", "http-ok", "--disconnect", "abortive"),
        ("-s", "wait-for-peer", "--send", GET),
        "rst",
        "none",
    ),
    "http-ok-graceful-irp/graceful": Pairing(
        ("--mode", "http-ok", "--accept", "irp"),
        ("-s", "graceful", "--send", GET),
        "fin",
        "fin",
        86,
    ),
}


@pytest.mark.parametrize("name", list(PAIRINGS))
def test_probe_against_serve(serve: Any, name: str) -> None:
    pairing = PAIRINGS[name]
    linger = () if "--linger" in pairing.serve else ("--linger", "5")
    server = serve(*pairing.serve, "--connections", "1", *linger)
    timeout = () if "--timeout" in pairing.probe else ("--timeout", "20")
    result = pywsk("probe", server.address, *pairing.probe, *timeout, "--json")
    if result.returncode == 3 and "STATUS_CONNECTION_RESET" in result.stderr:
        # Seen with a server that resets right after the accept (source-abortive): the
        # provider can complete a WskConnect whose handshake succeeded with the reset that
        # followed it.  A provider bug, reported; visible here as an xfail, never hidden.
        pytest.xfail(f"WskConnect completed with the reset after the handshake: {result.stderr}")
    code, reports = probe_result(result)
    [probed] = reports
    assert code == 0, probed
    assert probed["ok"], probed
    facts = probed["facts"]
    assert facts["peer_end"]["how"] == pairing.server_end, probed
    if pairing.received is not None:
        assert facts["received"]["bytes"] == pairing.received, facts
    if "could not stall" in " ".join(probed["notes"]):
        pytest.fail(f"the server was meant to stall: {probed['notes']}")

    [served] = server.finish()
    if served["outcome"] == "disagrees" and pairing.stalled:
        # The capture shows an RST that WSK never reported to this server (its --linger
        # closed first, on a loaded host): the report must say so, and exit 5.
        assert server.returncode == 5, server.stderr
        assert all("WSK never reported it" in d for d in served["disagreements"]), served
        assert served["facts"]["client_end"] == "none"
        return
    assert server.returncode == 0, server.stderr
    assert served["ok"], served
    allowed = pairing.client_end if isinstance(pairing.client_end, tuple) else (pairing.client_end,)
    assert served["facts"]["client_end"] in allowed, served
    # The two reports describe the same connection.
    assert served["facts"]["remote"] == f"127.0.0.1:{facts['local_port']}"
    assert served["facts"]["sent"] >= facts["received"]["bytes"]
    if pairing.server_end == "fin":
        assert served["facts"]["our_disconnect"]["status"] == "STATUS_SUCCESS", served
    if "half-open" in pairing.serve:
        # The server's FIN goes once its last send completes - at the probe's ACK, which
        # may ride on the probe's own data - so that data comes after the FIN or with the
        # ACK just before it; either way all of it arrives while half-open is allowed.
        assert served["facts"]["received"] == facts["sent"]
        assert served["facts"]["received_after_our_fin"] in (0, facts["sent"])


# --- the full product, for consistency (opt-in) ---------------------------------------------------

MODES = ("echo", "sink", "source", "http-ok")
DISCONNECTS = ("graceful", "abortive", "half-open", "stall", "never")
SCENARIOS = (
    "graceful",
    "graceful-with-data",
    "half-open",
    "abortive",
    "abortive-mid-transfer",
    "close-without-disconnect",
    "stall-then-abort",
    "stall-then-close",
    "wait-for-peer",
)


#: Probe scenarios that end with our RST (so a server FIN may never be acknowledged).
RESETTING = {
    "abortive",
    "abortive-mid-transfer",
    "close-without-disconnect",
    "stall-then-abort",
    "stall-then-close",
}


@pytest.mark.skipif(
    os.environ.get("PYWSK_FULL_MATRIX") != "1", reason="the full matrix: PYWSK_FULL_MATRIX=1"
)
@pytest.mark.parametrize(
    ("mode", "disconnect", "scenario"), list(itertools.product(MODES, DISCONNECTS, SCENARIOS))
)
def test_full_matrix_is_consistent(serve: Any, mode: str, disconnect: str, scenario: str) -> None:
    server = serve(
        "--mode", mode, "--disconnect", disconnect, "--after", "200ms",
        "--connections", "1", "--linger", "1",
    )  # fmt: skip
    code, reports = probe_json(
        server.address, "-s", scenario, "--send", GET, "--await-reply",
        "--timeout", "2", "--stall", "0.3", "--size", "16MiB",
    )  # fmt: skip
    [probed] = reports
    # Some pairings cannot meet a scenario's precondition (an echo server keeps up, so
    # nothing stalls): inconclusive, never OK - and never a deviation or a disagreement.
    assert code in (0, 4), probed
    assert probed["outcome"] in ("ok", "inconclusive"), probed
    logged = server.finish(timeout=15)
    if not logged:
        return  # the probe ended the connection before the server took it from the backlog
    [served] = logged
    if served["outcome"] == "disagrees" and disconnect == "stall":
        # Known and reported: pywsk indicates the client's RST to a server that stopped
        # reading only once the data before it is read (see test_probe_against_serve).
        assert all("WSK never reported it" in d for d in served["disagreements"]), served
        return
    assert served["outcome"] in ("ok", "inconclusive"), served
    seen = probed["facts"]["peer_end"]["how"]
    ours = served["facts"]["our_disconnect"]
    if seen in ("fin", "fin+rst"):
        assert ours is not None, (probed, served)  # the server's FIN came from WskDisconnect
        if scenario not in RESETTING and seen == "fin":
            # Nobody reset the connection: the server's graceful disconnect completed.
            assert ours["status"] == "STATUS_SUCCESS", served
