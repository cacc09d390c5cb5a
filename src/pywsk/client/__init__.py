"""The driver-style WSK client runtime: the client under ``pywsk`` commands and tests.

* :class:`Client` - registration, the provider NPI, and WSK calls on IRPs with completion
  routines and buffers in non-paged pool, as a kernel driver issues them; what it learned
  of how each connection ended (:meth:`Client.ends`, in :mod:`pywsk.core.ending`'s words);
  a tracer (:mod:`pywsk.trace`) told every call, completion and event callback.
* :class:`Call` - one call on one IRP: what it returned, how and when it completed.
* :class:`Context` / :class:`Ends` - a connection socket's context, and its endings.
* :mod:`pywsk.client.blocking` - waiting for a call as a driver thread does (a KEVENT,
  KeWaitForSingleObject with an NT timeout, a timeout that cancels and waits).

``pywsk probe`` / ``serve`` / ``demo`` (through :mod:`pywsk.cli.session`),
:mod:`pywsk.testing.driver` and :mod:`pywsk.sync` are built on it; docs/tracing.md shows it from a program.
"""

from .base import Buffer, ClientBase, ClientError, allocate_buffer, lock_buffer
from .call import Call
from .ends import Context, Ends
from .interrupt import interrupt_between_calls
from .runtime import Client
from .words import describe_address, event_names, explain, flag_names, preview

__all__ = [
    "Buffer",
    "Call",
    "Client",
    "ClientBase",
    "ClientError",
    "Context",
    "Ends",
    "allocate_buffer",
    "describe_address",
    "event_names",
    "explain",
    "flag_names",
    "interrupt_between_calls",
    "lock_buffer",
    "preview",
]
