"""Summaries, Markdown tables and the PNG chart of a benchmark run.

Every figure is a median over the *valid* runs of an implementation, with the spread
(min - max).  "x C" is the ratio of medians to c-epoll in the same invocation.  CPU is the
in-process CPU time of client + server (user + system, all threads; start-up excluded), per
connection for churn and per GiB for bulk.

Churn runs are grouped by their TIME_WAIT regime (:mod:`benchmarks.twregime`): one table per
regime, the main one under the key ``churn`` and the others as ``churn@<regime>``, each with
a line saying which regime its runs met.  "x C" is never computed across regimes, nor within
a group of runs that were each partly in both.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from . import fairness, pycalls, syscalls, twregime

ORDER = (
    "c-epoll",
    "selectors",
    "uvloop",
    "asyncio",
    "trio",
    "pywsk",
    "pywsk-c",
    "pywsk.aio",
)
TITLES = {
    "churn": "churn: {n:,} connections, {conc} in flight (conn/s)",
    "bulk": "bulk: {size} over one connection, default congestion control (MB/s)",
    "bulk-cubic": "bulk: {size} over one connection, TCP_CONGESTION=cubic on the sender (MB/s)",
    "dgram-64": "datagrams: {dn:,} of 64 B echoed over one UDP socket, batches of {batch} "
    "(datagrams/s)",
    "dgram-1400": "datagrams: {dn:,} of 1,400 B echoed over one UDP socket, batches of {batch} "
    "(datagrams/s)",
}


#: Workload kind -> (rate unit, CPU unit) of the chart.
UNITS = {"churn": ("conn/s", "CPU µs/conn"), "dgram": ("datagrams/s", "CPU µs/datagram")}


def _order(names: set[str]) -> list[str]:
    return [n for n in ORDER if n in names] + sorted(names - set(ORDER))


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    """Per workload (churn: per workload and TIME_WAIT regime), per implementation: medians
    and spreads of the valid runs."""
    out: dict[str, Any] = {}
    records = data["records"]
    for workload in dict.fromkeys(r["workload"] for r in records):
        recs = [r for r in records if r["workload"] == workload]
        if workload != "churn":
            out[workload] = _rows(workload, recs, None)
            continue
        groups = twregime.by_regime(recs)
        primary = next(iter(groups), None)
        for regime, mine in groups.items():
            key = twregime.group_key(workload, regime, primary or regime)
            out[key] = _rows(workload, mine, regime)
    return out


def _rows(workload: str, recs: list[dict[str, Any]], regime: str | None) -> dict[str, Any]:
    """One table: per implementation, the medians and spreads of ``recs`` (all of one
    ``regime`` when it is given), and the ratios to c-epoll where they compare."""
    rows: dict[str, Any] = {}
    for impl in _order({r["impl"] for r in recs}):
        mine = [r for r in recs if r["impl"] == impl]
        ok = [r for r in mine if r["ok"]]
        row: dict[str, Any] = {"runs": len(mine), "valid": len(ok)}
        if ok:
            metrics = [r["metric"] for r in ok]
            if workload == "churn" or workload.startswith("dgram-"):
                cpu = [r["cpu_total"] / r["n"] * 1e6 for r in ok]
            else:
                cpu = [r["cpu_total"] / (r["bytes"] / 2**30) for r in ok]
            if workload == "churn":
                # Kernel time per connection, from the processes' rusage (their
                # start-up included: a few µs per connection at the default N).
                row["sys_us"] = statistics.median(
                    (r["rusage_client"][1] + r["rusage_server"][1]) / r["n"] * 1e6 for r in ok
                )
            crossing = [r["client"]["crossing_ns"] for r in ok if "crossing_ns" in r["client"]]
            if crossing:  # a C driver: its C -> Python crossings
                row["crossing_ns"] = statistics.median(crossing)
                row["crossing_call_ns"] = statistics.median(r["client"]["call_ns"] for r in ok)
                row["crossings_per_conn"] = ok[0]["client"]["crossings_per_conn"]
            row.update(
                median=statistics.median(metrics),
                min=min(metrics),
                max=max(metrics),
                cpu=statistics.median(cpu),
                cpu_min=min(cpu),
                cpu_max=max(cpu),
                cpu_client=statistics.median(r["client"]["cpu"] for r in ok),
                cpu_server=statistics.median(r["server"]["cpu"] for r in ok),
                steal_max=max(r.get("steal_pct", 0.0) for r in ok),
            )
        if regime is not None:
            row["regime"] = regime
        rows[impl] = row
    c = rows.get("c-epoll", {})
    for row in rows.values():
        if "median" in row and "median" in c and twregime.comparable(row, c):
            row["ratio"] = row["median"] / c["median"]
            row["cpu_ratio"] = row["cpu"] / c["cpu"]
    return rows


def _fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def markdown(data: dict[str, Any]) -> str:
    """The results as Markdown tables (what docs/performance.md shows)."""
    summary = summarize(data)  # from the records: a stored summary may predate a field
    cfg = data["config"]
    lines = []
    m = data.get("machine", {})
    lines.append(
        f"Run {data.get('started', '?')}: {cfg['reps']} repetition(s), churn N={cfg['n']:,} "
        f"({cfg['conc']} in flight), bulk {cfg['bulk_bytes'] / 2**20:,.0f} MiB; "
        f"{m.get('cpus', '?')} CPUs, kernel {m.get('kernel', '?')}, Python "
        f"{m.get('python', '?')}, default congestion control "
        f"{m.get('tcp_congestion_control', '?')}."
    )
    for key, rows in summary.items():
        workload, regime = twregime.kind(key)
        size = cfg["bulk_bytes"]
        size_text = f"{size / 2**30:g} GiB" if size >= 2**30 else f"{size / 2**20:g} MiB"
        title = TITLES.get(workload, workload).format(
            n=cfg["n"],
            conc=cfg["conc"],
            size=size_text,
            dn=cfg.get("dgram_n", 0),
            batch=next((r["batch"] for r in data["records"] if "batch" in r), "?"),
        )
        if regime is not None:  # a churn group beside the main one
            title += f", the runs with {twregime.label(regime, _tw_limit(data))}"
        lines += ["", f"**{title}**", ""]
        if workload.startswith("dgram-"):
            lines.append(
                "| impl | median datagrams/s | min - max | x C | CPU µs/datagram (cli+srv) "
                "| CPU min - max | x C CPU | valid |"
            )
        elif workload == "churn":
            lines.append(
                "| impl | median conn/s | min - max | x C | CPU µs/conn (cli+srv) "
                "| CPU min - max | x C CPU | valid |"
            )
        else:
            lines.append(
                "| impl | median MB/s | min - max | x C | CPU s/GiB (cli+srv) "
                "| CPU min - max | x C CPU | valid |"
            )
        lines.append("|---|---|---|---|---|---|---|---|")
        for impl, row in rows.items():
            valid = f"{row['valid']}/{row['runs']}"
            if "median" not in row:
                lines.append(f"| {impl} | invalid | | | | | | {valid} |")
                continue
            digits = 2 if workload.startswith("bulk") else 1 if workload != "churn" else 0
            ratio = f"{row['ratio']:.2f}" if "ratio" in row else "n/a"
            cpu_ratio = f"{row['cpu_ratio']:.2f}" if "cpu_ratio" in row else "n/a"
            lines.append(
                f"| {impl} | {_fmt(row['median'])} | {_fmt(row['min'])} - {_fmt(row['max'])} "
                f"| {ratio} | {_fmt(row['cpu'], digits)} | {_fmt(row['cpu_min'], digits)} - "
                f"{_fmt(row['cpu_max'], digits)} | {cpu_ratio} | {valid} |"
            )
        if workload == "churn":
            lines += ["", regime_line(data, summary, key)]
    lines += _crossing_lines(summary.get("churn", {}))
    lines += _scaling_lines(data.get("scaling", {}))
    lines += _measurement_lines(data.get("scaling", {}), summary.get("churn"))
    invalid = [r for r in data["records"] if not r["ok"]]
    if invalid:
        lines += ["", "Invalid runs (left out of every median):", ""]
        for r in invalid:
            lines.append(f"* rep {r.get('rep')} {r['workload']} {r['impl']}: {_why(r)}")
    return "\n".join(lines) + "\n"


def regime_line(data: dict[str, Any], summary: dict[str, Any], key: str) -> str:
    """The line under a churn table: the TIME_WAIT regime its runs met, how many of the
    session's churn runs that is, why a ratio is missing, and what the harness did."""
    regime = next(iter(summary[key].values())).get("regime", twregime.UNRECORDED)
    limit = _tw_limit(data)
    churn = [r for r in data["records"] if r["workload"] == "churn"]
    mine = [r for r in churn if twregime.regime_of(r) == regime]
    what = twregime.label(regime, limit)
    if len(mine) == len(churn):
        text = f"All runs with {what}."
    else:
        others = ", ".join(
            f"{g} {len(recs)}" for g, recs in twregime.by_regime(churn).items() if g != regime
        )
        text = (
            f"{len(mine)} of {len(churn)} runs with {what}; the other "
            f"{len(churn) - len(mine)} are in a table of their regime ({others})."
        )
    c = summary[key].get("c-epoll", {})
    if regime == twregime.MIXED:
        text += " No x C: these runs did not each meet one kernel regime."
    elif regime not in twregime.SINGLE:
        text += " No x C: the regime of these runs is not known."
    elif "median" not in c:
        text += " No x C: c-epoll has no valid run in this regime."
    if key == "churn":  # what the harness did, once, under the main table
        text += _keeper_text(data.get("time_wait") or {})
    return text


def _keeper_text(tw: dict[str, Any]) -> str:
    """What the harness did to keep the TIME_WAIT regime (the results' ``time_wait``)."""
    text = ""
    if tw.get("fill_runs"):
        text += (
            f" {tw['fill_runs']} unmeasured c-epoll churn(s) ({tw['fill_seconds']:.0f} s) kept "
            "the table at its limit before the measured runs"
        )
        if tw.get("waited_seconds"):
            text += (
                f", after {tw['waited_seconds']:.0f} s of waiting for bursts of expiring "
                "TIME_WAIT sockets to pass"
            )
        retries = tw.get("retries")
        text += f"; {retries} run(s) left it and were made once more." if retries else "."
    if tw.get("gave_up"):
        text += f" The table could not be kept at its limit: {tw['gave_up']}."
    if tw.get("mode") == "as-is":
        text += " The table was left as it was (`--tw-regime as-is`)."
    return text


def _tw_limit(data: dict[str, Any]) -> int | None:
    """The TIME_WAIT limit of the run: from its records, else from the machine's facts."""
    for rec in data["records"]:
        if rec.get("tw_limit") is not None:
            limit: int = rec["tw_limit"]
            return limit
    tw = data.get("time_wait") or {}
    if tw.get("limit") is not None:
        return int(tw["limit"])
    raw = str(data.get("machine", {}).get("tcp_max_tw_buckets", ""))
    return int(raw) if raw.isdigit() else None


def _crossing_lines(rows: dict[str, Any]) -> list[str]:
    """What a C driver's crossings into pywsk cost (impl_cdriver measures it)."""
    lines: list[str] = []
    for impl, row in rows.items():
        if "crossing_ns" in row:
            lines += [
                "",
                f"{impl}: one C -> Python crossing costs {row['crossing_ns']:,.0f} ns "
                f"({row['crossing_call_ns']:,.0f} ns for the whole KeGetCurrentIrql from C, "
                f"median of the runs); the churn client makes "
                f"{row['crossings_per_conn']:.0f} per connection.",
            ]
    return lines


def _why(rec: dict[str, Any]) -> str:
    """Why a run is invalid: the last line a side printed to stderr, else the checks."""
    for side, text in zip(("client", "server"), rec.get("stderr") or [], strict=False):
        last = [line for line in text.strip().splitlines() if line.strip()]
        if last:
            return f"{side}: {last[-1].strip()}"
    return str(rec.get("problems") or rec.get("error"))


def _idle_lines(idle: dict[str, Any]) -> list[str]:
    """The idle comparison: churn with idle connections open vs none, per implementation; a
    ratio only where all of an implementation's runs met one single TIME_WAIT regime."""
    k = idle["idle"]
    lines = [
        "",
        f"**churn with {k:,} idle connections open vs none** (N={idle['n']:,} per run; medians)",
        "",
        f"| impl | conn/s, 0 idle | conn/s, {k:,} idle | ratio | CPU µs/conn, 0 idle "
        f"| CPU µs/conn, {k:,} idle | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    split = False  # an implementation whose runs met more than one regime
    met: dict[str, set[str]] = {}
    for rec in idle["records"]:
        met.setdefault(rec["impl"], set()).add(twregime.regime_of(rec))
    for impl, row in idle["summary"].items():
        regimes = met.get(impl, set())
        if len(regimes) > 1 or not regimes <= set(twregime.SINGLE):
            # The 0-idle and the idle runs did not all meet one kernel regime.
            split = True
            zero, many = row.get("0"), row.get(str(k))
            lines.append(
                f"| {impl} | {_fmt(zero['rate']) if zero else 'invalid'} | "
                f"{_fmt(many['rate']) if many else 'invalid'} | n/a | "
                f"{_fmt(zero['cpu_us']) if zero else ''} | "
                f"{_fmt(many['cpu_us']) if many else ''} | n/a |"
            )
            continue
        if "rate_ratio" not in row:
            bad = [r for r in idle["records"] if r["impl"] == impl and not r["ok"]]
            why = _why(bad[0]) if bad else "no valid pair"
            lines.append(f"| {impl} | invalid: {why} | | | | | |")
            continue
        zero, many = row["0"], row[str(k)]
        lines.append(
            f"| {impl} | {_fmt(zero['rate'])} | {_fmt(many['rate'])} | "
            f"{row['rate_ratio']:.2f} | {_fmt(zero['cpu_us'])} | {_fmt(many['cpu_us'])} | "
            f"{row['cpu_ratio']:.2f} |"
        )
    counts: dict[str, int] = {}
    for rec in idle["records"]:
        counts[twregime.regime_of(rec)] = counts.get(twregime.regime_of(rec), 0) + 1
    limit = next((r["tw_limit"] for r in idle["records"] if r.get("tw_limit")), None)
    lines += [
        "",
        "TIME_WAIT regime of these runs: "
        + ", ".join(f"{twregime.label(g, limit)}: {c}" for g, c in counts.items())
        + (" (n/a: an implementation's runs did not all meet one regime)." if split else "."),
    ]
    return lines


def _scaling_lines(scale: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    idle = scale.get("idle")
    lines += _idle_lines(idle) if idle else []
    heap = scale.get("heap")
    if heap:
        lines += [
            "",
            "**Python heap per idle connection** (tracemalloc; the 4 KiB receive buffer is "
            "non-paged pool, an mmap outside the heap)",
            "",
            "| side | connections | heap B/conn, connected | heap B/conn, WskReceive pending "
            "| RSS B/conn (with receive) |",
            "|---|---|---|---|---|",
        ]
        for name, res in heap.items():
            if not res.get("ok"):
                lines.append(f"| {name} | failed | | | |")
                continue
            with_recv = res.get("heap_bytes_per_conn_with_receive")
            rss = res.get("rss_bytes_per_conn_with_receive", res.get("rss_bytes_per_conn"))
            lines.append(
                f"| {res['side']} | {res['conns']:,} | {_fmt(res['heap_bytes_per_conn'])} | "
                f"{_fmt(with_recv) if with_recv is not None else '—'} | {_fmt(rss or 0)} |"
            )
    finack = scale.get("finack")
    if finack and finack.get("summary"):
        lines += [
            "",
            "**graceful completion after the FIN-ACK moment** (µs from the kernel's "
            "FIN_WAIT1 → FIN_WAIT2 tracepoint to the completion routine)",
            "",
            "| path | samples | median | p90 | min | completed inside the call |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in finack["summary"].items():
            lines.append(
                f"| {name} | {row['samples']} | {row['median_us']:.1f} | {row['p90_us']:.1f} | "
                f"{row['min_us']:.1f} | {row['completed_in_call']} |"
            )
    elif finack and finack.get("skipped"):
        lines += ["", f"FIN-ACK latency: skipped ({finack['skipped']})."]
    return lines


def _measurement_lines(scale: dict[str, Any], churn: dict[str, Any] | None) -> list[str]:
    """Fairness, syscalls per connection, Python calls per operation (when measured)."""
    lines: list[str] = []
    for name in ("fairness", "pycalls"):
        res = scale.get(name)
        if res is not None and not res.get("ok"):
            lines += ["", f"{name}: failed ({str(res.get('stderr', ''))[-300:]})."]
    if scale.get("fairness", {}).get("ok"):
        lines += fairness.markdown_lines(scale["fairness"])
    if "syscalls" in scale:
        lines += syscalls.markdown_lines(scale["syscalls"], churn)
    if scale.get("pycalls", {}).get("ok"):
        lines += pycalls.markdown_lines(scale["pycalls"])
    return lines


def chart(data: dict[str, Any], path: Path) -> Path | None:
    """A PNG of the medians with min - max bars; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    summary = summarize(data)  # from the records: a stored summary may predate a field
    panels = []
    for key, rows in summary.items():
        workload = twregime.kind(key)[0]
        unit, cpu_unit = UNITS.get(workload.split("-")[0], ("MB/s", "CPU s/GiB"))
        regime = next((row["regime"] for row in rows.values() if "regime" in row), None)
        name = f"{workload} (TIME_WAIT {regime})" if regime else workload
        panels.append((name, rows, "median", "min", "max", unit))
        panels.append((name, rows, "cpu", "cpu_min", "cpu_max", cpu_unit))
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels) // 2, 2, figsize=(12, 3.2 * (len(panels) // 2)))
    flat = list(axes.flat) if hasattr(axes, "flat") else [axes]
    for ax, (workload, rows, key, lo, hi, unit) in zip(flat, panels, strict=False):
        names = [n for n, r in rows.items() if key in r]
        values = [rows[n][key] for n in names]
        errors = [
            [rows[n][key] - rows[n][lo] for n in names],
            [rows[n][hi] - rows[n][key] for n in names],
        ]
        colors = [
            "#444444" if n == "c-epoll" else "#d62728" if n.startswith("pywsk") else "#1f77b4"
            for n in names
        ]
        ax.barh(names, values, xerr=errors, color=colors, capsize=3)
        ax.invert_yaxis()
        ax.set_title(f"{workload}: {unit}", fontsize=10)
        ax.tick_params(labelsize=8)
        # Room for the labels; a group of invalid runs only draws no bar.
        ax.set_xlim(0, max((rows[n][hi] for n in names), default=1.0) * 1.18)
        for i, (n, v) in enumerate(zip(names, values, strict=True)):
            # Right of the error bar, so that the two never overlap.
            label = f" {v:,.0f}" if v >= 10 else f" {v:.2f}"
            ax.text(rows[n][hi], i, label, va="center", fontsize=7)
    fig.suptitle(f"pywsk benchmarks, {data.get('started', '')} (medians, min-max bars)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
