"""The ``pywsk`` command group: ``demo`` here; ``probe`` and ``serve`` in rooms of their own
(:mod:`pywsk.cli.probe_command`, :mod:`pywsk.cli.serve_command`), the exit codes and shared
helpers in :mod:`pywsk.cli.outcomes`; errors are printed without tracebacks."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import click

from .driver import driver as driver_command
from .options import progress
from .outcomes import (
    CONTEXT,
    EXIT_DEVIATION,
    EXIT_DISAGREES,
    EXIT_INCONCLUSIVE,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Failure,
    diagram_option,
    exit_status,
    finish,
    wire_option,
)
from .probe_command import probe
from .render import console, err_console, print_report, print_summary
from .serve_command import serve
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


# --- the group -----------------------------------------------------------------------------------


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
    from .demo import ALL_SCENARIOS

    return list(ALL_SCENARIOS)


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
@diagram_option("Draw the scenarios as sequence diagrams into FILE")
@wire_option()
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
    from .demo import ALL_SCENARIOS, run_scenario
    from .wire import WireUnavailable, capture_possible

    if list_only:
        out = console()
        for scenario in ALL_SCENARIOS.values():
            out.print(f"{scenario.name:<26} {scenario.title}")
        return EXIT_OK
    if wire == "capture" and not capture_possible():
        raise Failure("--wire capture needs root and tcpdump", EXIT_USAGE)
    names = list(scenarios) or list(ALL_SCENARIOS)
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


cli.add_command(probe)
cli.add_command(serve)


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
