"""The ``pywsk`` commands' parameter types and small helpers: addresses, sizes, times,
payload text, HTTP requests, the progress displays and the --pcap option.

What it refuses: malformed values, with click's usage error (exit 2) and a message that
says what was expected - never a traceback.

What always holds: sizes and times are never negative.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from .render import err_console

__all__ = [
    "SECONDS",
    "After",
    "HostPort",
    "Seconds",
    "Size",
    "decode_text",
    "http_request",
    "parse_duration",
    "parse_size",
    "pcap_option",
    "progress",
    "transfer_progress",
]


@contextlib.contextmanager
def progress(total: int, what: str) -> Iterator[Callable[[str], None]]:
    """A progress bar on stderr (only on a terminal); yields ``advance(label)``."""
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console(),
        transient=True,
        disable=not sys.stderr.isatty() or total < 2,
    )
    with bar:
        task = bar.add_task(what, total=total)

        def advance(label: str) -> None:
            bar.update(task, advance=1, description=f"{what}: {label}")

        yield advance


class HostPort(click.ParamType):  # type: ignore[type-arg]
    """``HOST:PORT``, ``[IPv6]:PORT``; ``PORT`` alone means the loopback address."""

    name = "HOST:PORT"

    def __init__(self, default_host: str = "127.0.0.1", port_zero: bool = False) -> None:
        self.default_host = default_host
        self.port_zero = port_zero

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        text = str(value).strip()
        host, port_text = self.default_host, text
        if text.startswith("["):
            end = text.find("]")
            if end < 0 or not text[end + 1 :].startswith(":"):
                self.fail(f"{value!r} is not [IPv6]:PORT", param, ctx)
            host, port_text = text[1:end], text[end + 2 :]
        elif ":" in text:
            host, _, port_text = text.rpartition(":")
            if ":" in host:
                self.fail(f"{value!r}: write an IPv6 address as [ADDRESS]:PORT", param, ctx)
        if not host:
            self.fail(f"{value!r} has no host", param, ctx)
        try:
            port = int(port_text)
        except ValueError:
            self.fail(f"{value!r}: {port_text!r} is not a port number", param, ctx)
        if not (0 if self.port_zero else 1) <= port <= 65535:
            self.fail(f"{value!r}: port {port} is out of range", param, ctx)
        return host, port


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(text: str) -> int:
    """``4096``, ``64k``, ``4MiB``, ``1.5MB`` -> bytes (ValueError otherwise)."""
    value = text.strip().lower()
    number = value.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = value[len(number) :].strip()
    if unit not in _UNITS or not number:
        raise ValueError(f"{text!r} is not a size (e.g. 4096, 64k, 4MiB)")
    size = float(number) * _UNITS[unit]
    if size < 0 or size != size:
        raise ValueError(f"{text!r} is not a size")
    return int(size)


class Size(click.ParamType):  # type: ignore[type-arg]
    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Seconds(click.FloatRange):
    """A positive number of seconds (at most an hour)."""

    name = "seconds"

    def __init__(self) -> None:
        super().__init__(min=0.001, max=3600.0)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "SECONDS"


SECONDS = Seconds()


def http_request(spec: str, host: str, port: int) -> bytes:
    """``'GET /path'`` -> an HTTP/1.1 request with Host and ``Connection: close``."""
    parts = spec.split()
    if len(parts) != 2 or not parts[1].startswith("/") or not parts[0].isalpha():
        raise click.BadParameter(f"{spec!r} is not 'METHOD /PATH'", param_hint="'--http'")
    authority = f"[{host}]" if ":" in host else host
    return (
        f"{parts[0].upper()} {parts[1]} HTTP/1.1\r\nHost: {authority}:{port}\r\n"
        "User-Agent: pywsk-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")


@contextlib.contextmanager
def transfer_progress(
    wanted: bool | None,
) -> Iterator[Callable[[str, int, int | None], None] | None]:
    """A transfer display on stderr (rich.progress): bytes sent and received, with rates.
    On when ``wanted``; by default only when stderr is a terminal."""
    if not (wanted if wanted is not None else sys.stderr.isatty()):
        yield None
        return
    from rich.progress import DownloadColumn, TransferSpeedColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=err_console(),
        transient=True,
    )
    tasks: dict[str, Any] = {}
    lock = threading.Lock()

    def update(what: str, done: int, total: int | None) -> None:
        with lock:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done)

    with bar:
        yield update


def pcap_option(when: str) -> Callable[[Any], Any]:
    return click.option(
        "--pcap",
        metavar="FILE",
        type=click.Path(dir_okay=False, writable=True),
        help=f"Keep the packet capture {when} in FILE (pcap, for Wireshark; needs root and "
        "tcpdump).",
    )


def datagram_options(count_help: str, size_help: str) -> Callable[[Any], Any]:
    """``--count N`` and ``--datagram-size BYTES`` of the ``--udp`` commands."""
    count = click.option(
        "--count",
        type=click.IntRange(min=1, max=100_000),
        default=10,
        show_default=True,
        metavar="N",
        help=count_help,
    )
    size = click.option(
        "--datagram-size",
        type=click.IntRange(min=12, max=65_507),
        default=64,
        show_default=True,
        metavar="BYTES",
        help=size_help + " (12 or more: the sequence header).",
    )
    return lambda function: count(size(function))


def decode_text(text: str) -> bytes:
    """A command-line payload with backslash escapes (``\\r\\n``, ``\\x00``) as bytes."""
    try:
        return text.encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return text.encode("utf-8")


_TIME_UNITS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0}


def parse_duration(text: str) -> float | None:
    """``250ms``, ``2s``, ``1.5min`` -> seconds; None when ``text`` has no time unit;
    ValueError for a negative or malformed time."""
    value = text.strip().lower()
    number = value.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = value[len(number) :].strip()
    if unit not in _TIME_UNITS:
        return None
    seconds = float(number) * _TIME_UNITS[unit]
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"{text!r}: a time cannot be negative")
    return seconds


class After(click.ParamType):  # type: ignore[type-arg]
    """``BYTES`` (``4096``, ``64k``, ``1MiB``) or a time (``250ms``, ``2s``, ``1.5min``)."""

    name = "BYTES|TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from .serve import Trigger

        if isinstance(value, Trigger):
            return value
        text = str(value).strip()
        if text.startswith("-"):
            self.fail(f"{value!r}: the trigger cannot be negative", param, ctx)
        try:
            seconds = parse_duration(text)
            if seconds is not None:
                return Trigger(seconds=seconds)
            return Trigger(size=parse_size(text))
        except ValueError:
            self.fail(
                f"{value!r} is neither a size (4096, 64k, 1MiB) nor a time (250ms, 2s, 1min)",
                param,
                ctx,
            )
