"""Name resolution: WskGetAddressInfo, WskFreeAddressInfo, WskGetNameInfo.

What it does: resolves names and addresses through the system resolver (``getaddrinfo`` /
``getnameinfo``), off the provider thread: the call returns STATUS_PENDING and the IRP
completes when the resolver answers, as these calls are documented to do
("WskGetAddressInfo", "WskGetNameInfo").  Results use Windows numbering and structures:
an ADDRINFOEXW chain with SOCKADDR_IN / SOCKADDR_IN6 addresses, UNICODE_STRING names.

What it refuses: a call above PASSIVE_LEVEL (the pages' IRQL rule; BugCheck), a name
space other than NS_ALL / NS_DNS or a namespace provider GUID (STATUS_NOT_SUPPORTED), a
missing result pointer or socket address (STATUS_INVALID_PARAMETER).  A name that does
not resolve completes with STATUS_NOT_FOUND - what Windows 8 and later were observed to
return (spec §10); older Windows documented STATUS_NO_MATCH.

What always holds: a result chain handed out by WskGetAddressInfo stays valid until
WskFreeAddressInfo releases it; freeing a chain that was not handed out, or twice, raises
BugCheck.
"""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING, Any

from ..mechanics import linux
from ..nt.bugcheck import BugCheck, BugCheckCode
from ..nt.irql import PASSIVE_LEVEL, require_irql_at_most
from ..nt.status import NTSTATUS
from ..wsk.constants import (
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    AI_CANONNAME,
    AI_NUMERICHOST,
    AI_NUMERICSERV,
    AI_PASSIVE,
    NI_DGRAM,
    NI_NAMEREQD,
    NI_NOFQDN,
    NI_NUMERICHOST,
    NI_NUMERICSERV,
    NS_ALL,
    NS_DNS,
)
from ..wsk.structs import ADDRINFOEXW, PPVOID, sockaddr_from_tuple

if TYPE_CHECKING:
    from ..nt.irp import IRP
    from ..wsk.structs import SOCKADDR, UNICODE_STRING

__all__ = ["free_address_info", "get_address_info", "get_name_info"]

#: Guards every client's set of chains handed out (added on the provider thread, freed on
#: the caller's).
_chains_lock = threading.Lock()

_AI_FLAGS: dict[int, int] = {
    AI_PASSIVE: int(socket.AI_PASSIVE),
    AI_CANONNAME: int(socket.AI_CANONNAME),
    AI_NUMERICHOST: int(socket.AI_NUMERICHOST),
    AI_NUMERICSERV: int(socket.AI_NUMERICSERV),
}
_NI_FLAGS: dict[int, int] = {
    NI_NOFQDN: int(socket.NI_NOFQDN),
    NI_NUMERICHOST: int(socket.NI_NUMERICHOST),
    NI_NAMEREQD: int(socket.NI_NAMEREQD),
    NI_NUMERICSERV: int(socket.NI_NUMERICSERV),
    NI_DGRAM: int(socket.NI_DGRAM),
}


def _flags(value: int, table: dict[int, int]) -> int:
    return sum(linux_flag for flag, linux_flag in table.items() if value & flag)


_status_of = linux.status_from_resolver


def get_address_info(
    subsystem: Any,
    client: Any,
    NodeName: UNICODE_STRING | None,
    ServiceName: UNICODE_STRING | None,
    NameSpace: int,
    Provider: Any,
    Hints: ADDRINFOEXW | None,
    Result: PPVOID[ADDRINFOEXW],
    Irp: IRP,
) -> int:
    """WskGetAddressInfo, on the provider thread: validate, then resolve in a worker."""
    engine = subsystem.engine
    if NameSpace not in (NS_ALL, NS_DNS) or Provider is not None:
        return _done(engine, Irp, NTSTATUS.STATUS_NOT_SUPPORTED)
    if not isinstance(Result, PPVOID) or (NodeName is None and ServiceName is None):
        return _done(engine, Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
    hints = Hints or ADDRINFOEXW()
    if hints.ai_family not in (AF_UNSPEC, AF_INET, AF_INET6):
        return _done(engine, Irp, NTSTATUS.STATUS_NOT_SUPPORTED)
    family = 0 if hints.ai_family == AF_UNSPEC else linux.linux_family(hints.ai_family)
    host = str(NodeName) if NodeName is not None and NodeName.Buffer else None
    service = str(ServiceName) if ServiceName is not None and ServiceName.Buffer else None

    def resolve() -> list[tuple[Any, ...]]:
        return socket.getaddrinfo(
            host,
            service,
            family,
            hints.ai_socktype,
            hints.ai_protocol,
            _flags(hints.ai_flags, _AI_FLAGS),
        )

    def answered(outcome: list[tuple[Any, ...]] | OSError) -> None:
        if isinstance(outcome, OSError):
            engine.complete(Irp, _status_of(outcome))
            return
        head: ADDRINFOEXW | None = None
        for af, kind, proto, canon, address in reversed(outcome):
            sockaddr = sockaddr_from_tuple(address)
            head = ADDRINFOEXW(
                ai_family=linux.wsk_family(af),
                ai_socktype=int(kind),
                ai_protocol=proto,
                ai_addrlen=16 if af == socket.AF_INET else 28,
                ai_canonname=canon or None,
                ai_addr=sockaddr,
                ai_next=head,
            )
        if head is None:
            engine.complete(Irp, NTSTATUS.STATUS_NOT_FOUND)
            return
        with _chains_lock:
            client.address_infos.add(id(head))
        Result.value = head
        engine.complete(Irp, NTSTATUS.STATUS_SUCCESS)

    _in_worker(engine, resolve, answered, Irp)
    return NTSTATUS.STATUS_PENDING


def free_address_info(client: Any, AddrInfo: ADDRINFOEXW) -> None:
    """WskFreeAddressInfo: release a chain WskGetAddressInfo handed out."""
    with _chains_lock:
        if id(AddrInfo) not in client.address_infos:
            raise BugCheck(
                BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                "WskFreeAddressInfo on a list WskGetAddressInfo did not hand out (or freed twice)",
                id(AddrInfo),
            )
        client.address_infos.discard(id(AddrInfo))


def get_name_info(
    subsystem: Any,
    SockAddr: SOCKADDR | None,
    NodeName: UNICODE_STRING | None,
    ServiceName: UNICODE_STRING | None,
    Flags: int,
    Irp: IRP,
) -> int:
    """WskGetNameInfo, on the provider thread: validate, then resolve in a worker."""
    engine = subsystem.engine
    if SockAddr is None or (NodeName is None and ServiceName is None):
        return _done(engine, Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
    try:
        address = SockAddr.to_tuple()
    except (ValueError, NotImplementedError):
        return _done(engine, Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
    flags = _flags(Flags, _NI_FLAGS)

    def resolve() -> tuple[str, str]:
        return socket.getnameinfo(address, flags)

    def answered(outcome: tuple[str, str] | OSError) -> None:
        if isinstance(outcome, OSError):
            engine.complete(Irp, _status_of(outcome))
            return
        host, service = outcome
        for target, text in ((NodeName, host), (ServiceName, service)):
            if target is None:
                continue
            if target.MaximumLength and 2 * len(text) > target.MaximumLength:
                engine.complete(Irp, NTSTATUS.STATUS_BUFFER_OVERFLOW)
                return
            target.Buffer = text
        engine.complete(Irp, NTSTATUS.STATUS_SUCCESS)

    _in_worker(engine, resolve, answered, Irp)
    return NTSTATUS.STATUS_PENDING


def _done(engine: Any, Irp: IRP, status: int) -> int:
    engine.complete(Irp, status)
    return status


def _in_worker(engine: Any, work: Any, answered: Any, Irp: IRP) -> None:
    """Run the blocking ``work`` in a worker thread; ``answered`` runs on the provider thread."""
    from ..nt.irp import IoMarkIrpPending

    IoMarkIrpPending(Irp)

    def finished(future: Any) -> None:
        try:
            outcome = future.result()
        except OSError as exc:
            outcome = exc
        except (UnicodeError, ValueError):
            # A name the resolver cannot even encode (IDNA): not a name that can exist.
            engine.complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
            return
        answered(outcome)

    engine.run_in_executor(work, finished)


def check_passive(function: str) -> None:
    """The pages' rule: these calls are made at PASSIVE_LEVEL."""
    require_irql_at_most(PASSIVE_LEVEL, function)
