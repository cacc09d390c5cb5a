"""pywsk driven by a C driver: the churn workload of :mod:`benchmarks.impl_pywsk`, in C.

``benchmarks/cchurn.c`` is the faithful churn program written as a Windows driver writes
it (dispatch tables, IRPs, completion routines); ``pywsk driver build`` compiles it with
pywsk's headers and C runtime, and this module loads it with :func:`pywsk.cdriver.load` and
calls its exported functions.  Every runtime call the driver makes (IoReuseIrp,
IoSetCompletionRoutine, each WSK call) crosses from C into pywsk's Python; every completion
routine crosses back.  So the run measures what a C driver on pywsk costs next to the
Python faithful layer.

The first argument is the built driver (the harness builds it once, like the C reference);
the rest is :mod:`benchmarks.common`'s command line.  Churn only (bulk is not written in C).
The client also measures the crossing cost: ``CROSSINGS`` calls of ``KeGetCurrentIrql``
from C (each one C -> Python crossing of the runtime, with pywsk's ``KeGetCurrentIrql``
behind it), minus the same Python function called from Python, per call; and the cost of
making an IRP ready for a request (IoReuseIrp + IoSetCompletionRoutine) from C and from
Python, which shows the runtime's own work per call beside the bare crossing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Final

from pywsk.cdriver import Driver, load
from pywsk.nt import (
    IRP,
    NTSTATUS,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_UNSUCCESSFUL,
    IoAllocateIrp,
    IoFreeIrp,
    IoReuseIrp,
    IoSetCompletionRoutine,
    status_name,
)

from .common import announce_port, dispatch, emit, restart_cpu_clock

IMPL: Final = "pywsk-c"
#: Seconds the driver waits for the run to finish.
TIMEOUT_S: Final = 120
#: C -> Python crossings timed for the crossing cost (best of ``CROSSING_TRIES``).
CROSSINGS: Final = 200_000
CROSSING_TRIES: Final = 5
#: IRP preparations timed (IoReuseIrp + IoSetCompletionRoutine), from C and from Python.
ARMS: Final = 50_000

_driver_path: Path | None = None


def _load() -> Driver:
    assert _driver_path is not None
    driver = load(_driver_path, "cchurn")
    status = driver.entry()
    if status != NTSTATUS.STATUS_SUCCESS:
        raise RuntimeError(f"DriverEntry: {status_name(status)}")
    return driver


def _result(driver: Driver) -> Any:
    return driver.ffi.new("uint64_t[8]")


def crossing_cost(driver: Driver) -> dict[str, float]:
    """ns per C -> Python call of the runtime: the whole call (``call_ns``), the Python work
    behind it alone (``work_ns``), and the crossing itself (their difference)."""
    irql = driver.runtime.pyb_Irql
    best_call = best_work = float("inf")
    for _ in range(CROSSING_TRIES):
        t0 = time.perf_counter_ns()
        driver.call("CrossingLoop", CROSSINGS, result="int")
        best_call = min(best_call, (time.perf_counter_ns() - t0) / CROSSINGS)
        t0 = time.perf_counter_ns()
        for _ in range(CROSSINGS):
            irql(0, 0)
        best_work = min(best_work, (time.perf_counter_ns() - t0) / CROSSINGS)
    arm_c, arm_py = _arm_cost(driver)
    return {
        "call_ns": best_call,
        "work_ns": best_work,
        "crossing_ns": best_call - best_work,
        "arm_c_ns": arm_c,
        "arm_py_ns": arm_py,
    }


def _arm_cost(driver: Driver) -> tuple[float, float]:
    """ns to make an IRP ready for a request (IoReuseIrp + IoSetCompletionRoutine): from C
    through the runtime, and the same two pywsk calls from Python."""
    irp = IoAllocateIrp(1, False)
    assert irp is not None

    def routine(_device: Any, _irp: IRP, _context: Any) -> int:
        return STATUS_MORE_PROCESSING_REQUIRED

    best_c = best_py = float("inf")
    for _ in range(CROSSING_TRIES):
        t0 = time.perf_counter_ns()
        driver.call("ArmLoop", ARMS)
        best_c = min(best_c, (time.perf_counter_ns() - t0) / ARMS)
        t0 = time.perf_counter_ns()
        for _ in range(ARMS):
            IoReuseIrp(irp, STATUS_UNSUCCESSFUL)
            IoSetCompletionRoutine(irp, routine, None, True, True, True)
        best_py = min(best_py, (time.perf_counter_ns() - t0) / ARMS)
    IoFreeIrp(irp)
    return best_c, best_py


def churn_server(n_arg: str, idle_arg: str = "0") -> int:
    if int(idle_arg):
        print("pywsk-c: idle connections are not part of the C driver's churn", file=sys.stderr)
        return 2
    driver = _load()
    ports = driver.ffi.new("uint16_t[2]")
    status = driver.call("ServerOpen", ports)
    if status != NTSTATUS.STATUS_SUCCESS:
        raise RuntimeError(f"ServerOpen: {status_name(status)}")
    announce_port(ports[0])
    out = _result(driver)
    status = driver.call("ServerRun", int(n_arg), TIMEOUT_S, out)
    if out[4]:  # the CPU clock at the first churn connection, as the other servers count
        restart_cpu_clock(out[4] / 1e9)
    emit(
        "server",
        IMPL,
        conns=int(out[0]),
        bytes=int(out[1]),
        bad=int(out[2]),
        requests=int(out[3]),
        status=status_name(status),
    )
    return int(status != NTSTATUS.STATUS_SUCCESS or out[2] != 0 or out[0] != int(n_arg))


def churn_client(
    port_arg: str, n_arg: str, conc_arg: str, idle_arg: str = "0", _idle_port: str = "0"
) -> int:
    if int(idle_arg):
        print("pywsk-c: idle connections are not part of the C driver's churn", file=sys.stderr)
        return 2
    n = int(n_arg)
    driver = _load()
    crossing = crossing_cost(driver)  # before the churn: its CPU time is not the churn's
    out = _result(driver)
    restart_cpu_clock()
    status = driver.call("ClientRun", int(port_arg), n, int(conc_arg), TIMEOUT_S, out)
    conns, seconds = int(out[0]), out[5] / 1e9
    emit(
        "client",
        IMPL,
        conns=conns,
        bytes=int(out[1]),
        bad=int(out[2]),
        seconds=seconds,
        rate=conns / seconds if seconds else 0.0,
        requests=int(out[3]),
        # A request: IoReuseIrp, IoSetCompletionRoutine and the WSK call (C -> Python),
        # then its completion routine (Python -> C).
        crossings_per_conn=3 * int(out[3]) / conns if conns else 0.0,
        **crossing,
        status=status_name(status),
    )
    return int(status != NTSTATUS.STATUS_SUCCESS or out[2] != 0 or conns != n)


def main() -> None:
    """``python -m benchmarks.impl_cdriver DRIVER.so COMMAND ARGS...``"""
    global _driver_path
    if len(sys.argv) < 2:
        print(f"usage: {sys.argv[0]} DRIVER.so COMMAND ARGS...", file=sys.stderr)
        raise SystemExit(2)
    _driver_path = Path(sys.argv.pop(1))
    dispatch({"churn-server": churn_server, "churn-client": churn_client})


if __name__ == "__main__":
    main()
