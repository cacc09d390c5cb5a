"""WskRegister / WskCaptureProviderNPI / WskReleaseProviderNPI / WskDeregister, on the real
provider (its thread is started here)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest

from pywsk.nt.bugcheck import BugCheck, BugCheckCode
from pywsk.nt.irp import IRP, IoAllocateIrp, IoFreeIrp, IoSetCompletionRoutine
from pywsk.nt.irql import APC_LEVEL, DISPATCH_LEVEL, HIGH_LEVEL, running_at
from pywsk.nt.status import (
    STATUS_DEVICE_NOT_READY,
    STATUS_INVALID_PARAMETER,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_NOINTERFACE,
    STATUS_SUCCESS,
    status_name,
)
from pywsk.testing.driver import Request
from pywsk.wsk.constants import (
    AF_INET,
    IPPROTO_TCP,
    MAKE_WSK_VERSION,
    SOCK_STREAM,
    WSK_FLAG_CONNECTION_SOCKET,
    WSK_INFINITE_WAIT,
    WSK_MAJOR_VERSION,
    WSK_NO_WAIT,
)
from pywsk.wsk.dispatch import WSK_CLIENT_DISPATCH, WSK_PROVIDER_CONNECTION_DISPATCH
from pywsk.wsk.registration import (
    WSK_CLIENT_NPI,
    WSK_PROVIDER_NPI,
    WSK_REGISTRATION,
    WskCaptureProviderNPI,
    WskDeregister,
    WskQueryProviderCharacteristics,
    WskRegister,
    WskReleaseProviderNPI,
)
from pywsk.wsk.structs import WSK_PROVIDER_CHARACTERISTICS, WSK_SOCKET

#: Bound, in seconds, on every wait for another thread or the provider.
TIMEOUT = 10.0
#: How long a thread must stay blocked for the test to call it blocked (a bounded check).
BLOCKED = 0.2

V1_0 = MAKE_WSK_VERSION(1, 0)


@pytest.fixture(scope="module", autouse=True)
def provider_running() -> None:
    """Start the provider thread once, so that WSK_NO_WAIT captures find it ready."""
    from pywsk.provider import subsystem

    assert subsystem.start(TIMEOUT)


def client_npi(version: int = V1_0) -> WSK_CLIENT_NPI:
    return WSK_CLIENT_NPI(None, WSK_CLIENT_DISPATCH(version, 0, None))


def registered(version: int = V1_0) -> WSK_REGISTRATION:
    registration = WSK_REGISTRATION()
    status = WskRegister(client_npi(version), registration)
    assert status == STATUS_SUCCESS, status_name(status)
    return registration


def capture(registration: WSK_REGISTRATION, wait: int = WSK_INFINITE_WAIT) -> WSK_PROVIDER_NPI:
    npi = WSK_PROVIDER_NPI()
    status = WskCaptureProviderNPI(registration, wait, npi)
    assert status == STATUS_SUCCESS, status_name(status)
    return npi


def is_ready(registration: WSK_REGISTRATION) -> bool:
    """True while the block is registered (and not being deregistered)."""
    chars = WSK_PROVIDER_CHARACTERISTICS()
    return WskQueryProviderCharacteristics(registration, chars) == STATUS_SUCCESS


def until(predicate: Callable[[], bool], seconds: float = TIMEOUT) -> None:
    """Observe a state another thread reaches (bounded; not a timing assumption)."""
    deadline = time.monotonic() + seconds
    pause = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, "state not reached"
        pause.wait(0.001)


class Deregistering:
    """WskDeregister running in its own thread."""

    def __init__(self, registration: WSK_REGISTRATION) -> None:
        self.registration = registration
        self.returned = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            WskDeregister(self.registration)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)
        finally:
            self.returned.set()

    def start(self) -> Deregistering:
        self.thread.start()
        # It has started once the block stops answering as registered.
        until(lambda: not is_ready(self.registration) or self.returned.is_set())
        return self

    def still_blocked(self) -> bool:
        self.thread.join(timeout=BLOCKED)
        return self.thread.is_alive()

    def finished(self) -> bool:
        self.thread.join(timeout=TIMEOUT)
        return not self.thread.is_alive() and not self.errors


# --- the happy path ------------------------------------------------------------------------------


def test_register_capture_release_deregister() -> None:
    registration = registered()
    npi = capture(registration)
    assert npi.Client is not None
    assert npi.Dispatch is not None
    assert npi.Dispatch.Version >= V1_0
    assert WSK_MAJOR_VERSION(npi.Dispatch.Version) == 1
    assert callable(npi.Dispatch.WskSocket)
    assert callable(npi.Dispatch.WskSocketConnect)
    assert callable(npi.Dispatch.WskControlClient)
    WskReleaseProviderNPI(registration)
    WskDeregister(registration)


def test_capture_with_no_wait_after_register() -> None:
    registration = registered()
    npi = capture(registration, WSK_NO_WAIT)
    assert npi.Client is not None
    WskReleaseProviderNPI(registration)
    WskDeregister(registration)


def test_capture_with_a_finite_wait() -> None:
    registration = registered()
    capture(registration, 1000)
    WskReleaseProviderNPI(registration)
    WskDeregister(registration)


@pytest.mark.no_verifier
def test_several_captures_share_one_client_and_each_needs_a_release() -> None:
    registration = registered()
    first = capture(registration)
    second = capture(registration, WSK_NO_WAIT)
    assert first.Client is second.Client
    WskReleaseProviderNPI(registration)
    deregistering = Deregistering(registration).start()
    try:
        assert deregistering.still_blocked()  # one capture is still out
    finally:
        WskReleaseProviderNPI(registration)
    assert deregistering.finished()


def test_several_registrations_each_with_its_own_block() -> None:
    blocks = [registered() for _ in range(3)]
    clients = [capture(block).Client for block in blocks]
    assert len({id(client) for client in clients}) == 3
    for block in blocks:
        WskReleaseProviderNPI(block)
        WskDeregister(block)


def test_a_block_can_be_registered_again_after_deregistration() -> None:
    registration = registered()
    WskDeregister(registration)
    assert WskRegister(client_npi(), registration) == STATUS_SUCCESS
    capture(registration)
    WskReleaseProviderNPI(registration)
    WskDeregister(registration)


def test_register_twice_on_a_live_block_is_refused() -> None:
    registration = registered()
    try:
        assert WskRegister(client_npi(), registration) == STATUS_INVALID_PARAMETER
        capture(registration)  # the first registration is intact
        WskReleaseProviderNPI(registration)
    finally:
        WskDeregister(registration)


def test_register_without_a_client_dispatch_is_refused() -> None:
    registration = WSK_REGISTRATION()
    assert WskRegister(WSK_CLIENT_NPI(None, None), registration) == STATUS_INVALID_PARAMETER
    assert not is_ready(registration)


# --- versions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version",
    [MAKE_WSK_VERSION(2, 0), MAKE_WSK_VERSION(1, 1), MAKE_WSK_VERSION(0, 0), 0xFFFF],
    ids=hex,
)
def test_unsupported_version_is_nointerface(version: int) -> None:
    registration = registered(version)
    try:
        npi = WSK_PROVIDER_NPI()
        for wait in (WSK_NO_WAIT, WSK_INFINITE_WAIT):
            assert WskCaptureProviderNPI(registration, wait, npi) == STATUS_NOINTERFACE
        assert npi.Client is None
        assert npi.Dispatch is None
        # The documented recovery: ask what the provider supports.
        chars = WSK_PROVIDER_CHARACTERISTICS()
        assert WskQueryProviderCharacteristics(registration, chars) == STATUS_SUCCESS
        assert not chars.LowestVersion <= version <= chars.HighestVersion
    finally:
        WskDeregister(registration)  # no capture to release: returns at once


def test_query_provider_characteristics() -> None:
    registration = registered()
    try:
        chars = WSK_PROVIDER_CHARACTERISTICS()
        assert WskQueryProviderCharacteristics(registration, chars) == STATUS_SUCCESS
        assert chars.LowestVersion <= V1_0 <= chars.HighestVersion
        assert (chars.HighestVersion, chars.LowestVersion) == (V1_0, V1_0)
        with running_at(DISPATCH_LEVEL):  # allowed up to DISPATCH_LEVEL
            assert WskQueryProviderCharacteristics(registration, chars) == STATUS_SUCCESS
        with running_at(HIGH_LEVEL), pytest.raises(BugCheck) as excinfo:
            WskQueryProviderCharacteristics(registration, chars)
        assert "WskQueryProviderCharacteristics" in str(excinfo.value)
    finally:
        WskDeregister(registration)


def test_query_on_an_unregistered_block_is_device_not_ready() -> None:
    chars = WSK_PROVIDER_CHARACTERISTICS()
    assert WskQueryProviderCharacteristics(WSK_REGISTRATION(), chars) == STATUS_DEVICE_NOT_READY
    assert (chars.HighestVersion, chars.LowestVersion) == (0, 0)


# --- after deregistration, and misuse ------------------------------------------------------------


@pytest.mark.parametrize("wait", [WSK_NO_WAIT, 50, WSK_INFINITE_WAIT])
def test_capture_after_deregister_is_device_not_ready(wait: int) -> None:
    registration = registered()
    WskDeregister(registration)
    npi = WSK_PROVIDER_NPI()
    assert WskCaptureProviderNPI(registration, wait, npi) == STATUS_DEVICE_NOT_READY
    assert npi.Client is None


def test_capture_on_a_block_never_registered_is_device_not_ready() -> None:
    npi = WSK_PROVIDER_NPI()
    assert WskCaptureProviderNPI(WSK_REGISTRATION(), WSK_NO_WAIT, npi) == STATUS_DEVICE_NOT_READY


def test_release_without_capture_bugchecks() -> None:
    registration = registered()
    try:
        with pytest.raises(BugCheck) as excinfo:
            WskReleaseProviderNPI(registration)
        assert excinfo.value.code is BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION
        assert "WskReleaseProviderNPI" in str(excinfo.value)
    finally:
        WskDeregister(registration)  # the refused release changed nothing: no wait


def test_release_on_a_block_never_registered_bugchecks() -> None:
    with pytest.raises(BugCheck):
        WskReleaseProviderNPI(WSK_REGISTRATION())


def test_release_more_often_than_captured_bugchecks() -> None:
    registration = registered()
    capture(registration)
    WskReleaseProviderNPI(registration)
    with pytest.raises(BugCheck):
        WskReleaseProviderNPI(registration)
    WskDeregister(registration)


def test_deregister_twice_bugchecks() -> None:
    registration = registered()
    WskDeregister(registration)
    with pytest.raises(BugCheck):
        WskDeregister(registration)


# --- IRQL rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [APC_LEVEL, DISPATCH_LEVEL])
def test_register_above_passive_bugchecks(level: int) -> None:
    registration = WSK_REGISTRATION()
    with running_at(level), pytest.raises(BugCheck) as excinfo:
        WskRegister(client_npi(), registration)
    assert excinfo.value.code is BugCheckCode.DRIVER_IRQL_NOT_LESS_OR_EQUAL
    assert "WskRegister" in str(excinfo.value)
    # Nothing was registered.
    assert not is_ready(registration)
    assert WskRegister(client_npi(), registration) == STATUS_SUCCESS
    WskDeregister(registration)


@pytest.mark.parametrize("level", [APC_LEVEL, DISPATCH_LEVEL])
def test_deregister_above_passive_bugchecks(level: int) -> None:
    registration = registered()
    with running_at(level), pytest.raises(BugCheck) as excinfo:
        WskDeregister(registration)
    assert excinfo.value.code is BugCheckCode.DRIVER_IRQL_NOT_LESS_OR_EQUAL
    assert "WskDeregister" in str(excinfo.value)
    # Still registered and usable.
    assert is_ready(registration)
    capture(registration)
    WskReleaseProviderNPI(registration)
    WskDeregister(registration)


def test_capture_with_a_wait_at_dispatch_bugchecks() -> None:
    registration = registered()
    try:
        npi = WSK_PROVIDER_NPI()
        for wait in (WSK_INFINITE_WAIT, 100):
            with running_at(DISPATCH_LEVEL), pytest.raises(BugCheck) as excinfo:
                WskCaptureProviderNPI(registration, wait, npi)
            assert "WskCaptureProviderNPI" in str(excinfo.value)
        assert npi.Client is None
    finally:
        WskDeregister(registration)  # no capture was counted: returns at once


def test_capture_no_wait_and_release_at_dispatch() -> None:
    registration = registered()
    with running_at(DISPATCH_LEVEL):
        npi = capture(registration, WSK_NO_WAIT)
        assert npi.Client is not None
        WskReleaseProviderNPI(registration)
    WskDeregister(registration)


# --- WskDeregister blocks --------------------------------------------------------------------------


@pytest.mark.no_verifier
def test_deregister_blocks_while_a_capture_is_outstanding() -> None:
    registration = registered()
    capture(registration)
    deregistering = Deregistering(registration).start()
    try:
        assert deregistering.still_blocked()
        assert not deregistering.returned.is_set()
        # While it waits, new captures and queries are refused.
        npi = WSK_PROVIDER_NPI()
        assert WskCaptureProviderNPI(registration, WSK_NO_WAIT, npi) == STATUS_DEVICE_NOT_READY
        assert npi.Client is None
        assert not is_ready(registration)
        assert deregistering.still_blocked()
    finally:
        WskReleaseProviderNPI(registration)
    assert deregistering.finished(), deregistering.errors
    npi = WSK_PROVIDER_NPI()
    assert WskCaptureProviderNPI(registration, WSK_NO_WAIT, npi) == STATUS_DEVICE_NOT_READY


@pytest.mark.no_verifier
def test_deregister_released_from_another_thread_at_dispatch() -> None:
    registration = registered()
    capture(registration)
    deregistering = Deregistering(registration).start()
    errors: list[BaseException] = []

    def release() -> None:
        try:
            with running_at(DISPATCH_LEVEL):
                WskReleaseProviderNPI(registration)
        except BaseException as exc:
            errors.append(exc)

    try:
        assert deregistering.still_blocked()
    finally:
        releaser = threading.Thread(target=release, daemon=True)
        releaser.start()
        releaser.join(TIMEOUT)
    assert not releaser.is_alive()
    assert errors == []
    assert deregistering.finished(), deregistering.errors


def irp_call(name: str, function: Callable[..., int], *args: Any) -> Request:
    """Call ``function(*args, Irp)`` on a fresh IRP and wait (bounded) for its completion."""
    irp = IoAllocateIrp(1, False)
    assert irp is not None
    request = Request(name, irp)
    IoSetCompletionRoutine(irp, request.routine, None, True, True, True)
    request.returned = function(*args, irp)
    request.wait(TIMEOUT)
    IoFreeIrp(irp)
    return request


def open_socket(npi: WSK_PROVIDER_NPI) -> WSK_SOCKET:
    assert npi.Dispatch is not None
    request = irp_call(
        "WskSocket",
        npi.Dispatch.WskSocket,
        npi.Client,
        AF_INET,
        SOCK_STREAM,
        IPPROTO_TCP,
        WSK_FLAG_CONNECTION_SOCKET,
        None,
        None,
        None,
        None,
        None,
    )
    assert request.status == STATUS_SUCCESS, request
    assert isinstance(request.information, WSK_SOCKET)
    return request.information


def close_socket(sock: WSK_SOCKET) -> Request:
    dispatch = cast(WSK_PROVIDER_CONNECTION_DISPATCH, sock.Dispatch)
    request = irp_call("WskCloseSocket", dispatch.WskCloseSocket, sock)
    assert request.status == STATUS_SUCCESS, request
    return request


@contextmanager
def registered_with_socket() -> Iterator[tuple[WSK_REGISTRATION, WSK_SOCKET]]:
    """A registration whose capture is released but which still has one open socket."""
    registration = registered()
    npi = capture(registration)
    sock = open_socket(npi)
    WskReleaseProviderNPI(registration)
    yield registration, sock


@pytest.mark.no_verifier
def test_deregister_blocks_while_a_socket_is_open() -> None:
    with registered_with_socket() as (registration, sock):
        deregistering = Deregistering(registration).start()
        try:
            assert deregistering.still_blocked()
            assert deregistering.still_blocked()
        finally:
            close_socket(sock)
        assert deregistering.finished(), deregistering.errors


@pytest.mark.no_verifier
def test_deregister_returns_only_after_the_close_irp_completed() -> None:
    """Once WskDeregister returns the driver may unload: none of its routines may run later."""
    with registered_with_socket() as (registration, sock):
        deregistering = Deregistering(registration).start()
        assert deregistering.still_blocked()
        seen: list[bool] = []

        def routine(_device: object, _irp: IRP, _context: object) -> int:
            # Runs on the provider thread; bounded wait, then just record.
            seen.append(deregistering.returned.wait(2.0))
            return STATUS_MORE_PROCESSING_REQUIRED

        irp = IoAllocateIrp(1, False)
        assert irp is not None
        IoSetCompletionRoutine(irp, routine, None, True, True, True)
        dispatch = cast(WSK_PROVIDER_CONNECTION_DISPATCH, sock.Dispatch)
        dispatch.WskCloseSocket(sock, irp)
        until(lambda: bool(seen))
        assert deregistering.finished(), deregistering.errors
        IoFreeIrp(irp)
        assert seen == [False], "WskDeregister returned before the close IRP's routine ran"
