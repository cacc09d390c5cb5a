"""The verifier's checks: stable IDs, one-line messages, the Microsoft rule behind each
(with the page that states it), and whether each one is fatal.

What it does: names every rule the verifier enforces.  A *fatal* check raises
:class:`~pywsk.nt.bugcheck.BugCheck` in the thread that broke the rule when the verifier
runs in ``"raise"`` mode, as Driver Verifier would stop the machine; a *soft* check is one
where WSK itself answers with a documented status (the call still gets it) and the
verifier only reports.

What always holds: IDs never change meaning; ``docs/verifier.md`` has an entry and an
example for each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["CHECKS", "Check"]


#: Where Microsoft's pages live (learn.microsoft.com).
_DRIVERS: Final = "https://learn.microsoft.com/windows-hardware/drivers/"
_USING_IRPS: Final = _DRIVERS + "network/using-irps-with-winsock-kernel-functions"


@dataclass(frozen=True)
class Check:
    """One rule: its stable ID, what a violation means, whether it is fatal, and the
    Microsoft rule it enforces with the page that states it."""

    id: str
    message: str
    rule: str
    page: str
    fatal: bool = True


CHECKS: Final[dict[str, Check]] = {
    check.id: check
    for check in [
        # IRPs
        Check(
            "IRP-001",
            "an IRP was completed twice",
            "an IRP is completed once; a second IoCompleteRequest is bug check 0x44 "
            "MULTIPLE_IRP_COMPLETE_REQUESTS",
            _DRIVERS + "debugger/bug-check-0x44--multiple-irp-complete-requests",
        ),
        Check(
            "IRP-002",
            "an IRP was passed to a WSK call while still pending in another",
            "an IRP belongs to one request until its completion routine has run",
            _USING_IRPS,
        ),
        Check(
            "IRP-003",
            "an IRP was freed while still pending",
            "IoFreeIrp releases an IRP only after it was completed",
            _DRIVERS + "ddi/wdm/nf-wdm-iofreeirp",
        ),
        Check(
            "IRP-004",
            "a completion routine of a client-allocated IRP returned something other than "
            "STATUS_MORE_PROCESSING_REQUIRED",
            "the IoCompletion routine of an IRP the WSK application allocated must always "
            "return STATUS_MORE_PROCESSING_REQUIRED",
            _USING_IRPS,
        ),
        Check(
            "IRP-005",
            "a completed IRP was passed to a WSK call again without IoReuseIrp",
            "an IRP is reinitialised with IoReuseIrp, and given its completion routine "
            "again, before each reuse",
            _DRIVERS + "kernel/reusing-irps",
        ),
        Check(
            "IRP-006",
            "an IRP was allocated and never freed (leak)",
            "an IRP from IoAllocateIrp is released with IoFreeIrp when the application is "
            "done with it",
            _USING_IRPS,
        ),
        Check(
            "IRP-007",
            "a WSK call was given a NULL IRP",
            "every WSK function that takes an Irp parameter needs a pointer to an IRP to "
            "complete; the call fails with STATUS_INVALID_PARAMETER",
            _USING_IRPS,
            fatal=False,
        ),
        # WSK calls
        Check(
            "WSK-001",
            "a WSK call was made on a closed socket object (use after close)",
            "after WskCloseSocket the application must not call any function of that socket",
            _DRIVERS + "ddi/wsk/nc-wsk-pfn_wsk_close_socket",
        ),
        Check(
            "WSK-002",
            "WskCloseSocket was called while another call on that socket was still inside "
            "the provider",
            "WskCloseSocket is called only when no other function of the socket is in progress",
            _DRIVERS + "ddi/wsk/nc-wsk-pfn_wsk_close_socket",
        ),
        Check(
            "WSK-003",
            "a Buffer was passed together with WSK_FLAG_ABORTIVE",
            "with WSK_FLAG_ABORTIVE the Buffer parameter must be NULL",
            _DRIVERS + "ddi/wsk/nc-wsk-pfn_wsk_disconnect",
            fatal=False,
        ),
        Check(
            "WSK-004",
            "a WSK_BUF's Offset + Length lies outside its MDL chain",
            "Offset lies in the first MDL, and Offset + Length within the chain",
            _DRIVERS + "ddi/wsk/ns-wsk-_wsk_buf",
            fatal=False,
        ),
        Check(
            "WSK-005",
            "a socket was closed with data-indication lists still retained (WskRelease them first)",
            "data-indication lists retained by returning STATUS_PENDING are given back with "
            "WskRelease; WskCloseSocket does not release them",
            _DRIVERS + "ddi/wsk/nc-wsk-pfn_wsk_release_data_indication_list",
        ),
        Check(
            "WSK-006",
            "WskDeregister was called while captures or sockets remain (it would wait forever)",
            "WskDeregister blocks until every capture is released and every socket closed",
            _DRIVERS + "ddi/wsk/nf-wsk-wskderegister",
        ),
        Check(
            "WSK-007",
            "a WSK call was started from inside a completion routine (queue it to a worker "
            "instead)",
            "do not call WSK functions from an IoCompletion routine: queue the work",
            _USING_IRPS,
            fatal=False,
        ),
        Check(
            "WSK-008",
            "a socket was never closed (leak)",
            "every socket is closed with WskCloseSocket",
            _DRIVERS + "ddi/wsk/nc-wsk-pfn_wsk_close_socket",
        ),
        Check(
            "WSK-009",
            "a captured provider NPI was never released (leak)",
            "each successful WskCaptureProviderNPI is paired with one WskReleaseProviderNPI",
            _DRIVERS + "ddi/wsk/nf-wsk-wskreleaseprovidernpi",
        ),
        Check(
            "WSK-010",
            "a WSK function of another socket category was called on this socket",
            "each socket's functions are those of the dispatch table of its category "
            "(WSK_PROVIDER_CONNECTION_DISPATCH, _LISTEN_, _DATAGRAM_, _STREAM_ or _BASIC_), "
            "which WskSocket returns in the socket's Dispatch",
            _DRIVERS + "ddi/wsk/nc-wsk-pfn_wsk_socket",
        ),
        # Time at DISPATCH_LEVEL
        Check(
            "DPC-001",
            "a completion routine or event callback ran too long at DISPATCH_LEVEL",
            "code at DISPATCH_LEVEL runs briefly (a DPC routine should not run longer than "
            "100 microseconds) and delegates longer work to a worker thread; the DPC watchdog "
            "bug-checks a single routine that runs too long (0x133 DPC_WATCHDOG_VIOLATION)",
            _DRIVERS + "ddi/wdm/nf-wdm-kequerydpcwatchdoginformation",
            fatal=False,
        ),
        # MDLs and pool
        Check(
            "MDL-001",
            "an MDL was allocated and never freed (leak)",
            "an MDL from IoAllocateMdl is released with IoFreeMdl",
            _DRIVERS + "ddi/wdm/nf-wdm-ioallocatemdl",
        ),
        Check(
            "MDL-002",
            "an MDL's pages were locked and never unlocked",
            "each MmProbeAndLockPages is matched by one MmUnlockPages before IoFreeMdl",
            _DRIVERS + "ddi/wdm/nf-wdm-mmunlockpages",
        ),
        Check(
            "MDL-003",
            "an MDL passed to a WSK call was neither locked nor built for non-paged pool",
            "every MDL of a WSK_BUF describes locked (MmProbeAndLockPages) or non-paged "
            "(MmBuildMdlForNonPagedPool) memory; the call fails with STATUS_INVALID_PARAMETER",
            _DRIVERS + "ddi/wsk/ns-wsk-_wsk_buf",
            fatal=False,
        ),
        Check(
            "POOL-001",
            "a pool block was allocated and never freed (leak)",
            "pool from ExAllocatePoolWithTag / ExAllocatePool2 is freed with "
            "ExFreePoolWithTag; Driver Verifier's pool tracking reports what is left",
            _DRIVERS + "devtest/pool-tracking",
        ),
    ]
}
