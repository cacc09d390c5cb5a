"""The click commands behind ``pywsk``: options, help, exit codes, errors without tracebacks."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from .driver import driver as driver_command
from .options import (
    SECONDS,
    After,
    HostPort,
    Size,
    decode_text,
    http_request,
    pcap_option,
    progress,
    transfer_progress,
)
from .render import (
    console,
    counts_line,
    err_console,
    print_json,
    print_report,
    print_summary,
    reports_json,
)
from .timeline import Report

__all__ = [
    "EXIT_DEVIATION",
    "EXIT_DISAGREES",
    "EXIT_INCONCLUSIVE",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "cli",
    "exit_status",
    "main",
]

EXIT_OK = 0
EXIT_DEVIATION = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INCONCLUSIVE = 4
EXIT_DISAGREES = 5
EXIT_INTERRUPTED = 130


def exit_status(reports: Sequence[Report]) -> int:
    """The worst outcome decides: 5 a report disagrees with the wire, 1 a deviation (or an
    --expect that did not hold), 4 inconclusive (a precondition did not happen), 0 OK."""
    counts: dict[str, int] = {}
    for report in reports:
        counts[report.outcome] = counts.get(report.outcome, 0) + 1
    return exit_for(counts)


def exit_for(counts: dict[str, int]) -> int:
    """:func:`exit_status` from outcome counts."""
    for outcome, status in (
        ("disagrees", EXIT_DISAGREES),
        ("deviation", EXIT_DEVIATION),
        ("inconclusive", EXIT_INCONCLUSIVE),
    ):
        if counts.get(outcome):
            return status
    return EXIT_OK


WIRE_HELP = (
    "Where the wire facts come from: 'capture' (tcpdump; needs root), 'state' (our "
    "socket's TCP state), or 'auto' (a capture when possible)."
)


class Failure(click.ClickException):
    """A clear error with its own exit status (no traceback)."""

    def __init__(self, message: str, exit_code: int = EXIT_UNREACHABLE) -> None:
        super().__init__(message)
        # click declares exit_code as a class attribute; this instance's own value wins.
        self.__dict__["exit_code"] = exit_code


def write_diagram(path: str, reports: Sequence[Report], title: str) -> None:
    from .diagram import write

    try:
        write(Path(path), reports, title)
    except OSError as exc:
        raise Failure(f"cannot write {path}: {exc.strerror or exc}", EXIT_USAGE) from exc


def check_diagram_path(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    if value is not None and not value.lower().endswith((".svg", ".html", ".htm")):
        raise click.BadParameter("the diagram file must end in .svg or .html")
    return value


def finish(reports: Sequence[Report], as_json: bool, diagram: str | None, title: str) -> int:
    if diagram:
        write_diagram(diagram, reports, title)
    if as_json:
        print_json(reports_json(reports))
    elif diagram:
        err_console().print(f"diagram written to {diagram}")
    return exit_status(reports)


# --- the group -----------------------------------------------------------------------------------

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def log_to_stderr() -> None:
    """Show pywsk's log records, DEBUG and up, on stderr (``pywsk -v``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    package = logging.getLogger("pywsk")
    package.addHandler(handler)
    package.setLevel(logging.DEBUG)


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="pywsk", prog_name="pywsk")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Print pywsk's log on stderr, DEBUG records included: socket, operation and "
    "NTSTATUS of each operation a pywsk module logs.",
)
def cli(verbose: bool) -> None:
    """Microsoft's Winsock Kernel (WSK) interface in Python, over real Linux TCP.

    \b
    pywsk demo                 every documented disconnect, against a built-in peer
    pywsk probe HOST:PORT      disconnect from any TCP server and see what it does
    pywsk serve                a WSK server with a chosen disconnect behaviour
    pywsk -v ...               the same, with pywsk's log (DEBUG) on stderr

    Exit status: 0 as documented, 1 a deviation, 2 bad arguments, 3 peer unreachable,
    4 inconclusive (a scenario's precondition did not happen), 5 a report disagrees with
    the packet capture.
    """
    if verbose:
        log_to_stderr()


cli.add_command(driver_command)


# --- demo -----------------------------------------------------------------------------------------


def _scenario_names() -> list[str]:
    from .demo import SCENARIOS

    return list(SCENARIOS)


@cli.command(
    context_settings=CONTEXT, short_help="Every documented disconnect, against a built-in peer."
)
@click.option(
    "-s",
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Choice(_scenario_names()),
    metavar="NAME",
    help="Run only this scenario (repeatable): " + ", ".join(_scenario_names()) + ".",
)
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
@click.option(
    "--diagram",
    metavar="FILE",
    callback=check_diagram_path,
    help="Draw the scenarios as sequence diagrams into FILE (.svg or .html).",
)
@click.option(
    "--wire",
    type=click.Choice(["auto", "capture", "state"]),
    default="auto",
    show_default=True,
    help=WIRE_HELP,
)
def demo(
    scenarios: tuple[str, ...], list_only: bool, as_json: bool, diagram: str | None, wire: str
) -> int:
    """Run the documented disconnect behaviours against an embedded loopback peer.

    Each scenario prints a timeline - the WSK calls and what they returned, each IRP
    completion with its status and time, event callbacks, the segments on the wire (or the
    TCP state without root), what the peer observed - and a verdict against the
    documented behaviour. Exit status 1 if any scenario deviates.

    \b
    Examples:
      pywsk demo
      pywsk demo --scenario stuck-graceful --scenario peer-abortive-event
      pywsk demo --json > demo.json
      pywsk demo --diagram demo.svg          # or demo.html
      sudo pywsk demo --wire capture         # insist on tcpdump
    """
    from .demo import SCENARIOS, run_scenario
    from .wire import WireUnavailable, capture_possible

    if list_only:
        out = console()
        for scenario in SCENARIOS.values():
            out.print(f"{scenario.name:<26} {scenario.title}")
        return EXIT_OK
    if wire == "capture" and not capture_possible():
        raise Failure("--wire capture needs root and tcpdump", EXIT_USAGE)
    names = list(scenarios) or list(SCENARIOS)
    reports: list[Report] = []
    out = console()
    with progress(len(names), "demo") as advance:
        for name in names:
            try:
                report = run_scenario(name, wire)  # type: ignore[arg-type]
            except WireUnavailable as exc:
                raise Failure(str(exc), EXIT_USAGE) from exc
            reports.append(report)
            if not as_json:
                print_report(report, out)
            advance(name)
    if not as_json:
        print_summary(reports, "scenarios", out)
    return finish(reports, as_json, diagram, "pywsk demo")


# --- probe -----------------------------------------------------------------------------------------


def _probe_names() -> list[str]:
    from .probe import PROBE_SCENARIOS

    return [*PROBE_SCENARIOS, "all"]


@cli.command(
    context_settings=CONTEXT, short_help="Disconnect from a TCP server and see what it does."
)
@click.argument("target", type=HostPort(), required=False, metavar="HOST:PORT")
@click.option(
    "-s",
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Choice(_probe_names()),
    metavar="NAME",
    help="The disconnect to perform (repeatable; 'all' for every one): "
    + ", ".join(_probe_names()[:-1])
    + ". Default: graceful.",
)
@click.option(
    "--send", "send_text", metavar="TEXT", help=r"Send TEXT first (escapes like \r\n work)."
)
@click.option(
    "--send-file",
    type=click.Path(exists=True, dir_okay=False, readable=True),
    help="Send the contents of this file first (streamed).",
)
@click.option(
    "--send-size",
    type=Size(),
    help="Send this many bytes of a pattern first (64k, 4MiB, 1GiB; streamed, 1 MiB a call).",
)
@click.option(
    "--http",
    metavar="'METHOD /PATH'",
    help="Send this HTTP/1.1 request (Host, Connection: close) and parse the reply: status,"
    " headers, Content-Length or chunked; a truncated body is a deviation.",
)
@click.option(
    "--timeout",
    type=SECONDS,
    default=5.0,
    show_default=True,
    help="Seconds to wait at each step: the payload's send, a reply, our graceful "
    "disconnect, the server's end.",
)
@click.option(
    "--connect-timeout",
    type=SECONDS,
    default=5.0,
    show_default=True,
    help="Seconds to wait for the connection (WskConnect is cancelled after).",
)
@click.option(
    "--stall",
    type=SECONDS,
    default=1.0,
    show_default=True,
    help="stall-then-*: seconds the graceful disconnect may stay pending before recovery.",
)
@click.option(
    "--size",
    type=Size(),
    default="8MiB",
    show_default=True,
    help="abortive-mid-transfer, stall-then-*: the most to send while the server falls behind.",
)
@click.option(
    "--await-reply",
    is_flag=True,
    help="After sending, wait (at most --timeout) for the server's first reply bytes "
    "before the disconnect.",
)
@click.option(
    "--expect",
    type=click.Choice(["any", "fin", "rst", "none"]),
    default="any",
    show_default=True,
    help="How the server should end the connection, on its own or in answer to the "
    "scenario's disconnect; exit 1 if it does not (an end our clean-up caused never counts).",
)
@click.option(
    "--expect-bytes",
    type=Size(),
    metavar="SIZE",
    help="How many bytes the server should send; a short or long reply is a deviation.",
)
@click.option(
    "--show-data",
    is_flag=True,
    help="Show the first bytes of the reply (and HTTP header values); hidden by default.",
)
@pcap_option("of the run")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="A progress display on stderr (default: only when stderr is a terminal).",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Run the scenario N times and print a summary table (outcomes, latency "
    "percentiles, throughput); with --json, one JSON line per run and a summary line.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=1000),
    default=1,
    show_default=True,
    metavar="K",
    help="With --repeat: at most K runs at once.",
)
@click.option(
    "--wire",
    type=click.Choice(["auto", "capture", "state"]),
    default="auto",
    show_default=True,
    help=WIRE_HELP,
)
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
@click.option(
    "--diagram",
    metavar="FILE",
    callback=check_diagram_path,
    help="Draw sequence diagrams into FILE (.svg or .html).",
)
@click.option("--list", "list_only", is_flag=True, help="List the scenarios and exit.")
def probe(
    target: tuple[str, int] | None,
    scenarios: tuple[str, ...],
    send_text: str | None,
    send_file: str | None,
    send_size: int | None,
    http: str | None,
    timeout: float,
    connect_timeout: float,
    stall: float,
    size: int,
    await_reply: bool,
    expect: str,
    expect_bytes: int | None,
    show_data: bool,
    pcap: str | None,
    progress: bool | None,
    repeat: int,
    concurrency: int,
    wire: str,
    as_json: bool,
    diagram: str | None,
    list_only: bool,
) -> int:
    """Connect to a TCP server as a WSK client, disconnect, and report what the server did.

    TARGET is HOST:PORT ([IPv6]:PORT for IPv6; a name is resolved with WskGetAddressInfo).
    Each scenario opens its own connection, keeps a WskReceive pending, performs its
    disconnect, and waits (at most --timeout) for the server's end. The report says what
    the server sent back and when, whether it closed with FIN or RST (seen through
    WskDisconnectEvent and the receive completions), and whether our graceful disconnect
    completed - the server acknowledged our FIN. With a capture (root and tcpdump) every
    claim is checked against the wire. Exit status: 0 as documented (and as --expect says),
    1 a deviation, 3 the server cannot be reached, 4 inconclusive (the scenario's
    precondition did not happen), 5 the report disagrees with the capture, 130 Ctrl-C (the
    report so far is printed).

    \b
    Examples:
      pywsk probe 127.0.0.1:8080
      pywsk probe example.org:80 --send 'HEAD / HTTP/1.0\\r\\n\\r\\n' -s wait-for-peer
      pywsk probe [::1]:7000 -s abortive -s close-without-disconnect --json
      pywsk probe 127.0.0.1:9000 -s stall-then-abort --size 64MiB --stall 0.5
      pywsk probe 127.0.0.1:9000 -s all --diagram probe.html
      pywsk probe 127.0.0.1:8080 --http 'GET /big' -s wait-for-peer --pcap probe.pcap
    """
    from .probe import PROBE_SCENARIOS, Payload, ProbeOptions, resolve, run_probe
    from .session import SessionError, interrupt_between_calls
    from .wire import WireUnavailable, capture_possible

    if list_only:
        out = console()
        for scenario in PROBE_SCENARIOS.values():
            out.print(f"{scenario.name:<26} {scenario.title}")
        return EXIT_OK
    if target is None:
        raise click.UsageError("Missing argument 'TARGET' (HOST:PORT).")
    given = [x for x in (send_text, send_file, send_size, http) if x is not None]
    if len(given) > 1:
        raise click.UsageError("--send, --send-file, --send-size and --http exclude each other.")
    host, port = target
    payload: Payload | None = None
    if send_text is not None:
        payload = Payload(data=decode_text(send_text))
    elif send_file is not None:
        payload = Payload(path=send_file)
    elif send_size is not None:
        payload = Payload(size=send_size)
    elif http is not None:
        payload = Payload(data=http_request(http, host, port))
    if (wire == "capture" or pcap) and not capture_possible():
        raise Failure(
            f"{'--pcap' if pcap else '--wire capture'} needs root and tcpdump", EXIT_USAGE
        )
    names = list(PROBE_SCENARIOS) if "all" in scenarios else list(scenarios) or ["graceful"]
    if (pcap or repeat > 1) and len(names) > 1:
        raise click.UsageError(
            "--pcap and --repeat run one scenario: choose one with -s (not 'all')."
        )
    options = ProbeOptions(
        host=host,
        port=port,
        payload=payload,
        timeout=timeout,
        connect_timeout=connect_timeout,
        stall=stall,
        size=size,
        wire=wire,  # type: ignore[arg-type]
        expect=expect,  # type: ignore[arg-type]
        await_reply=await_reply or http is not None,
        expect_bytes=expect_bytes,
        http=http,
        show_data=show_data,
        pcap=pcap,
    )
    try:
        addresses = resolve(host, port, connect_timeout)
    except SessionError as exc:
        raise Failure(str(exc)) from exc
    if repeat > 1:
        from .repeat import probe_many

        many, stopped = probe_many(names[0], options, addresses, repeat, concurrency, as_json)
        return EXIT_INTERRUPTED if stopped else exit_status(many)
    reports: list[Report] = []
    out = console()
    interrupted = False
    with transfer_progress(progress) as on_progress, interrupt_between_calls():
        options = dataclasses.replace(options, progress=on_progress)
        for name in names:
            try:
                report = run_probe(name, options, addresses)
            except SessionError as exc:
                raise Failure(str(exc)) from exc
            except WireUnavailable as exc:
                raise Failure(str(exc), EXIT_USAGE) from exc
            reports.append(report)
            if not as_json:
                print_report(report, out)
            if report.facts.get("interrupted"):
                interrupted = True
                break
    if not as_json and len(reports) > 1:
        print_summary(reports, "probes", out)
    status = finish(reports, as_json, diagram, f"pywsk probe {host}:{port}")
    return EXIT_INTERRUPTED if interrupted else status


# --- serve -----------------------------------------------------------------------------------------


@cli.command(
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
@click.option(
    "--wire",
    type=click.Choice(["auto", "capture", "state"]),
    default="auto",
    show_default=True,
    help=WIRE_HELP,
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per line: listening, each connection, the summary.",
)
@click.option(
    "--diagram",
    metavar="FILE",
    callback=check_diagram_path,
    help="At exit, draw every connection into FILE (.svg or .html).",
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
    """
    import signal

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

    def stop(*_: Any) -> None:
        # The first Ctrl-C or SIGTERM shuts down (every open connection reported); a second
        # Ctrl-C interrupts.
        signal.signal(signal.SIGINT, previous_int)
        server.stop_from_signal()

    previous_term = signal.signal(signal.SIGTERM, stop)
    previous_int = signal.signal(signal.SIGINT, stop)
    try:
        server.run()
    except KeyboardInterrupt:
        server.shutdown()
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
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


# --- entry point ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pywsk`` with ``argv`` (default: the process's arguments); returns the exit code."""
    try:
        result: Any = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="pywsk",
            standalone_mode=False,
        )
    except click.exceptions.Abort:
        err_console().print("Aborted.")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else EXIT_OK
