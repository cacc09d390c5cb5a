"""The verifier's checks: stable IDs, one-line messages, and whether each one is fatal.

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


@dataclass(frozen=True)
class Check:
    """One rule: its stable ID, what a violation means, and whether it is fatal."""

    id: str
    message: str
    fatal: bool = True


CHECKS: Final[dict[str, Check]] = {
    check.id: check
    for check in [
        # IRPs ("Using IRPs with Winsock Kernel Functions", IoCompleteRequest, IoFreeIrp, ...)
        Check("IRP-001", "an IRP was completed twice"),
        Check("IRP-002", "an IRP was passed to a WSK call while still pending in another"),
        Check("IRP-003", "an IRP was freed while still pending"),
        Check(
            "IRP-004",
            "a completion routine of a client-allocated IRP returned something other than STATUS_MORE_PROCESSING_REQUIRED",
        ),
        Check("IRP-005", "a completed IRP was passed to a WSK call again without IoReuseIrp"),
        Check("IRP-006", "an IRP was allocated and never freed (leak)"),
        # WSK calls
        Check("WSK-001", "a WSK call was made on a closed socket object (use after close)"),
        Check(
            "WSK-002",
            "WskCloseSocket was called while another call on that socket was still inside the provider",
        ),
        Check("WSK-003", "a Buffer was passed together with WSK_FLAG_ABORTIVE", fatal=False),
        Check("WSK-004", "a WSK_BUF's Offset + Length lies outside its MDL chain", fatal=False),
        Check(
            "WSK-005",
            "a socket was closed with data-indication lists still retained (WskRelease them first)",
        ),
        Check(
            "WSK-006",
            "WskDeregister was called while captures or sockets remain (it would wait forever)",
        ),
        Check(
            "WSK-007",
            "a WSK call was started from inside a completion routine (queue it to a worker instead)",
            fatal=False,
        ),
        Check("WSK-008", "a socket was never closed (leak)"),
        Check("WSK-009", "a captured provider NPI was never released (leak)"),
        # MDLs
        Check("MDL-001", "an MDL was allocated and never freed (leak)"),
        Check("MDL-002", "an MDL's pages were locked and never unlocked"),
    ]
}
