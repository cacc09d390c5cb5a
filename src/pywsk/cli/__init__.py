"""The ``pywsk`` command: ``demo``, ``probe`` and ``serve``.

* ``pywsk demo`` runs every documented disconnect behaviour against an embedded loopback
  peer and prints, per scenario, a timeline (WSK calls, statuses, IRP completions, event
  callbacks, the wire, the peer) and a verdict.
* ``pywsk probe HOST:PORT`` connects to any TCP server as a WSK client, performs one
  disconnect scenario and reports what the server did: its bytes, its FIN or RST, when.
* ``pywsk serve`` is a WSK server (listening socket, WskAccept / WskAcceptEvent) with a
  chosen behaviour, logging each connection's disconnect with the same timeline.

Exit status: 0 when everything behaved as documented (and as ``--expect`` asked), 1 for a
deviation, 2 for bad arguments, 3 when the peer cannot be reached or the address not
bound.  ``python -m pywsk.cli`` is the same command.
"""

from __future__ import annotations

from .app import main

__all__ = ["main"]
