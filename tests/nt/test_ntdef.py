"""ntdef.h names for ports: TRUE/FALSE/NULL, ASSERT, UNREFERENCED_PARAMETER, PAGED_CODE,
DbgPrint/KdPrint through logging, CONTAINING_RECORD; IoSizeOfIrp and IoInitializeIrp."""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from pywsk.nt import (
    ASSERT,
    CONTAINING_RECORD,
    DPFLTR_ERROR_LEVEL,
    DPFLTR_IHVDRIVER_ID,
    DPFLTR_TRACE_LEVEL,
    FALSE,
    IRP,
    LIST_ENTRY,
    NULL,
    PAGED_CODE,
    STATUS_ALREADY_REGISTERED,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_SUCCESS,
    TRUE,
    UNREFERENCED_PARAMETER,
    DbgPrint,
    DbgPrintEx,
    ExAllocatePoolWithTag,
    ExFreePoolWithTag,
    IoAllocateIrp,
    IoCompleteRequest,
    IoFreeIrp,
    IoInitializeIrp,
    IoReuseIrp,
    IoSetCompletionRoutine,
    IoSizeOfIrp,
    IrpState,
    KdPrint,
    KdPrintEx,
    NonPagedPoolNx,
    begin_request,
)
from pywsk.nt.bugcheck import BugCheck, BugCheckCode
from pywsk.nt.irql import APC_LEVEL, DISPATCH_LEVEL, running_at

DEBUG_LOGGER = "pywsk.nt.debug"


def test_constants_read_as_in_c() -> None:
    assert TRUE == 1
    assert FALSE == 0
    assert NULL is None
    assert int(STATUS_ALREADY_REGISTERED) == 0xC0000718


def test_assert_names_the_failing_line() -> None:
    ASSERT(1 + 1 == 2)
    with pytest.raises(AssertionError, match=r"ASSERT\(len\(\[\]\) == 1\)"):
        ASSERT(len([]) == 1)


def test_assert_and_kdprint_are_gone_under_python_o_like_a_free_build() -> None:
    code = (
        "from pywsk.nt import ASSERT, KdPrint, PAGED_CODE\n"
        "from pywsk.nt.irql import running_at\n"
        "ASSERT(False)\n"
        "with running_at(2):\n"
        "    PAGED_CODE()\n"
        "print('free build')\n"
    )
    done = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "free build"


def test_unreferenced_parameter_does_nothing() -> None:
    UNREFERENCED_PARAMETER(1, None, object())


@pytest.mark.parametrize("irql", [DISPATCH_LEVEL])
def test_paged_code_refuses_dispatch_level(irql: int) -> None:
    with running_at(APC_LEVEL):
        PAGED_CODE()
    with running_at(irql), pytest.raises(BugCheck) as caught:
        PAGED_CODE()
    assert caught.value.code is BugCheckCode.DRIVER_IRQL_NOT_LESS_OR_EQUAL


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("WskSample: %d bytes from %s\n", 12, "1.2.3.4"), "WskSample: 12 bytes from 1.2.3.4"),
        (
            ("%u %lu %x %08X %I64d\n", -1, 7, -1, 255, 2**40),
            f"4294967295 7 ffffffff 000000FF {2**40}",
        ),
        (("%llx %zu", -1, 3), "ffffffffffffffff 3"),
        (("%-5s|%5.2s|%c%%", b"ab\0zz", "xyz", 65), "ab   |   xy|A%"),
        (("%*d|%.*s", 4, 7, 2, "hello"), "   7|he"),
        (("%ws %S %wZ", "wide", "str", type("U", (), {"Buffer": "ustr"})()), "wide str ustr"),
        (("%p", 0x1234), "0000000000001234"),
        (("100%% sure %s", None), "100% sure (null)"),
    ],
)
def test_dbgprint_formats_c_printf(
    caplog: pytest.LogCaptureFixture, args: tuple[object, ...], expected: str
) -> None:
    with caplog.at_level(logging.INFO, logger=DEBUG_LOGGER):
        assert DbgPrint(*args) == STATUS_SUCCESS  # type: ignore[arg-type]
    assert [r.getMessage() for r in caplog.records] == [expected]
    assert caplog.records[0].name == DEBUG_LOGGER
    assert caplog.records[0].levelno == logging.INFO


def test_dbgprint_is_filtered_by_default_like_windows(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=DEBUG_LOGGER):
        DbgPrint("hidden %d\n", 1)
        DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_ERROR_LEVEL, "shown %s\n", "error")
        DbgPrintEx(DPFLTR_IHVDRIVER_ID, DPFLTR_TRACE_LEVEL, "hidden trace\n")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.ERROR, "shown error")]


def test_a_format_the_arguments_do_not_fit_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger=DEBUG_LOGGER):
        assert DbgPrint("%d and %d\n", 1) == STATUS_SUCCESS
        assert DbgPrint("%d\n", "text") == STATUS_SUCCESS
        assert DbgPrint("%d\n", 1, 2) == STATUS_SUCCESS
    assert len(caplog.records) == 3
    assert all("does not fit" in r.getMessage() for r in caplog.records)


def test_kdprint_takes_the_macro_double_parentheses(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=DEBUG_LOGGER):
        KdPrint(("KdPrint %s %d\n", "x", 2))
        KdPrintEx((DPFLTR_IHVDRIVER_ID, DPFLTR_TRACE_LEVEL, "trace %d\n", 3))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "KdPrint x 2"),
        (logging.DEBUG, "trace 3"),
    ]


@dataclass
class Record:
    Name: str
    Link: LIST_ENTRY = field(default_factory=LIST_ENTRY)


class Slotted:
    __slots__ = ("Entry", "__weakref__")

    def __init__(self) -> None:
        self.Entry = LIST_ENTRY(self)


def test_containing_record_finds_the_record_by_its_field() -> None:
    records = [Record(str(i)) for i in range(3)]
    for record in records:
        assert CONTAINING_RECORD(record.Link, Record, "Link") is record
        assert CONTAINING_RECORD(record.Link, Record, "Link") is record  # remembered
    slotted = Slotted()
    assert CONTAINING_RECORD(slotted.Entry, Slotted, "Entry") is slotted


def test_containing_record_refuses_an_entry_no_record_holds() -> None:
    with pytest.raises(ValueError, match="no Record holds"):
        CONTAINING_RECORD(LIST_ENTRY(), Record, "Link")
    with pytest.raises(ValueError):
        CONTAINING_RECORD(Record("x").Link, Record, "Other")
    with pytest.raises(TypeError):
        CONTAINING_RECORD(LIST_ENTRY(), Record, 8)  # type: ignore[arg-type]


def test_io_size_of_irp_is_the_x64_layout() -> None:
    assert IoSizeOfIrp(1) == 0xD0 + 0x48
    assert IoSizeOfIrp(3) == 0xD0 + 3 * 0x48
    with pytest.raises(ValueError):
        IoSizeOfIrp(0)
    with pytest.raises(TypeError):
        IoSizeOfIrp(1.0)  # type: ignore[arg-type]


def state_of(irp: IRP) -> IrpState:
    return irp.state


def test_io_initialize_irp_in_pool_memory_and_its_release() -> None:
    size = IoSizeOfIrp(2)
    memory = ExAllocatePoolWithTag(NonPagedPoolNx, size, b"WDFF")
    assert memory is not None
    irp = IoInitializeIrp(memory, size, 2)
    assert state_of(irp) is IrpState.IDLE
    assert irp.StackSize == 2
    assert IoInitializeIrp(memory, size, 2) is irp, "the same memory is the same IRP"
    calls: list[int] = []

    def done(DeviceObject: object, Irp: object, Context: object) -> int:
        calls.append(1)
        return STATUS_MORE_PROCESSING_REQUIRED

    IoSetCompletionRoutine(irp, done, None, True, True, True)
    begin_request(irp, "test")
    with pytest.raises(BugCheck, match="still pending"):
        ExFreePoolWithTag(memory, b"WDFF")
    IoCompleteRequest(irp)
    assert calls == [1]
    with pytest.raises(BugCheck, match="free that memory"):
        IoFreeIrp(irp)
    IoReuseIrp(irp, STATUS_SUCCESS)
    ExFreePoolWithTag(irp, b"WDFF")  # C frees through the IRP pointer
    assert state_of(irp) is IrpState.FREED
    with pytest.raises(BugCheck):
        IoSetCompletionRoutine(irp, None, None, True, True, True)


def test_io_initialize_irp_refusals() -> None:
    with pytest.raises(BugCheck, match="PacketSize"):
        IoInitializeIrp(bytearray(100), 100, 1)
    with pytest.raises(ValueError, match="writable buffer"):
        IoInitializeIrp(bytes(IoSizeOfIrp(1)), IoSizeOfIrp(1), 1)
    quota = IoAllocateIrp(1, True)
    assert quota is not None
    with pytest.raises(BugCheck, match="ChargeQuota TRUE"):
        IoInitializeIrp(quota, IoSizeOfIrp(1), 1)
    IoFreeIrp(quota)
    plain = IoAllocateIrp(1, False)
    assert plain is not None
    begin_request(plain, "test")
    with pytest.raises(BugCheck, match="still pending"):
        IoInitializeIrp(plain, IoSizeOfIrp(1), 1)
    IoCompleteRequest(plain)
    assert IoInitializeIrp(plain, IoSizeOfIrp(1), 1) is plain  # "Reusing IRPs" allows it
    assert plain.state is IrpState.IDLE
    IoFreeIrp(plain)


def test_a_c_pool_tag_literal_is_its_bytes_in_memory_order() -> None:
    """C's 'FFDW' is 0x46464457, stored little-endian as "WDFF" (what poolmon shows)."""
    block = ExAllocatePoolWithTag(NonPagedPoolNx, 64, b"WDFF")
    assert block is not None
    ExFreePoolWithTag(block, 0x46464457)
    block = ExAllocatePoolWithTag(NonPagedPoolNx, 64, 0x46464457)
    assert block is not None
    with pytest.raises(BugCheck, match="tag"):
        ExFreePoolWithTag(block, b"FFDW")  # the C spelling, unreversed: another tag
    ExFreePoolWithTag(block, b"WDFF")
