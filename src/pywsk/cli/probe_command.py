"""``pywsk probe``: the command line of the probe (TCP, and UDP with ``--udp``).

What it does: parses and checks the options, then runs :mod:`pywsk.cli.probe` (TCP) or
:mod:`pywsk.cli.probe_udp` (``--udp``) and prints the reports; the exit status is the
worst outcome's (:mod:`pywsk.cli.outcomes`).

What it refuses: options of one transport given to the other (a usage error).
"""

from __future__ import annotations

import dataclasses

import click

from .options import (
    SECONDS,
    HostPort,
    Size,
    datagram_options,
    decode_text,
    http_request,
    pcap_option,
    transfer_progress,
)
from .outcomes import (
    CONTEXT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Failure,
    diagram_option,
    exit_for,
    exit_status,
    finish,
    refuse_with_udp,
    wire_option,
)
from .render import console, print_report, print_summary
from .timeline import Report

# --- probe -----------------------------------------------------------------------------------------


def _probe_names() -> list[str]:
    from .probe import PROBE_SCENARIOS

    return [*PROBE_SCENARIOS, "all"]


@click.command(
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
@wire_option()
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
@diagram_option("Draw sequence diagrams into FILE")
@click.option(
    "--udp",
    is_flag=True,
    help="Probe a UDP peer instead: send --count numbered datagrams and report what came "
    "back (sent, received, lost, reordered), as --peer says it should.",
)
@click.option(
    "--peer",
    "udp_peer",
    type=click.Choice(["echo", "sink", "source"]),
    default="echo",
    show_default=True,
    help="--udp: what the peer is: echo (every datagram back), sink (nothing back), source "
    "(a stream back after our first datagram).",
)
@datagram_options("--udp: datagrams to send.", "--udp: bytes per datagram")
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
    udp: bool,
    udp_peer: str,
    count: int,
    datagram_size: int,
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
    if udp:
        tcp_only: dict[str, object] = {
            "-s": scenarios,
            "--send": send_text,
            "--send-file": send_file,
            "--send-size": send_size,
            "--http": http,
            "--expect": expect != "any",
            "--expect-bytes": expect_bytes,
            "--await-reply": await_reply,
            "--pcap": pcap,
            "--repeat": repeat > 1,
            "--diagram": diagram,
        }
        refuse_with_udp(tcp_only)
        return probe_udp_command(target, udp_peer, count, datagram_size, timeout, wire, as_json)
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


def probe_udp_command(
    target: tuple[str, int],
    peer: str,
    count: int,
    size: int,
    timeout: float,
    wire: str,
    as_json: bool,
) -> int:
    """``pywsk probe --udp``: one run of :func:`pywsk.cli.probe_udp.run_udp_probe`."""
    from ..testing.udpcapture import UdpCapture
    from .probe_udp import UdpProbeOptions, run_udp_probe
    from .render import print_json
    from .udp_report import print_udp_report
    from .udp_socket import WskDatagramError

    if wire == "capture" and not UdpCapture.available():
        raise Failure("--wire capture needs root and tcpdump", EXIT_USAGE)
    options = UdpProbeOptions(
        host=target[0],
        port=target[1],
        count=count,
        size=size,
        peer=peer,  # type: ignore[arg-type]
        timeout=timeout,
        wire=wire,  # type: ignore[arg-type]
    )
    try:
        report = run_udp_probe(options)
    except (WskDatagramError, TimeoutError) as exc:
        raise Failure(str(exc)) from exc
    if as_json:
        print_json([report.as_dict()])
    else:
        print_udp_report(report, console())
    if report.outcome == "unreachable":
        return EXIT_UNREACHABLE
    return exit_for({report.outcome: 1})
