"""Syscalls per churn connection, for every implementation and each side, from ``strace``.

Each implementation runs two short churns - ``small`` and ``large`` connections - with both
processes under ``strace -c -f`` (every thread counted; ``-c`` also counts the calls that
failed).  The figures per connection are the differences divided by ``large - small``, so
interpreter start-up, imports, a WSK registration and exit cancel out.  Both runs must
verify like any churn run (every byte, both sides).

strace slows every syscall down, so counts that depend on timing - ``epoll_wait`` wake-ups,
``futex`` hand-offs between threads, reads that find nothing (``EAGAIN``) - are those of a
slowed run; counts that the program's structure fixes (``socket``, ``connect``,
``epoll_ctl``, ``shutdown``, ``getsockopt``) are exact.  Skipped when ``strace`` is absent
(``scripts/run`` installs it) or cannot trace here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .run import Impl

#: Runs one churn of ``n`` connections with the given (server, client) argv prefixes.
Churn = Callable[["Impl", int, tuple[list[str], list[str]]], dict[str, Any]]
TOP = 8
#: The goal: syscalls per churn connection at most the C reference's + 4, on each side.
GOAL_OVER_C = 4


def available() -> str | None:
    """None when strace can trace here, else why not."""
    strace = shutil.which("strace")
    if strace is None:
        return "strace is not installed"
    probe = subprocess.run(
        [strace, "-c", "-f", "-o", "/dev/null", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"strace cannot trace here: {probe.stderr.strip()[-200:]}"
    return None


def parse(text: str) -> dict[str, tuple[int, int]]:
    """``strace -c`` output -> syscall -> (calls, errors); ``total`` included.

    The columns are right-aligned under the header, so a value is found by where it ends
    (an empty ``errors`` cell is 0; the ``total`` line may lack ``usecs/call``)."""
    counts: dict[str, tuple[int, int]] = {}
    ends: dict[int, str] = {}
    for line in text.splitlines():
        if line.lstrip().startswith("% time"):
            ends = {m.end(): m.group() for m in re.finditer(r"[a-z/]+", line)}
            continue
        tokens = [(m.end(), m.group()) for m in re.finditer(r"\S+", line)]
        if not ends or len(tokens) < 3 or tokens[0][1].startswith("-"):
            continue
        cells = {ends[end]: token for end, token in tokens[:-1] if end in ends}
        counts[tokens[-1][1]] = (int(cells.get("calls", 0)), int(cells.get("errors", 0)))
    return counts


def _traced(impl: Impl, n: int, churn: Churn, work: Path) -> dict[str, Any]:
    files = {side: work / f"{impl.name}-{n}-{side}.strace" for side in ("server", "client")}
    prefix = {side: ["strace", "-c", "-f", "-o", str(path)] for side, path in files.items()}
    record = churn(impl, n, (prefix["server"], prefix["client"]))
    record["strace"] = {
        side: parse(path.read_text()) if path.exists() else {} for side, path in files.items()
    }
    return record


def _per_conn(
    small: dict[str, tuple[int, int]], large: dict[str, tuple[int, int]], conns: int
) -> dict[str, Any]:
    names = set(small) | set(large)
    calls = {
        name: (large.get(name, (0, 0))[0] - small.get(name, (0, 0))[0]) / conns for name in names
    }
    errors = {
        name: (large.get(name, (0, 0))[1] - small.get(name, (0, 0))[1]) / conns for name in names
    }
    counted = (n for n in names if n != "total" and calls[n] >= 0.05)
    top = sorted(counted, key=lambda n: -calls[n])[:TOP]
    return {
        "total": calls.get("total", 0.0),
        "errors": errors.get("total", 0.0),
        "epoll_ctl": calls.get("epoll_ctl", 0.0),
        "epoll_ctl_errors": errors.get("epoll_ctl", 0.0),
        "top": [(n, round(calls[n], 2), round(errors[n], 2)) for n in top],
        "failing": sorted(
            ((n, round(e, 2)) for n, e in errors.items() if n != "total" and e >= 0.05),
            key=lambda item: -item[1],
        ),
    }


def run(impls: list[Impl], churn: Churn, small: int, large: int) -> dict[str, Any]:
    """Syscalls per connection for each implementation (see the module notes)."""
    why = available()
    if why is not None:
        return {"skipped": why}
    out: dict[str, Any] = {"small": small, "large": large, "impls": {}}
    with tempfile.TemporaryDirectory(prefix="pywsk-strace-") as tmp:
        for impl in impls:
            if "churn" not in impl.workloads:
                continue
            runs = [_traced(impl, n, churn, Path(tmp)) for n in (small, large)]
            bad = [r for r in runs if not r["ok"] or not all(r["strace"].values())]
            if bad:
                out["impls"][impl.name] = {
                    "ok": False,
                    "problems": bad[0].get("problems") or bad[0].get("error"),
                }
                print(f"  syscalls {impl.name:13s} INVALID {out['impls'][impl.name]}", flush=True)
                continue
            row = {
                side: _per_conn(runs[0]["strace"][side], runs[1]["strace"][side], large - small)
                for side in ("client", "server")
            }
            out["impls"][impl.name] = {"ok": True, **row}
            print(
                f"  syscalls {impl.name:13s} client {row['client']['total']:6.1f} "
                f"server {row['server']['total']:6.1f} per connection",
                flush=True,
            )
    return out


def invalid_runs(result: dict[str, Any]) -> list[Any]:
    return [row for row in result.get("impls", {}).values() if not row.get("ok")]


def markdown_lines(result: dict[str, Any], churn: dict[str, Any] | None) -> list[str]:
    """The syscall table, beside conn/s and CPU of the churn table of the same run."""
    if result.get("skipped"):
        return ["", f"Syscalls per connection: skipped ({result['skipped']})."]
    rows = result.get("impls") or {}
    if not rows:
        return []
    churn = churn or {}
    c = rows.get("c-epoll", {})
    lines = [
        "",
        f"**syscalls per churn connection** (`strace -c -f`, runs of {result['small']:,} and "
        f"{result['large']:,} connections, the difference per connection; errors = calls that "
        "failed)",
        "",
        "| impl | client | server | x C (cli / srv) | <= C + 4 | epoll_ctl (failed) cli / srv "
        "| failed calls cli / srv | conn/s | CPU µs/conn (kernel) | client's top syscalls (failed) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        if not row.get("ok"):
            lines.append(f"| {name} | invalid: {row.get('problems')} | | | | | | | | |")
            continue
        cli, srv = row["client"], row["server"]
        ratio = goal = "n/a"
        if c.get("ok") and c["client"]["total"] and c["server"]["total"]:
            ratio = (
                f"{cli['total'] / c['client']['total']:.2f} / "
                f"{srv['total'] / c['server']['total']:.2f}"
            )
            met = (
                cli["total"] <= c["client"]["total"] + GOAL_OVER_C
                and srv["total"] <= c["server"]["total"] + GOAL_OVER_C
            )
            goal = "yes" if met else "no"
        rate = churn.get(name, {})
        conn_s = f"{rate['median']:,.0f}" if "median" in rate else "n/a"
        cpu = f"{rate['cpu']:,.0f}" if "cpu" in rate else "n/a"
        if "sys_us" in rate:
            cpu += f" ({rate['sys_us']:,.0f})"
        top = ", ".join(
            f"{n} {calls:g}" + (f" ({errors:g})" if errors else "")
            for n, calls, errors in cli["top"]
        )
        lines.append(
            f"| {name} | {cli['total']:.1f} | {srv['total']:.1f} | {ratio} | {goal} | "
            f"{cli['epoll_ctl']:.1f} ({cli['epoll_ctl_errors']:.1f}) / "
            f"{srv['epoll_ctl']:.1f} ({srv['epoll_ctl_errors']:.1f}) | "
            f"{cli['errors']:.1f} / {srv['errors']:.1f} | {conn_s} | {cpu} | {top} |"
        )
    lines += ["", "Server side, top syscalls per connection (failed):", ""]
    lines += [f"* {name}: {_top(row['server'])}" for name, row in rows.items() if row.get("ok")]
    return lines


def _top(side: dict[str, Any]) -> str:
    return ", ".join(
        f"{n} {calls:g}" + (f" ({errors:g})" if errors else "") for n, calls, errors in side["top"]
    )
