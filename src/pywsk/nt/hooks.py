"""Observation points for the verifier: where IRPs and MDLs are born, used and released.

What it does: holds at most one observer (the verifier, when it is on) and the one
function the NT and provider modules call to tell it what happened.  Modules test
``hooks.observer is not None`` before building any argument, so an unobserved run pays
one attribute read per event.  It also holds at most one fault plan (the verifier's seeded
scheduler), which the provider consults where it may pend, delay, reorder or fail work.

What it refuses: nothing; an observer may raise (a BugCheck for a broken rule), and the
exception reaches the code that broke the rule.

What always holds: the observer never changes what the observed code does; it only
reports.  A fault plan changes only what WSK leaves open (when and in which order IRPs
complete, whether a resource is available), never a rule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections import deque

    from .irp import IRP

__all__ = ["FaultPlan", "Observer", "faults", "observer", "set_faults", "set_observer"]


class Observer(Protocol):
    """Receives events: ``event(name, obj, **details)``; see pywsk.verifier for the names."""

    def event(self, name: str, obj: object, /, **details: Any) -> None: ...


#: The observer, or None (the default: nothing observes).
observer: Observer | None = None


def set_observer(new: Observer | None) -> Observer | None:
    """Install ``new`` (or None) and return the previous observer."""
    global observer
    previous, observer = observer, new
    return previous


class FaultPlan(Protocol):
    """Decisions a fault scheduler makes (see pywsk.verifier.faults); all seeded."""

    def force_pending(self, function: str) -> bool:
        """True: complete this call's IRP later, on the provider loop, and return PENDING."""
        ...

    def fail_call(self, function: str) -> int | None:
        """An NTSTATUS to fail this call with at once (e.g. STATUS_INSUFFICIENT_RESOURCES)."""
        ...

    def delay_completion(self) -> bool:
        """True: run a completion on a later loop turn (behind any already held)."""
        ...

    def hold_completion(self, irp: IRP) -> None:
        """``irp``'s completion was just queued for a later loop turn (the plan may make it
        cancelable there: see pywsk.verifier.faults, ``cancel_race``)."""
        ...

    def next_completion(self, held: deque[IRP]) -> IRP:
        """Remove from ``held`` (in the order queued) and return the completion to run now:
        the first, or one the WSK rules let pass those before it."""
        ...

    def stall_graceful_disconnect(self) -> bool:
        """True: a graceful disconnect never completes on its own."""
        ...


#: The fault plan, or None (the default: no faults).
faults: FaultPlan | None = None


def set_faults(new: FaultPlan | None) -> FaultPlan | None:
    """Install ``new`` (or None) and return the previous plan."""
    global faults
    previous, faults = faults, new
    return previous
