"""Client code that raises, run without pytest (Python's own unraisable hook):

* a completion routine that raises when WskCloseSocket cancels its receive: the close
  still completes and WskDeregister returns;
* a DPC routine that raises: the DPCs queued behind it still run, and later ones too.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from pywsk.nt import IoAllocateIrp, IoFreeIrp, IoSetCompletionRoutine
from pywsk.nt.dpc import KDPC, KeInitializeDpc, KeInsertQueueDpc
from pywsk.testing.driver import WskTestClient, make_buffer

WAIT = 10.0


def close_with_raising_routine() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(WAIT)
    wsk = WskTestClient()
    sock = wsk.connect(server.getsockname())
    peer, _ = server.accept()
    _pool, buf = make_buffer(16)
    irp = IoAllocateIrp(1, False)
    assert irp is not None
    ran = threading.Event()

    def routine(_device: Any, _irp: Any, _context: Any) -> int:
        ran.set()
        raise RuntimeError("a completion routine that raises (on purpose)")

    IoSetCompletionRoutine(irp, routine, None, True, True, True)
    sock.Dispatch.WskReceive(sock, buf, 0, irp)  # pending: the peer sends nothing
    closed = wsk.close_socket(sock)  # waits (bounded) for the close IRP
    assert ran.is_set()
    print(f"close with a raising routine: {closed}")
    IoFreeIrp(irp)
    done = threading.Thread(target=wsk.close)
    done.start()
    done.join(WAIT)
    assert not done.is_alive(), "WskDeregister did not return"
    print("WskDeregister returned")
    peer.close()
    server.close()


def raising_dpc() -> None:
    ran: list[int] = []
    finished = threading.Event()

    def routine(_dpc: KDPC, context: Any, _a: Any, _b: Any) -> None:
        if context == 0:
            raise RuntimeError("a DPC routine that raises (on purpose)")
        ran.append(context)
        if context == 4:
            finished.set()

    dpcs = []
    for n in range(5):
        dpc = KDPC()
        KeInitializeDpc(dpc, routine, n)
        dpcs.append(dpc)
    for dpc in dpcs:
        KeInsertQueueDpc(dpc, None, None)
    assert finished.wait(WAIT), f"DPCs behind the raising one did not run: {ran}"
    print(f"DPCs after a raising one ran: {ran}")


if __name__ == "__main__":
    close_with_raising_routine()
    raising_dpc()
