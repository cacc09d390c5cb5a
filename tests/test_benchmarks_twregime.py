"""The TIME_WAIT regime of the benchmark harness, on synthetic records: no network.

A churn run is classified by the TIME_WAIT counts seen around it; the tables group runs by
regime and compute "x C" only between runs of one single kernel regime; the keeper fills the
table a bounded number of times and says when it gives up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
from benchmarks import report, twregime
from benchmarks.twregime import FILLING, FULL, MIXED, UNKNOWN, TimeWaitKeeper, TwWatch

T = TypeVar("T")
LIMIT = 131_072
N = 20_000


def churn(impl: str, rate: float, regime: str | None, ok: bool = True) -> dict[str, Any]:
    """A valid churn record as run.run_churn makes it (only the fields the report reads)."""
    rec: dict[str, Any] = {
        "impl": impl,
        "workload": "churn",
        "n": N,
        "conc": 64,
        "ok": ok,
        "tw_before": LIMIT,
        "tw_limit": LIMIT,
        "rusage_client": (0.1, 0.2),
        "rusage_server": (0.1, 0.2),
    }
    if regime is not None:
        rec["tw_regime"] = regime
    if ok:
        cpu = N / rate  # any figure that moves with the rate
        rec.update(metric=rate, cpu_total=cpu, client={"cpu": cpu / 2}, server={"cpu": cpu / 2})
    return rec


def data(records: list[dict[str, Any]], **time_wait: Any) -> dict[str, Any]:
    return {
        "config": {"reps": 5, "n": N, "conc": 64, "bulk_bytes": 1 << 30, "dgram_n": 1},
        "records": records,
        "time_wait": {"mode": "full", "limit": LIMIT, "fill_runs": 0, **time_wait},
    }


@pytest.mark.parametrize(
    ("low", "high", "expected"),  # without the overflow counter
    [
        (LIMIT, LIMIT, FULL),
        (LIMIT - N // 100, LIMIT, FULL),  # 1% of the run's connections is still "at it"
        (LIMIT - N // 100 - 1, LIMIT, MIXED),
        (8, 118_000, FILLING),
        (118_000, LIMIT, MIXED),  # the run filled the table
        (90_000, LIMIT - N // 100, MIXED),
        (-1, -1, UNKNOWN),  # /proc/net/sockstat unreadable
    ],
)
def test_classify_by_the_counts_around_a_run(low: int, high: int, expected: str) -> None:
    assert twregime.classify(low, high, LIMIT, N) == expected


@pytest.mark.parametrize(
    ("overflow", "expected"),
    [
        (N, FULL),  # every close found the table full
        (N - N // 100, FULL),
        (N - N // 100 - 1, MIXED),
        (8_760, MIXED),  # a run that filled the table: 11,240 closes left a TIME_WAIT
        (N // 100, FILLING),
        (0, FILLING),
    ],
)
def test_the_overflow_counter_decides_over_the_counts(overflow: int, expected: str) -> None:
    # The counts alone would say "full": the table was at its limit whenever it was read.
    assert twregime.classify(LIMIT, LIMIT, LIMIT, N, overflow) == expected


def test_classify_without_a_limit_is_unknown() -> None:
    assert twregime.classify(LIMIT, LIMIT, None, N) == UNKNOWN


def test_by_regime_puts_the_group_with_most_valid_runs_first() -> None:
    records = [
        churn("c-epoll", 17_000, FILLING),
        churn("c-epoll", 50_000, FULL),
        churn("uvloop", 31_000, FULL),
        churn("uvloop", 15_000, MIXED),
        {**churn("uvloop", 0, FILLING, ok=False)},
    ]
    groups = twregime.by_regime(records)
    assert list(groups) == [FULL, FILLING, MIXED]
    assert [r["impl"] for r in groups[FILLING]] == ["c-epoll", "uvloop"]
    assert twregime.by_regime([]) == {}


def test_ratios_only_within_one_regime() -> None:
    # The run of the issue: C's reps while the table filled, uvloop's after it was full.
    records = [churn("c-epoll", r, FILLING) for r in (17_677, 17_792, 17_500)]
    records += [churn("uvloop", r, FULL) for r in (31_000, 32_600, 30_500, 31_500)]
    records += [churn("uvloop", 16_536, FILLING)]
    summary = report.summarize(data(records))
    assert set(summary) == {"churn", "churn@filling"}
    full = summary["churn"]  # uvloop's four full runs: the most valid runs
    assert full["uvloop"]["regime"] == FULL
    assert full["uvloop"]["median"] == 31_250
    assert "ratio" not in full["uvloop"]  # no C in this regime: no ratio at all
    filling = summary["churn@filling"]
    assert filling["c-epoll"]["ratio"] == 1.0
    assert filling["uvloop"]["ratio"] == pytest.approx(16_536 / 17_677)
    for rows in summary.values():
        for row in rows.values():
            if "ratio" in row:
                assert row["regime"] == rows["c-epoll"]["regime"]


def test_no_ratio_over_mixed_or_unrecorded_runs() -> None:
    for regime in (MIXED, None):
        records = [churn("c-epoll", 30_000, regime), churn("uvloop", 20_000, regime)]
        rows = report.summarize(data(records))["churn"]
        assert all("ratio" not in row and "cpu_ratio" not in row for row in rows.values())
        text = report.markdown(data(records))
        if regime == MIXED:
            assert "No x C: these runs did not each meet one kernel regime." in text
        else:
            assert "All runs with the TIME_WAIT regime not recorded." in text
            assert "No x C: the regime of these runs is not known." in text
        assert "| uvloop | 20,000 | 20,000 - 20,000 | n/a |" in text


def test_other_workloads_keep_their_ratios() -> None:
    bulk = [
        {
            "impl": impl,
            "workload": "bulk",
            "ok": True,
            "bytes": 1 << 30,
            "metric": mbps,
            "cpu_total": 1.0,
            "client": {"cpu": 0.5},
            "server": {"cpu": 0.5},
        }
        for impl, mbps in (("c-epoll", 4000.0), ("uvloop", 2000.0))
    ]
    assert report.summarize(data(bulk))["bulk"]["uvloop"]["ratio"] == 0.5


def test_the_line_under_a_single_regime_table() -> None:
    records = [churn("c-epoll", 50_000, FULL), churn("uvloop", 32_600, FULL)]
    text = report.markdown(
        data(records, fill_runs=7, fill_seconds=9.6, waited_seconds=18.2, retries=1)
    )
    assert "All runs with the TIME_WAIT table full (131,072)." in text
    assert (
        "7 unmeasured c-epoll churn(s) (10 s) kept the table at its limit before the measured "
        "runs, after 18 s of waiting for bursts of expiring TIME_WAIT sockets to pass; 1 "
        "run(s) left it" in text
    )
    assert "1 run(s) left it and were made once more." in text
    assert "| uvloop | 32,600 | 32,600 - 32,600 | 0.65 |" in text


def test_the_lines_under_split_tables() -> None:
    records = [churn("c-epoll", 50_000, FULL), churn("uvloop", 32_600, FULL)]
    records += [churn("uvloop", 16_536, FILLING)]
    text = report.markdown(data(records, gave_up="a fill run of the C reference was invalid"))
    assert (
        "2 of 3 runs with the TIME_WAIT table full (131,072); the other 1 are in a table of "
        "their regime (filling 1)." in text
    )
    assert "runs with the TIME_WAIT table filling (below its limit of 131,072 throughout)" in text
    assert "No x C: c-epoll has no valid run in this regime." in text
    assert "The table could not be kept at its limit: a fill run of the C reference" in text


def filler(fills: list[int]) -> Any:
    """A fill run that counts itself and verifies."""

    def fill() -> dict[str, Any]:
        fills.append(1)
        return {"ok": True}

    return fill


def counter(values: list[T]) -> Iterator[T]:
    yield from values
    while True:
        yield values[-1]


def fake_keeper(
    fills: list[int],
    counts: list[int],
    timers: list[list[float] | None],
    said: list[str] | None = None,
    slept: list[float] | None = None,
) -> TimeWaitKeeper:
    """A keeper in mode full whose kernel is these lists: the TIME_WAIT counts and the timer
    lists it reads in turn (the last one again and again), its fill runs and sleeps noted."""
    counted, timed = counter(counts), counter(timers)
    return TimeWaitKeeper(
        "full",
        LIMIT,
        N,
        fill=filler(fills),
        count=lambda: next(counted),
        timers=lambda: next(timed),
        sleep=(lambda _: None) if slept is None else slept.append,
        say=(lambda _: None) if said is None else said.append,
    )


def test_keeper_fills_until_the_limit() -> None:
    fills: list[int] = []
    said: list[str] = []
    counts = [40_000, 54_000, 68_000, 82_000, 96_000, 110_000, 124_000, LIMIT]
    # Fewer than 1% of a run's connections expire soon.
    keeper = fake_keeper(fills, counts, [[3.0] * 150 + [50.0] * 130_000], said)
    keeper.ready()
    assert len(fills) == 7
    assert keeper.active
    assert keeper.gave_up is None
    assert said == ["  TIME_WAIT: 7 unmeasured c-epoll churn(s): 40,000 -> 131,072 (limit 131,072)"]
    keeper.ready()  # at the limit already: nothing to do
    assert len(fills) == 7
    summary = keeper.summary([churn("c-epoll", 50_000, FULL), churn("uvloop", 1, MIXED)])
    assert summary["fill_runs"] == 7
    assert summary["runs_per_regime"] == {FULL: 1, MIXED: 1}
    assert summary["labels"][FULL] == "the TIME_WAIT table full (131,072)"
    assert summary["regime"] is None  # two regimes
    assert keeper.summary([churn("c-epoll", 50_000, FULL)])["regime"] == summary["labels"][FULL]


def test_quiet_in_finds_the_end_of_the_bursts_ahead() -> None:
    slack_ = twregime.TIMER_SLACK + 0.01
    assert twregime.quiet_in([], 10.0, 200) == 0.0
    assert twregime.quiet_in([3.0] * 200 + [50.0] * 1000, 10.0, 200) == 0.0
    burst = [3.0] * 14_000 + [50.0] * 100_000
    assert twregime.quiet_in(burst, 10.0, 200) == pytest.approx(3.0 + slack_)
    # A second burst inside the run that would follow the first: wait for both.
    two = burst + [12.0] * 5_000
    assert twregime.quiet_in(two, 10.0, 200) == pytest.approx(12.0 + slack_)
    # A short run fits between them; a shorter one before the first.
    assert twregime.quiet_in(two, 4.0, 200) == pytest.approx(3.0 + slack_)
    assert twregime.quiet_in(two, 2.0, 200) == 0.0


def test_keeper_waits_out_a_burst_then_refills() -> None:
    # At the limit, but 14,000 sockets made by earlier fill runs expire in 3 s: within the
    # next run of pywsk (its last took 6 s).
    fills: list[int] = []
    said: list[str] = []
    slept: list[float] = []
    keeper = fake_keeper(
        fills,
        [LIMIT, LIMIT - 14_000, LIMIT],
        [[3.0] * 14_000 + [50.0] * 117_072, [47.0] * 117_072 + [60.0] * 14_000],
        said,
        slept,
    )
    keeper.saw({"impl": "pywsk", "ok": True, "wall": 6.0})
    keeper.saw({"impl": "uvloop", "ok": False, "wall": 60.0})  # invalid runs say nothing
    assert keeper.horizon("pywsk") == 10.0  # 1.5 x its last 6 s, + 1 s
    assert keeper.horizon("uvloop") == twregime.DEFAULT_HORIZON
    keeper.ready("pywsk")
    assert slept == [pytest.approx(3.0 + twregime.TIMER_SLACK + 0.01)]
    assert len(fills) == 1
    assert keeper.waited == slept[0]
    assert said == [
        "  TIME_WAIT: sockets would expire during the next 10 s: waiting 7.2 s for them",
        "  TIME_WAIT: 1 unmeasured c-epoll churn(s): 117,072 -> 131,072 (limit 131,072)",
    ]
    assert keeper.summary([])["waited_seconds"] == round(slept[0], 2)


def test_keeper_waits_at_most_max_wait_and_goes_on() -> None:
    slept: list[float] = []
    # A burst 1 s ahead that (in this fiction) stays there.
    keeper = fake_keeper([], [LIMIT], [[1.0] * 5_000], slept=slept)
    keeper.ready()
    assert sum(slept) <= twregime.MAX_WAIT
    assert len(slept) == 13  # 5.21 s each: a 14th would pass MAX_WAIT
    assert keeper.active  # the run is made and classified; the next one is readied again
    blind = fake_keeper([], [LIMIT], [None], slept=slept)
    blind.ready()  # the timers cannot be read: the count alone decides
    assert blind.fill_runs == 0
    assert len(slept) == 13


def test_the_fill_bound_counts_from_the_last_wait() -> None:
    # 15 runs to reach the limit, a burst to wait for, and 15 runs more: 30 > the bound.
    climb = list(range(0, 15 * 8_000, 8_000))
    fills: list[int] = []
    keeper = fake_keeper(fills, [*climb, LIMIT, *climb, LIMIT], [[1.0] * 5_000, [60.0] * LIMIT])
    keeper.ready()
    assert len(fills) == 30
    assert keeper.bound() == 16
    assert keeper.gave_up is None


def test_keeper_is_bounded_and_gives_up_for_the_session() -> None:
    fills: list[int] = []
    keeper = fake_keeper(fills, [1_000], [None])  # the count never rises
    assert keeper.bound() == 16  # twice the 7 runs the limit needs at one per connection, + 2
    keeper.ready()
    assert len(fills) == 16
    assert keeper.gave_up is not None
    assert "below its limit 131,072" in keeper.gave_up
    assert not keeper.active
    keeper.ready()
    assert len(fills) == 16  # no more fill runs this session
    assert TimeWaitKeeper("full", LIMIT, 300, fill=dict).bound() == twregime.MAX_FILL_RUNS
    assert TimeWaitKeeper("full", LIMIT, 300, fill=dict, fill_n=N).bound() == 16


def test_keeper_stops_at_an_invalid_fill_run_and_without_a_limit() -> None:
    keeper = TimeWaitKeeper(
        "full", LIMIT, N, fill=lambda: {"ok": False, "problems": ["x"]}, count=lambda: 0
    )
    keeper.say = lambda _: None
    keeper.ready()
    assert keeper.gave_up == "a fill run of the C reference was invalid: ['x']"
    blind = TimeWaitKeeper("full", None, N, fill=dict, say=lambda _: None)
    blind.ready()
    assert blind.gave_up == "net.ipv4.tcp_max_tw_buckets is not readable"


def test_keeper_as_is_never_fills() -> None:
    keeper = TimeWaitKeeper("as-is", LIMIT, N, fill=dict, count=lambda: 0)
    keeper.ready()
    assert keeper.fill_runs == 0
    assert not keeper.active


def test_a_run_that_left_the_full_regime_is_made_once_more() -> None:
    said: list[str] = []
    keeper = TimeWaitKeeper("full", LIMIT, N, fill=dict, say=said.append)
    assert keeper.again(churn("uvloop", 1, MIXED), 1)
    assert keeper.retries == 1
    assert said == ["  (the run left the full regime: made once more)"]
    assert not keeper.again(churn("uvloop", 1, MIXED), 2)  # once only
    assert not keeper.again(churn("uvloop", 1, FULL), 1)
    assert not keeper.again({"workload": "bulk", "ok": True}, 1)
    as_is = TimeWaitKeeper("as-is", LIMIT, N, fill=dict)
    assert not as_is.again(churn("uvloop", 1, FILLING), 1)
    assert keeper.retries == 1


def test_watch_keeps_the_lowest_and_highest_count_and_the_overflows() -> None:
    counts = iter([120_000, 131_072, 104_000, 131_072])
    overflows = iter([5_000, 13_000])
    watch = TwWatch(read=lambda: next(counts), overflows=lambda: next(overflows))
    watch.sample()
    watch.sample()  # within SAMPLE_EVERY of the first: not read
    watch._next = 0.0
    watch.sample()
    assert watch.finish() == {
        "tw_before": 120_000,
        "tw_after": 131_072,
        "tw_low": 104_000,
        "tw_high": 131_072,
        "tw_overflow": 8_000,
    }
    blind = TwWatch(read=lambda: 0, overflows=lambda: None)
    assert blind.finish()["tw_overflow"] is None


def test_overflow_counter_and_timers_are_read_from_this_kernel() -> None:
    # The counter exists on the kernels the harness runs on (Linux >= 4.x).
    overflows = twregime.tw_overflows()
    assert overflows is not None
    assert overflows >= 0
    # TIME_WAIT timers run for 60 s at most.
    timers = twregime.tw_timers()
    assert timers is not None
    assert all(0.0 <= t <= 60.0 for t in timers)


def test_idle_comparison_has_no_ratio_across_regimes() -> None:
    def idle_rec(impl: str, idle: int, regime: str) -> dict[str, Any]:
        return {**churn(impl, 1_000, regime), "idle": idle}

    row = {
        "0": {"rate": 40_000.0, "cpu_us": 30.0, "runs": 1},
        "100": {"rate": 30_000.0, "cpu_us": 40.0, "runs": 1},
        "rate_ratio": 0.75,
        "cpu_ratio": 1.33,
    }
    idle = {
        "idle": 100,
        "n": N,
        "records": [
            idle_rec("c-epoll", 0, FULL),
            idle_rec("c-epoll", 100, FULL),
            idle_rec("pywsk", 0, FILLING),
            idle_rec("pywsk", 100, FULL),
        ],
        "summary": {"c-epoll": row, "pywsk": row},
    }
    lines = report._idle_lines(idle)
    assert "| c-epoll | 40,000 | 30,000 | 0.75 | 30 | 40 | 1.33 |" in lines
    assert "| pywsk | 40,000 | 30,000 | n/a | 30 | 40 | n/a |" in lines
    assert lines[-1] == (
        "TIME_WAIT regime of these runs: the TIME_WAIT table full (131,072): 3, the TIME_WAIT "
        "table filling (below its limit of 131,072 throughout): 1 (n/a: an implementation's "
        "runs did not all meet one regime)."
    )
