"""``pywsk probe --repeat N --concurrency K``: one scenario many times, and a summary.

What it does: :func:`run_many` runs the scenario ``N`` times, at most ``K`` at once (one
thread, one WSK client and one connection per run), and hands each report to
``on_report`` as it ends.  :func:`summarize` turns the reports into what iperf3-style tools
print: outcomes counted, connect and run-time percentiles (nearest rank), bytes each way and
the throughput over the wall-clock time, runs per second.  :func:`run_line` is the one-line
JSON of a run.

What it refuses: nothing; a run that fails is a report like any other (its outcome counts).

What always holds: every run is bounded by the scenario's timeouts; Ctrl-C stops starting
new runs and waits (bounded by those timeouts) for the ones in progress.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from .probe import run_probe
from .probe_run import ProbeOptions
from .render import console
from .timeline import Report

__all__ = ["percentiles", "print_repeat_summary", "probe_many", "run_line", "run_many", "summarize"]


def run_many(
    name: str,
    options: ProbeOptions,
    addresses: list[tuple[Any, ...]],
    repeat: int,
    concurrency: int,
    on_report: Callable[[int, Report], None],
) -> tuple[list[Report], float]:
    """Run ``name`` ``repeat`` times, ``concurrency`` at once; returns the reports (in the
    order they ended) and the wall-clock seconds."""
    started = time.monotonic()
    reports: list[Report] = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency)
    futures = {pool.submit(run_probe, name, options, addresses): i for i in range(repeat)}
    try:
        for future in concurrent.futures.as_completed(futures):
            report = future.result()
            reports.append(report)
            on_report(futures[future] + 1, report)
    except KeyboardInterrupt:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
    return reports, time.monotonic() - started


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p90, p99 (nearest rank) and max; None without values."""
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        out[name] = ordered[max(math.ceil(q * len(ordered)) - 1, 0)] if ordered else None
    out["max"] = ordered[-1] if ordered else None
    return out


def summarize(reports: Sequence[Report], seconds: float) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for report in reports:
        counts[report.outcome] = counts.get(report.outcome, 0) + 1
    connect = [r.facts["connect_ms"] for r in reports if "connect_ms" in r.facts]
    duration = [r.facts["duration_ms"] for r in reports if "duration_ms" in r.facts]
    sent = sum(int(r.facts.get("sent", 0)) for r in reports)
    received = sum(int(r.facts.get("received", {}).get("bytes", 0)) for r in reports)
    ends: dict[str, int] = {}
    for r in reports:
        end = r.facts.get("peer_end", {}).get("how", "none")
        ends[end] = ends.get(end, 0) + 1
    return {
        "event": "summary",
        "runs": len(reports),
        "outcomes": counts,
        "server_end": ends,
        "connect_ms": percentiles(connect),
        "duration_ms": percentiles(duration),
        "sent": sent,
        "received": received,
        "seconds": round(seconds, 3),
        "runs_per_second": round(len(reports) / seconds, 2) if seconds > 0 else None,
        "throughput_bytes_per_second": round((sent + received) / seconds) if seconds > 0 else None,
    }


def run_line(index: int, report: Report) -> dict[str, Any]:
    facts = report.facts
    return {
        "event": "run",
        "run": index,
        "scenario": report.name,
        "outcome": report.outcome,
        "verdict": report.verdict,
        "connect_ms": facts.get("connect_ms"),
        "duration_ms": facts.get("duration_ms"),
        "sent": facts.get("sent"),
        "received": facts.get("received", {}).get("bytes"),
        "server_end": facts.get("peer_end", {}).get("how"),
        "cause": facts.get("peer_end", {}).get("cause"),
        "local_port": facts.get("local_port"),
    }


def probe_many(
    name: str,
    options: Any,
    addresses: list[tuple[Any, ...]],
    repeat: int,
    concurrency: int,
    as_json: bool,
) -> tuple[list[Report], bool]:
    """--repeat: one line per run, then the summary (a table, or a JSON line); returns the
    reports and whether Ctrl-C stopped the runs."""
    import json

    from .wire import CaptureWire, capture_possible

    out = console()
    shared: CaptureWire | None = None
    if options.wire != "state" and capture_possible():
        shared = CaptureWire(int(addresses[0][1]), str(addresses[0][0])).start()
        options = dataclasses.replace(options, shared_wire=shared, pcap=None)
    pcap = options.pcap

    def on_report(index: int, report: Report) -> None:
        line = run_line(index, report)
        if as_json:
            print(json.dumps(line, default=str), flush=True)
        else:
            out.print(
                f"run {index}: {report.verdicts()[0]} - connect {line['connect_ms']} ms, "
                f"{line['duration_ms']} ms, sent {line['sent']} B, received {line['received']} B,"
                f" server end {line['server_end']} ({line['cause']})"
            )

    interrupted = False
    try:
        reports, seconds = run_many(name, options, addresses, repeat, concurrency, on_report)
    except KeyboardInterrupt:
        interrupted = True
        reports, seconds = [], 0.0
    finally:
        if shared is not None:
            if pcap:
                shared.save(pcap)
            shared.stop()
    summary = summarize(reports, seconds)
    if as_json:
        print(json.dumps(summary, default=str), flush=True)
    else:
        print_repeat_summary(summary, out)
    return reports, interrupted


def print_repeat_summary(summary: dict[str, Any], out: Any) -> None:
    from rich.table import Table

    table = Table(title=f"{summary['runs']} runs in {summary['seconds']} s", expand=False)
    table.add_column("")
    for column in ("p50", "p90", "p99", "max"):
        table.add_column(column, justify="right")
    for what in ("connect_ms", "duration_ms"):
        values = summary[what]
        table.add_row(
            what.replace("_ms", " (ms)"),
            *(
                "-" if values[c] is None else f"{values[c]:.3f}"
                for c in ("p50", "p90", "p99", "max")
            ),
        )
    out.print(table)
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(summary["outcomes"].items()))
    ends = ", ".join(f"{k} {v}" for k, v in sorted(summary["server_end"].items()))
    rate = summary["throughput_bytes_per_second"]
    out.print(f"outcomes: {outcomes}")
    out.print(f"server ended with: {ends}")
    out.print(
        f"sent {summary['sent']} B, received {summary['received']} B; "
        f"{summary['runs_per_second']} runs/s"
        + (f", {rate / 1e6:.2f} MB/s" if rate is not None else "")
    )
