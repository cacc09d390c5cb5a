"""The fault scheduler: seeded, reproducible faults that exercise a client's every path.

What it does: decides, from one seed,

* which calls complete inline and which are forced to return STATUS_PENDING (``pending``),
  and which pending IRPs' completions run on a later loop turn (``delay``) - the engine
  holds those completions in a queue;
* in which order the held completions run (``reorder``): one may pass those queued before
  it when no WSK promise ties them - completions on different sockets, and a send's and a
  receive's on one socket;
* which way an IoCancelIrp that reaches a held completion goes (``cancel_race``): while the
  knob is on, each held completion carries a cancel routine, so IoCancelIrp returns TRUE;
  when the completion is released the race is settled - the cancel wins (STATUS_CANCELLED)
  where the result lets it, otherwise the completion wins (its real status);
* which allocations fail (IoAllocateIrp / IoAllocateMdl / pool return NULL) and which WSK
  calls fail with STATUS_INSUFFICIENT_RESOURCES;
* on demand, that graceful disconnects never complete on their own (the seed page's
  recovery path).

It learns each IRP's socket and function from the verifier's observation points
(``socket-call``, ``irp-submitted``), which :mod:`pywsk.verifier` forwards to it.
Reordering and cancel races act only on completions the engine holds: several held at
once (calls made together on the provider thread, completions of one loop turn, forced
STATUS_PENDING) can change places; a cancel of an operation that is still waiting for the
network is the provider's own cancel routine's business, and it never invents a result.

What it refuses: probabilities outside [0, 1] (ValueError).

What always holds: the same seed and the same sequence of calls give the same decisions
(appended to ``decisions``); nothing it does breaks a WSK rule:

* every IRP completes exactly once - a forced STATUS_PENDING, a held, reordered or raced
  completion too;
* on one socket, send completions keep the provider's order among themselves, and so do
  receive completions (sends and receives on a stream complete in order); every other
  completion of a socket (a disconnect, a close, an accept, a control call...) keeps its
  place against all of that socket's; a completion whose socket the scheduler does not
  know (client-level calls, the provider's own IRPs) keeps its place against every other;
* a cancel wins only where the operation had no effect a client could see: over an error
  that reported nothing (``Information`` 0), of a call that is not a send or a disconnect
  (a failed send or disconnect may have put data or a FIN on the wire) and not exempt;
  a result that moved data, or a success, always wins;
* IoCancelIrp's return value stays truthful: TRUE exactly when it called a cancel routine
  (the provider's, or the scheduler's on a held completion).
"""

from __future__ import annotations

import random
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from ..nt.irp import IoSetCancelRoutine
from ..nt.status import NT_ERROR, NTSTATUS

if TYPE_CHECKING:
    from collections import deque

    from ..nt.irp import IRP

__all__ = ["REORDER_WINDOW", "FaultScheduler"]

#: How many held completions, from the first, ``reorder`` considers to run next.
REORDER_WINDOW: Final = 64

#: A socket's completions run in lanes: within a lane they keep their order; a send's and a
#: receive's may pass each other.  Each lane lists the lanes it may pass on its own socket.
_PASSES: Final[dict[str, frozenset[str]]] = {
    "send": frozenset({"receive"}),
    "receive": frozenset({"send"}),
    "other": frozenset(),
}
_LANES: Final = {"WskSend": "send", "WskReceive": "receive"}

#: Calls over whose failure a cancel never wins: data or a FIN may already be on the wire.
_CANCEL_NEVER_WINS: Final = frozenset(
    {"WskSend", "WskSendEx", "WskSendTo", "WskSendMessages", "WskDisconnect"}
)

#: What the scheduler knows of an IRP's current request: id(socket) or None, and function.
_Key = tuple[int | None, str]


def _cancel_reaches_held(_device: object, _irp: IRP) -> None:
    """The cancel routine of a held completion: IoCancelIrp took it (and returns TRUE).

    It does nothing here, in the thread that called IoCancelIrp: the scheduler settles the
    race on the provider thread when it releases the completion.
    """


@dataclass
class FaultScheduler:
    """A seeded fault plan (install it with ``pywsk.verifier.enable(faults=...)``)."""

    seed: int = 0
    #: Chance that a call that could complete inline returns STATUS_PENDING instead.
    pending: float = 0.5
    #: Chance that a pending IRP's completion runs one loop turn later.
    delay: float = 0.0
    #: Chance that IoAllocateIrp / IoAllocateMdl / pool allocations return NULL.
    allocation_failure: float = 0.0
    #: Chance that a WSK call fails at once with STATUS_INSUFFICIENT_RESOURCES.
    call_failure: float = 0.0
    #: Chance that a held completion is passed by another one the WSK rules let run first.
    reorder: float = 0.0
    #: Chance that an IoCancelIrp reaching a held completion wins the race (where it may).
    cancel_race: float = 0.0
    #: Graceful disconnects never complete on their own (abort or close to recover).
    stall_graceful: bool = False
    #: Calls the scheduler never touches (e.g. {"WskCloseSocket"}).
    exempt: frozenset[str] = frozenset({"WskCloseSocket"})
    decisions: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in (
            "pending",
            "delay",
            "allocation_failure",
            "call_failure",
            "reorder",
            "cancel_race",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability, not {value!r}")
        self._random = random.Random(self.seed)
        # Each IRP's current request, and the held completions that carry our cancel
        # routine.  Touched on the provider thread only.
        self._keys: weakref.WeakKeyDictionary[IRP, _Key] = weakref.WeakKeyDictionary()
        self._armed: weakref.WeakSet[IRP] = weakref.WeakSet()
        self._calling: tuple[IRP, int, str] | None = None

    def _roll(self, chance: float, what: str, function: str) -> bool:
        hit = chance > 0 and self._random.random() < chance
        if hit:
            self.decisions.append((what, function))
        return hit

    # --- pywsk.nt.hooks.FaultPlan ---------------------------------------------------------
    def force_pending(self, function: str) -> bool:
        return function not in self.exempt and self._roll(self.pending, "pending", function)

    def fail_call(self, function: str) -> int | None:
        if function in self.exempt or not self._roll(self.call_failure, "fail", function):
            return None
        return NTSTATUS.STATUS_INSUFFICIENT_RESOURCES

    def delay_completion(self) -> bool:
        return self._roll(self.delay, "delay", "completion")

    def stall_graceful_disconnect(self) -> bool:
        return self.stall_graceful

    def hold_completion(self, irp: IRP) -> None:
        """The engine queued ``irp``'s completion: with ``cancel_race``, make it cancelable."""
        if self.cancel_race <= 0:
            return
        key = self._keys.get(irp)
        if key is None or key[1] in self.exempt:
            return
        IoSetCancelRoutine(irp, _cancel_reaches_held)
        if irp.Cancel and IoSetCancelRoutine(irp, None) is not None:
            # IoCancelIrp came first (before the result, or just now) and found no routine
            # of ours: it returned FALSE, and the completion wins.
            return
        self._armed.add(irp)

    def next_completion(self, held: deque[IRP]) -> IRP:
        """Take the completion to run now out of ``held``; settle a cancel that reached it."""
        index = 0
        if self.reorder > 0 and len(held) > 1:
            candidates = self._may_run_first(held)
            if len(candidates) > 1 and self._random.random() < self.reorder:
                index = candidates[1 + self._random.randrange(len(candidates) - 1)]
        irp = held[index]
        del held[index]
        if index:
            self.decisions.append(("reorder", self._function(irp)))
        if irp in self._armed:
            self._armed.discard(irp)
            self._settle_cancel(irp)
        return irp

    def allow_allocation(self, function: str) -> bool:
        """The allocation hook of pywsk.nt.irp: False makes the allocation return NULL."""
        return not self._roll(self.allocation_failure, "no-memory", function)

    # --- what the verifier observes (forwarded by pywsk.verifier) --------------------------
    def note_socket_call(self, sock: object, function: str, irp: IRP) -> None:
        """A WSK call on ``sock`` is about to take ``irp`` (before ``irp-submitted``)."""
        if self.reorder or self.cancel_race:
            self._calling = (irp, id(sock), function)

    def note_submitted(self, irp: IRP, function: str) -> None:
        """``irp`` was taken for ``function`` (by a socket call just noted, or not)."""
        if not (self.reorder or self.cancel_race):
            return
        calling, self._calling = self._calling, None
        sock = None
        if calling is not None and calling[0] is irp and calling[2] == function:
            sock = calling[1]
        self._keys[irp] = (sock, function)

    # --- helpers ---------------------------------------------------------------------------
    def _function(self, irp: IRP) -> str:
        key = self._keys.get(irp)
        return key[1] if key is not None else "completion"

    def _may_run_first(self, held: deque[IRP]) -> list[int]:
        """Indices of held completions that no earlier held one must precede (0 always)."""
        out = [0]
        seen: dict[int, set[str]] = {}
        for index, irp in enumerate(held):
            if index == REORDER_WINDOW:
                break
            key = self._keys.get(irp)
            if key is None or key[0] is None:
                break  # unknown socket: nothing passes it, and it passes nothing
            lane = _LANES.get(key[1], "other")
            lanes = seen.setdefault(key[0], set())
            if index and lanes <= _PASSES[lane]:
                out.append(index)
            lanes.add(lane)
        return out

    def _settle_cancel(self, irp: IRP) -> None:
        """Release of an armed completion: did IoCancelIrp take our routine, and who wins?"""
        if IoSetCancelRoutine(irp, None) is not None or not irp.Cancel:
            return  # no IoCancelIrp reached it
        key = self._keys.get(irp)
        function = self._function(irp)
        status = irp.IoStatus
        may_win = (
            key is not None
            and function not in self.exempt
            and function not in _CANCEL_NEVER_WINS
            and NT_ERROR(status.Status)
            and not status.Information
        )
        if may_win and self._random.random() < self.cancel_race:
            status.Status = NTSTATUS.STATUS_CANCELLED
            status.Information = 0
            self.decisions.append(("cancel-wins", function))
        else:
            self.decisions.append(("completion-wins", function))
