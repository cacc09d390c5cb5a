"""``pywsk driver``: build and run WSK client drivers written in C.

* ``pywsk driver cflags`` prints the include path and compiler flags (as ``python3-config``
  does), for building with your own tools;
* ``pywsk driver build SRC.c... -o DRIVER.so`` compiles the sources with pywsk's headers
  and its C runtime into a loadable driver;
* ``pywsk driver run DRIVER.so`` calls ``DriverEntry``, runs until SIGINT or SIGTERM (with
  ``--once``: until ``DriverEntry`` and the ``--call`` functions have returned), calls
  ``DriverUnload`` and reports leaks.  DbgPrint output goes to stderr.

Exit status: 0 clean; 1 DriverEntry (or a ``--call`` function) returned an error status;
2 bad arguments; 4 the driver was stopped (a bug check, the verifier); 5 it leaked.
What it refuses: a build that fails (its compiler output on stderr, exit 1), a driver file
that cannot be loaded (exit 2).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

import click

from ..nt.status import NT_SUCCESS, status_name
from ..verifier import enable as enable_verifier
from ..verifier.faults import FaultScheduler

__all__ = ["driver"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STOPPED = 4
EXIT_LEAKED = 5


@click.group()
def driver() -> None:
    """Build and run WSK client drivers written in C (docs/c-drivers.md).

    \b
    pywsk driver cflags                      include path and flags for your own build
    pywsk driver build SRC.c... -o DRV.so    compile with pywsk's headers and runtime
    pywsk driver run DRV.so [--once]         DriverEntry ... DriverUnload, leak report
    """


@driver.command()
@click.option("--includes", is_flag=True, help="Print only the -I option.")
def cflags(includes: bool) -> int:
    """Print the compiler flags for pywsk's wdm.h / ntddk.h / wsk.h."""
    from ..cdriver import cflags as flags

    words = flags()
    click.echo(" ".join(words[:1] if includes else words))
    return EXIT_OK


@driver.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The driver to write (NAME.so).",
)
@click.option("--cflag", "extra", multiple=True, help="An extra compiler flag (repeatable).")
@click.option("--release", is_flag=True, help="Optimise (-O2) and leave out debug information.")
def build(sources: tuple[str, ...], output: str, extra: tuple[str, ...], release: bool) -> int:
    """Compile SOURCES with pywsk's headers and C runtime into a driver."""
    from ..cdriver import BuildError, build_driver

    try:
        path = build_driver(sources, output, extra_cflags=extra, debug=not release)
    except BuildError as exc:
        click.echo(f"pywsk driver build: {exc}", err=True)
        return EXIT_FAILED
    click.echo(str(path))
    return EXIT_OK


def _arguments(text: str) -> tuple[str, list[int | str]]:
    name, *words = text.split()
    values: list[int | str] = []
    for word in words:
        try:
            values.append(int(word, 0))
        except ValueError:
            values.append(word)
    return name, values


@driver.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--once", is_flag=True, help="Unload as soon as DriverEntry (and --call) returned.")
@click.option(
    "--call",
    "calls",
    multiple=True,
    metavar="'NAME ARG...'",
    help="After DriverEntry, call the exported function NAME with integer (or string) "
    "arguments; repeatable.  A failing NTSTATUS ends the run.",
)
@click.option("--registry-path", default=None, help="The RegistryPath DriverEntry gets.")
@click.option(
    "--verifier/--no-verifier",
    "verify",
    default=True,
    show_default=True,
    help="Run under pywsk's verifier.",
)
@click.option(
    "--faults",
    type=int,
    default=None,
    metavar="SEED",
    help="Inject seeded faults (the verifier's fault scheduler).",
)
def run(
    path: str,
    once: bool,
    calls: tuple[str, ...],
    registry_path: str | None,
    verify: bool,
    faults: int | None,
) -> int:
    """Load the driver at PATH, run DriverEntry, wait for SIGINT/SIGTERM, unload."""
    from ..cdriver import DriverStopped, load

    debug = logging.getLogger("pywsk.driver")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    debug.addHandler(handler)
    debug.setLevel(logging.DEBUG)
    if verify or faults is not None:
        enable_verifier("raise", faults=FaultScheduler(seed=faults) if faults is not None else None)
    try:
        loaded = load(path)
    except (ImportError, OSError) as exc:
        click.echo(f"pywsk driver run: cannot load {path}: {exc}", err=True)
        return EXIT_USAGE
    status: int = 0
    try:
        status = loaded.entry(registry_path)
        click.echo(f"pywsk driver run: DriverEntry returned {status_name(status)}", err=True)
        if not NT_SUCCESS(status):
            return EXIT_FAILED
        for text in calls:
            name, values = _arguments(text)
            status = loaded.call(name, *values)
            click.echo(f"pywsk driver run: {name} returned {status_name(status)}", err=True)
            if not NT_SUCCESS(status):
                break
        if not once and NT_SUCCESS(status):
            _wait_for_signal()
    except DriverStopped as exc:
        click.echo(f"*** STOP: driver {loaded.name} stopped\n{exc}", err=True)
        return EXIT_STOPPED
    except AttributeError as exc:
        click.echo(f"pywsk driver run: {exc}", err=True)
        return EXIT_USAGE
    leaks = loaded.unload()
    if loaded.stop is not None:
        click.echo(f"*** STOP: driver {loaded.name} stopped\n{loaded.stop}", err=True)
        return EXIT_STOPPED
    for leak in leaks:
        click.echo(f"pywsk driver run: leak: {leak}", err=True)
    if leaks:
        return EXIT_LEAKED
    return EXIT_OK if NT_SUCCESS(status) else EXIT_FAILED


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    done = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        done.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    click.echo("pywsk driver run: running; SIGINT or SIGTERM unloads the driver", err=True)
    try:
        done.wait()
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
