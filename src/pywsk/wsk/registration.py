"""WSK registration: WskRegister, WskCaptureProviderNPI, WskReleaseProviderNPI, WskDeregister.

What it does: binds a client (its WSK_CLIENT_NPI) to the WSK subsystem through a
WSK_REGISTRATION block, hands out the provider NPI (the client object and the
WSK_PROVIDER_DISPATCH table), and tears the binding down.  The rules are those of the
pages "Registering a Winsock Kernel Application", "Unregistering a Winsock Kernel
Application", WskCaptureProviderNPI and WskDeregister:

* Each successful WskRegister needs exactly one WskDeregister with the same block.
* WskCaptureProviderNPI: ``WSK_NO_WAIT`` never waits; ``WSK_INFINITE_WAIT`` waits until the
  provider is ready; other values wait that many milliseconds.  Returns STATUS_SUCCESS,
  STATUS_DEVICE_NOT_READY (not ready in time, or the block is being deregistered) or
  STATUS_NOINTERFACE (the version asked for is not supported).  Each success needs one
  WskReleaseProviderNPI.
* WskDeregister blocks until every capture is released and every socket of the client is
  closed - its close IRP completed, so no routine of it runs afterwards.  (Calls into the
  provider are serialised on the provider thread; a call made after the client released
  its captures is a client bug the provider does not wait for.)  Captures that are waiting when
  it starts return STATUS_DEVICE_NOT_READY.

What it refuses: calls at a higher IRQL than the page allows (BugCheck), a second
WskRegister on a live block (STATUS_INVALID_PARAMETER), WskReleaseProviderNPI without a
capture (BugCheck: the provider's reference count would go negative).

How the subsystem is reached: the provider package attaches itself through
:func:`attach_provider` when it is imported, as netio.sys registers with the NMR.
WskRegister imports it if nothing is attached yet and brings it up (its thread and loop),
so a later capture with WSK_NO_WAIT finds it ready.  This module never imports the
provider by name, so the layering stays nt -> wsk -> core -> provider.
"""

from __future__ import annotations

import importlib
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..nt import hooks
from ..nt.bugcheck import BugCheck, BugCheckCode
from ..nt.irql import DISPATCH_LEVEL, PASSIVE_LEVEL, require_irql_at_most
from ..nt.status import NTSTATUS
from .constants import WSK_INFINITE_WAIT, WSK_NO_WAIT

if TYPE_CHECKING:
    from .dispatch import WSK_CLIENT_DISPATCH, WSK_PROVIDER_DISPATCH
    from .structs import WSK_PROVIDER_CHARACTERISTICS

__all__ = [
    "WSK_CLIENT_NPI",
    "PWSK_CLIENT_NPI",
    "WSK_REGISTRATION",
    "PWSK_REGISTRATION",
    "WSK_PROVIDER_NPI",
    "PWSK_PROVIDER_NPI",
    "WskRegister",
    "WskDeregister",
    "WskCaptureProviderNPI",
    "WskReleaseProviderNPI",
    "WskQueryProviderCharacteristics",
    "ProviderAttachment",
    "attach_provider",
]


@dataclass
class WSK_CLIENT_NPI:
    """The client's identity: a context passed back to WskClientEvent, and its dispatch."""

    ClientContext: Any = None
    Dispatch: WSK_CLIENT_DISPATCH | None = None


@dataclass
class WSK_PROVIDER_NPI:
    """Filled by WskCaptureProviderNPI: the client object and the provider's table."""

    Client: Any = None
    Dispatch: WSK_PROVIDER_DISPATCH | None = None


class WSK_REGISTRATION:
    """The registration block.  Opaque: the client never reads or writes its fields."""

    def __init__(self) -> None:
        self.ReservedRegistrationState = 0
        self.ReservedRegistrationContext: Any = None
        self.ReservedRegistrationLock = threading.Condition()

    def __repr__(self) -> str:
        return f"<WSK_REGISTRATION state={self.ReservedRegistrationState}>"


PWSK_CLIENT_NPI = WSK_CLIENT_NPI
PWSK_REGISTRATION = WSK_REGISTRATION
PWSK_PROVIDER_NPI = WSK_PROVIDER_NPI


class ProviderAttachment(Protocol):
    """What the WSK subsystem (``pywsk.provider``) offers to registration."""

    characteristics: WSK_PROVIDER_CHARACTERISTICS

    def start(self, timeout: float | None) -> bool:
        """Bring the subsystem up; True once it is ready (within ``timeout`` seconds)."""
        ...

    def attach_client(self, npi: WSK_CLIENT_NPI) -> Any:
        """Create the client object (PWSK_CLIENT) for one registration."""
        ...

    def dispatch_for(self, client: Any) -> WSK_PROVIDER_DISPATCH:
        """The WSK_PROVIDER_DISPATCH the client gets (for the version granted)."""
        ...

    def detach_client(self, client: Any) -> None:
        """Block until every socket of ``client`` is closed and its calls returned."""
        ...


_provider: ProviderAttachment | None = None
_provider_lock = threading.Lock()

# ReservedRegistrationState values.
_FREE, _REGISTERED, _DEREGISTERING = 0, 1, 2


@dataclass
class _Context:
    npi: WSK_CLIENT_NPI
    client: Any = None
    captures: int = 0


def attach_provider(provider: ProviderAttachment) -> None:
    """Called by the provider package when it loads (the NMR attach, in Windows terms)."""
    global _provider
    with _provider_lock:
        _provider = provider


def _get_provider() -> ProviderAttachment:
    if _provider is None:
        importlib.import_module("pywsk.provider")  # attaches itself on import
    if _provider is None:  # pragma: no cover - the provider package always attaches
        raise RuntimeError("the WSK provider did not attach")
    return _provider


def WskRegister(WskClientNpi: WSK_CLIENT_NPI, WskRegistration: WSK_REGISTRATION) -> int:
    """Register a WSK client.  Returns STATUS_SUCCESS or a failure code."""
    require_irql_at_most(PASSIVE_LEVEL, "WskRegister")
    if WskClientNpi is None or WskRegistration is None or WskClientNpi.Dispatch is None:
        return NTSTATUS.STATUS_INVALID_PARAMETER
    with WskRegistration.ReservedRegistrationLock:
        if WskRegistration.ReservedRegistrationState != _FREE:
            return NTSTATUS.STATUS_INVALID_PARAMETER
        WskRegistration.ReservedRegistrationContext = _Context(WskClientNpi)
        WskRegistration.ReservedRegistrationState = _REGISTERED
    _get_provider().start(None)
    return NTSTATUS.STATUS_SUCCESS


def WskCaptureProviderNPI(
    WskRegistration: WSK_REGISTRATION,
    WaitTimeout: int,
    WskProviderNpi: WSK_PROVIDER_NPI,
) -> int:
    """Capture the provider NPI: fills ``WskProviderNpi`` with the client object and table."""
    if WaitTimeout == WSK_NO_WAIT:
        require_irql_at_most(DISPATCH_LEVEL, "WskCaptureProviderNPI(WSK_NO_WAIT)")
    else:
        require_irql_at_most(PASSIVE_LEVEL, "WskCaptureProviderNPI with a wait")
    lock = WskRegistration.ReservedRegistrationLock
    with lock:
        if WskRegistration.ReservedRegistrationState != _REGISTERED:
            return NTSTATUS.STATUS_DEVICE_NOT_READY
        context: _Context = WskRegistration.ReservedRegistrationContext
    provider = _get_provider()
    version = context.npi.Dispatch.Version if context.npi.Dispatch is not None else 0
    chars = provider.characteristics
    if not chars.LowestVersion <= version <= chars.HighestVersion:
        return NTSTATUS.STATUS_NOINTERFACE
    if WaitTimeout == WSK_INFINITE_WAIT:
        timeout: float | None = None
    else:
        timeout = WaitTimeout / 1000.0
    deadline = None if timeout is None else time.monotonic() + timeout
    # Wait for the subsystem in slices so that a WskDeregister releases the waiter.
    while not provider.start(0.0 if timeout == 0 else 0.05):
        with lock:
            if WskRegistration.ReservedRegistrationState != _REGISTERED:
                return NTSTATUS.STATUS_DEVICE_NOT_READY
        if deadline is not None and time.monotonic() >= deadline:
            return NTSTATUS.STATUS_DEVICE_NOT_READY
    with lock:
        if WskRegistration.ReservedRegistrationState != _REGISTERED:
            return NTSTATUS.STATUS_DEVICE_NOT_READY
        if context.client is None:
            context.client = provider.attach_client(context.npi)
        context.captures += 1
        if hooks.observer is not None:
            hooks.observer.event("npi-captured", WskRegistration)
        WskProviderNpi.Client = context.client
        WskProviderNpi.Dispatch = provider.dispatch_for(context.client)
    return NTSTATUS.STATUS_SUCCESS


def WskReleaseProviderNPI(WskRegistration: WSK_REGISTRATION) -> None:
    """Release one capture.  Afterwards the client calls no WSK_PROVIDER_DISPATCH function."""
    require_irql_at_most(DISPATCH_LEVEL, "WskReleaseProviderNPI")
    lock = WskRegistration.ReservedRegistrationLock
    with lock:
        context: _Context | None = WskRegistration.ReservedRegistrationContext
        if context is None or context.captures <= 0:
            raise BugCheck(
                BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                "WskReleaseProviderNPI without a matching successful WskCaptureProviderNPI",
            )
        context.captures -= 1
        lock.notify_all()
    if hooks.observer is not None:
        hooks.observer.event("npi-released", WskRegistration)


def WskQueryProviderCharacteristics(
    WskRegistration: WSK_REGISTRATION,
    WskProviderCharacteristics: WSK_PROVIDER_CHARACTERISTICS,
) -> int:
    """Report the range of WSK versions the provider supports."""
    require_irql_at_most(DISPATCH_LEVEL, "WskQueryProviderCharacteristics")
    if WskRegistration.ReservedRegistrationState != _REGISTERED:
        return NTSTATUS.STATUS_DEVICE_NOT_READY
    chars = _get_provider().characteristics
    WskProviderCharacteristics.HighestVersion = chars.HighestVersion
    WskProviderCharacteristics.LowestVersion = chars.LowestVersion
    return NTSTATUS.STATUS_SUCCESS


def WskDeregister(WskRegistration: WSK_REGISTRATION) -> None:
    """Deregister.  Blocks until every capture is released and every socket is closed."""
    require_irql_at_most(PASSIVE_LEVEL, "WskDeregister")
    lock = WskRegistration.ReservedRegistrationLock
    with lock:
        if WskRegistration.ReservedRegistrationState != _REGISTERED:
            raise BugCheck(
                BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                "WskDeregister on a block that is not registered",
            )
        context: _Context = WskRegistration.ReservedRegistrationContext
        if hooks.observer is not None:
            # Before anything changes: a verifier may refuse (raise) and leave all intact.
            hooks.observer.event(
                "deregistering", WskRegistration, client=context.client, captures=context.captures
            )
        WskRegistration.ReservedRegistrationState = _DEREGISTERING
        lock.wait_for(lambda: context.captures == 0)
    if context.client is not None:
        _get_provider().detach_client(context.client)
    with lock:
        WskRegistration.ReservedRegistrationContext = None
        WskRegistration.ReservedRegistrationState = _FREE
