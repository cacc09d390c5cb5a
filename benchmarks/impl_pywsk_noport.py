"""The faithful pywsk driver (:mod:`benchmarks.impl_pywsk`) on a provider with one change
proposed in docs/performance.md ("Next steps", item 1) - a prototype, not the shipped provider.

``WskSocketConnect`` binds before it connects, and a Linux ``bind()`` to port 0 searches the
ephemeral range for a port that no socket holds - TIME_WAIT sockets included - so under
churn every bind scans past the ports of the connections closed in the last 60 s (and fails
with EADDRINUSE once they fill the range).  The proposal: set ``IP_BIND_ADDRESS_NO_PORT``
before a bind to port 0, so the port is chosen by ``connect()``, which may reuse a port whose
TIME_WAIT sockets lead elsewhere.  This module applies exactly that to
``ConnectionSocket.bind`` in this process, then runs the unchanged driver.
"""

from __future__ import annotations

import socket
from typing import Any

from pywsk.nt import IRP
from pywsk.provider.connection import ConnectionSocket

from .impl_pywsk import main

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_bind = ConnectionSocket.bind


def _bind_port_at_connect(self: ConnectionSocket, LocalAddress: Any, Flags: int, Irp: IRP) -> int:
    if getattr(LocalAddress, "port", None) == 0:
        self.sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    return _bind(self, LocalAddress, Flags, Irp)


if __name__ == "__main__":
    ConnectionSocket.bind = _bind_port_at_connect  # type: ignore[method-assign]
    main("pywsk+noport")
