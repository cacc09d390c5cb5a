"""``pywsk probe``'s tools for test engineers: --repeat/--concurrency, --http, --expect-bytes,
--send-size streaming, --pcap and --progress."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import clean, probe_json, pywsk, socat_fixture

from pywsk.cli.probe_report import parse_http
from pywsk.testing.capture import WireCapture

socat = socat_fixture()


def test_repeat_with_concurrency_prints_a_line_per_run_and_a_summary(socat: Any) -> None:
    server = socat("EXEC:cat")
    result = pywsk(
        "probe", server.address, "--send", "hello", "--repeat", "12", "--concurrency", "4",
        "--json", "--timeout", "20",
    )  # fmt: skip
    clean(result)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    runs, summary = lines[:-1], lines[-1]
    assert sorted(r["run"] for r in runs) == list(range(1, 13))
    assert {r["outcome"] for r in runs} == {"ok"}
    assert len({r["local_port"] for r in runs}) == 12  # twelve connections
    assert summary["event"] == "summary"
    assert summary["runs"] == 12
    assert summary["outcomes"] == {"ok": 12}
    assert summary["server_end"] == {"fin": 12}
    assert (summary["sent"], summary["received"]) == (60, 60)
    for key in ("connect_ms", "duration_ms"):
        p = summary[key]
        assert p["p50"] <= p["p90"] <= p["p99"] <= p["max"]
    text = pywsk("probe", server.address, "--repeat", "3", "--timeout", "20")
    clean(text)
    assert text.returncode == 0, text.stdout
    assert "run 3: OK - behaves as documented" in text.stdout
    assert "outcomes: ok 3" in text.stdout


def test_repeat_counts_inconclusive_runs(socat: Any) -> None:
    server = socat("EXEC:cat")
    result = pywsk("probe", server.address, "-s", "stall-then-close", "--size", "1MiB",
                   "--repeat", "2", "--json")  # fmt: skip
    clean(result)
    assert result.returncode == 4, result.stdout
    assert json.loads(result.stdout.splitlines()[-1])["outcomes"] == {"inconclusive": 2}


def test_repeat_needs_one_scenario() -> None:
    result = pywsk("probe", "127.0.0.1:9", "-s", "all", "--repeat", "2")
    assert result.returncode == 2
    assert "run one scenario" in result.stderr


@pytest.mark.parametrize(
    ("reply", "complete", "body", "framing"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", True, 5, "Content-Length 5"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello", False, 5, "Content-Length 9"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            True,
            5,
            "chunked",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nhello", False, 5, "chunked"),
        (b"HTTP/1.0 200 OK\r\n\r\nuntil close", True, 11, "until the connection closes"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True, 0, "no body"),
    ],
)
def test_http_replies_are_parsed(reply: bytes, complete: bool, body: int, framing: str) -> None:
    parsed = parse_http(reply, "GET")
    assert (parsed.complete, parsed.body, parsed.framing) == (complete, body, framing)


def test_not_http_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not an HTTP response"):
        parse_http(b"SSH-2.0-OpenSSH\r\n", "GET")


def test_a_chunked_reply_cut_short_is_a_deviation(socat: Any, tmp_path: Path) -> None:
    script = tmp_path / "chunked.sh"
    script.write_text(
        "read -r line\n"
        "printf 'HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n10\\r\\nonly 8 B'\n"
    )
    server = socat(f"EXEC:sh {script}")
    code, [report] = probe_json(server.address, "--http", "GET /x", "-s", "wait-for-peer")
    assert code == 1, report
    assert report["facts"]["http"]["framing"] == "chunked"
    assert report["facts"]["http"]["complete"] is False
    assert report["problems"][0].startswith("truncated HTTP body (chunked): 8 B arrived")


def test_expect_bytes_reports_a_short_and_a_long_reply(socat: Any) -> None:
    server = socat("EXEC:cat")
    code, [report] = probe_json(server.address, "--send", "12345", "--expect-bytes", "10")
    assert code == 1
    # Where the reply arrived against our disconnect is said too (here the echo may come
    # before or after the graceful disconnect that follows the send).
    assert report["problems"][0].startswith("short reply: expected 10 B, received 5 B (")
    code, [report] = probe_json(server.address, "--send", "12345", "--expect-bytes", "4")
    assert code == 1
    assert report["problems"][0].startswith("long reply: expected 4 B, received 5 B")
    code, _ = probe_json(server.address, "--send", "12345", "--expect-bytes", "5")
    assert code == 0


def test_send_size_streams_a_large_payload(socat: Any) -> None:
    server = socat("OPEN:/dev/null")  # reads and drops everything
    size = 256 * 1024 * 1024
    code, [report] = probe_json(server.address, "--send-size", "256MiB", "--timeout", "60",
                                timeout=300)  # fmt: skip
    assert code == 0, report["verdict"]
    assert report["facts"]["sent"] == size
    assert report["facts"]["handed_to_wsk"] == size
    # Counted, not kept: the report is small however much was sent.
    assert len(report["timeline"]) < 200


@pytest.mark.skipif(not WireCapture.available(), reason="packet capture needs root and tcpdump")
def test_pcap_keeps_the_capture(socat: Any, tmp_path: Path) -> None:
    server = socat("EXEC:cat")
    pcap = tmp_path / "probe.pcap"
    result = pywsk("probe", server.address, "--send", "hi", "--pcap", str(pcap))
    clean(result)
    assert result.returncode == 0, result.stdout
    data = pcap.read_bytes()
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")  # a pcap file
    assert len(data) > 24 + 6 * 16  # the header and the handshake at least


def test_progress_can_be_forced_without_a_terminal(socat: Any) -> None:
    server = socat("OPEN:/dev/null")
    result = pywsk("probe", server.address, "--send-size", "8MiB", "--progress")
    clean(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.environ.get("PYWSK_NO_SUCH") is None


def test_expect_none_holds_for_a_server_that_never_ends(peer_that_waits: Any) -> None:
    # The server never ends the connection, not even in answer to our FIN (it stops
    # reading): --expect none holds, whatever WSK and the wire saw.
    code, [report] = probe_json(
        peer_that_waits, "-s", "wait-for-peer", "--timeout", "0.3", "--expect", "none"
    )
    assert code == 0, report["verdict"]
    assert report["facts"]["peer_end"]["how"] == "none"


@pytest.fixture
def peer_that_waits() -> Any:
    import threading

    from pywsk.testing.peer import LoopbackPeer, WaitFor

    go = threading.Event()
    server = LoopbackPeer([WaitFor(go, 30.0)]).start()
    yield f"127.0.0.1:{server.port}"
    go.set()
    server.close()
