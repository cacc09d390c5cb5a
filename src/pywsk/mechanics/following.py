"""Following the kernel's TCP state: the one step that turns what it says into core inputs.

What it does: :class:`FollowsKernelState` is the part every front-end's connection shares
(the faithful provider's connection socket and the native front-ends' connection): given a
:class:`~pywsk.mechanics.linux.Seen` - our FIN acknowledged, the peer's FIN, an errno that
ended the connection - it feeds the core's state machine the matching input, through the
front-end's own handlers (what each does next - complete an IRP, wake a task - differs).

What it refuses: to decide anything itself; the reading of the state is
:func:`~pywsk.mechanics.linux.durable_state` / :func:`~pywsk.mechanics.linux.fin_outcome`,
the transitions are :mod:`pywsk.core.connection`'s.

What always holds: the inputs come in the order the kernel's facts imply - the
acknowledgement of our FIN, then the peer's FIN, then the end - and an errno that is a reset
is the peer's RST, any other the transport's failure with its NTSTATUS.
"""

from __future__ import annotations

from ..core.connection import ConnInput
from ..core.ending import Ending
from . import linux

__all__ = ["FollowsKernelState"]


class FollowsKernelState:
    """Mix-in: :meth:`_apply` and :meth:`_break_for_errno` over the front-end's handlers."""

    __slots__ = ()

    # The front-end's handlers.
    def _on_fin_acked(self) -> None:
        raise NotImplementedError

    def _process(self, event: ConnInput) -> bool:
        raise NotImplementedError

    def _break(self, cause: Ending, failure: int | None = None) -> None:
        raise NotImplementedError

    def _saw_peer_fin(self) -> None:
        """The peer's FIN, seen in the kernel's state (it may be unread): RECV_FIN.  A
        front-end that keeps how the connection ended notes it too."""
        self._process(ConnInput.RECV_FIN)

    def _apply(self, seen: linux.Seen | None) -> None:
        """Turn what the kernel's state says (mechanics) into the machine's inputs."""
        if seen is None:
            return
        if seen.fin_acked:
            self._on_fin_acked()
        if seen.peer_fin:
            self._saw_peer_fin()
        if seen.ended is not None:
            self._break_for_errno(seen.ended)

    def _break_for_errno(self, err: int) -> None:
        if linux.is_reset(err):
            self._break(Ending.PEER_RST)
        else:
            self._break(Ending.TRANSPORT_FAILURE, linux.status_from_errno(err))
