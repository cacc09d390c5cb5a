"""IRQL: the interrupt request level each thread runs at.

What it does: keeps a per-thread IRQL.  Every thread starts at PASSIVE_LEVEL.  The
provider's event-loop thread runs completion routines and event callbacks at
DISPATCH_LEVEL, as Windows does; a driver thread may raise and lower its own level with
:func:`KeRaiseIrql` / :func:`KeLowerIrql`.

What it refuses: lowering to a level above the current one, or raising to one below it
(``IRQL_NOT_GREATER_OR_EQUAL`` / ``IRQL_NOT_LESS_OR_EQUAL`` bug checks), and
:func:`require_irql_at_most` refuses a call made above the level its Microsoft page
allows.

What always holds: the level is a property of the calling thread only; nothing here
blocks or touches another thread.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

from .bugcheck import BugCheck, BugCheckCode

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "KIRQL",
    "PASSIVE_LEVEL",
    "LOW_LEVEL",
    "APC_LEVEL",
    "DISPATCH_LEVEL",
    "HIGH_LEVEL",
    "KeGetCurrentIrql",
    "KeRaiseIrql",
    "KeLowerIrql",
    "KeRaiseIrqlToDpcLevel",
    "irql_name",
    "require_irql_at_most",
    "running_at",
]

KIRQL = int

PASSIVE_LEVEL: Final = 0
LOW_LEVEL: Final = 0
APC_LEVEL: Final = 1
DISPATCH_LEVEL: Final = 2
HIGH_LEVEL: Final = 15

_NAMES = {
    PASSIVE_LEVEL: "PASSIVE_LEVEL",
    APC_LEVEL: "APC_LEVEL",
    DISPATCH_LEVEL: "DISPATCH_LEVEL",
    HIGH_LEVEL: "HIGH_LEVEL",
}


class _ThreadIrql(threading.local):
    level: int = PASSIVE_LEVEL


_state = _ThreadIrql()


def irql_name(Irql: KIRQL) -> str:
    """``'DISPATCH_LEVEL'`` for 2, ``'IRQL 5'`` for a level without a name."""
    return _NAMES.get(Irql, f"IRQL {Irql}")


def KeGetCurrentIrql() -> KIRQL:
    """The calling thread's current IRQL."""
    return _state.level


def KeRaiseIrql(NewIrql: KIRQL) -> KIRQL:
    """Raise the calling thread's IRQL to ``NewIrql`` and return the old level.

    C: ``KeRaiseIrql(NewIrql, &OldIrql)``; Python: ``OldIrql = KeRaiseIrql(NewIrql)``.
    """
    old = _state.level
    if NewIrql < old:
        raise BugCheck(
            BugCheckCode.IRQL_NOT_GREATER_OR_EQUAL,
            f"KeRaiseIrql to {irql_name(NewIrql)} from the higher {irql_name(old)}",
            old,
            NewIrql,
        )
    _state.level = NewIrql
    return old


def KeRaiseIrqlToDpcLevel() -> KIRQL:
    """Raise to DISPATCH_LEVEL and return the old level."""
    return KeRaiseIrql(DISPATCH_LEVEL)


def KeLowerIrql(NewIrql: KIRQL) -> None:
    """Lower the calling thread's IRQL back to ``NewIrql`` (a level it came from)."""
    old = _state.level
    if NewIrql > old:
        raise BugCheck(
            BugCheckCode.IRQL_NOT_LESS_OR_EQUAL,
            f"KeLowerIrql to {irql_name(NewIrql)} from the lower {irql_name(old)}",
            old,
            NewIrql,
        )
    _state.level = NewIrql


@contextmanager
def running_at(Irql: KIRQL) -> Iterator[None]:
    """Run a block at ``Irql`` (raised or lowered) and restore the old level after it.

    The provider uses it to call completion routines and event callbacks at DISPATCH_LEVEL.
    """
    old = _state.level
    _state.level = Irql
    try:
        yield
    finally:
        _state.level = old


def require_irql_at_most(limit: KIRQL, function: str) -> None:
    """Refuse a call made above ``limit`` with the bug check Windows would raise."""
    current = _state.level
    if current > limit:
        raise BugCheck(
            BugCheckCode.DRIVER_IRQL_NOT_LESS_OR_EQUAL,
            f"{function} must be called at IRQL <= {irql_name(limit)}; "
            f"the caller is at {irql_name(current)}",
            current,
            limit,
        )
