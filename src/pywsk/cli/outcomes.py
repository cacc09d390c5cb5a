"""What every ``pywsk`` command shares: exit codes, clear failures, the report's ending.

What it does: the exit codes (documented in docs/cli.md), :func:`exit_status` from the
reports' outcomes, :class:`Failure` (a message and an exit code, no traceback), the
``--diagram`` and ``--wire`` helpers and :func:`finish` (diagram, JSON, exit status).

What it refuses: an exit code that hides a worse outcome - the worst one decides.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from .render import err_console, print_json, reports_json
from .timeline import Report

__all__ = [
    "CONTEXT",
    "EXIT_DEVIATION",
    "EXIT_DISAGREES",
    "EXIT_INCONCLUSIVE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "WIRE_HELP",
    "Failure",
    "check_diagram_path",
    "diagram_option",
    "refuse_with_udp",
    "stop_on_signals",
    "wire_option",
    "exit_for",
    "exit_status",
    "finish",
    "write_diagram",
]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

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


def wire_option() -> Callable[[Any], Any]:
    """``--wire auto|capture|state`` (every command)."""
    return click.option(
        "--wire",
        type=click.Choice(["auto", "capture", "state"]),
        default="auto",
        show_default=True,
        help=WIRE_HELP,
    )


def diagram_option(what: str) -> Callable[[Any], Any]:
    """``--diagram FILE``: draw ``what`` into an SVG or HTML file."""
    return click.option(
        "--diagram", metavar="FILE", callback=check_diagram_path, help=f"{what} (.svg or .html)."
    )


def refuse_with_udp(tcp_only: Mapping[str, object]) -> None:
    """A usage error naming the TCP-only options given (a true value) with ``--udp``."""
    named = [name for name, value in tcp_only.items() if value]
    if named:
        raise click.UsageError(f"{', '.join(named)}: TCP only, not with --udp.")


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """While inside: the first Ctrl-C or SIGTERM calls ``stop`` (a server then shuts down
    and reports); a second Ctrl-C interrupts.  The previous handlers come back after."""

    def handler(*_: object) -> None:
        signal.signal(signal.SIGINT, previous_int)
        stop()

    previous_term = signal.signal(signal.SIGTERM, handler)
    previous_int = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
