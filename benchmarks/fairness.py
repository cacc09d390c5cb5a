"""Fairness figures: how long a graceful WskDisconnect waits for another socket's receive
chain, and when its FIN reaches the wire.

``python -m benchmarks.fairness TRIES`` runs the two scenarios of
:mod:`pywsk.testing.fairness` (the ones ``tests/provider/test_fairness.py`` asserts on)
``TRIES`` times each, interleaved, and prints one JSON line:

* **other socket** - socket A downloads 128 MiB through the driver receive chain (64 KiB
  WskReceives re-issued by the completion routine after a pended receive, by the issuing
  loop while they complete inside the call); once it is running, this thread makes a
  graceful WskDisconnect on socket B.  Goals: the call returns within 5 ms (p99), and B's
  FIN is on the wire at most 1 ms (p99) after the return.
* **same socket** - the same call on A itself while its peer keeps sending.  Goals: it
  returns within 5 ms, our FIN is on the wire within 5 ms of the return, and always before
  the peer's FIN.

FIN times come from a packet capture on ``lo`` (root and tcpdump; only SYN/FIN/RST
segments are captured).  Without one, the figure is when the peer - a process of its own,
blocked in ``recv`` - read the FIN: an upper bound of the wire time (``fin_source`` says
which).  A FIN that left before the call returned gives a negative figure.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

#: Goals from the execution-model issue, in milliseconds.
GOALS = {
    "other socket": {"return_p99_ms": 5.0, "fin_after_return_p99_ms": 1.0},
    "same socket": {"return_p99_ms": 5.0, "fin_after_return_p99_ms": 5.0},
}


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 0.5),
        "p99": percentile(values, 0.99),
        "max": max(values),
        "min": min(values),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def summarize(tries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per scenario: spreads of the return and of the FIN after it (ms), and counts."""
    out: dict[str, Any] = {}
    for scenario, goals in GOALS.items():
        mine = [t for t in tries if t["scenario"] == scenario]
        if not mine:
            continue
        returned = [t["returned_ms"] for t in mine]
        fins = [t["fin_after_return_ms"] for t in mine if t["fin_after_return_ms"] is not None]
        starts = [t["fin_after_start_ms"] for t in mine if t["fin_after_start_ms"] is not None]
        completed = [
            t["completed_after_return_ms"]
            for t in mine
            if t.get("completed_after_return_ms") is not None
        ]
        row: dict[str, Any] = {
            "tries": len(mine),
            "return_ms": _spread(returned),
            "fin_after_return_ms": _spread(fins) if fins else None,
            "fin_after_start_ms": _spread(starts) if starts else None,
            "completed_after_return_ms": _spread(completed) if completed else None,
            "fin_source": mine[0]["fin_source"],
            "our_fin_first": sum(1 for t in mine if t["our_fin_first"]),
            "first_known": sum(1 for t in mine if t["our_fin_first"] is not None),
            "chain_intact": sum(1 for t in mine if t["chain_intact"]),
        }
        row["goals"] = goals
        row["met"] = {
            "return": row["return_ms"]["p99"] <= goals["return_p99_ms"],
            "fin": bool(fins)
            and row["fin_after_return_ms"]["p99"] <= goals["fin_after_return_p99_ms"],
            "always_first": row["our_fin_first"] == len(mine),
        }
        out[scenario] = row
    return out


def run(tries: int, capture: bool = True) -> dict[str, Any]:
    from pywsk.testing.driver import WskTestClient
    from pywsk.testing.fairness import FairnessTry, disconnect_other, disconnect_same

    scenarios: tuple[Callable[..., FairnessTry], ...] = (
        disconnect_other,
        disconnect_same,
    )
    records: list[dict[str, Any]] = []
    client = WskTestClient()
    try:
        for _ in range(tries):
            for scenario in scenarios:
                one = scenario(client, capture=capture)
                wire = one.fin_after_return
                fin = wire if wire is not None else one.peer_saw_fin_after_return
                returned = one.returned_after
                records.append(
                    {
                        "scenario": one.scenario,
                        "returned_ms": returned * 1e3,
                        "fin_after_return_ms": None if fin is None else fin * 1e3,
                        "fin_after_start_ms": None if fin is None else (fin + returned) * 1e3,
                        "fin_source": "capture" if wire is not None else "peer recv",
                        "completed_after_return_ms": _ms(one.completed_after_return),
                        "our_fin_first": one.our_fin_first,
                        "chain_intact": one.chain_intact,
                        "chain_pends": one.chain_completions - one.chain_inline,
                        "disconnect_returned": one.disconnect.returned if one.disconnect else None,
                    }
                )
                client.free_requests()
    finally:
        client.close()
    return {"tries": records, "summary": summarize(records)}


def markdown_lines(result: dict[str, Any]) -> list[str]:
    """The table of docs/performance.md for a fairness result."""
    summary = result.get("summary") or {}
    if not summary:
        return []
    lines = [
        "",
        "**fairness: a graceful WskDisconnect beside a full-speed receive chain** (ms; "
        "FIN after the call's return, negative = before it; \"our FIN first\": B's FIN "
        "before the FIN that ends A's download, or our FIN before the peer's)",
        "",
        "| scenario | tries | return p50 | return p99 | FIN after return p50 | p99 "
        "| FIN after the call began p99 | completion after return p50 / p99 | our FIN first "
        "| goals met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario, row in summary.items():
        fin, start = row["fin_after_return_ms"], row["fin_after_start_ms"]
        fin_text = (
            f"{fin['p50']:.3f} | {fin['p99']:.3f} ({row['fin_source']}) | {start['p99']:.3f}"
            if fin and start
            else "n/a | n/a | n/a"
        )
        first = f"{row['our_fin_first']}/{row['first_known']}" if row["first_known"] else "n/a"
        done = row.get("completed_after_return_ms")
        done_text = f"{done['p50']:.3f} / {done['p99']:.3f}" if done else "n/a"
        met = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in row["met"].items())
        lines.append(
            f"| {scenario} | {row['tries']} | {row['return_ms']['p50']:.3f} | "
            f"{row['return_ms']['p99']:.3f} | {fin_text} | {done_text} | {first} | {met} |"
        )
    return lines


def main(argv: list[str]) -> int:
    """``TRIES [--no-capture]`` (without a capture, FIN times are the peer's reads)."""
    tries = int(argv[0]) if argv and argv[0].isdigit() else 40
    print(json.dumps(run(tries, capture="--no-capture" not in argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
