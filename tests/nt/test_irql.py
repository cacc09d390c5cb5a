"""IRQL: per-thread levels, KeRaiseIrql / KeLowerIrql rules, running_at, require_irql_at_most."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from pywsk.nt.bugcheck import BugCheck, BugCheckCode
from pywsk.nt.irql import (
    APC_LEVEL,
    DISPATCH_LEVEL,
    HIGH_LEVEL,
    LOW_LEVEL,
    PASSIVE_LEVEL,
    KeGetCurrentIrql,
    KeLowerIrql,
    KeRaiseIrql,
    KeRaiseIrqlToDpcLevel,
    irql_name,
    require_irql_at_most,
    running_at,
)

TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def at_passive() -> Iterator[None]:
    """Every test starts at PASSIVE_LEVEL and leaves the test thread there."""
    assert KeGetCurrentIrql() == PASSIVE_LEVEL
    try:
        yield
    finally:
        if KeGetCurrentIrql() != PASSIVE_LEVEL:
            KeLowerIrql(PASSIVE_LEVEL)


def in_thread(fn: Callable[[], object]) -> list[object]:
    """Run ``fn`` in a new thread (bounded) and return what it put in the list."""
    out: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert errors == []
    return out


def test_level_values() -> None:
    assert (PASSIVE_LEVEL, LOW_LEVEL, APC_LEVEL, DISPATCH_LEVEL, HIGH_LEVEL) == (0, 0, 1, 2, 15)


def test_names() -> None:
    assert irql_name(PASSIVE_LEVEL) == "PASSIVE_LEVEL"
    assert irql_name(APC_LEVEL) == "APC_LEVEL"
    assert irql_name(DISPATCH_LEVEL) == "DISPATCH_LEVEL"
    assert irql_name(HIGH_LEVEL) == "HIGH_LEVEL"
    assert irql_name(5) == "IRQL 5"


def test_threads_start_at_passive() -> None:
    assert KeGetCurrentIrql() == PASSIVE_LEVEL
    assert in_thread(KeGetCurrentIrql) == [PASSIVE_LEVEL]


def test_levels_are_per_thread() -> None:
    KeRaiseIrql(DISPATCH_LEVEL)
    # Another thread does not see this thread's level ...
    assert in_thread(KeGetCurrentIrql) == [PASSIVE_LEVEL]

    # ... and its own changes do not reach this thread.
    def raise_high() -> int:
        KeRaiseIrql(HIGH_LEVEL)
        return KeGetCurrentIrql()

    assert in_thread(raise_high) == [HIGH_LEVEL]
    assert KeGetCurrentIrql() == DISPATCH_LEVEL
    KeLowerIrql(PASSIVE_LEVEL)


def test_levels_are_independent_in_concurrent_threads() -> None:
    ready = threading.Barrier(2)
    seen: list[int] = []

    def other() -> None:
        ready.wait(TIMEOUT)  # this thread is at DISPATCH_LEVEL now
        seen.append(KeGetCurrentIrql())
        KeRaiseIrql(APC_LEVEL)
        seen.append(KeGetCurrentIrql())

    thread = threading.Thread(target=other, daemon=True)
    thread.start()
    KeRaiseIrql(DISPATCH_LEVEL)
    ready.wait(TIMEOUT)
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert seen == [PASSIVE_LEVEL, APC_LEVEL]
    assert KeGetCurrentIrql() == DISPATCH_LEVEL


def test_raise_returns_the_old_level() -> None:
    assert KeRaiseIrql(APC_LEVEL) == PASSIVE_LEVEL
    assert KeGetCurrentIrql() == APC_LEVEL
    assert KeRaiseIrql(DISPATCH_LEVEL) == APC_LEVEL
    assert KeRaiseIrql(DISPATCH_LEVEL) == DISPATCH_LEVEL  # raising to the same level is allowed
    assert KeRaiseIrql(HIGH_LEVEL) == DISPATCH_LEVEL
    KeLowerIrql(DISPATCH_LEVEL)
    assert KeGetCurrentIrql() == DISPATCH_LEVEL
    KeLowerIrql(DISPATCH_LEVEL)  # lowering to the same level is allowed
    KeLowerIrql(APC_LEVEL)
    KeLowerIrql(PASSIVE_LEVEL)
    assert KeGetCurrentIrql() == PASSIVE_LEVEL


def test_raise_to_dpc_level() -> None:
    assert KeRaiseIrqlToDpcLevel() == PASSIVE_LEVEL
    assert KeGetCurrentIrql() == DISPATCH_LEVEL
    KeLowerIrql(PASSIVE_LEVEL)


def test_raise_to_dpc_level_from_above_bugchecks() -> None:
    KeRaiseIrql(HIGH_LEVEL)
    with pytest.raises(BugCheck) as excinfo:
        KeRaiseIrqlToDpcLevel()
    assert excinfo.value.code is BugCheckCode.IRQL_NOT_GREATER_OR_EQUAL
    assert KeGetCurrentIrql() == HIGH_LEVEL


def test_raise_below_the_current_level_bugchecks() -> None:
    KeRaiseIrql(DISPATCH_LEVEL)
    with pytest.raises(BugCheck) as excinfo:
        KeRaiseIrql(APC_LEVEL)
    assert excinfo.value.code is BugCheckCode.IRQL_NOT_GREATER_OR_EQUAL
    assert excinfo.value.parameters == (DISPATCH_LEVEL, APC_LEVEL, 0, 0)
    assert "KeRaiseIrql" in str(excinfo.value)
    assert KeGetCurrentIrql() == DISPATCH_LEVEL  # unchanged


def test_lower_above_the_current_level_bugchecks() -> None:
    KeRaiseIrql(APC_LEVEL)
    with pytest.raises(BugCheck) as excinfo:
        KeLowerIrql(DISPATCH_LEVEL)
    assert excinfo.value.code is BugCheckCode.IRQL_NOT_LESS_OR_EQUAL
    assert excinfo.value.parameters == (APC_LEVEL, DISPATCH_LEVEL, 0, 0)
    assert "KeLowerIrql" in str(excinfo.value)
    assert KeGetCurrentIrql() == APC_LEVEL  # unchanged


def test_running_at_raises_and_restores() -> None:
    with running_at(DISPATCH_LEVEL):
        assert KeGetCurrentIrql() == DISPATCH_LEVEL
        with running_at(HIGH_LEVEL):
            assert KeGetCurrentIrql() == HIGH_LEVEL
        assert KeGetCurrentIrql() == DISPATCH_LEVEL
    assert KeGetCurrentIrql() == PASSIVE_LEVEL


def test_running_at_may_lower_and_restores() -> None:
    KeRaiseIrql(DISPATCH_LEVEL)
    with running_at(PASSIVE_LEVEL):
        assert KeGetCurrentIrql() == PASSIVE_LEVEL
    assert KeGetCurrentIrql() == DISPATCH_LEVEL
    KeLowerIrql(PASSIVE_LEVEL)


def test_running_at_restores_after_an_exception() -> None:
    with pytest.raises(ValueError, match="inside"), running_at(DISPATCH_LEVEL):
        raise ValueError("inside")
    assert KeGetCurrentIrql() == PASSIVE_LEVEL


def test_running_at_restores_after_a_bugcheck_inside() -> None:
    with pytest.raises(BugCheck), running_at(DISPATCH_LEVEL):
        require_irql_at_most(PASSIVE_LEVEL, "SomeFunction")
    assert KeGetCurrentIrql() == PASSIVE_LEVEL


def test_running_at_restores_the_level_it_found_even_if_the_block_changed_it() -> None:
    with running_at(APC_LEVEL):
        KeRaiseIrql(HIGH_LEVEL)
    assert KeGetCurrentIrql() == PASSIVE_LEVEL


def test_running_at_is_per_thread() -> None:
    with running_at(DISPATCH_LEVEL):
        assert in_thread(KeGetCurrentIrql) == [PASSIVE_LEVEL]


@pytest.mark.parametrize("limit", [PASSIVE_LEVEL, APC_LEVEL, DISPATCH_LEVEL])
@pytest.mark.parametrize("current", [PASSIVE_LEVEL, APC_LEVEL, DISPATCH_LEVEL, HIGH_LEVEL])
def test_require_irql_at_most(limit: int, current: int) -> None:
    with running_at(current):
        if current <= limit:
            require_irql_at_most(limit, "WskSomething")
            return
        with pytest.raises(BugCheck) as excinfo:
            require_irql_at_most(limit, "WskSomething")
        assert KeGetCurrentIrql() == current  # the check changes nothing
    error = excinfo.value
    assert error.code is BugCheckCode.DRIVER_IRQL_NOT_LESS_OR_EQUAL
    assert error.parameters == (current, limit, 0, 0)
    assert "WskSomething" in error.rule
    assert "WskSomething" in str(error)
    assert irql_name(limit) in error.rule
    assert irql_name(current) in error.rule


def test_bugcheck_message_format() -> None:
    error = BugCheck(BugCheckCode.IRQL_NOT_LESS_OR_EQUAL, "the rule", 3)
    assert error.parameters == (3, 0, 0, 0)
    assert error.rule == "the rule"
    assert str(error) == "IRQL_NOT_LESS_OR_EQUAL (0xA; 0x3, 0x0, 0x0, 0x0): the rule"
    assert isinstance(error, RuntimeError)
