"""NTSTATUS: values against ntstatus.h, pass-through of unknown codes, the ntdef.h macros."""

from __future__ import annotations

import pytest

from pywsk.nt import status as status_module
from pywsk.nt.status import (
    NT_ERROR,
    NT_INFORMATION,
    NT_SUCCESS,
    NT_WARNING,
    NTSTATUS,
    STATUS_CANCELLED,
    STATUS_PENDING,
    STATUS_SUCCESS,
    status_name,
)

#: Values copied from ntstatus.h (independently of the module), for every code pywsk names.
NTSTATUS_H: dict[str, int] = {
    "STATUS_SUCCESS": 0x00000000,
    "STATUS_TIMEOUT": 0x00000102,
    "STATUS_PENDING": 0x00000103,
    "STATUS_RECEIVE_PARTIAL": 0x4000000F,
    "STATUS_EVENT_PENDING": 0x40000013,
    "STATUS_BUFFER_OVERFLOW": 0x80000005,
    "STATUS_PARTIAL_COPY": 0x8000000D,
    "STATUS_UNSUCCESSFUL": 0xC0000001,
    "STATUS_NOT_IMPLEMENTED": 0xC0000002,
    "STATUS_ACCESS_VIOLATION": 0xC0000005,
    "STATUS_INVALID_HANDLE": 0xC0000008,
    "STATUS_INVALID_PARAMETER": 0xC000000D,
    "STATUS_INVALID_DEVICE_REQUEST": 0xC0000010,
    "STATUS_MORE_PROCESSING_REQUIRED": 0xC0000016,
    "STATUS_NO_MEMORY": 0xC0000017,
    "STATUS_ACCESS_DENIED": 0xC0000022,
    "STATUS_BUFFER_TOO_SMALL": 0xC0000023,
    "STATUS_OBJECT_TYPE_MISMATCH": 0xC0000024,
    "STATUS_INSUFFICIENT_RESOURCES": 0xC000009A,
    "STATUS_DEVICE_NOT_READY": 0xC00000A3,
    "STATUS_PIPE_DISCONNECTED": 0xC00000B0,
    "STATUS_IO_TIMEOUT": 0xC00000B5,
    "STATUS_FILE_FORCED_CLOSED": 0xC00000B6,
    "STATUS_NOT_SUPPORTED": 0xC00000BB,
    "STATUS_REMOTE_NOT_LISTENING": 0xC00000BC,
    "STATUS_NETWORK_BUSY": 0xC00000BF,
    "STATUS_UNEXPECTED_NETWORK_ERROR": 0xC00000C4,
    "STATUS_REQUEST_NOT_ACCEPTED": 0xC00000D0,
    "STATUS_CANT_WAIT": 0xC00000D8,
    "STATUS_INTERNAL_ERROR": 0xC00000E5,
    "STATUS_TOO_MANY_OPENED_FILES": 0xC000011F,
    "STATUS_CANCELLED": 0xC0000120,
    "STATUS_FILE_CLOSED": 0xC0000128,
    "STATUS_LOCAL_DISCONNECT": 0xC000013B,
    "STATUS_REMOTE_DISCONNECT": 0xC000013C,
    "STATUS_INVALID_CONNECTION": 0xC0000140,
    "STATUS_INVALID_ADDRESS": 0xC0000141,
    "STATUS_INVALID_DEVICE_STATE": 0xC0000184,
    "STATUS_INVALID_BUFFER_SIZE": 0xC0000206,
    "STATUS_INVALID_ADDRESS_COMPONENT": 0xC0000207,
    "STATUS_TOO_MANY_ADDRESSES": 0xC0000209,
    "STATUS_ADDRESS_ALREADY_EXISTS": 0xC000020A,
    "STATUS_ADDRESS_CLOSED": 0xC000020B,
    "STATUS_CONNECTION_DISCONNECTED": 0xC000020C,
    "STATUS_CONNECTION_RESET": 0xC000020D,
    "STATUS_DATA_NOT_ACCEPTED": 0xC000021B,
    "STATUS_NOT_FOUND": 0xC0000225,
    "STATUS_CONNECTION_REFUSED": 0xC0000236,
    "STATUS_GRACEFUL_DISCONNECT": 0xC0000237,
    "STATUS_ADDRESS_ALREADY_ASSOCIATED": 0xC0000238,
    "STATUS_ADDRESS_NOT_ASSOCIATED": 0xC0000239,
    "STATUS_CONNECTION_INVALID": 0xC000023A,
    "STATUS_CONNECTION_ACTIVE": 0xC000023B,
    "STATUS_NETWORK_UNREACHABLE": 0xC000023C,
    "STATUS_HOST_UNREACHABLE": 0xC000023D,
    "STATUS_PROTOCOL_UNREACHABLE": 0xC000023E,
    "STATUS_PORT_UNREACHABLE": 0xC000023F,
    "STATUS_REQUEST_ABORTED": 0xC0000240,
    "STATUS_CONNECTION_ABORTED": 0xC0000241,
    "STATUS_NO_MATCH": 0xC0000272,
    "STATUS_NOINTERFACE": 0xC00002B9,
    "STATUS_ALREADY_REGISTERED": 0xC0000718,
    "STATUS_WAIT_1": 0x00000001,
    "STATUS_WAIT_2": 0x00000002,
    "STATUS_WAIT_3": 0x00000003,
    "STATUS_WAIT_63": 0x0000003F,
}

MEMBERS = list(NTSTATUS)

#: Codes ntstatus.h defines that pywsk does not name (they must pass through as ints).
UNKNOWN_CODES = [
    0x00000004,  # STATUS_WAIT_4
    0x40000012,  # STATUS_EVENT_DONE
    0x80000001,  # STATUS_GUARD_PAGE_VIOLATION
    0xC0000004,  # STATUS_INFO_LENGTH_MISMATCH
    0xC00000BA,  # STATUS_FILE_IS_A_DIRECTORY
    0xC0000999,
    0xE0000001,  # a customer-bit code
    0xFFFFFFFF,
]

BOUNDARIES = [
    0x00000000,
    0x00000001,
    0x3FFFFFFF,
    0x40000000,
    0x7FFFFFFF,
    0x80000000,
    0xBFFFFFFF,
    0xC0000000,
    0xFFFFFFFF,
]


def severity(value: int) -> str:
    """The severity field (bits 31..30) of a 32-bit code, decided by range, not by shifting."""
    unsigned = value % (1 << 32)
    if unsigned < 0x40000000:
        return "success"
    if unsigned < 0x80000000:
        return "information"
    if unsigned < 0xC0000000:
        return "warning"
    return "error"


def as_signed(value: int) -> int:
    """How C sees the code in a signed LONG."""
    return value - (1 << 32) if value >= 0x80000000 else value


@pytest.mark.parametrize("name", sorted(NTSTATUS_H))
def test_value_matches_ntstatus_h(name: str) -> None:
    assert NTSTATUS[name].value == NTSTATUS_H[name]
    assert NTSTATUS[name] == NTSTATUS_H[name]


def test_every_member_is_checked_and_there_are_no_aliases() -> None:
    assert {member.name for member in MEMBERS} == set(NTSTATUS_H)
    # An IntEnum silently turns a repeated value into an alias; none may exist.
    assert len(NTSTATUS.__members__) == len(MEMBERS)


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: m.name)
def test_module_level_name_is_the_member(member: NTSTATUS) -> None:
    assert getattr(status_module, member.name) is member
    assert member.name in status_module.__all__


def test_members_compare_as_integers() -> None:
    values: list[int] = [0, 0x103, 0xC0000120]
    assert values == [STATUS_SUCCESS, STATUS_PENDING, STATUS_CANCELLED]
    assert values[2] == STATUS_CANCELLED
    assert isinstance(STATUS_CANCELLED, int)
    assert {0xC0000120: "x"}[STATUS_CANCELLED] == "x"


# --- NTSTATUS.of -----------------------------------------------------------------------------


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: m.name)
def test_of_returns_the_member_for_known_codes(member: NTSTATUS) -> None:
    assert NTSTATUS.of(member.value) is member
    assert NTSTATUS.of(int(member)) is member
    # The signed LONG spelling C code may hold (e.g. -1073741536 for STATUS_CANCELLED).
    assert NTSTATUS.of(as_signed(member.value)) is member


@pytest.mark.parametrize("code", UNKNOWN_CODES, ids=hex)
def test_of_passes_unknown_codes_through(code: int) -> None:
    result = NTSTATUS.of(code)
    assert type(result) is int
    assert result == code


@pytest.mark.parametrize("code", UNKNOWN_CODES, ids=hex)
def test_of_reads_a_signed_unknown_code_as_unsigned_32_bits(code: int) -> None:
    result = NTSTATUS.of(as_signed(code))
    assert type(result) is int
    assert result == code


def test_of_keeps_only_32_bits() -> None:
    assert NTSTATUS.of((1 << 32) | 0x103) is STATUS_PENDING
    assert NTSTATUS.of(1 << 32) is STATUS_SUCCESS


# --- the ntdef.h macros ----------------------------------------------------------------------

MACROS = {"information": NT_INFORMATION, "warning": NT_WARNING, "error": NT_ERROR}


def check_macros(value: int) -> None:
    kind = severity(value)
    assert NT_SUCCESS(value) is (kind in ("success", "information"))
    assert NT_INFORMATION(value) is (kind == "information")
    assert NT_WARNING(value) is (kind == "warning")
    assert NT_ERROR(value) is (kind == "error")


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: m.name)
def test_macros_over_every_member(member: NTSTATUS) -> None:
    check_macros(member)
    check_macros(as_signed(member.value))


@pytest.mark.parametrize("value", BOUNDARIES, ids=hex)
def test_macros_over_boundaries(value: int) -> None:
    check_macros(value)
    check_macros(as_signed(value))


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (0x00000000, "success"),
        (0x3FFFFFFF, "success"),
        (0x40000000, "information"),
        (0x7FFFFFFF, "information"),
        (0x80000000, "warning"),
        (0xBFFFFFFF, "warning"),
        (0xC0000000, "error"),
        (0xFFFFFFFF, "error"),
        (-1, "error"),
        (-0x40000000, "error"),  # 0xC0000000
        (-0x40000001, "warning"),  # 0xBFFFFFFF
        (-0x80000000, "warning"),  # 0x80000000
    ],
)
def test_macro_table(value: int, kind: str) -> None:
    """A hand-written table, so that ``severity`` above is checked too."""
    assert severity(value) == kind
    check_macros(value)


def test_exactly_one_severity_macro_holds() -> None:
    for value in [*BOUNDARIES, *(m.value for m in MEMBERS)]:
        holds = [name for name in ("information", "warning", "error") if MACROS[name](value)]
        if NT_SUCCESS(value) and not NT_INFORMATION(value):
            assert holds == []
        else:
            assert len(holds) == 1


def test_representative_classification() -> None:
    assert NT_SUCCESS(NTSTATUS.STATUS_SUCCESS)
    assert NT_SUCCESS(NTSTATUS.STATUS_PENDING)
    assert NT_SUCCESS(NTSTATUS.STATUS_TIMEOUT)
    assert NT_INFORMATION(NTSTATUS.STATUS_RECEIVE_PARTIAL)
    assert NT_WARNING(NTSTATUS.STATUS_BUFFER_OVERFLOW)
    assert not NT_SUCCESS(NTSTATUS.STATUS_BUFFER_OVERFLOW)
    assert NT_ERROR(NTSTATUS.STATUS_MORE_PROCESSING_REQUIRED)
    assert NT_ERROR(NTSTATUS.STATUS_CANCELLED)


# --- status_name -----------------------------------------------------------------------------


@pytest.mark.parametrize("member", MEMBERS, ids=lambda m: m.name)
def test_status_name_of_a_member(member: NTSTATUS) -> None:
    expected = f"{member.name} (0x{NTSTATUS_H[member.name]:08X})"
    assert status_name(member) == expected
    assert status_name(member.value) == expected
    assert status_name(as_signed(member.value)) == expected
    assert str(member) == expected


def test_status_name_examples() -> None:
    assert status_name(0xC0000120) == "STATUS_CANCELLED (0xC0000120)"
    assert status_name(0x103) == "STATUS_PENDING (0x00000103)"
    assert status_name(0) == "STATUS_SUCCESS (0x00000000)"


@pytest.mark.parametrize("code", UNKNOWN_CODES, ids=hex)
def test_status_name_of_an_unknown_code(code: int) -> None:
    assert status_name(code) == f"0x{code:08X}"
    assert status_name(as_signed(code)) == f"0x{code:08X}"
