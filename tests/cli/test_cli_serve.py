"""``pywsk serve`` driven by plain Linux socket clients: modes, disconnects, accept styles."""

from __future__ import annotations

import contextlib
import json
import selectors
import signal
import socket
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import ROOT, WAIT, Server, environment, readline, serve_fixture

SVG = "{http://www.w3.org/2000/svg}"

serve = serve_fixture()


def dial(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    sock.settimeout(WAIT)
    return sock


def read_to_end(sock: socket.socket) -> tuple[bytes, str]:
    """Everything until the server's FIN ("fin") or RST ("rst")."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, "rst"
        if not chunk:
            return data, "fin"
        data += chunk


def events(report: dict[str, Any]) -> list[str]:
    return [str(e["event"]) for e in report["timeline"]]


@pytest.mark.parametrize("accept", ["event", "irp"])
def test_echo_then_graceful_at_the_clients_fin(serve: Any, accept: str) -> None:
    server = serve("--connections", "1", "--accept", accept)
    with dial(server.port) as client:
        client.sendall(b"hello, server")
        client.shutdown(socket.SHUT_WR)
        assert read_to_end(client) == (b"hello, server", "fin")
    [report] = server.finish()
    assert server.returncode == 0, server.stderr
    assert report["ok"], report
    facts = report["facts"]
    assert facts["client_end"] == "fin"
    assert facts["received"] == facts["sent"] == 13
    assert facts["our_disconnect"]["status"] == "STATUS_SUCCESS"
    timeline = events(report)
    if accept == "event":
        assert any(e.startswith("WskAcceptEvent(") for e in timeline)
    else:
        assert any(e.startswith("WskAccept returned STATUS_PENDING") for e in timeline)
        assert any(e.startswith("IRP of WskAccept completed STATUS_SUCCESS") for e in timeline)
        assert any("SO_WSK_EVENT_CALLBACK, WSK_EVENT_DISCONNECT" in e for e in timeline)
    # The client's FIN reaches us as WskDisconnectEvent or as a 0-byte receive, whichever
    # comes first (on a loaded machine the event may come after our close, or not at all).
    fin_seen = ("WskDisconnectEvent(", "IRP of WskReceive completed STATUS_SUCCESS, Information=0 ")
    assert any(e.startswith(fin_seen) for e in timeline)
    assert "trigger: the client's FIN -> graceful" in timeline
    summary = server.lines[-1]
    assert summary["event"] == "summary"
    assert (summary["connections"], summary["as_documented"], summary["refused"]) == (1, 1, 0)
    assert [line["event"] for line in server.lines] == [
        "accepted",
        "connection",
        "summary",
    ]


def test_http_ok_answers_then_closes_gracefully(serve: Any) -> None:
    server = serve("--mode", "http-ok", "--connections", "1")
    with dial(server.port) as client:
        client.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data, end = read_to_end(client)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.endswith(b"\r\n\r\nok\n")
    assert end == "fin"
    [report] = server.finish()
    assert report["ok"], report
    assert "trigger: the response is out -> graceful" in events(report)


def test_source_then_abortive_resets_the_client(serve: Any) -> None:
    server = serve(
        "--mode", "source", "--after", "10k", "--disconnect", "abortive", "--connections", "1"
    )
    try:
        client = dial(server.port)
    except ConnectionResetError:
        # The server sends 10 KiB and resets at once: on a loaded host the RST can arrive
        # before this thread is scheduled to return from connect(), which then reports it.
        data, end = b"", "rst"
    else:
        with client:
            data, end = read_to_end(client)
    assert end == "rst"
    assert len(data) <= 10240
    [report] = server.finish()
    assert report["ok"], report
    assert report["facts"]["sent"] == 10240
    assert report["facts"]["our_disconnect"]["returned"] == "STATUS_SUCCESS"
    assert any(
        "WskDisconnect(NULL, WSK_FLAG_ABORTIVE) returned STATUS_SUCCESS" in e
        for e in events(report)
    )


def test_half_open_keeps_receiving_after_our_fin(serve: Any) -> None:
    server = serve(
        "--mode", "sink", "--disconnect", "half-open", "--after", "0", "--connections", "1"
    )
    with dial(server.port) as client:
        assert read_to_end(client) == (b"", "fin")  # the server's FIN comes first
        client.sendall(b"x" * 50000)  # and the server still reads
        client.shutdown(socket.SHUT_WR)
        assert client.recv(1) == b""
    [report] = server.finish()
    assert report["ok"], report
    assert report["facts"]["received_after_our_fin"] == 50000
    assert report["facts"]["client_end"] == "fin"


def test_stall_stops_reading_until_linger_then_resets(serve: Any) -> None:
    server = serve("--mode", "sink", "--disconnect", "stall", "--after", "0", "--linger", "0.5",
                   "--connections", "1")  # fmt: skip
    with dial(server.port) as client:
        accepted = json.loads(readline(server.proc, WAIT))  # the server has it
        assert accepted["event"] == "accepted"
        client.setblocking(False)
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:
                sent += client.send(b"y" * 65536)
        except BlockingIOError:
            pass  # the server does not read: the window is full
        client.settimeout(WAIT)
        assert read_to_end(client)[1] == "rst"  # unread data: the close resets
    [report] = server.finish()
    assert report["ok"], report
    timeline = events(report)
    assert "the server stops reading" in timeline
    assert "stalled for 0.5 s (--linger): closing" in timeline
    assert sent > report["facts"]["received"]


def test_stall_cancels_the_pending_receive(serve: Any) -> None:
    server = serve("--mode", "sink", "--disconnect", "stall", "--after", "100ms", "--linger", "0.3",
                   "--connections", "1")  # fmt: skip
    with dial(server.port) as client:
        # Nothing sent: a WskReceive is pending when the trigger fires, and is cancelled.
        assert read_to_end(client)[1] == "rst"  # closed without a disconnect
    [report] = server.finish()
    assert report["ok"], report
    timeline = events(report)
    assert "trigger: 0.1 s passed -> stall" in timeline
    assert "IoCancelIrp(IRP of WskReceive) returned TRUE" in timeline
    assert any(e.startswith("IRP of WskReceive completed STATUS_CANCELLED") for e in timeline)


def test_never_answers_the_clients_fin(serve: Any) -> None:
    server = serve("--mode", "echo", "--disconnect", "never", "--after", "1", "--connections", "1")
    with dial(server.port) as client:
        client.sendall(b"abc")
        assert client.recv(3) == b"abc"
        client.shutdown(socket.SHUT_WR)
        assert read_to_end(client) == (b"", "fin")
    [report] = server.finish()
    assert report["ok"], report
    assert "answering the client's FIN with our own" in events(report)


def test_sigterm_closes_open_connections_and_logs_them(serve: Any, tmp_path: Path) -> None:
    diagram = tmp_path / "served.svg"
    server = serve("--diagram", str(diagram))
    with dial(server.port) as client:
        client.sendall(b"ping")
        assert client.recv(4) == b"ping"  # served: the connection is open and in use
        [report] = server.finish(stop=True)
        assert read_to_end(client)[1] == "rst"  # closed without a disconnect
    # The connection's behaviour (graceful at the client's FIN) never ran: inconclusive,
    # never OK; and the report says that our close reset it.
    assert server.returncode == 4, server.stderr
    assert report["outcome"] == "inconclusive", report
    assert "closed before its behaviour ran: the server shut down" in report["verdict"]
    assert "the server is shutting down" in events(report)
    assert report["facts"]["client_end"] == "none"
    assert report["facts"]["our_end"] == "rst"
    assert "WskCloseSocket" in report["peer"]
    if report["wire_source"].startswith("tcpdump"):
        assert "server sent RST" in report["wire_summary"], report["wire_summary"]
    root = ET.parse(diagram).getroot()
    texts = " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))
    assert "pywsk serve" in texts
    assert "WskAcceptEvent" in texts


def test_text_output_and_bind_conflict() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = subprocess.run(
            [sys.executable, "-m", "pywsk.cli", "serve", "--listen", address],
            capture_output=True,
            text=True,
            timeout=WAIT,
            cwd=ROOT,
            env=environment(),
            check=False,
        )
    assert result.returncode == 3
    assert f"cannot listen on {address}" in result.stderr
    assert "STATUS_ADDRESS_ALREADY_ASSOCIATED" in result.stderr
    assert "Traceback" not in result.stderr

    text = subprocess.Popen(
        [sys.executable, "-m", "pywsk.cli", "serve", "--connections", "1", "--mode", "sink"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=environment(),
    )
    try:
        assert text.stdout is not None
        line = text.stdout.readline()
        assert line.startswith("pywsk serve: listening on 127.0.0.1:")
        port = int(line.split("127.0.0.1:")[1].split()[0])
        with dial(port) as client:
            client.sendall(b"data")
            client.shutdown(socket.SHUT_WR)
            read_to_end(client)
        out, err = text.communicate(timeout=WAIT)
    finally:
        if text.poll() is None:
            text.send_signal(signal.SIGTERM)
            text.communicate(timeout=WAIT)
    assert text.returncode == 0, err
    assert "mode sink, disconnect graceful at the client's FIN" in line
    assert "WskAcceptEvent(" in out
    assert "verdict: OK - behaves as documented" in out
    assert "1 of 1 connections behaved as documented." in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--mode", "mirror"), "Invalid value"),
        (("--after", "3 parsecs"), "neither a size"),
        (("--after", "-2s"), "cannot be negative"),
        (("--after", "-5"), "cannot be negative"),
        (("--idle-timeout", "0"), "Invalid value"),
        (("--max-connections", "0"), "Invalid value"),
        (("--listen", "127.0.0.1:99999"), "out of range"),
        (("--connections", "0"), "Invalid value"),
    ],
)
def test_bad_arguments(args: tuple[str, ...], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pywsk.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        cwd=ROOT,
        env=environment(),
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# --- honest outcomes, limits and options -----------------------------------------------------------


def test_a_client_that_ends_before_the_trigger_makes_it_inconclusive(serve: Any) -> None:
    server = serve("--mode", "sink", "--disconnect", "abortive", "--after", "1MiB",
                   "--connections", "1")  # fmt: skip
    with dial(server.port) as client:
        client.sendall(b"only a little")
        client.shutdown(socket.SHUT_WR)
        read_to_end(client)
    [report] = server.finish()
    assert server.returncode == 4, server.stderr
    assert report["outcome"] == "inconclusive"
    assert "before the trigger (after 1048576 B received)" in report["inconclusive"][0]
    # Words that mean what they say: what we received from the client, what we sent it.
    assert report["peer"].startswith("we received 13 B from the client and sent it 0 B;")
    assert server.lines[-1]["inconclusive"] == 1


def test_serve_listens_on_a_name_and_says_when_it_accepts() -> None:
    server = Server(("--listen", "localhost:0", "--connections", "1"))
    try:
        assert server.listening["host"] == "127.0.0.1"
        with dial(server.port) as client:
            client.sendall(b"hi")
            client.shutdown(socket.SHUT_WR)
            assert read_to_end(client) == (b"hi", "fin")
        [report] = server.finish()
    finally:
        server.kill()
    assert report["ok"], report
    accepted = server.lines[0]
    assert accepted["event"] == "accepted"
    assert accepted["remote"] == report["facts"]["remote"]


def test_idle_connections_are_closed_and_the_cap_refuses_more(serve: Any) -> None:
    server = serve("--max-connections", "2", "--idle-timeout", "1", "--connections", "2")
    with dial(server.port) as first, dial(server.port) as second:
        first.sendall(b"a")
        assert first.recv(1) == b"a"
        second.sendall(b"b")
        assert second.recv(1) == b"b"  # both are being served: the cap is reached
        # Refused: WskAcceptEvent returned STATUS_REQUEST_NOT_ACCEPTED.  The reset can come
        # before connect() has returned (seen under load): that is the refusal too.
        try:
            with dial(server.port) as third:
                assert read_to_end(third)[1] in ("rst", "fin")
        except ConnectionResetError:
            pass
        # Nothing more from either: each is closed after 1 s of silence.
        assert read_to_end(first)[1] == "rst"
        assert read_to_end(second)[1] == "rst"
    reports = server.finish()
    assert len(reports) == 2
    for report in reports:
        assert report["outcome"] == "inconclusive", report
        assert "idle for 1 s (--idle-timeout)" in report["verdict"]
    assert server.lines[-1]["refused"] == 1
    assert server.returncode == 4


def test_a_long_echo_keeps_its_report_bounded(serve: Any) -> None:
    # 32 MiB through echo: the report counts the transfer, it does not keep every call.
    server = serve("--connections", "1")
    total = 32 * 1024 * 1024
    with dial(server.port) as client:
        block = b"z" * 65536
        got = 0
        client.setblocking(False)
        sent = 0
        with selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while got < total:
                for _key, mask in sel.select(timeout=WAIT):
                    if mask & selectors.EVENT_WRITE and sent < total:
                        with contextlib.suppress(BlockingIOError):
                            sent += client.send(block[: total - sent])
                        if sent == total:
                            client.shutdown(socket.SHUT_WR)
                            sel.modify(client, selectors.EVENT_READ)
                    if mask & selectors.EVENT_READ:
                        got += len(client.recv(1 << 20))
        client.setblocking(True)
        client.settimeout(WAIT)
        assert read_to_end(client) == (b"", "fin")
    [report] = server.finish()
    assert report["ok"], report
    assert report["facts"]["received"] == report["facts"]["sent"] == total
    assert len(report["timeline"]) < 400, len(report["timeline"])
    assert any("not kept" in e["event"] for e in report["timeline"])


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ("250ms", "after 0.25 s"),
        ("2s", "after 2 s"),
        ("1.5min", "after 90 s"),
        ("4k", "after 4096 B"),
    ],
)
def test_after_takes_ms_s_and_min(serve: Any, after: str, expected: str) -> None:
    server = serve("--after", after, "--duration", "0.1")
    assert server.listening["trigger"].startswith(expected), server.listening
    server.finish()


def test_a_reset_the_stalled_server_is_not_told_of_is_never_silent(serve: Any) -> None:
    # The server stops reading; the client fills the window, then resets (SO_LINGER 0).
    # Either WSK reports the reset (WskDisconnectEvent with WSK_FLAG_ABORTIVE), or - with a
    # capture - the report says that the wire shows an RST WSK never reported, and exits 5.
    server = serve("--mode", "sink", "--disconnect", "stall", "--after", "0", "--linger", "3",
                   "--connections", "1")  # fmt: skip
    with dial(server.port) as client:
        accepted = json.loads(readline(server.proc, WAIT))  # the server has it
        assert accepted["event"] == "accepted"
        client.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                client.send(b"r" * 65536)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    [report] = server.finish()
    if report["facts"]["client_end"] == "rst":
        assert server.returncode == 0, report["verdict"]
    elif report["wire_source"].startswith("tcpdump"):
        assert server.returncode == 5, report["verdict"]
        assert report["disagreements"] == [
            d for d in report["disagreements"] if "WSK never reported it" in d
        ]
        assert report["disagreements"]
        assert report["facts"]["wire"]["client_rst_ms"] is not None
    else:
        assert report["facts"]["client_end"] == "none"
