"""The ``pywsk`` commands' WSK client: the client runtime, traced into timelines.

What it does: a :class:`Session` is a :class:`pywsk.client.Client` whose tracer is a
:class:`pywsk.trace.Recorder` writing into the command's
:class:`~pywsk.trace.Timeline` - every WSK call and what it returned, every IRP completion
(status, Information, IRQL, thread), every event callback - with one timeline per served
connection when asked (:meth:`Session.attach`).  More tracers (the TCP-state sampler of
:mod:`pywsk.cli.wire`) are added with :meth:`Session.watch`.  A :class:`Connection` is a
connection socket's context, with its own timeline.

What it refuses: waits without a bound (the runtime's rule).

What always holds: what a report says about how a connection ended comes from the
runtime's observations (:meth:`pywsk.client.Client.ends`), never from provider state.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..client import (
    Call,
    Client,
    ClientError,
    Context,
    describe_address,
    explain,
    flag_names,
    interrupt_between_calls,
)
from ..trace import Recorder, Timeline, Tracer, Tracers

__all__ = [
    "Call",
    "Connection",
    "Session",
    "SessionError",
    "describe_address",
    "explain",
    "flag_names",
    "interrupt_between_calls",
]

#: A WSK call the command depends on failed (the runtime's :class:`ClientError`).
SessionError = ClientError


@dataclass(eq=False)
class Connection(Context):
    """The socket context of one connection socket, and the timeline its facts go to."""

    timeline: Timeline | None = None


class Session(Client):
    """A registered WSK client whose calls, completions and event callbacks are recorded."""

    def __init__(self, timeline: Timeline, *, show_data: bool = True) -> None:
        self.timeline = timeline
        self.recorder = Recorder(timeline)
        self._tracers = Tracers(self.recorder)
        super().__init__(self._tracers, show_data=show_data)

    def attach(self, sock: object, timeline: Timeline) -> None:
        """Record what happens on ``sock`` in ``timeline`` (one per served connection)."""
        self.recorder.attach(sock, timeline)

    def forget(self, sock: object) -> None:
        """Stop routing a closed socket's facts (a long-running server)."""
        self.recorder.forget(sock)

    def timeline_of(self, sock: object) -> Timeline:
        return self.recorder.timeline_of(sock)

    def watch(self, tracer: Tracer) -> None:
        """Tell ``tracer`` every fact too, after the timeline recorded it."""
        self._tracers.tracers.append(tracer)

    def unwatch(self, tracer: Tracer) -> None:
        if tracer in self._tracers.tracers:
            self._tracers.tracers.remove(tracer)
