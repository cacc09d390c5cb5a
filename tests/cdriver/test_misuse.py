"""C misuse is caught and reported with the C source line: a double IoFreeIrp, freeing an
IRP still pending, a wait with a timeout at DISPATCH_LEVEL (in the driver's own code and in
a completion routine), a leaked IRP and pool block at unload; a stopped driver runs no
more of its code.  Also the __try/__except substitute."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pywsk import verifier
from pywsk.cdriver import Driver, DriverStopped
from pywsk.nt import BugCheck, BugCheckCode
from pywsk.nt.status import NTSTATUS

MISUSE = Path(__file__).resolve().parent / "misuse.c"


def line_of(marker: str) -> int:
    for number, text in enumerate(MISUSE.read_text().splitlines(), 1):
        if f"MARK: {marker}" in text:
            return number
    raise AssertionError(marker)


def site(marker: str, function: str) -> str:
    return f"{MISUSE}:{line_of(marker)} in {function}"


@pytest.fixture
def own_verifier() -> Iterator[verifier.Verifier]:
    """A verifier of the test's own: the violations these tests commit stay in it."""
    with verifier.enabled_for("raise") as running:
        yield running


def connected(driver: Callable[[str], Driver], reading_peer: Callable[..., Any]) -> Driver:
    """The misuse driver, its socket connected to a peer that reads until EOF."""
    misuse = driver("misuse")
    assert misuse.call("Connect", reading_peer().port) == NTSTATUS.STATUS_SUCCESS
    return misuse


def stopped(driver: Driver, function: str, *args: Any) -> DriverStopped:
    with pytest.raises(DriverStopped) as caught:
        driver.call(function, *args, result="void")
    return caught.value


def test_double_free_stops_at_the_second_free(
    driver: Callable[[str], Driver], own_verifier: verifier.Verifier
) -> None:
    misuse = driver("misuse")
    stop = stopped(misuse, "DoubleFree").stop
    assert isinstance(stop.exception, BugCheck)
    assert stop.exception.code is BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL
    assert stop.site == site("second free", "DoubleFree")
    assert not any("not reached" in line for line in misuse.debug_output)
    # Stopped for good: the next call reports the same stop, and runs nothing.
    again = stopped(misuse, "LeakIrp").stop
    assert again is stop


def test_leaks_at_unload_name_the_allocating_line(
    driver: Callable[[str], Driver], own_verifier: verifier.Verifier
) -> None:
    misuse = driver("misuse")
    assert misuse.call("LeakIrp") == NTSTATUS.STATUS_SUCCESS
    assert misuse.call("LeakPool") == NTSTATUS.STATUS_SUCCESS
    leaks = misuse.unload()
    assert {(leak.kind, leak.site) for leak in leaks} == {
        ("IRP", site("leaked IRP", "LeakIrp")),
        ("pool block", site("leaked pool", "LeakPool")),
    }
    # The verifier's own leak record is dated at the same C line.
    assert any(
        f'File "{MISUSE}", line {line_of("leaked IRP")}, in LeakIrp' in v.created_at
        for v in own_verifier.leaks()
    )


def test_wait_with_timeout_at_dispatch_level(
    driver: Callable[[str], Driver], own_verifier: verifier.Verifier
) -> None:
    stop = stopped(driver("misuse"), "WaitAtDispatch").stop
    assert isinstance(stop.exception, BugCheck)
    assert stop.exception.code is BugCheckCode.IRQL_NOT_LESS_OR_EQUAL
    assert stop.site == site("wait at DISPATCH_LEVEL", "WaitAtDispatch")


def test_free_of_a_pending_irp(
    driver: Callable[[str], Driver],
    reading_peer: Callable[..., Any],
    own_verifier: verifier.Verifier,
) -> None:
    misuse = connected(driver, reading_peer)
    stop = stopped(misuse, "FreePendingIrp").stop
    assert stop.site == site("free while pending", "FreePendingIrp")
    # The verifier's report says where the IRP was made, in C.
    assert f'File "{MISUSE}", line {line_of("pending IRP allocated")}, in FreePendingIrp' in str(
        stop.exception
    )
    assert [v.check.id for v in own_verifier.found] == ["IRP-003"]


def test_wait_in_a_completion_routine(
    driver: Callable[[str], Driver],
    reading_peer: Callable[..., Any],
    own_verifier: verifier.Verifier,
) -> None:
    misuse = connected(driver, reading_peer)
    stop = stopped(misuse, "WaitInCompletion").stop
    assert isinstance(stop.exception, BugCheck)
    assert stop.exception.code is BugCheckCode.IRQL_NOT_LESS_OR_EQUAL
    assert stop.site == site("wait in routine", "WaitInRoutine")
    assert not any("not reached either" in line for line in misuse.debug_output)


def test_try_except_catches_a_raised_status(driver: Callable[[str], Driver]) -> None:
    misuse = driver("misuse")
    assert misuse.call("RaiseAndCatch") == NTSTATUS.STATUS_ACCESS_VIOLATION
    stop = stopped(misuse, "RaiseUnhandled").stop
    assert stop.site == site("unhandled raise", "RaiseUnhandled")
    assert "STATUS_ACCESS_VIOLATION" in str(stop.exception)


def test_a_call_through_the_dispatch_table_names_its_line(
    driver: Callable[[str], Driver],
    reading_peer: Callable[..., Any],
    own_verifier: verifier.Verifier,
) -> None:
    misuse = connected(driver, reading_peer)
    stop = stopped(misuse, "SendOnPendingIrp").stop
    assert isinstance(stop.exception, BugCheck)
    assert stop.site == site("send on a pending IRP", "SendOnPendingIrp")
    # The verifier ran the call in a frame at the C line of the Dispatch-> call.
    assert [v.check.id for v in own_verifier.found] == ["IRP-002"]
    frames = traceback.extract_tb(stop.exception.__traceback__)
    assert (str(MISUSE), line_of("send on a pending IRP"), "SendOnPendingIrp") in [
        (f.filename, f.lineno, f.name) for f in frames
    ]
    assert not any("not reached after the send" in line for line in misuse.debug_output)


@pytest.mark.no_verifier
def test_a_dispatch_call_is_named_without_the_verifier(
    driver: Callable[[str], Driver], reading_peer: Callable[..., Any]
) -> None:
    misuse = connected(driver, reading_peer)
    stop = stopped(misuse, "SendOnPendingIrp").stop
    assert stop.site == site("send on a pending IRP", "SendOnPendingIrp")


@pytest.mark.no_verifier
def test_a_release_build_names_the_function_and_offset(
    tmp_path: Path, reading_peer: Callable[..., Any]
) -> None:
    """Without debug information there is no line: the site is the module, the offset and
    the nearest exported function - never a guessed line."""
    from pywsk.cdriver import build_driver, load

    release = build_driver([MISUSE], tmp_path / "misuse_release.so", debug=False)
    with load(release) as misuse:
        assert misuse.call("Connect", reading_peer().port) == NTSTATUS.STATUS_SUCCESS
        stop = stopped(misuse, "SendOnPendingIrp").stop
    assert re.fullmatch(r"misuse_release\.so\+0x[0-9a-f]+ in SendOnPendingIrp", stop.site)


def test_a_second_free_of_pool_names_both_frees(
    driver: Callable[[str], Driver], own_verifier: verifier.Verifier
) -> None:
    stop = stopped(driver("misuse"), "DoubleFreePool").stop
    assert isinstance(stop.exception, BugCheck)
    assert stop.exception.code is BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL
    assert stop.site == site("pool freed twice", "DoubleFreePool")
    text = str(stop.exception)
    assert f"allocated at {site('twice-freed pool allocated', 'DoubleFreePool')}" in text
    assert f"freed at {site('pool freed once', 'DoubleFreePool')}" in text


def test_an_mdl_over_freed_pool(driver: Callable[[str], Driver]) -> None:
    stop = stopped(driver("misuse"), "MdlOverFreedPool").stop
    assert isinstance(stop.exception, BugCheck)
    assert stop.exception.code is BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL
    assert stop.site == site("MDL over freed pool", "MdlOverFreedPool")


def test_a_touch_of_freed_pool_faults_with_a_report(built: Callable[[str], Path]) -> None:
    """Freed pool keeps its pages with no access: the touch faults, and the report says
    where the block was allocated and freed before the process dies of the fault."""
    program = (
        "import sys; from pywsk.cdriver import load\n"
        "load(sys.argv[1]).call('TouchFreedPool', result='void')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, str(built("misuse"))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == -signal.SIGSEGV, result.stderr
    assert "DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL" in result.stderr
    assert f"allocated at {site('touched pool allocated', 'TouchFreedPool')}" in result.stderr
    assert f"freed at {site('touched pool freed', 'TouchFreedPool')}" in result.stderr
    assert "the touch went through" not in result.stderr
