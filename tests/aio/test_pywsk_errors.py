"""pywsk.errors: one table from NTSTATUS to exceptions that ordinary Python handlers catch."""

from __future__ import annotations

import ast
import errno
import pickle
import socket
from pathlib import Path

import pytest

from pywsk import errors
from pywsk.nt import NT_SUCCESS, NTSTATUS, STATUS_SUCCESS, STATUS_TIMEOUT

S = NTSTATUS

BUILTIN_OF = [
    (S.STATUS_CONNECTION_RESET, errors.WskConnectionResetError, ConnectionResetError),
    (S.STATUS_CONNECTION_ABORTED, errors.WskConnectionAbortedError, ConnectionAbortedError),
    (S.STATUS_CONNECTION_REFUSED, errors.WskConnectionRefusedError, ConnectionRefusedError),
    (S.STATUS_PIPE_DISCONNECTED, errors.WskBrokenPipeError, BrokenPipeError),
    (S.STATUS_IO_TIMEOUT, errors.WskTimeoutError, TimeoutError),
    (S.STATUS_TIMEOUT, errors.WskTimeoutError, TimeoutError),
    (S.STATUS_FILE_FORCED_CLOSED, errors.WskConnectionError, ConnectionError),
    (S.STATUS_ACCESS_DENIED, errors.WskPermissionError, PermissionError),
    (S.STATUS_NOT_FOUND, errors.WskNameResolutionError, socket.gaierror),
    (S.STATUS_INVALID_HANDLE, errors.SocketClosedError, OSError),
    (S.STATUS_CANCELLED, errors.RequestCancelledError, OSError),
]


@pytest.mark.parametrize(("status", "cls", "builtin"), BUILTIN_OF)
def test_status_maps_to_a_subclass_of_the_matching_builtin(
    status: int, cls: type[errors.NtStatusError], builtin: type[OSError]
) -> None:
    exc = errors.error_from_status(status, "WskReceive")
    assert type(exc) is cls
    assert isinstance(exc, builtin)
    assert isinstance(exc, errors.NtStatusError)
    assert isinstance(exc, OSError)
    assert exc.status == status
    assert exc.errno == errors.STATUS_ERRORS[status][1]
    assert exc.status_name in str(exc)
    assert "WskReceive" in str(exc)


def test_every_table_entry_builds_its_class() -> None:
    for status, (cls, code) in errors.STATUS_ERRORS.items():
        exc = errors.error_from_status(status)
        assert type(exc) is cls
        assert exc.errno == code
        assert not NT_SUCCESS(status) or status == STATUS_TIMEOUT


def test_errnos_are_the_posix_ones() -> None:
    assert errors.error_from_status(S.STATUS_CONNECTION_RESET).errno == errno.ECONNRESET
    assert errors.error_from_status(S.STATUS_HOST_UNREACHABLE).errno == errno.EHOSTUNREACH
    assert errors.error_from_status(S.STATUS_ADDRESS_ALREADY_ASSOCIATED).errno == errno.EADDRINUSE


def test_unknown_status_is_a_generic_oserror_with_status() -> None:
    exc = errors.error_from_status(0xC0DE0001)
    assert type(exc) is errors.UnknownStatusError
    assert isinstance(exc, errors.NtStatusError)
    assert exc.status == 0xC0DE0001
    assert exc.errno == errno.EIO
    assert "0xC0DE0001" in str(exc)


def test_negative_int_statuses_are_taken_as_unsigned() -> None:
    exc = errors.error_from_status(S.STATUS_CONNECTION_RESET - (1 << 32))
    assert type(exc) is errors.WskConnectionResetError
    assert exc.status == S.STATUS_CONNECTION_RESET


def test_success_is_not_an_error_but_timeout_is() -> None:
    # STATUS_TIMEOUT is a success code in ntstatus.h: the trap this module refuses to fall in.
    assert NT_SUCCESS(STATUS_TIMEOUT)
    with pytest.raises(errors.WskTimeoutError):
        errors.raise_for_status(STATUS_TIMEOUT)
    errors.raise_for_status(STATUS_SUCCESS)
    with pytest.raises(ValueError, match="not a failure"):
        errors.error_from_status(STATUS_SUCCESS)
    with pytest.raises(ValueError, match="not a final status"):
        errors.raise_for_status(S.STATUS_PENDING)
    with pytest.raises(ConnectionResetError):
        errors.raise_for_status(S.STATUS_CONNECTION_RESET, "WskSend")


def test_exceptions_pickle_with_their_status() -> None:
    exc = errors.error_from_status(S.STATUS_CONNECTION_REFUSED, "WskConnect")
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is errors.WskConnectionRefusedError
    assert (copy.status, copy.message, copy.errno, str(copy)) == (
        exc.status,
        exc.message,
        exc.errno,
        str(exc),
    )


def test_busy_error_is_not_a_status() -> None:
    assert issubclass(errors.BusyError, RuntimeError)
    assert not issubclass(errors.BusyError, OSError)


def test_errors_imports_only_the_nt_layer() -> None:
    path = Path(errors.__file__)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    relative = [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    absolute = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ] + [
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0
    ]
    assert relative
    assert all(module is not None and module.startswith("nt") for module in relative)
    assert not [name for name in absolute if name and name.startswith("pywsk")]


def test_the_pythonic_layers_never_import_the_provider() -> None:
    """No provider internals: pywsk.sync goes through the dispatch tables and IRPs;
    pywsk.aio and pywsk.trio run natively over pywsk._native, pywsk.core and
    pywsk.mechanics - the provider's semantics, not its code paths."""
    root = Path(errors.__file__).parent
    for path in [
        *(root / "trio").glob("*.py"),
        root / "sync.py",
        *(root / "aio").glob("*.py"),
        *(root / "_native").glob("*.py"),
        *(root / "mechanics").glob("*.py"),
    ]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert "provider" not in (node.module or ""), path
            elif isinstance(node, ast.Import):
                assert not any("provider" in alias.name for alias in node.names), path


def test_failed_becomes_its_exception_through_the_one_table() -> None:
    failed = errors.Failed(S.STATUS_CONNECTION_RESET, "WskReceive")
    assert not isinstance(failed, OSError)  # internal: never an exception of the API
    first, second = failed.error(), failed.error()
    assert first is not second  # a new exception each time it is raised
    assert type(first) is errors.WskConnectionResetError
    assert first.status == S.STATUS_CONNECTION_RESET
    assert str(first) == str(errors.error_from_status(S.STATUS_CONNECTION_RESET, "WskReceive"))
    assert "STATUS_CONNECTION_RESET" in repr(failed)


def test_the_native_code_carries_statuses_and_never_builds_exceptions() -> None:
    """One boundary: pywsk._native raises errors.Failed (the status and the operation);
    only the public front-ends turn a status into an exception of pywsk.errors."""
    root = Path(errors.__file__).parent / "_native"
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "errors":
                assert [alias.name for alias in node.names] == ["Failed"], path
