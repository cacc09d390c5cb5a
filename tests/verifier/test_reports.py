"""What a driver developer reads from the verifier: leaks of dropped IRPs, MDLs and pool
blocks, "created at" in the client's own code, the Microsoft rule and page in every
message, reports for an unlocked MDL and a forgotten ``return``, and thread safety."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from verifier_helpers import WAIT, Listener, connected, ids

from pywsk import verifier
from pywsk.nt import (
    IRP,
    STATUS_INVALID_PARAMETER,
    ExAllocatePoolWithTag,
    ExFreePoolWithTag,
    IoAllocateIrp,
    IoAllocateMdl,
    IoFreeIrp,
    IoFreeMdl,
    IoSetCompletionRoutine,
    MmBuildMdlForNonPagedPool,
    NonPagedPoolNx,
)
from pywsk.testing.driver import WskTestClient, make_buffer
from pywsk.wsk import WSK_BUF

HERE = os.path.basename(__file__)


@pytest.fixture
def collecting() -> Iterator[verifier.Verifier]:
    with verifier.enabled_for("collect") as found:
        yield found


def test_every_check_names_its_microsoft_rule_and_page() -> None:
    for check in verifier.CHECKS.values():
        assert check.rule, check.id
        assert check.page.startswith("https://learn.microsoft.com/"), check.id
        text = str(verifier.Violation(check, "detail"))
        assert f"Microsoft: {check.rule} ({check.page})" in text


def drop_an_irp_an_mdl_and_a_pool_block() -> None:
    IoAllocateIrp(1, False)  # dropped, never IoFreeIrp
    IoAllocateMdl(bytearray(8), 8, False, False, None)  # dropped, never IoFreeMdl
    ExAllocatePoolWithTag(NonPagedPoolNx, 32, b"leak")  # dropped, never freed


def test_dropped_irps_mdls_and_pool_blocks_are_in_the_leak_report(
    collecting: verifier.Verifier,
) -> None:
    drop_an_irp_an_mdl_and_a_pool_block()  # reference counting frees them at once
    report = verifier.leak_report()
    assert sorted(ids(report)) == ["IRP-006", "MDL-001", "POOL-001"]
    for violation in report:
        assert "collected without being freed" in violation.detail
        assert HERE in violation.created_at, violation.created_at
        assert "drop_an_irp_an_mdl_and_a_pool_block" in violation.created_at
    pool = next(v for v in report if v.check.id == "POOL-001")
    assert "32 bytes, tag b'leak'" in pool.detail


def test_a_live_pool_block_never_freed_is_reported_until_it_is_freed(
    collecting: verifier.Verifier,
) -> None:
    block = ExAllocatePoolWithTag(NonPagedPoolNx, 100, b"live")
    assert block is not None
    assert ids(verifier.leak_report()) == ["POOL-001"]
    ExFreePoolWithTag(block, b"live")
    assert verifier.leak_report() == []


def test_leaks_are_reported_when_the_client_deregisters(
    caplog: pytest.LogCaptureFixture, collecting: verifier.Verifier
) -> None:
    client = WskTestClient()
    drop_an_irp_an_mdl_and_a_pool_block()
    with caplog.at_level(logging.WARNING, logger="pywsk.verifier"):
        client.close()  # WskDeregister
    reported = "\n".join(r.getMessage() for r in caplog.records)
    for check in ("IRP-006", "MDL-001", "POOL-001"):
        assert f"[{check}]" in reported


def test_leaks_of_a_program_are_printed_at_exit_without_pytest(tmp_path: Any) -> None:
    script = tmp_path / "leaky_driver.py"
    script.write_text(
        textwrap.dedent(
            """
            from pywsk import verifier
            from pywsk.nt import *

            def Leak():
                IoAllocateIrp(1, FALSE)
                IoAllocateMdl(bytearray(8), 8, FALSE, FALSE, NULL)
                Kept.append(ExAllocatePoolWithTag(NonPagedPoolNx, 64, b"WDFF"))

            verifier.enable()
            Kept = []
            Leak()
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore::ResourceWarning", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "pywsk verifier: 3 leak(s) at exit" in done.stderr
    for check in ("IRP-006", "MDL-001", "POOL-001"):
        assert f"[{check}]" in done.stderr
    assert 'leaky_driver.py", line 6, in Leak' in done.stderr
    assert "Microsoft: " in done.stderr


def test_a_socket_is_dated_from_the_clients_call(
    wsk: WskTestClient, listener: Listener, collecting: verifier.Verifier
) -> None:
    _sock, peer = connected(wsk, listener)  # WskSocketConnect, through pywsk.testing
    leaks = [v for v in verifier.leak_report() if v.check.id == "WSK-008"]
    assert len(leaks) == 1
    assert HERE in leaks[0].created_at, leaks[0].created_at
    assert "in connected" in leaks[0].created_at
    assert "threading.py" not in leaks[0].created_at
    assert "pywsk/" not in leaks[0].created_at.replace(HERE, "")
    peer.close()


def test_an_unlocked_mdl_is_reported_with_its_status(
    wsk: WskTestClient, listener: Listener, collecting: verifier.Verifier
) -> None:
    sock, peer = connected(wsk, listener)
    data = bytearray(b"unlocked")
    mdl = IoAllocateMdl(data, len(data), False, False, None)  # never locked
    assert mdl is not None
    request = wsk.start("WskSend", wsk.dispatch(sock).WskSend, sock, WSK_BUF(mdl, 0, 8), 0)
    assert request.wait(WAIT).status == STATUS_INVALID_PARAMETER
    assert ids(collecting) == ["MDL-003"]
    assert HERE in collecting.found[0].created_at
    IoFreeMdl(mdl)
    peer.close()


def test_a_null_irp_is_reported_with_its_status(
    wsk: WskTestClient, listener: Listener, collecting: verifier.Verifier
) -> None:
    sock, peer = connected(wsk, listener)
    _pool, buf = make_buffer(b"x")
    try:
        assert wsk.dispatch(sock).WskSend(sock, buf, 0, None) == STATUS_INVALID_PARAMETER  # type: ignore[arg-type]
        assert ids(collecting) == ["IRP-007"]
    finally:
        peer.close()


def test_a_completion_routine_without_return_is_irp_004_not_a_type_error(
    wsk: WskTestClient, listener: Listener
) -> None:
    sock, peer = connected(wsk, listener)

    def Forgetful(DeviceObject: Any, Irp: IRP, Context: Any) -> Any:
        Context.append(Irp.IoStatus.Status)  # and no return statement

    seen: list[int] = []
    pool = ExAllocatePoolWithTag(NonPagedPoolNx, 1, b"test")
    assert pool is not None
    mdl = IoAllocateMdl(pool, 1, False, False, None)
    assert mdl is not None
    MmBuildMdlForNonPagedPool(mdl)
    with verifier.enabled_for("collect") as running:
        irp = IoAllocateIrp(1, False)
        assert irp is not None
        IoSetCompletionRoutine(irp, Forgetful, seen, True, True, True)
        wsk.dispatch(sock).WskSend(sock, WSK_BUF(mdl, 0, 1), 0, irp)
    assert seen, "the routine ran"
    (violation,) = running.found
    assert violation.check.id == "IRP-004"
    assert "Forgetful returned None, not an NTSTATUS (a missing return statement?)" in str(
        violation
    )
    IoFreeMdl(mdl)
    ExFreePoolWithTag(pool, b"test")
    peer.close()


def test_the_verifier_records_stay_consistent_across_threads(
    collecting: verifier.Verifier,
) -> None:
    """Eight threads allocate and free IRPs, MDLs and pool while others are dropped and
    collected: nothing raises, every freed object leaves the books, every dropped one is
    reported once."""
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(n: int) -> None:
        try:
            start.wait(WAIT)
            for i in range(200):
                irp = IoAllocateIrp(1, False)
                block = ExAllocatePoolWithTag(NonPagedPoolNx, 16, b"thrd")
                assert irp is not None
                assert block is not None
                mdl = IoAllocateMdl(block, 16, False, False, None)
                assert mdl is not None
                IoFreeMdl(mdl)
                ExFreePoolWithTag(block, b"thrd")
                if n == 0 and i % 50 == 0:
                    continue  # dropped: 4 IRPs leak from thread 0
                IoFreeIrp(irp)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert collecting.found == []
    assert ids(verifier.leak_report()) == ["IRP-006"] * 4
