"""``pywsk serve``: the command line of the server (TCP, and UDP with ``--udp``).

What it does: parses and checks the options, runs :mod:`pywsk.cli.serve` (TCP) or
:mod:`pywsk.cli.serve_udp` (``--udp``) until its limit or Ctrl-C, and prints a report per
connection (per peer for UDP) and a summary; the exit status is the worst outcome's.

What it refuses: options of one transport given to the other (a usage error).
"""

from __future__ import annotations

from typing import Any

import click

from .options import (
    SECONDS,
    After,
    HostPort,
    datagram_options,
    pcap_option,
)
from .outcomes import (
    CONTEXT,
    EXIT_USAGE,
    Failure,
    diagram_option,
    exit_for,
    refuse_with_udp,
    stop_on_signals,
    wire_option,
    write_diagram,
)
from .render import console, counts_line, print_report
from .timeline import Report

# --- serve -----------------------------------------------------------------------------------------


@click.command(
    context_settings=CONTEXT, short_help="A WSK server with a chosen disconnect behaviour."
)
@click.option(
    "--listen",
    "address",
    type=HostPort(port_zero=True),
    default="127.0.0.1:0",
    show_default=True,
    help="Address to listen on; port 0 picks a free one (printed at start).",
)
@click.option(
    "--mode",
    type=click.Choice(["echo", "sink", "source", "http-ok"]),
    default="echo",
    show_default=True,
    help="echo: send back what arrives; sink: read and drop; source: send a pattern; "
    "http-ok: answer a request with 200 OK.",
)
@click.option(
    "--disconnect",
    type=click.Choice(["graceful", "abortive", "half-open", "stall", "never"]),
    default="graceful",
    show_default=True,
    help="What to do at the trigger: FIN; RST; FIN then keep reading; stop reading; nothing "
    "(answer the client's FIN).",
)
@click.option(
    "--after",
    type=After(),
    default=None,
    help="The trigger: BYTES received (sent, for source) or a time since the accept "
    "(250ms, 2s, 1min). Default: the client's FIN (echo, sink), 64 KiB (source), the response "
    "(http-ok).",
)
@click.option(
    "--accept",
    "accept_with",
    type=click.Choice(["event", "irp"]),
    default="event",
    show_default=True,
    help="Take connections through WskAcceptEvent or a pending WskAccept.",
)
@click.option(
    "--connections",
    type=click.IntRange(min=1),
    metavar="N",
    help="Exit after this many connections.",
)
@click.option("--duration", type=SECONDS, help="Exit after this many seconds.")
@click.option(
    "--idle-timeout",
    type=SECONDS,
    default=300.0,
    show_default=True,
    help="Close a connection with nothing received or sent for this long (its report is "
    "inconclusive).",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    metavar="N",
    help="At most N connections at once; more are refused (WskAcceptEvent returns "
    "STATUS_REQUEST_NOT_ACCEPTED) or wait in the backlog (--accept irp).",
)
@pcap_option("at exit")
@click.option(
    "--linger",
    type=SECONDS,
    default=10.0,
    show_default=True,
    help="Seconds to wait for the client after our FIN (graceful), after its last data "
    "(half-open), or while stalled (stall), before closing.",
)
@wire_option()
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per line: listening, each connection, the summary.",
)
@diagram_option("At exit, draw every connection into FILE")
@click.option(
    "--udp",
    is_flag=True,
    help="Serve UDP instead, on a WSK datagram socket, in --mode echo, sink or source; at "
    "exit, a report per peer (received, sent, lost, reordered).",
)
@click.option(
    "--datagrams",
    type=click.IntRange(min=1),
    metavar="N",
    help="--udp: exit after N datagrams received.",
)
@datagram_options(
    "--udp --mode source: datagrams sent to each peer after its first.",
    "--udp --mode source: bytes per datagram",
)
def serve(
    address: tuple[str, int],
    mode: str,
    disconnect: str,
    after: Any,
    accept_with: str,
    connections: int | None,
    duration: float | None,
    idle_timeout: float,
    max_connections: int,
    pcap: str | None,
    linger: float,
    wire: str,
    as_json: bool,
    diagram: str | None,
    udp: bool,
    datagrams: int | None,
    count: int,
    datagram_size: int,
) -> int:
    """Serve TCP as a WSK server with a chosen behaviour, and log how each connection ended.

    The listening socket is a WSK listening socket (WskSocket with WSK_FLAG_LISTEN_SOCKET,
    WskBind), taking connections through WskAcceptEvent or WskAccept. Each connection is
    served in --mode until the --after trigger, then disconnected the --disconnect way;
    when it ends, its timeline is printed (WSK calls, completions, WskDisconnectEvent, the
    wire, the client) with a verdict. Runs until --connections, --duration, or Ctrl-C.

    \b
    Examples:
      pywsk serve --listen 127.0.0.1:7000
      pywsk serve --mode source --after 1MiB --disconnect abortive
      pywsk serve --mode sink --disconnect stall --after 0 --linger 30
      pywsk serve --mode http-ok --accept irp --connections 1 --json
      pywsk serve --mode echo --after 2s --disconnect half-open --diagram served.html
      pywsk serve --udp --mode echo --datagrams 100
      pywsk serve --udp --mode source --count 1000 --datagram-size 1400
    """

    if udp:
        if mode == "http-ok":
            raise click.UsageError("--udp serves echo, sink or source, not http-ok.")
        tcp_only = {
            "--disconnect": disconnect != "graceful",
            "--after": after,
            "--accept": accept_with != "event",
            "--connections": connections,
            "--pcap": pcap,
            "--diagram": diagram,
        }
        refuse_with_udp(tcp_only)
        return serve_udp_command(
            address, mode, count, datagram_size, datagrams, duration, wire, as_json
        )

    from .serve import ServeOptions, Server, Trigger
    from .session import SessionError, describe_address
    from .wire import capture_possible

    if (wire == "capture" or pcap) and not capture_possible():
        raise Failure(
            f"{'--pcap' if pcap else '--wire capture'} needs root and tcpdump", EXIT_USAGE
        )
    options = ServeOptions(
        host=address[0],
        port=address[1],
        mode=mode,  # type: ignore[arg-type]
        disconnect=disconnect,  # type: ignore[arg-type]
        after=after or Trigger(),
        accept=accept_with,  # type: ignore[arg-type]
        connections=connections,
        duration=duration,
        linger=linger,
        wire="capture" if pcap else wire,  # type: ignore[arg-type]
        idle_timeout=idle_timeout,
        max_connections=max_connections,
        pcap=pcap,
    )
    out = console()

    def emit(event: dict[str, Any]) -> None:
        import json

        print(json.dumps(event, default=str), flush=True)

    def on_report(report: Report) -> None:
        if as_json:
            emit({"event": "connection", **report.as_dict()})
        else:
            print_report(report, out)
            out.file.flush()

    def on_accept(served: Any) -> None:
        remote = describe_address(served.remote) if served.remote else "?"
        if as_json:
            emit({"event": "accepted", "connection": served.index, "remote": remote})
        else:
            out.print(f"pywsk serve: accepted #{served.index} from {remote}")
            out.file.flush()

    server = Server(options, on_report, on_accept, keep_reports=diagram is not None)
    try:
        bound = server.open()
    except SessionError as exc:
        server.shutdown()
        raise Failure(str(exc)) from exc
    except BaseException:
        server.shutdown()
        raise
    trigger = options.after.describe(options.mode)
    accept_text = "WskAcceptEvent" if accept_with == "event" else "WskAccept"
    if as_json:
        emit(
            {
                "event": "listening",
                "address": describe_address(bound),
                "host": str(bound[0]),
                "port": int(bound[1]),
                "mode": mode,
                "disconnect": disconnect,
                "trigger": trigger,
                "accept": accept_text,
                "wire": server.wire.source if server.wire else "TCP state per connection",
                "max_connections": max_connections,
                "idle_timeout": idle_timeout,
            }
        )
    else:
        out.print(
            f"pywsk serve: listening on {describe_address(bound)} - mode {mode}, disconnect "
            f"{disconnect} {trigger}, connections through {accept_text}"
        )
        out.file.flush()

    # The first Ctrl-C or SIGTERM shuts down (every open connection reported).
    try:
        with stop_on_signals(server.stop_from_signal):
            server.run()
    except KeyboardInterrupt:
        server.shutdown()
    if diagram:
        write_diagram(diagram, server.reports, f"pywsk serve {describe_address(bound)}")
    counts = server.outcomes
    if as_json:
        emit(
            {
                "event": "summary",
                "connections": server.ended,
                "as_documented": counts.get("ok", 0),
                "inconclusive": counts.get("inconclusive", 0),
                "deviations": counts.get("deviation", 0),
                "disagree_with_wire": counts.get("disagrees", 0),
                "refused": server.refused,
            }
        )
    else:
        out.print()
        out.print(counts_line(counts, "connections"))
        if server.refused:
            out.print(
                f"{server.refused} connection(s) refused at --max-connections {max_connections}"
            )
    return exit_for(counts)


def serve_udp_command(
    address: tuple[str, int],
    mode: str,
    count: int,
    size: int,
    datagrams: int | None,
    duration: float | None,
    wire: str,
    as_json: bool,
) -> int:
    """``pywsk serve --udp``: :class:`pywsk.cli.serve_udp.UdpServer` until its limit or
    Ctrl-C / SIGTERM; then a report per peer and a summary."""
    import json

    from ..testing.udpcapture import UdpCapture
    from .serve_udp import UdpServeOptions, UdpServer
    from .udp_report import print_udp_report
    from .udp_socket import Arrival, WskDatagramError

    if wire == "capture" and not UdpCapture.available():
        raise Failure("--wire capture needs root and tcpdump", EXIT_USAGE)
    options = UdpServeOptions(
        host=address[0],
        port=address[1],
        mode=mode,  # type: ignore[arg-type]
        count=count,
        size=size,
        datagrams=datagrams,
        duration=duration,
        wire=wire,  # type: ignore[arg-type]
    )
    out = console()
    seen: set[tuple[object, ...]] = set()

    def emit(event: dict[str, object]) -> None:
        print(json.dumps(event, default=str), flush=True)

    def on_arrival(arrival: Arrival) -> None:
        if arrival.sender in seen:
            return
        seen.add(arrival.sender)
        where = f"{arrival.sender[0]}:{arrival.sender[1]}"
        if as_json:
            emit({"event": "peer", "peer": where})
        else:
            out.print(f"pywsk serve --udp: first datagram from {where}")
            out.file.flush()

    server = UdpServer(options, on_arrival)
    try:
        bound = server.open()
    except (WskDatagramError, TimeoutError) as exc:
        server.close()
        raise Failure(str(exc)) from exc
    where = f"{bound[0]}:{bound[1]}" if ":" not in str(bound[0]) else f"[{bound[0]}]:{bound[1]}"
    capture = "a capture on lo" if server.capture is not None else "no capture"
    if as_json:
        emit({"event": "listening", "address": where, "port": int(bound[1]), "mode": mode,
              "wire": capture})  # fmt: skip
    else:
        out.print(f"pywsk serve --udp: bound to {where} - mode {mode}, {capture}")
        out.file.flush()

    try:
        with stop_on_signals(server.stop):
            server.run()
        reports = server.reports()
    finally:
        server.close()
    counts: dict[str, int] = {}
    for report in reports:
        counts[report.outcome] = counts.get(report.outcome, 0) + 1
        if as_json:
            emit({"event": "peer-report", **report.as_dict()})
        else:
            print_udp_report(report, out)
    if as_json:
        emit({"event": "summary", "peers": len(reports), "received": server.received,
              "ended": server.ended_by, "outcomes": counts})  # fmt: skip
    else:
        out.print(f"{len(reports)} peer(s), {server.received} datagram(s); {server.ended_by}")
    return exit_for(counts)
