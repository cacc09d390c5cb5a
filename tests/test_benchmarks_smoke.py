"""Smoke test of the benchmark harness: ``python -m benchmarks --quick`` works end to end.

It checks that every implementation runs, that every run's byte counts verify on both
sides, and that the results, the table and the scaling measurements are written; that each
churn run carries its TIME_WAIT regime (``--quick`` leaves the table as it is) and that no
"x C" ratio compares runs of different regimes.  It asserts
nothing about speed.  Skipped when gcc (for the C reference) is missing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def quick_run(tmp_path: Path, tag: str, *args: str) -> dict[str, Any]:
    """``python -m benchmarks --quick ARGS`` writing to ``tmp_path``; its results JSON."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            *args,
            "--out",
            str(tmp_path),
            "--tag",
            tag,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=85,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data: dict[str, Any] = json.loads((tmp_path / f"{tag}.json").read_text())
    return data


@pytest.mark.timeout(90)
def test_quick_run_verifies_every_byte(tmp_path: Path) -> None:
    # The workloads only: the scaling measurements (idle churn, heap, FIN-ACK latency)
    # belong to full runs, where a failed sample is reported rather than fatal.
    data = quick_run(tmp_path, "smoke", "--scaling", "none")
    records = data["records"]
    impls = {r["impl"] for r in records}
    assert {"c-epoll", "selectors", "asyncio", "uvloop", "pywsk"} <= impls
    assert {r["workload"] for r in records} == {
        "churn",
        "bulk",
        "bulk-cubic",
        "dgram-64",
        "dgram-1400",
    }
    dgram_impls = {r["impl"] for r in records if r["workload"].startswith("dgram-")}
    assert {"c-epoll", "asyncio", "uvloop", "pywsk", "pywsk.aio"} <= dgram_impls
    for rec in records:
        assert rec["ok"], rec
        if rec["workload"].startswith("dgram-"):
            n, size = rec["n"], rec["size"]
            for side in ("client", "server"):
                assert rec[side]["datagrams"] == n  # every datagram echoed and counted
                assert rec[side]["bytes"] == n * size
                assert rec[side]["bad"] == 0
        elif rec["workload"] == "churn":
            n = rec["n"]
            for side in ("client", "server"):
                assert rec[side]["conns"] == n
                assert rec[side]["bytes"] == n * 1024
                assert rec[side]["bad"] == 0
        else:
            assert rec["client"]["bytes"] == rec["bytes"]
            assert rec["server"]["bytes"] == rec["bytes"]
    table = (tmp_path / "smoke.md").read_text()
    assert table.startswith("Run ")
    # --quick leaves the TIME_WAIT table as it is: each churn run is classified, the churn
    # tables are grouped by regime and every "x C" compares runs of one single regime.
    churn = [r for r in records if r["workload"] == "churn"]
    assert {r["tw_regime"] for r in churn} <= {"full", "filling", "mixed", "unknown"}
    assert data["time_wait"]["mode"] == "as-is"
    assert data["time_wait"]["fill_runs"] == 0
    assert sum(data["time_wait"]["runs_per_regime"].values()) == len(churn)
    groups = {k: rows for k, rows in data["summary"].items() if k.partition("@")[0] == "churn"}
    assert sum(row["runs"] for rows in groups.values() for row in rows.values()) == len(churn)
    for rows in groups.values():
        for row in rows.values():
            if "ratio" in row:
                assert row["regime"] in ("full", "filling")
                assert row["regime"] == rows["c-epoll"]["regime"]
    # One line under each churn table says which regime its runs met.
    said = re.findall(r"^(?:All|\d+ of \d+) runs with the TIME_WAIT ", table, re.MULTILINE)
    assert len(said) == len(groups)
    assert "The table was left as it was (`--tw-regime as-is`)." in table


@pytest.mark.timeout(90)
def test_quick_measurements_of_fairness_syscalls_and_python_calls(tmp_path: Path) -> None:
    """The measurements of the execution model (fairness, strace, Python calls) run and
    report: C and the faithful pywsk only, churn only, the smallest figures."""
    scale = quick_run(
        tmp_path,
        "measure",
        *("--impls", "c-epoll,pywsk", "--workloads", "churn", "--no-chart"),
        *("--scaling", "fairness,syscalls,pycalls"),
    )["scaling"]

    fairness = scale["fairness"]["summary"]
    assert set(fairness) == {"other socket", "same socket"}
    for row in fairness.values():
        assert row["tries"] == 2
        assert row["chain_intact"] == 2  # every download arrived whole
        assert row["return_ms"]["max"] > 0
        assert row["fin_after_return_ms"] is not None

    syscalls = scale["syscalls"]
    if shutil.which("strace") is None:
        assert "skipped" in syscalls
    elif "skipped" not in syscalls:  # strace may be unable to trace in a container
        for impl in ("c-epoll", "pywsk"):
            row = syscalls["impls"][impl]
            assert row["ok"], row
            for side in ("client", "server"):
                # At least socket/accept, a read and close: the per-connection work.
                assert row[side]["total"] >= 3, row

    pycalls = scale["pycalls"]
    assert pycalls["ok"], pycalls
    assert pycalls["send"]["thread"]["calls_pywsk"] > 0
    assert pycalls["churn"]["client"]["calls"] > 0
    assert pycalls["churn"]["server"]["calls"] > 0
    table = (tmp_path / "measure.md").read_text()
    assert "fairness" in table
    assert "Python calls per operation" in table
