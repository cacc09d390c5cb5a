"""The TIME_WAIT regime of a churn run: which one a run was measured in, keeping a session in
one, and grouping results by it.

Linux keeps at most ``net.ipv4.tcp_max_tw_buckets`` sockets in TIME_WAIT.  Below that limit
each churn connection's active close creates a TIME_WAIT socket; at the limit the kernel
destroys the socket instead.  The two are different kernel work: on a 2-vCPU host the C
reference made 17,600 conn/s at 70 µs of CPU per connection while the table filled, and
50,000 conn/s at 32 µs once it was full.  A run of 20,000 connections adds about 14,000
TIME_WAIT sockets, so the first runs of a session fill the table of 131,072 and the rest run
at the limit; TIME_WAIT sockets expire after 60 s, in bursts, so the table also drains.

* :func:`classify` names the regime of one run: ``full`` (its closes found the table full),
  ``filling`` (they left TIME_WAIT sockets), ``mixed`` (both), ``unknown`` (the limit is not
  readable), allowing 1% of the run's connections either way.  The kernel counts the
  closes that found the table full (``TcpExt: TCPTimeWaitOverflow``); :class:`TwWatch` reads
  that counter before and after the run, and samples the TIME_WAIT count during it (the
  counts decide when the counter cannot be read).
* :class:`TimeWaitKeeper` (``--tw-regime full``) brings the table to its limit before each
  measured churn with unmeasured churns of the C reference, a bounded number of them,
  after waiting out a burst of sockets whose timers (``/proc/net/tcp``) would run out
  during the run.
* :func:`by_regime` splits churn records into one group per regime for the tables.

It refuses to change any sysctl: the table is filled by ordinary connections.  What always
holds: an "x C" ratio is only computed within a group of one regime that is a single kernel
regime (``full`` or ``filling``), never across regimes or over ``mixed`` runs.
"""

from __future__ import annotations

import bisect
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FULL, FILLING, MIXED, UNKNOWN = "full", "filling", "mixed", "unknown"
#: Records made before the harness watched the table carry no regime.
UNRECORDED = "unrecorded"
#: The order of the groups in the tables.
REGIMES = (FULL, FILLING, MIXED, UNKNOWN, UNRECORDED)
#: Regimes in which every connection of a run met the same kernel: ratios are comparable.
SINGLE = (FULL, FILLING)
#: The choices of ``--tw-regime``.
MODES = ("full", "as-is")
#: Fill runs of one preparation: never more than this, whatever the limit.
MAX_FILL_RUNS = 40
#: Seconds a churn run of an implementation not yet seen is expected to take.
DEFAULT_HORIZON = 5.0
#: How late the kernel's timer wheel may fire a TIME_WAIT timer of about 60 s: one slot of
#: the wheel's level for it (2.048 s at HZ=250, 4.096 s at HZ=1000).
TIMER_SLACK = 4.2
#: The longest the keeper waits, before one run, for a burst of expiring sockets to pass.
MAX_WAIT = 70.0
#: Seconds between two samples of the TIME_WAIT count during a run.
SAMPLE_EVERY = 0.02


def _say(text: str) -> None:
    print(text, flush=True)


def tw_count() -> int:
    """Sockets in TIME_WAIT now (``/proc/net/sockstat``); -1 when it cannot be read."""
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    fields = line.split()
                    return int(fields[fields.index("tw") + 1])
    except (OSError, ValueError):
        pass
    return -1


def tw_overflows() -> int | None:
    """``TcpExt: TCPTimeWaitOverflow`` (``/proc/net/netstat``): closes that found the table
    full and so left no TIME_WAIT socket; None when it cannot be read."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for keys, values in zip(lines[::2], lines[1::2], strict=False):
        if keys.startswith("TcpExt:") and "TCPTimeWaitOverflow" in keys.split():
            return int(values.split()[keys.split().index("TCPTimeWaitOverflow")])
    return None


def tw_timers() -> list[float] | None:
    """Seconds left on the timer of each TIME_WAIT socket (``/proc/net/tcp`` and ``tcp6``,
    in clock ticks); None when they cannot be read."""
    tick = 1.0 / os.sysconf("SC_CLK_TCK")
    timers = []
    try:
        for path in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(path) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if fields[3] == "06":
                        timers.append(int(fields[5].split(":")[1], 16) * tick)
    except (OSError, IndexError, ValueError):
        return None
    return timers


def quiet_in(timers: list[float], horizon: float, allowed: int) -> float:
    """The soonest time from now (s) after which at most ``allowed`` of the TIME_WAIT
    sockets with these ``timers`` can expire within ``horizon`` seconds.  The kernel's timer
    wheel fires a timer of about 60 s up to :data:`TIMER_SLACK` late, so a socket whose
    timer says ``w`` expires somewhere in ``[w, w + TIMER_SLACK]``."""
    ordered = sorted(timers)
    # The candidates: now, and just after each socket has surely expired.
    for t in [0.0, *(w + TIMER_SLACK + 0.01 for w in sorted(set(ordered)))]:
        lo = bisect.bisect_right(ordered, t - TIMER_SLACK)  # expired by t
        hi = bisect.bisect_right(ordered, t + horizon)
        if hi - lo <= allowed:
            return t
    return 0.0  # not reached: past the last timer no socket is left


def tw_limit() -> int | None:
    """``net.ipv4.tcp_max_tw_buckets``; None when it cannot be read."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_max_tw_buckets").read_text())
    except (OSError, ValueError):
        return None


def slack(n: int) -> int:
    """How far below the limit a count still counts as "at the limit" for a run of ``n``
    connections: 1% of them (at most that many could have created a TIME_WAIT socket)."""
    return max(1, n // 100)


def classify(low: int, high: int, limit: int | None, n: int, overflow: int | None = None) -> str:
    """The regime of a run of ``n`` connections whose TIME_WAIT count stayed within
    ``low``..``high`` (before, during and after it), and during which ``overflow`` closes
    found the table full (None: not known).  The overflow counter says it for every
    connection: ``full`` when at most 1% of them left a TIME_WAIT socket, ``filling`` when
    at most 1% found the table full.  Without it, the counts around the run decide."""
    if limit is None or low < 0:
        return UNKNOWN
    if overflow is not None:
        if overflow >= n - slack(n):
            return FULL
        return FILLING if overflow <= slack(n) else MIXED
    floor = limit - slack(n)
    if low >= floor:
        return FULL
    if high < floor:
        return FILLING
    return MIXED


def regime_of(rec: dict[str, Any]) -> str:
    """A record's regime (``unrecorded`` for records older than the field)."""
    regime: str = rec.get("tw_regime", UNRECORDED)
    return regime


def label(regime: str, limit: int | None) -> str:
    """The regime in words, for the tables and the JSON summary."""
    at = f" ({limit:,})" if limit is not None else ""
    of = f" of {limit:,}" if limit is not None else ""
    return {
        FULL: f"the TIME_WAIT table full{at}",
        FILLING: f"the TIME_WAIT table filling (below its limit{of} throughout)",
        MIXED: f"the TIME_WAIT table reaching or leaving its limit{of} during the run",
        UNKNOWN: "the TIME_WAIT limit unreadable",
        UNRECORDED: "the TIME_WAIT regime not recorded",
    }.get(regime, regime)


def group_key(workload: str, regime: str, primary: str) -> str:
    """The summary key of a group: the workload for the primary group, else
    ``workload@regime``."""
    return workload if regime == primary else f"{workload}@{regime}"


def kind(key: str) -> tuple[str, str | None]:
    """(workload, regime or None) of a summary key made by :func:`group_key`."""
    workload, _, regime = key.partition("@")
    return workload, regime or None


def by_regime(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The records split by regime, in :data:`REGIMES` order; the primary group first (the
    one with the most valid runs, ties going to the earlier regime)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for regime in REGIMES + tuple(sorted({regime_of(r) for r in records} - set(REGIMES))):
        mine = [r for r in records if regime_of(r) == regime]
        if mine:
            groups[regime] = mine
    if not groups:
        return groups
    primary = max(groups, key=lambda g: sum(1 for r in groups[g] if r["ok"]))
    return {primary: groups[primary], **{g: recs for g, recs in groups.items() if g != primary}}


def comparable(row: dict[str, Any], reference: dict[str, Any]) -> bool:
    """True when ``row``'s figures may be divided by ``reference``'s: both of one regime, and
    that a single kernel regime (rows of workloads without a regime always are)."""
    if "regime" not in row and "regime" not in reference:
        return True
    return row.get("regime") == reference.get("regime") and row.get("regime") in SINGLE


@dataclass
class TwWatch:
    """The TIME_WAIT count before, during (:meth:`sample`, at most every
    :data:`SAMPLE_EVERY` s) and after one run."""

    read: Callable[[], int] = tw_count
    overflows: Callable[[], int | None] = tw_overflows
    before: int = field(init=False)
    low: int = field(init=False)
    high: int = field(init=False)
    _overflows: int | None = field(init=False)
    _next: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.before = self.low = self.high = self.read()
        self._overflows = self.overflows()

    def sample(self) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + SAMPLE_EVERY
            self._see(self.read())

    def _see(self, count: int) -> None:
        self.low, self.high = min(self.low, count), max(self.high, count)

    def finish(self) -> dict[str, int | None]:
        """The counts, as record fields (``tw_overflow``: closes that found the table full,
        None when the counter is not readable)."""
        after, overflows = self.read(), self.overflows()
        self._see(after)
        overflow = None
        if overflows is not None and self._overflows is not None:
            overflow = overflows - self._overflows
        return {
            "tw_before": self.before,
            "tw_after": after,
            "tw_low": self.low,
            "tw_high": self.high,
            "tw_overflow": overflow,
        }


@dataclass
class TimeWaitKeeper:
    """Keeps the measured churns of a session in one regime.

    Mode ``full``: :meth:`ready` (called before each measured churn) runs unmeasured churns of
    the C reference (``fill``) until the TIME_WAIT count is at its limit, at most
    :meth:`bound` of them; if that is not enough, or a fill run fails, it gives up for the
    rest of the session and says why (``gave_up``), and the runs are marked by their own
    regime.  Mode ``as-is``: nothing is done; every run is still classified.
    """

    mode: str
    limit: int | None
    #: Connections per measured churn run (how close to the limit is "at the limit").
    n: int
    fill: Callable[[], dict[str, Any]]
    #: Connections per fill run (0: ``n``).
    fill_n: int = 0
    count: Callable[[], int] = tw_count
    timers: Callable[[], list[float] | None] = tw_timers
    sleep: Callable[[float], None] = time.sleep
    say: Callable[[str], None] = _say
    #: The last wall time of each implementation's churn (:meth:`horizon`).
    walls: dict[str, float] = field(default_factory=dict)
    fill_runs: int = 0
    fill_seconds: float = 0.0
    retries: int = 0
    #: Seconds spent waiting for bursts of expiring sockets to pass.
    waited: float = 0.0
    gave_up: str | None = None

    @property
    def active(self) -> bool:
        """True while the keeper fills the table (mode full, not given up)."""
        return self.mode == "full" and self.gave_up is None

    def bound(self) -> int:
        """Fill runs one preparation may make: twice what the limit needs if every
        connection left a TIME_WAIT socket, plus two; never more than :data:`MAX_FILL_RUNS`."""
        if self.limit is None:
            return 0
        return min(MAX_FILL_RUNS, math.ceil(2 * self.limit / max(1, self._fill_n)) + 2)

    @property
    def _fill_n(self) -> int:
        return self.fill_n or self.n

    def at_limit(self, count: int) -> bool:
        return self.limit is not None and count >= self.limit - slack(self.n)

    def horizon(self, name: str) -> float:
        """Seconds the next churn of ``name`` is expected to take (start-up included): half
        as long again as its last one, else :data:`DEFAULT_HORIZON`."""
        wall = self.walls.get(name)
        return DEFAULT_HORIZON if wall is None else 1.5 * wall + 1.0

    def saw(self, rec: dict[str, Any]) -> None:
        """Note how long a churn run took (for :meth:`horizon`)."""
        if rec.get("ok") and "wall" in rec:
            self.walls[rec["impl"]] = rec["wall"]

    def ready(self, name: str = "") -> None:
        """Mode full: bring the table to its limit, after waiting out any burst of TIME_WAIT
        sockets that would expire during the next run of ``name`` (then fill runs replace
        them with sockets that live 60 s); a no-op when neither is needed.  Not reaching the
        limit within :meth:`bound` fill runs gives up for the session; a burst still ahead
        after :data:`MAX_WAIT` s does not (the run is made, and classified)."""
        if self.mode != "full" or self.gave_up is not None:
            return
        if self.limit is None:
            self.gave_up = "net.ipv4.tcp_max_tw_buckets is not readable"
            self.say(f"  TIME_WAIT: not filled: {self.gave_up}")
            return
        horizon = self.horizon(name)
        start, t0 = self.count(), time.monotonic()
        now, runs, made, waited = start, 0, 0, 0.0  # runs: since the last wait
        lowest = start
        while True:
            if not self.at_limit(now):
                if runs >= self.bound():
                    self.gave_up = (
                        f"{runs} fill runs of {self._fill_n:,} connections brought the "
                        f"TIME_WAIT count from {start:,} to {now:,}, below its limit "
                        f"{self.limit:,}"
                    )
                    break
                rec = self.fill()
                runs, made = runs + 1, made + 1
                if not rec.get("ok"):
                    why = rec.get("problems") or rec.get("error")
                    self.gave_up = f"a fill run of the C reference was invalid: {why}"
                    break
            else:
                timers = self.timers()
                wait = 0.0 if timers is None else quiet_in(timers, horizon, slack(self.n))
                if wait == 0.0 or waited + wait > MAX_WAIT:
                    break
                self.say(
                    f"  TIME_WAIT: sockets would expire during the next {horizon:.0f} s: "
                    f"waiting {wait:.1f} s for them"
                )
                self.sleep(wait)
                waited += wait
                runs = 0  # a new fill: the bound counts from here
            now = self.count()
            lowest = min(lowest, now)
        self.fill_runs += made
        self.fill_seconds += time.monotonic() - t0 - waited
        self.waited += waited
        if made:
            self.say(
                f"  TIME_WAIT: {made} unmeasured c-epoll churn(s): {lowest:,} -> {now:,} "
                f"(limit {self.limit:,})"
            )
        if self.gave_up is not None:
            self.say(f"  TIME_WAIT: gave up filling the table: {self.gave_up}")

    def again(self, rec: dict[str, Any], attempt: int) -> bool:
        """True when the churn run ``rec`` (its ``attempt``-th) should be made once more: the
        keeper keeps the table full, yet the run did not stay in that regime (TIME_WAIT
        sockets expire in bursts).  A second attempt is the last."""
        if attempt > 1 or not self.active or rec.get("tw_regime", FULL) == FULL:
            return False
        self.retries += 1
        self.say("  (the run left the full regime: made once more)")
        return True

    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The session's regime, for the results JSON: the mode, the limit, the fill runs and
        how many churn runs were measured in each regime."""
        counts: dict[str, int] = {}
        for rec in records:
            if rec.get("workload") == "churn":
                counts[regime_of(rec)] = counts.get(regime_of(rec), 0) + 1
        regimes = {r: label(r, self.limit) for r in counts}
        return {
            # The regime of every measured churn run, when they share one.
            "regime": regimes[next(iter(counts))] if len(counts) == 1 else None,
            "mode": self.mode,
            "limit": self.limit,
            "fill_runs": self.fill_runs,
            "fill_seconds": round(self.fill_seconds, 2),
            "waited_seconds": round(self.waited, 2),
            "retries": self.retries,
            "gave_up": self.gave_up,
            "runs_per_regime": counts,
            "labels": regimes,
        }
