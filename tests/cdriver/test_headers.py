"""The shipped headers: the flags command, NTSTATUS values equal to pywsk's and signed as in
C, the WDK's typedefs and SAL annotations, and a clear failure for a broken build."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pywsk.cdriver import cflags, include_dir
from pywsk.nt.status import NTSTATUS

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def pywsk_driver(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pywsk", "driver", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def check_syntax(source: Path) -> None:
    """Compile ``source`` with only gcc and the printed flags, warnings as errors."""
    result = subprocess.run(
        ["gcc", "-fsyntax-only", "-Wall", "-Werror", *cflags(), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_cflags_command_prints_the_include_path_and_flags() -> None:
    result = pywsk_driver("cflags")
    assert result.returncode == 0
    assert result.stdout.split() == cflags()
    assert f"-I{include_dir()}" in result.stdout.split()
    assert "-fms-extensions" in result.stdout.split()
    assert pywsk_driver("cflags", "--includes").stdout.split() == [f"-I{include_dir()}"]
    assert {p.name for p in include_dir().glob("*.h")} >= {"wdm.h", "ntddk.h", "wsk.h"}


def test_status_codes_match_pywsk_and_are_signed(tmp_path: Path) -> None:
    checks = [
        f'_Static_assert({name} == (NTSTATUS)0x{int(value) & 0xFFFFFFFF:08X}u, "{name}");'
        for name, value in NTSTATUS.__members__.items()
    ]
    source = tmp_path / "statuses.c"
    source.write_text(
        "#include <ntddk.h>\n#include <wsk.h>\n"
        '_Static_assert((NTSTATUS)0xC0000001u < 0, "NTSTATUS is signed");\n'
        '_Static_assert(!NT_SUCCESS(STATUS_UNSUCCESSFUL) && NT_SUCCESS(STATUS_PENDING), "NT_SUCCESS");\n'
        + "\n".join(checks)
        + "\n"
    )
    check_syntax(source)


def test_a_driver_declares_itself_as_with_the_wdk(tmp_path: Path) -> None:
    source = tmp_path / "declarations.c"
    source.write_text(
        """#include <ntddk.h>
#include <wsk.h>
DRIVER_INITIALIZE DriverEntry;
static DRIVER_UNLOAD Unload;
static IO_COMPLETION_ROUTINE Done;
static KSTART_ROUTINE Thread;
_Use_decl_annotations_
static VOID Unload(PDRIVER_OBJECT DriverObject) { UNREFERENCED_PARAMETER(DriverObject); }
static NTSTATUS Done(_In_ PDEVICE_OBJECT DeviceObject, _In_ PIRP Irp, _In_reads_opt_(_Inexpressible_("varies")) PVOID Context)
{ UNREFERENCED_PARAMETER(DeviceObject); UNREFERENCED_PARAMETER(Irp); UNREFERENCED_PARAMETER(Context);
  return STATUS_MORE_PROCESSING_REQUIRED; }
static VOID Thread(PVOID Context) { UNREFERENCED_PARAMETER(Context); }
static NTSTATUS Close(PWSK_SOCKET Socket, PIRP Irp)
{ return ((PWSK_PROVIDER_CONNECTION_DISPATCH)Socket->Dispatch)->WskCloseSocket(Socket, Irp); }
_IRQL_requires_max_(PASSIVE_LEVEL)
NTSTATUS DriverEntry(_In_ PDRIVER_OBJECT DriverObject, _In_ PUNICODE_STRING RegistryPath)
{
    UNREFERENCED_PARAMETER(RegistryPath);
    DriverObject->DriverUnload = Unload;
    (void)Done; (void)Thread; (void)Close;
    return STATUS_SUCCESS;
}
"""
    )
    check_syntax(source)


def test_a_broken_build_fails_with_the_compiler_output(tmp_path: Path) -> None:
    source = tmp_path / "broken.c"
    source.write_text(
        "#include <wdm.h>\nNTSTATUS DriverEntry(void) { return STATUS_NO_SUCH_THING; }\n"
    )
    result = pywsk_driver("build", str(source), "-o", str(tmp_path / "broken.so"))
    assert result.returncode == 1
    assert "STATUS_NO_SUCH_THING" in result.stderr
    assert not (tmp_path / "broken.so").exists()
