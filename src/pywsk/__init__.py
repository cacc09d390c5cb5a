"""pywsk: Microsoft's Winsock Kernel (WSK) socket interface, in Python, over real Linux TCP.

Map of the package (each layer imports only from those before it):

* :mod:`pywsk.nt` - the NT kernel pieces WSK stands on: NTSTATUS, IRPs, MDLs, KEVENTs, IRQL.
* :mod:`pywsk.wsk` - the ``wsk.h`` surface: constants, structures, dispatch tables, registration.
* :mod:`pywsk.core` - sans-I/O state machines (no sockets, clocks, threads or IRPs).
* :mod:`pywsk.provider` - the WSK subsystem: one event loop, the Linux TCP backend, sockets.
* :mod:`pywsk.cli`, :mod:`pywsk.testing` - the ``pywsk`` command and test helpers.

Driver-style code starts with ``from pywsk.nt import *`` and ``from pywsk.wsk import *``.
"""

__version__ = "0.1.0"
