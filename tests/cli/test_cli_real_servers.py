"""``pywsk probe`` and ``pywsk serve`` against software nobody here wrote - redis-server,
nginx, ``python -m http.server``, ``openssl s_server`` / ``s_client``, socat, curl - each
report checked against an independent packet capture the test runs itself (as root).

What a report claims must be what the wire shows: who ended the connection and how, and
how many bytes each way.  A report never calls OK what did not happen.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import WAIT, Daemon, Server, probe_json, serve_fixture, socat_fixture
from third_party import (
    Witness,
    ends,
    http_server,
    need,
    nginx,
    openssl_server,
    payload_bytes,
    redis,
    witness_available,
)

serve = serve_fixture()
socat = socat_fixture()

BIG = bytes(range(256)) * 1200  # 307200 B


@pytest.fixture
def started() -> Iterator[list[Any]]:
    """Whatever a test appends (a Daemon, a Witness) is stopped after it."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        thing.stop()


def witness(started: list[Any], port: int) -> Witness | None:
    if not witness_available():
        return None
    w = Witness(port)
    started.append(w)
    return w


def agrees(report: dict[str, Any], w: Witness | None, server_port: int) -> None:
    """The probe's report against the test's own capture of the same connection."""
    assert report["disagreements"] == [], report["disagreements"]
    if w is None:
        return
    facts = report["facts"]
    segments = w.connection(facts["local_port"])
    assert segments, "the witness saw nothing of this connection"
    server_end, _ = ends(segments, server_port)
    told = facts["peer_end"]["how"]
    assert (told if told != "fin+rst" else "fin") == (server_end or "none"), (told, server_end)
    if facts["peer_end"]["seen_by"] and "WskReceive: 0 bytes" in facts["peer_end"]["seen_by"]:
        assert facts["received"]["bytes"] == payload_bytes(segments, server_port)
    ours, _ = ends(segments, facts["local_port"])
    kind = (facts["our_disconnect"] or {}).get("kind")
    if kind == "graceful" and facts["our_disconnect"]["fin_acknowledged"]:
        assert ours == "fin"
    if kind == "abortive" and server_end is None:
        assert ours == "rst"


# --- redis-server --------------------------------------------------------------------------------


def test_redis_never_closes_an_idle_connection_and_probe_says_so(
    tmp_path: Path, started: list[Any]
) -> None:
    server = redis(tmp_path)
    started.append(server)
    w = witness(started, server.port)
    code, [report] = probe_json(
        f"127.0.0.1:{server.port}", "-s", "wait-for-peer", "--timeout", "2", "--expect", "fin"
    )
    # Redis only answered the FIN we sent after --timeout: that is not "closed with FIN".
    assert code == 1, report
    assert report["outcome"] == "deviation"
    assert report["facts"]["peer_end"]["how"] == "fin"
    assert report["facts"]["peer_end"]["cause"] == "cleanup"
    assert "did not end the connection within 2 s" in report["problems"][0]
    agrees(report, w, server.port)
    if w is not None:
        segments = w.connection(report["facts"]["local_port"])
        first = next(s for s in segments if s.fin or s.rst)
        assert first.sport == report["facts"]["local_port"]  # our FIN came first


def test_redis_closes_after_quit(tmp_path: Path, started: list[Any]) -> None:
    server = redis(tmp_path)
    started.append(server)
    port = server.port
    w = witness(started, port)
    code, [report] = probe_json(
        f"127.0.0.1:{port}", "-s", "wait-for-peer", "--send", r"QUIT\r\n",
        "--expect", "fin", "--expect-bytes", "5", "--timeout", "20",
    )  # fmt: skip
    assert code == 0, report
    assert report["facts"]["peer_end"]["cause"] == "own"
    assert report["facts"]["received"]["bytes"] == 5  # +OK\r\n
    agrees(report, w, port)


# --- nginx and python -m http.server ---------------------------------------------------------------


@pytest.mark.parametrize("which", ["nginx", "http.server"])
def test_http_get_of_a_large_file_is_complete(
    tmp_path: Path, started: list[Any], which: str
) -> None:
    files = {"big": BIG}
    server: Daemon = nginx(tmp_path, files) if which == "nginx" else http_server(tmp_path, files)
    started.append(server)
    port = server.port
    w = witness(started, port)
    code, [report] = probe_json(
        f"127.0.0.1:{port}", "--http", "GET /big", "-s", "wait-for-peer", "--expect", "fin",
        "--timeout", "20",
    )  # fmt: skip
    assert code == 0, report
    http = report["facts"]["http"]
    assert (http["status"], http["complete"], http["body_bytes"]) == (200, True, len(BIG))
    assert http["framing"] == f"Content-Length {len(BIG)}"
    assert report["facts"]["peer_end"]["cause"] == "own"
    agrees(report, w, port)
    # Header values other than framing ones stay hidden without --show-data.
    assert all(v == "..." or k.lower() in {"content-length", "content-type", "server",
               "connection", "transfer-encoding"} for k, v in http["headers"])  # fmt: skip


def test_nginx_cuts_a_response_short_when_the_client_half_closes(
    tmp_path: Path, started: list[Any]
) -> None:
    # nginx 1.22 takes the client's FIN after its request for an abort: it stops sending a
    # large file and ends the connection with FIN - a clean-looking end of a short body.
    # Only the framing tells, and the report must say so; whatever nginx does, the report
    # must agree with the test's own capture.
    size = len(BIG) * 100  # 30 MB
    server = nginx(tmp_path, {"big": BIG * 100})
    started.append(server)
    port = server.port
    w = witness(started, port)
    code, [report] = probe_json(
        f"127.0.0.1:{port}", "--http", "GET /big", "-s", "half-open", "--timeout", "20"
    )
    agrees(report, w, port)
    http = report["facts"]["http"]
    assert report["facts"]["peer_end"]["how"] == "fin"
    if http["complete"]:
        assert code == 0, report
        assert http["body_bytes"] == size
    else:
        assert code == 1, report
        [problem] = report["problems"]
        assert problem.startswith(f"truncated HTTP body (Content-Length {size}): "), problem
        assert f"{size - http['body_bytes']} B missing" in problem
        assert report["facts"]["received"]["after_our_disconnect"] > 0


def test_a_truncated_http_body_is_a_deviation(
    socat: Any, started: list[Any], tmp_path: Path
) -> None:
    # A real server (socat running printf) that promises 100 bytes and sends 5.
    script = tmp_path / "reply.sh"
    script.write_text(  # it reads the request line first, then answers
        "read -r line\nprintf 'HTTP/1.1 200 OK\\r\\nContent-Length: 100\\r\\n\\r\\nshort'\n"
    )
    server = socat(f"EXEC:sh {script}")
    w = witness(started, server.port)
    code, [report] = probe_json(
        server.address, "--http", "GET /", "-s", "wait-for-peer", "--timeout", "20"
    )
    assert code == 1, report
    [problem] = report["problems"]
    assert problem.startswith("truncated HTTP body (Content-Length 100): 5 B arrived"), problem
    assert "we had received 45 B when we called WskDisconnect" in problem
    agrees(report, w, server.port)


# --- openssl ---------------------------------------------------------------------------------------


def test_openssl_s_server_answers_plain_text_and_ends(tmp_path: Path, started: list[Any]) -> None:
    server = openssl_server(tmp_path)
    started.append(server)
    port = server.port
    w = witness(started, port)
    code, [report] = probe_json(
        f"127.0.0.1:{port}", "-s", "wait-for-peer", "--send", r"not TLS\r\n\r\n",
        "--timeout", "20",
    )  # fmt: skip
    assert code == 0, report
    assert report["facts"]["peer_end"]["how"] != "none"
    assert report["facts"]["peer_end"]["cause"] == "own"
    agrees(report, w, port)


def _served_agrees(report: dict[str, Any], w: Witness | None, server_port: int) -> None:
    assert report["disagreements"] == [], report["disagreements"]
    if w is None:
        return
    client_port = int(report["facts"]["remote"].rsplit(":", 1)[1])
    segments = w.connection(client_port)
    ours, _ = ends(segments, server_port)
    assert report["facts"]["our_end"].split("+")[0] == (ours or "none"), (report["peer"], ours)
    assert report["facts"]["received"] <= payload_bytes(segments, client_port)


def test_openssl_s_client_against_serve(serve: Any, started: list[Any]) -> None:
    openssl = need("openssl")
    server = serve("--mode", "echo", "--connections", "1")
    w = witness(started, server.port)
    subprocess.run(
        [openssl, "s_client", "-connect", server.address, "-quiet"],
        input="", capture_output=True, text=True, timeout=WAIT, check=False,
    )  # fmt: skip
    [report] = server.finish()
    assert report["facts"]["received"] > 0  # the ClientHello
    assert report["facts"]["client_end"] in ("fin", "rst")
    _served_agrees(report, w, server.port)


# --- curl against serve ------------------------------------------------------------------------------


@pytest.mark.parametrize("disconnect", ["graceful", "abortive"])
def test_curl_against_serve(serve: Any, started: list[Any], disconnect: str) -> None:
    curl = need("curl")
    server = serve("--mode", "http-ok", "--disconnect", disconnect, "--connections", "1")
    w = witness(started, server.port)
    result = subprocess.run(
        [curl, "-sS", "-o", "-", f"http://{server.address}/"],
        capture_output=True, text=True, timeout=WAIT, check=False,
    )  # fmt: skip
    [report] = server.finish()
    assert server.returncode == 0, (report["verdict"], server.stderr)
    assert report["ok"], report
    if disconnect == "graceful":
        assert result.returncode == 0, result
        assert result.stdout == "ok\n", result
        assert report["facts"]["our_end"] == "fin"
    else:
        assert report["facts"]["our_end"] == "rst"
        # Whether curl's FIN came before our RST, the words must not say it had not ended:
        # they say what WSK reported, and the capture note says what the wire showed.
        assert "had not ended" not in report["peer"]
    _served_agrees(report, w, server.port)


# --- shutdown ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_serve_reports_its_own_rst_at_shutdown(started: list[Any], how: signal.Signals) -> None:
    # Ctrl-C reaches the whole process group (pywsk and its tcpdump): the report must still
    # say that our close reset the connection, and it is not OK (the behaviour never ran).
    server = Server(("--wire", "auto"), new_session=True)
    started.append(_Killer(server))
    w = witness(started, server.port)
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as client:
        client.sendall(b"ping")
        assert client.recv(4) == b"ping"
        os.killpg(server.proc.pid, how)
        [report] = server.finish()
        client.settimeout(WAIT)
        try:
            rest = client.recv(1)
        except ConnectionResetError:
            rest = None
        assert rest is None  # reset
    assert server.returncode == 4, server.stderr
    assert report["outcome"] == "inconclusive"
    assert report["facts"]["our_end"] == "rst"
    assert "neither FIN nor RST" not in report["wire_summary"].split(";")[0]
    _served_agrees(report, w, server.port)


class _Killer:
    def __init__(self, server: Server) -> None:
        self.server = server

    def stop(self) -> None:
        self.server.kill()
