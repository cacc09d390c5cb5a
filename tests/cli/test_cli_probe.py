"""``pywsk probe`` against servers nobody here wrote (socat) and plain Linux socket peers."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cli_helpers import ROOT, clean, environment, probe_json, pywsk, socat_fixture

from pywsk.testing.capture import WireCapture
from pywsk.testing.peer import Abort, Close, LoopbackPeer, Read, ReadToEnd, Send, Step, WaitFor
from pywsk.testing.tcp import has_ipv6_loopback

socat = socat_fixture()


def by_name(reports: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in reports}


@pytest.fixture
def peer() -> Iterator[Any]:
    """``peer(script, **options)``: a plain-socket loopback server (pywsk.testing)."""
    started: list[LoopbackPeer] = []

    def start(script: list[Step], **options: Any) -> LoopbackPeer:
        server = LoopbackPeer(script, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


# --- socat ---------------------------------------------------------------------------------------


def test_graceful_disconnects_against_socat_echo_end_with_its_fin(socat: Any) -> None:
    server = socat("EXEC:cat")
    code, reports = probe_json(
        server.address,
        "-s", "graceful", "-s", "graceful-with-data", "-s", "half-open",
        "--send", r"hello\n", "--expect", "fin", "--timeout", "20", "--show-data",
    )  # fmt: skip
    assert code == 0, reports
    for report in reports:
        assert report["ok"], report
        facts = report["facts"]
        assert facts["received"]["bytes"] == 6, report["name"]
        assert facts["received"]["preview"] == repr(b"hello\n")
        assert facts["peer_end"]["how"] == "fin"
        assert facts["peer_end"]["cause"] == "answer"  # to the scenario's FIN
        assert "WskDisconnectEvent(Flags 0)" in facts["peer_end"]["seen_by"]
        assert "WskReceive: 0 bytes" in facts["peer_end"]["seen_by"]
        assert facts["our_disconnect"]["kind"] == "graceful"
        assert facts["our_disconnect"]["fin_acknowledged"] is True
        assert facts["close"]["status"] == "STATUS_SUCCESS"
    half_open = by_name(reports)["half-open"]
    assert any(
        e["event"].startswith("WskSend after our FIN returned STATUS_INVALID_DEVICE_STATE")
        for e in half_open["timeline"]
    )
    with_data = by_name(reports)["graceful-with-data"]
    assert any("WskDisconnect(Buffer=b'hello\\n', 0)" in e["event"] for e in with_data["timeline"])


def test_a_server_that_closes_first_is_seen_through_wskdisconnectevent(socat: Any) -> None:
    server = socat("SYSTEM:echo hello")
    code, reports = probe_json(
        server.address, "-s", "wait-for-peer", "--expect", "fin", "--timeout", "20"
    )
    assert code == 0, reports
    facts = reports[0]["facts"]
    assert facts["received"]["bytes"] == 6
    assert facts["peer_end"]["how"] == "fin"
    assert facts["peer_end"]["ms"] is not None
    # Both ways of seeing the FIN: the event (it may come before the data is read: without
    # WSK_EVENT_RECEIVE the data waits for a WskReceive) and the 0-byte receive after the data.
    assert facts["peer_end"]["seen_by"][:2] == [
        "WskDisconnectEvent(Flags 0)",
        "WskReceive: 0 bytes",
    ]
    assert facts["peer_end"]["cause"] == "own"
    events = [e["event"] for e in reports[0]["timeline"] if e["kind"] == "callback"]
    assert events == ["WskDisconnectEvent(Flags=WSK_FLAG_AT_DISPATCH_LEVEL): the peer's FIN"]


def test_a_server_that_sends_fin_then_rst(socat: Any) -> None:
    # socat without its own shutdown and with SO_LINGER {1, 0}: FIN when the child exits,
    # then an RST at close.
    server = socat("SYSTEM:echo bye", ",shut-none,linger=0")
    code, reports = probe_json(
        server.address, "-s", "wait-for-peer", "--expect", "rst", "--timeout", "20"
    )
    [report] = reports
    how = report["facts"]["peer_end"]["how"]
    # A race the probe can win: its graceful disconnect acts at once, and when its FIN
    # reaches socat before socat's close, socat's linger-0 close has nothing left to reset.
    # Whichever happened, the report must say what the wire shows.
    server_reset = any(
        line.split("->")[0].strip().endswith(f"server:{server.address.split(':')[1]}")
        and "[R" in line
        for line in report.get("wire", [])
    )
    if report.get("wire_source") != "tcpdump on lo":
        server_reset = how != "fin"  # no capture: the report can only agree with itself
    if server_reset:
        assert how in ("rst", "fin+rst"), report
        assert code == 0, report
    else:
        assert how == "fin", report
        assert code == 1, report
        assert "expected the server to end with RST, it ended with FIN" in report["problems"]


def test_our_abortive_disconnects_and_closes_against_socat(socat: Any) -> None:
    server = socat("EXEC:cat")
    code, reports = probe_json(
        server.address,
        "-s", "abortive", "-s", "close-without-disconnect",
        "--send", "hi", "--await-reply", "--timeout", "20",
    )  # fmt: skip
    assert code == 0, reports
    for report in reports:
        assert report["ok"], report
    named = by_name(reports)
    abortive = named["abortive"]
    assert abortive["facts"]["received"]["bytes"] == 2  # the echo came before the abort
    assert abortive["facts"]["our_disconnect"]["kind"] == "abortive"
    assert abortive["facts"]["our_disconnect"]["status"] == "STATUS_SUCCESS"
    assert abortive["facts"]["peer_end"]["how"] == "none"
    assert "probe sent RST" in abortive["wire_summary"]
    assert "probe sent RST" in named["close-without-disconnect"]["wire_summary"]


def test_scenarios_whose_precondition_did_not_happen_are_inconclusive(socat: Any) -> None:
    # socat reads 2 MiB at once: no send is in progress at the abort, and the graceful
    # disconnect cannot stall.  Those scenarios did not test what they are named for.  (The
    # stall bound is generous: on a loaded host socat may take more than a few tenths of a
    # second to read, which would be a real stall.)
    server = socat("EXEC:cat")
    code, reports = probe_json(
        server.address,
        "-s", "abortive-mid-transfer", "-s", "stall-then-abort", "-s", "stall-then-close",
        "--size", "2MiB", "--stall", "3", "--timeout", "20",
    )  # fmt: skip
    assert code == 4, reports
    for report in reports:
        assert not report["ok"], report
        assert report["outcome"] == "inconclusive", report
        assert report["verdict"].startswith("INCONCLUSIVE - "), report
    named = by_name(reports)
    assert "no transfer was in progress" in named["abortive-mid-transfer"]["inconclusive"][0]
    assert "could not stall" in named["stall-then-abort"]["inconclusive"][0]
    text = pywsk("probe", server.address, "-s", "stall-then-close", "--size", "1MiB")
    clean(text)
    assert text.returncode == 4, text.stdout
    assert "verdict: INCONCLUSIVE - the server read everything" in text.stdout
    assert "0 of 1" not in text.stdout or "inconclusive" in text.stdout


def test_expect_fails_when_only_our_fin_made_the_server_close(socat: Any) -> None:
    # socat with cat never closes an idle connection: it only answers our FIN, which
    # wait-for-peer sends after --timeout to finish the probe.  That is not "the server
    # closed with FIN".
    server = socat("EXEC:cat")
    result = pywsk("probe", server.address, "-s", "wait-for-peer", "--timeout", "2",
                   "--expect", "fin", "--json")  # fmt: skip
    clean(result)
    assert result.returncode == 1, result.stdout
    [report] = json.loads(result.stdout)
    assert report["facts"]["peer_end"]["how"] == "fin"
    assert report["facts"]["peer_end"]["cause"] == "cleanup"
    assert "did not end the connection within 2 s" in report["problems"][0]
    assert "did not end the connection on its own" in report["peer"]
    # --expect none holds: the server did not end it by itself.
    code, reports = probe_json(
        server.address, "-s", "wait-for-peer", "--timeout", "2", "--expect", "none"
    )
    assert code == 0, reports


def test_reports_carry_no_payload_bytes_unless_asked(socat: Any) -> None:
    server = socat("EXEC:cat")
    secret = "Cookie: session=SECRET-42"
    result = pywsk("probe", server.address, "--send", secret, "--json", "--timeout", "20")
    clean(result)
    assert result.returncode == 0, result.stdout
    assert "SECRET-42" not in result.stdout
    assert f"WskSend({len(secret)} B) returned STATUS_SUCCESS" in result.stdout
    [report] = json.loads(result.stdout)
    assert "preview" not in report["facts"]["received"]
    assert report["facts"]["received"]["bytes"] == len(secret)


def test_expect_that_does_not_hold_is_a_deviation(socat: Any) -> None:
    server = socat("EXEC:cat")
    result = pywsk("probe", server.address, "--send", "x", "--expect", "rst", "--timeout", "20")
    clean(result)
    assert result.returncode == 1, result.stdout
    assert "verdict: DEVIATION - expected the server to end with RST, it ended with FIN" in (
        result.stdout
    )


def test_text_report_says_what_the_server_did(socat: Any) -> None:
    server = socat("EXEC:cat")
    result = pywsk("probe", f"localhost:{server.port}", "--send", r"ping\n", "--timeout", "20")
    clean(result)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "== graceful: Graceful disconnect, then wait for the server's end" in out
    assert "WskConnect(127.0.0.1:" in out  # localhost resolved with WskGetAddressInfo
    assert "peer: we received 5 B from the server" in out
    assert "b'ping" not in out.split("peer:")[1]  # no payload bytes without --show-data
    assert "and 5 B of ours were sent" in out
    assert "the server answered our FIN with FIN at" in out
    assert "the server acknowledged our FIN" in out
    assert "verdict: OK - behaves as documented" in out


@pytest.mark.root
@pytest.mark.skipif(not WireCapture.available(), reason="packet capture needs root and tcpdump")
def test_the_capture_shows_our_rst_and_the_servers_fin(socat: Any) -> None:
    server = socat("EXEC:cat")
    code, reports = probe_json(
        server.address, "-s", "abortive", "-s", "graceful", "--wire", "capture", "--timeout", "20"
    )
    assert code == 0, reports
    named = by_name(reports)
    abort_segments = [e for e in named["abortive"]["timeline"] if e["kind"] == "segment"]
    assert any("R" in e["flags"] and e["from"] == "provider" for e in abort_segments)
    graceful = [e for e in named["graceful"]["timeline"] if e["kind"] == "segment"]
    assert any("F" in e["flags"] and e["from"] == "peer" for e in graceful)
    assert any("F" in e["flags"] and e["from"] == "provider" for e in graceful)


# --- plain socket peers ----------------------------------------------------------------------------


def test_a_peer_that_resets(peer: Any) -> None:
    server = peer([Read(5), Abort()])
    code, reports = probe_json(
        f"127.0.0.1:{server.port}",
        "-s", "wait-for-peer", "--send", "hello", "--expect", "rst", "--timeout", "20",
    )  # fmt: skip
    assert code == 0, reports
    facts = reports[0]["facts"]
    assert facts["peer_end"]["how"] == "rst"
    assert "WskDisconnectEvent(WSK_FLAG_ABORTIVE)" in facts["peer_end"]["seen_by"]
    assert "WskReceive: STATUS_CONNECTION_RESET" in facts["peer_end"]["seen_by"]


def test_a_peer_that_does_not_read_stalls_the_graceful_disconnect(peer: Any) -> None:
    go = threading.Event()
    server = peer([WaitFor(go, 30.0)], rcvbuf=4096, connections=2)
    try:
        code, reports = probe_json(
            f"127.0.0.1:{server.port}",
            "-s", "stall-then-abort", "-s", "stall-then-close",
            "--stall", "0.3", "--size", "64MiB", "--timeout", "20",
        )  # fmt: skip
    finally:
        go.set()
    assert code == 0, reports
    for report in reports:
        assert report["ok"], report
        notes = " ".join(report["notes"])
        assert "could not stall" not in notes
        events = [e["event"] for e in report["timeline"]]
        assert any("the graceful disconnect is still pending" in e for e in events)
    named = by_name(reports)
    stalled = [e["event"] for e in named["stall-then-abort"]["timeline"]]
    assert any("IRP of WskDisconnect completed STATUS_CONNECTION_ABORTED" in e for e in stalled), (
        stalled
    )
    closed = [e["event"] for e in named["stall-then-close"]["timeline"]]
    assert any("IRP of WskDisconnect completed STATUS_CANCELLED" in e for e in closed), closed


def test_a_graceful_disconnect_that_never_completes_is_reported(peer: Any) -> None:
    go = threading.Event()
    server = peer([WaitFor(go, 30.0)], rcvbuf=4096)
    try:
        code, reports = probe_json(
            f"127.0.0.1:{server.port}", "--send-size", "8MiB", "--timeout", "0.5"
        )
    finally:
        go.set()
    assert code == 0, reports
    facts = reports[0]["facts"]
    assert facts["our_disconnect"]["returned"] == "STATUS_PENDING"
    assert facts["our_disconnect"]["fin_acknowledged"] is False
    assert facts["our_disconnect"]["status"] == "STATUS_CANCELLED"  # by our close (Q4)
    assert any("never acknowledged our FIN" in note for note in reports[0]["notes"])
    assert "probe sent RST" in reports[0]["wire_summary"]


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_an_ipv6_server(peer: Any) -> None:
    server = peer([Read(2), Abort()], host="::1")
    code, reports = probe_json(
        f"[::1]:{server.port}", "-s", "wait-for-peer", "--send", "hi", "--expect", "rst"
    )
    assert code == 0, reports
    assert reports[0]["facts"]["target"] == f"[::1]:{server.port}"


# --- errors -----------------------------------------------------------------------------------------


def test_an_unreachable_server_is_a_clear_error(peer: Any) -> None:
    server = peer([])
    port = server.port
    server.close()  # nothing listens there any more
    result = pywsk("probe", f"127.0.0.1:{port}")
    assert result.returncode == 3
    assert "cannot connect to 127.0.0.1:" in result.stderr
    assert "STATUS_CONNECTION_REFUSED" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("127.0.0.1:70000",), "out of range"),
        (("::1:80",), "[ADDRESS]:PORT"),
        (("127.0.0.1",), "is not a port number"),
        (("127.0.0.1:80", "--send", "a", "--send-size", "1k"), "exclude each other"),
        (("127.0.0.1:80", "-s", "sideways"), "Invalid value"),
        (("127.0.0.1:80", "--size", "lots"), "is not a size"),
        (("127.0.0.1:80", "--timeout", "0"), "Invalid value"),
        ((), "Missing argument"),
    ],
)
def test_bad_arguments_are_refused_without_a_traceback(args: tuple[str, ...], message: str) -> None:
    result = pywsk("probe", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_prints_the_report_so_far_and_closes_the_socket() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(60)
        port = listener.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "pywsk.cli", "probe", f"127.0.0.1:{port}",
             "-s", "wait-for-peer", "--timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env=environment(),
        )  # fmt: skip
        try:
            conn, _ = listener.accept()  # the probe is connected and waiting
            with conn:
                conn.settimeout(60)
                conn.sendall(b"hello")
                proc.send_signal(signal.SIGINT)
                out, err = proc.communicate(timeout=60)
                try:
                    rest = conn.recv(1)
                except ConnectionResetError:
                    rest = None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err
    assert "interrupted (Ctrl-C): closing the socket" in out
    assert "WskCloseSocket returned STATUS_SUCCESS" in out
    assert "verdict: INCONCLUSIVE - interrupted (Ctrl-C) before the scenario finished" in out
    assert rest is None  # our WskCloseSocket reset the connection


def test_half_open_counts_what_arrives_after_our_fin(peer: Any) -> None:
    # The peer reads until our FIN, then sends 3000 B, then closes: all after our FIN.
    server = peer([ReadToEnd(), Send(b"y" * 3000), Close()])
    code, [report] = probe_json(f"127.0.0.1:{server.port}", "-s", "half-open", "--timeout", "20")
    assert code == 0, report
    assert report["facts"]["received"]["bytes"] == 3000
    assert (
        "3000 B received after we called WskDisconnect (the half-open direction)"
        in (report["notes"])
    )
