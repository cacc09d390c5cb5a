"""The fault scheduler: seeded, reproducible faults that exercise a client's every path.

What it does: decides, from one seed, which calls complete inline and which are forced to
return STATUS_PENDING; which completions run on a later loop turn (order kept, to widen
cancel-versus-completion windows); which allocations fail (IoAllocateIrp / IoAllocateMdl /
pool return NULL) and which WSK calls fail with STATUS_INSUFFICIENT_RESOURCES; and, on
demand, that graceful disconnects never complete on their own (the seed page's recovery
path).

What it refuses: probabilities outside [0, 1] (ValueError).

What always holds: the same seed and the same sequence of calls give the same decisions;
nothing it does breaks a WSK rule - a forced STATUS_PENDING still completes the IRP
exactly once, and completions of one socket keep their order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["FaultScheduler"]


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
    #: Graceful disconnects never complete on their own (abort or close to recover).
    stall_graceful: bool = False
    #: Calls the scheduler never touches (e.g. {"WskCloseSocket"}).
    exempt: frozenset[str] = frozenset({"WskCloseSocket"})
    decisions: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("pending", "delay", "allocation_failure", "call_failure"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability, not {value!r}")
        self._random = random.Random(self.seed)

    def _roll(self, chance: float, what: str, function: str) -> bool:
        hit = chance > 0 and self._random.random() < chance
        if hit:
            self.decisions.append((what, function))
        return hit

    # --- pywsk.nt.hooks.FaultPlan ---------------------------------------------------------
    def force_pending(self, function: str) -> bool:
        return function not in self.exempt and self._roll(self.pending, "pending", function)

    def fail_call(self, function: str) -> int | None:
        from ..nt.status import NTSTATUS

        if function in self.exempt or not self._roll(self.call_failure, "fail", function):
            return None
        return NTSTATUS.STATUS_INSUFFICIENT_RESOURCES

    def delay_completion(self) -> bool:
        return self._roll(self.delay, "delay", "completion")

    def stall_graceful_disconnect(self) -> bool:
        return self.stall_graceful

    def allow_allocation(self, function: str) -> bool:
        """The allocation hook of pywsk.nt.irp: False makes the allocation return NULL."""
        return not self._roll(self.allocation_failure, "no-memory", function)
