"""pywsk: Microsoft's Winsock Kernel (WSK) socket interface, in Python, over real Linux TCP.

Map of the package (each layer imports only from those before it):

* :mod:`pywsk.nt` - the NT kernel pieces WSK stands on: NTSTATUS, IRPs, MDLs, KEVENTs, IRQL.
* :mod:`pywsk.wsk` - the ``wsk.h`` surface: constants, structures, dispatch tables, registration.
* :mod:`pywsk.core` - sans-I/O state machines (no sockets, clocks, threads or IRPs).
* :mod:`pywsk.provider` - the WSK subsystem: one event loop, the Linux TCP backend, sockets.
* :mod:`pywsk.aio`, :mod:`pywsk.trio`, :mod:`pywsk.sync` - the Pythonic layers.
* :mod:`pywsk.verifier`, :mod:`pywsk.cli`, :mod:`pywsk.testing` - checks, the ``pywsk``
  command (also ``python -m pywsk``) and test helpers.

Driver-style code starts with ``from pywsk.nt import *`` and ``from pywsk.wsk import *``.

Logging: every module logs to ``logging.getLogger(__name__)`` (``pywsk.aio._connection``,
``pywsk.trio``, ...); the package logger ``pywsk`` has a ``NullHandler``, so nothing is
printed unless the application configures logging.  DEBUG records describe socket
operations (see :mod:`pywsk._log`); ``pywsk -v`` shows them.
"""

import logging

#: The version, here only: the build reads it (pyproject.toml: dynamic version).
__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
