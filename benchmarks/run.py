"""The benchmark driver: every implementation, every workload, interleaved, verified.

``python -m benchmarks`` (or ``python benchmarks/run.py``) compiles the C reference with gcc,
then for each repetition runs every workload with every implementation once - round-robin,
in an order rotated per repetition - so hypervisor steal and neighbours' load hit all of
them alike and each ratio to C comes from the same run.  Server and client are separate
processes (two cores: one each, unpinned).  Each run's byte counts are checked on both sides;
a run with any mismatch is *invalid*: it is kept in the results, marked, and left out of
every median.  Then the scaling measurements (:mod:`benchmarks.scaling`) and those of the
execution model run - fairness (:mod:`benchmarks.fairness`), syscalls per churn connection
(:mod:`benchmarks.syscalls`, strace) and Python calls per operation
(:mod:`benchmarks.pycalls`) - and the results are written as JSON, a Markdown table and
(with matplotlib) a PNG chart.

Churn runs meet one of two kernel regimes (:mod:`benchmarks.twregime`): while the TIME_WAIT
table is below ``net.ipv4.tcp_max_tw_buckets`` each connection leaves a TIME_WAIT socket and
costs more kernel CPU; at the limit it leaves none.  With ``--tw-regime full`` (the default)
the harness brings the table to its limit before each measured churn run with unmeasured
churns of the C reference (their records are not kept; a bounded number, after which it
gives up for the session and says so), waits out a burst of TIME_WAIT sockets that would
expire during the run, and makes a run that still left the regime once more.  Every churn
record carries its regime (``tw_regime``, from the kernel's count of closes that found the
table full), the results JSON the session's (``time_wait``), and the tables are grouped by
regime with a line under each; "x C" is never computed across regimes.
``--tw-regime as-is`` fills nothing and keeps the grouping.

``--quick`` is the smoke run for CI: small N, one repetition, small scaling figures, and
``--tw-regime as-is`` (filling 131,072 TIME_WAIT sockets would take it minutes); it checks
that every implementation works and verifies, and asserts nothing about speed.  The exit
status is non-zero when any run was invalid.

The machine is left as it is: no sysctl is changed (the table is filled by ordinary
connections, and drains by itself 60 s later).  The number of TIME_WAIT sockets before
each run is recorded (``tw_before``), as is CPU steal.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from . import report, scaling, syscalls, twregime
from .common import BATCH
from .machine import cpu_jiffies, machine, raise_fd_limit
from .twregime import TimeWaitKeeper, tw_count

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STREAM_WORKLOADS = ("churn", "bulk", "bulk-cubic")
#: One UDP socket per side, datagrams echoed in batches (benchmarks/common.py).
DGRAM_WORKLOADS = ("dgram-64", "dgram-1400")
WORKLOADS = STREAM_WORKLOADS + DGRAM_WORKLOADS
#: The measurements after the workloads: scaling (idle, heap, finack), then fairness,
#: syscalls per connection (strace) and Python calls per operation.
MEASUREMENTS = ("idle", "heap", "finack", "fairness", "syscalls", "pycalls")


@dataclass(frozen=True)
class Impl:
    """One implementation: how to start it, and which workloads it takes part in."""

    name: str
    argv: tuple[str, ...]
    workloads: tuple[str, ...] = WORKLOADS
    note: str = ""


@dataclass
class Config:
    n: int = 20_000
    conc: int = 64
    bulk_bytes: int = 1 << 30
    dgram_n: int = 200_000
    reps: int = 5
    pause: float = 1.0
    timeout: float = 300.0
    scaling: scaling.ScalingConfig = field(default_factory=scaling.ScalingConfig)


FULL = Config()
QUICK = Config(
    n=300,
    conc=16,
    bulk_bytes=16 << 20,
    dgram_n=2_000,
    reps=1,
    pause=0.0,
    timeout=60.0,
    scaling=scaling.ScalingConfig(
        idle=100,
        idle_n=200,
        idle_reps=1,
        idle_impls=("pywsk",),
        heap_conns=100,
        finack_samples=10,
        fairness_tries=2,
        strace_small=20,
        strace_large=120,
        pycalls_sends=200,
        pycalls_conns=50,
    ),
)


def build_c(source: Path, out_dir: Path) -> Path:
    """Compile a C program of the harness with ``gcc -O2``."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise SystemExit("gcc is needed to build the C reference (benchmarks/cnet.c)")
    binary = out_dir / source.stem
    subprocess.run([gcc, "-O2", "-Wall", "-o", str(binary), str(source)], check=True)
    return binary


def build_cdriver(out_dir: Path) -> Path | None:
    """Build the churn C driver (``cchurn.c``) with ``pywsk driver build``; None without
    cffi (the extra pywsk[c]), or when the build fails (said on stderr)."""
    try:
        from pywsk.cdriver import BuildError, build_driver

        return build_driver([HERE / "cchurn.c"], out_dir / "cchurn.so", debug=False)
    except (ImportError, BuildError) as exc:
        print(f"the C driver is left out: {exc}", file=sys.stderr)
        return None


def aio_available() -> bool:
    """True when the Pythonic layer ``pywsk.aio`` exists in this checkout."""
    try:
        import pywsk.aio  # noqa: F401
    except ImportError:
        return False
    return True


def implementations(cnet: Path, cdriver: Path | None = None) -> list[Impl]:
    py = (sys.executable, "-m")
    impls = [
        Impl("c-epoll", (str(cnet),)),
        Impl("selectors", (*py, "benchmarks.impl_selectors"), STREAM_WORKLOADS),
        Impl("asyncio", (*py, "benchmarks.impl_asyncio")),
        Impl("uvloop", (*py, "benchmarks.impl_uvloop")),
        Impl("trio", (*py, "benchmarks.impl_trio"), STREAM_WORKLOADS),
        Impl("pywsk", (*py, "benchmarks.impl_pywsk")),
    ]
    if aio_available():
        impls.append(Impl("pywsk.aio", (*py, "benchmarks.impl_aio")))
        impls.append(Impl("pywsk.aio-proto", (*py, "benchmarks.impl_aio_proto"), STREAM_WORKLOADS))
    if cdriver is not None:
        impls.append(Impl("pywsk-c", (*py, "benchmarks.impl_cdriver", str(cdriver)), ("churn",)))
    return impls


# --------------------------------------------------------------------------- runs ---


@dataclass
class Proc:
    """A child process and what it left."""

    popen: subprocess.Popen[str]
    rusage: tuple[float, float] = (0.0, 0.0)
    out: str = ""
    err: str = ""


def _start(argv: list[str]) -> Proc:
    popen = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Proc(popen)


def _exited(proc: Proc) -> bool:
    """True once the process has exited (without reaping it: ``_reap`` wants its rusage)."""
    info = os.waitid(os.P_PID, proc.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return info is not None


def _release_when_idle_accepted(server: Proc, client: Proc, timeout: float) -> None:
    """Wait for the server's "IDLE-READY" (every idle connection accepted), then tell the
    client to start its churn."""
    assert server.popen.stdout is not None
    assert client.popen.stdin is not None
    sel = selectors.DefaultSelector()
    sel.register(server.popen.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(1.0) and server.popen.stdout.readline().strip() == "IDLE-READY":
            break
        if _exited(client) or _exited(server):
            return
    client.popen.stdin.write("go\n")
    client.popen.stdin.flush()


def _read_ports(proc: Proc, timeout: float) -> list[int]:
    """The port(s) a server announces on its first line: the service port, and with idle
    connections the port they go to."""
    assert proc.popen.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.popen.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        raise TimeoutError("the server announced no port")
    line = proc.popen.stdout.readline()
    if not line.startswith("PORT "):
        raise RuntimeError(f"the server said {line!r}")
    return [int(p) for p in line.split()[1:]]


def _reap(proc: Proc, deadline: float, tick: Callable[[], None] | None = None) -> None:
    """Wait for the process (killing it at ``deadline``), with its rusage and output;
    ``tick`` is called while waiting."""
    while True:
        pid, status, ru = os.wait4(proc.popen.pid, os.WNOHANG)
        if tick is not None:
            tick()
        if pid:
            proc.popen.returncode = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            proc.popen.kill()
            pid, status, ru = os.wait4(proc.popen.pid, 0)
            proc.popen.returncode = -9
            break
        time.sleep(0.005)
    proc.rusage = (ru.ru_utime, ru.ru_stime)
    out, err = proc.popen.communicate()
    proc.out, proc.err = out, err


def _result_line(out: str) -> dict[str, Any]:
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            parsed: dict[str, Any] = json.loads(line)
            return parsed
    return {}


def run_pair(
    impl: Impl,
    server_args: list[str],
    client_args: list[str],
    timeout: float,
    idle: int = 0,
    wrappers: tuple[list[str], list[str]] = ([], []),
) -> dict[str, Any]:
    """Start the server, then the client with the server's port; collect both results.
    ``wrappers`` are argv prefixes for the server and the client (``strace ...``)."""
    watch = twregime.TwWatch()
    steal0 = cpu_jiffies()
    server = _start([*wrappers[0], *impl.argv, *server_args])
    record: dict[str, Any] = {"impl": impl.name, "tw_before": watch.before}
    try:
        ports = _read_ports(server, 30.0)
    except (TimeoutError, RuntimeError) as exc:
        server.popen.kill()
        _reap(server, time.monotonic())
        return {**record, "ok": False, "error": f"{exc}; stderr: {server.err[-2000:]}"}
    t0 = time.monotonic()
    fill = {"{port}": str(ports[0]), "{idle_port}": str(ports[-1])}
    client = _start([*wrappers[1], *impl.argv, *[fill.get(a, a) for a in client_args]])
    if idle:
        _release_when_idle_accepted(server, client, timeout)
    _reap(client, t0 + timeout, watch.sample)
    record["wall"] = time.monotonic() - t0
    _reap(server, time.monotonic() + 30.0)
    steal1 = cpu_jiffies()
    record.update(
        watch.finish(),
        client=_result_line(client.out),
        server=_result_line(server.out),
        rc=[client.popen.returncode, server.popen.returncode],
        rusage_client=client.rusage,
        rusage_server=server.rusage,
        steal_pct=100.0 * (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1]),
    )
    if client.popen.returncode or server.popen.returncode:
        record["stderr"] = [client.err[-3000:], server.err[-3000:]]
    return record


def run_churn(
    impl: Impl,
    cfg: Config,
    idle: int = 0,
    wrappers: tuple[list[str], list[str]] = ([], []),
    keeper: TimeWaitKeeper | None = None,
) -> dict[str, Any]:
    """One churn run, verified and classified by its TIME_WAIT regime; ``keeper`` readies
    the table first."""
    if keeper is not None:
        keeper.ready(impl.name)
    rec = run_pair(
        impl,
        ["churn-server", str(cfg.n), str(idle)],
        ["churn-client", "{port}", str(cfg.n), str(cfg.conc), str(idle), "{idle_port}"],
        cfg.timeout,
        idle,
        wrappers,
    )
    rec.update(workload="churn", n=cfg.n, conc=cfg.conc, idle=idle)
    limit = twregime.tw_limit()
    low, high = rec.get("tw_low", rec["tw_before"]), rec.get("tw_high", rec["tw_before"])
    regime = twregime.classify(low, high, limit, cfg.n, rec.get("tw_overflow"))
    rec.update(tw_limit=limit, tw_regime=regime)
    verify_churn(rec, cfg.n)
    if keeper is not None:
        keeper.saw(rec)
    return rec


def verify_churn(rec: dict[str, Any], n: int) -> dict[str, Any]:
    cli, srv = rec.get("client", {}), rec.get("server", {})
    problems = []
    if rec.get("rc") != [0, 0]:
        problems.append(f"exit codes {rec.get('rc')}")
    for side, res in (("client", cli), ("server", srv)):
        if res.get("conns") != n:
            problems.append(f"{side} conns {res.get('conns')} != {n}")
        if res.get("bytes") != n * 1024:
            problems.append(f"{side} bytes {res.get('bytes')} != {n * 1024}")
        if res.get("bad", 1) != 0:
            problems.append(f"{side} bad {res.get('bad')}")
    rec["ok"] = not problems and "error" not in rec
    if problems:
        rec["problems"] = problems
    if rec["ok"]:
        rec["metric"] = cli["rate"]
        rec["cpu_total"] = cli["cpu"] + srv["cpu"]
    return rec


def run_bulk(impl: Impl, cfg: Config, cc: str) -> dict[str, Any]:
    rec = run_pair(
        impl,
        ["bulk-recv"],
        ["bulk-send", "{port}", str(cfg.bulk_bytes), cc],
        min(cfg.timeout, 120.0),
    )
    rec.update(workload="bulk" if cc == "default" else f"bulk-{cc}", bytes=cfg.bulk_bytes, cc=cc)
    snd, rcv = rec.get("client", {}), rec.get("server", {})
    problems = []
    if rec.get("rc") != [0, 0]:
        problems.append(f"exit codes {rec.get('rc')}")
    for side, res in (("sender", snd), ("receiver", rcv)):
        if res.get("bytes") != cfg.bulk_bytes:
            problems.append(f"{side} bytes {res.get('bytes')} != {cfg.bulk_bytes}")
    rec["ok"] = not problems and "error" not in rec
    if problems:
        rec["problems"] = problems
    if rec["ok"]:
        rec["metric"] = snd["MBps"]
        rec["cpu_total"] = snd["cpu"] + rcv["cpu"]
    return rec


def run_dgram(impl: Impl, cfg: Config, size: int) -> dict[str, Any]:
    """The datagram workload: ``cfg.dgram_n`` datagrams of ``size`` bytes echoed, BATCH in
    flight; every echo checked by the client, every datagram counted by the server."""
    n, batch = cfg.dgram_n, str(BATCH)
    rec = run_pair(
        impl,
        ["dgram-server", str(n), str(size), batch],
        ["dgram-client", "{port}", str(n), str(size), batch],
        min(cfg.timeout, 120.0),
    )
    rec.update(workload=f"dgram-{size}", n=n, size=size, batch=BATCH)
    problems = []
    if rec.get("rc") != [0, 0]:
        problems.append(f"exit codes {rec.get('rc')}")
    for side in ("client", "server"):
        res = rec.get(side, {})
        if res.get("datagrams") != n or res.get("bytes") != n * size:
            problems.append(f"{side} {res.get('datagrams')} datagrams, {res.get('bytes')} B")
        if res.get("bad", 1) != 0:
            problems.append(f"{side} bad {res.get('bad')}")
    rec["ok"] = not problems and "error" not in rec
    if problems:
        rec["problems"] = problems
    if rec["ok"]:
        rec["metric"] = rec["client"]["rate"]
        rec["cpu_total"] = rec["client"]["cpu"] + rec["server"]["cpu"]
    return rec


def run_workload(
    impl: Impl, workload: str, cfg: Config, keeper: TimeWaitKeeper | None = None
) -> dict[str, Any]:
    if workload.startswith("dgram-"):
        return run_dgram(impl, cfg, int(workload.split("-", 1)[1]))
    if workload == "churn":
        return run_churn(impl, cfg, keeper=keeper)
    return run_bulk(impl, cfg, "default" if workload == "bulk" else workload.split("-", 1)[1])


def _progress(rec: dict[str, Any]) -> None:
    metric = rec.get("metric")
    shown = f"{metric:10.1f}" if metric is not None else "   INVALID"
    cpu = rec.get("cpu_total")
    cpu_s = f"cpu={cpu:6.2f}s" if cpu is not None else "cpu=   n/a"
    why = "" if rec["ok"] else f"  {rec.get('problems') or rec.get('error')}"
    regime = f" ({rec['tw_regime']})" if "tw_regime" in rec else ""
    print(
        f"  rep {rec.get('rep', '-')} {rec['workload']:10s} {rec['impl']:13s} {shown} "
        f"{cpu_s} tw={rec.get('tw_before')}{regime} steal={rec.get('steal_pct', 0):.0f}%{why}",
        flush=True,
    )


def rotated(items: list[Impl], k: int) -> Iterator[Impl]:
    """``items`` starting at position ``k`` (so no implementation always runs first)."""
    k %= max(1, len(items))
    yield from items[k:] + items[:k]


def run_all(
    cfg: Config, impls: list[Impl], workloads: list[str], log: Path, keeper: TimeWaitKeeper
) -> list[dict[str, Any]]:
    """Every workload with every implementation, ``cfg.reps`` times; each record is also
    appended to ``log`` (JSON lines) as soon as it exists.  Before each churn run ``keeper``
    readies the TIME_WAIT table; a churn run that left the full regime while the keeper
    kept it is kept (marked by its regime) and made once more."""
    records = []
    with log.open("w") as sink:
        for rep in range(cfg.reps):
            for workload in workloads:
                for impl in rotated([i for i in impls if workload in i.workloads], rep):
                    for attempt in (1, 2):
                        rec = run_workload(impl, workload, cfg, keeper)
                        rec["rep"] = rep
                        records.append(rec)
                        sink.write(json.dumps(rec) + "\n")
                        sink.flush()
                        _progress(rec)
                        time.sleep(cfg.pause)
                        if not keeper.again(rec, attempt):
                            break
    return records


# --------------------------------------------------------------------------- main ---


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smoke run: small N, 1 repetition")
    ap.add_argument("--reps", type=int, help="repetitions (default 5; quick 1)")
    ap.add_argument("--n", type=int, help="churn connections per run (default 20000)")
    ap.add_argument("--conc", type=int, help="churn connections in flight (default 64)")
    ap.add_argument("--bulk-bytes", type=int, help="bulk bytes per run (default 1 GiB)")
    ap.add_argument("--dgram-n", type=int, help="datagrams echoed per run (default 200000)")
    ap.add_argument("--impls", help="comma list of implementations (default: all available)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="comma list")
    ap.add_argument(
        "--scaling",
        default=",".join(MEASUREMENTS),
        help="comma list of the measurements after the workloads "
        f"({', '.join(MEASUREMENTS)}), or 'none'",
    )
    ap.add_argument("--out", type=Path, help="results directory (default benchmarks/results)")
    ap.add_argument("--tag", help="name of the result files (default: a timestamp)")
    ap.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    ap.add_argument(
        "--tw-regime",
        choices=twregime.MODES,
        help="full (the default): fill the TIME_WAIT table to its limit with unmeasured C "
        "churns before each measured churn; as-is (the default with --quick): leave it, "
        "classify each run and group the tables by regime",
    )
    ap.add_argument("--report", type=Path, help="only re-render the table of a results JSON")
    ap.add_argument(
        "--records",
        type=Path,
        help="take the workload records from this .jsonl (of an interrupted run) instead of "
        "running the workloads; the scaling measurements still run",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.report is not None:
        data = json.loads(args.report.read_text())
        print(report.markdown(data))
        if not args.no_chart:
            drawn = report.chart(data, args.report.with_suffix(".png"))
            if drawn is not None:
                print(f"chart: {drawn}")
        return 0
    base = QUICK if args.quick else FULL
    cfg = Config(
        n=args.n or base.n,
        conc=args.conc or base.conc,
        bulk_bytes=args.bulk_bytes or base.bulk_bytes,
        dgram_n=args.dgram_n or base.dgram_n,
        reps=args.reps or base.reps,
        pause=base.pause,
        timeout=base.timeout,
        scaling=base.scaling,
    )
    raise_fd_limit()
    out_dir = args.out or HERE / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = args.tag or ("quick" if args.quick else time.strftime("%Y%m%d-%H%M%S"))
    with tempfile.TemporaryDirectory(prefix="pywsk-bench-") as build:
        cnet = build_c(HERE / "cnet.c", Path(build))
        cdriver = build_cdriver(Path(build))
        impls = implementations(cnet, cdriver)
        if args.impls:
            wanted = args.impls.split(",")
            impls = [i for i in impls if i.name in wanted]
        workloads = [w for w in args.workloads.split(",") if w]
        started = time.time()
        facts = machine()
        print(f"benchmarks: {', '.join(i.name for i in impls)}; {cfg.reps} repetition(s)")
        c_ref = next(i for i in implementations(cnet) if i.name == "c-epoll")
        filling = replace(cfg, n=max(cfg.n, FULL.n))  # fill runs: at least the default N
        keeper = TimeWaitKeeper(
            mode=args.tw_regime or ("as-is" if args.quick else "full"),
            limit=twregime.tw_limit(),
            n=cfg.n,
            fill=lambda: run_churn(c_ref, filling),
            fill_n=filling.n,
        )
        if args.records is not None:
            lines = args.records.read_text().split("\n")
            records = [json.loads(line.strip("\0")) for line in lines if line.strip("\0")]
            print(f"{len(records)} workload records from {args.records}")
        else:
            if "churn" in workloads:
                print(f"TIME_WAIT: {keeper.mode}; limit {keeper.limit}, now {tw_count()}")
            records = run_all(cfg, impls, workloads, out_dir / f"{tag}.jsonl", keeper)
        scale: dict[str, Any] = {}
        wanted_scaling = [] if args.scaling == "none" else args.scaling.split(",")
        if wanted_scaling:
            print("scaling:", ", ".join(wanted_scaling), flush=True)
            scale = scaling.run(
                cfg.scaling,
                wanted_scaling,
                {i.name: i for i in implementations(cnet)},
                lambda impl, idle: run_churn(impl, _idle_config(cfg), idle, keeper=keeper),
            )
            scale.update(measure(cfg, wanted_scaling, impls))
    data = {
        "config": {k: v for k, v in asdict(cfg).items() if k != "scaling"},
        "scaling_config": asdict(cfg.scaling),
        "quick": args.quick,
        "machine": facts,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "seconds": time.time() - started,
        "impls": {i.name: {"argv": list(i.argv[1:]), "note": i.note} for i in impls},
        "records": records,
        "records_from": str(args.records) if args.records is not None else None,
        "scaling": scale,
        "time_wait": keeper.summary(records),
    }
    data["summary"] = report.summarize(data)
    json_path = out_dir / f"{tag}.json"
    json_path.write_text(json.dumps(data, indent=1))
    table = report.markdown(data)
    (out_dir / f"{tag}.md").write_text(table)
    print(table)
    print(f"results: {json_path}")
    if not args.no_chart:
        png = report.chart(data, out_dir / f"{tag}.png")
        print(f"chart: {png}" if png else "chart: skipped (matplotlib is not installed)")
    invalid = [r for r in records if not r["ok"]] + scaling.invalid_runs(scale)
    invalid += syscalls.invalid_runs(scale.get("syscalls", {}))
    invalid += [scale[k] for k in ("fairness", "pycalls") if k in scale and not scale[k]["ok"]]
    if invalid:
        print(f"{len(invalid)} invalid run(s)", file=sys.stderr)
    return 1 if invalid else 0


def measure(cfg: Config, wanted: list[str], impls: list[Impl]) -> dict[str, Any]:
    """The measurements after the scaling ones: fairness, syscalls, pycalls."""
    out: dict[str, Any] = {}
    sc = cfg.scaling
    if "fairness" in wanted:
        out["fairness"] = scaling.child([str(sc.fairness_tries)], "benchmarks.fairness")
    if "syscalls" in wanted:
        traced = Config(conc=cfg.conc, timeout=max(cfg.timeout, 300.0))

        def churn(impl: Impl, n: int, wrappers: tuple[list[str], list[str]]) -> dict[str, Any]:
            return run_churn(impl, replace(traced, n=n), 0, wrappers)

        out["syscalls"] = syscalls.run(impls, churn, sc.strace_small, sc.strace_large)
    if "pycalls" in wanted:
        out["pycalls"] = scaling.child(
            [str(sc.pycalls_sends), str(sc.pycalls_conns)], "benchmarks.pycalls"
        )
    return out


def _idle_config(cfg: Config) -> Config:
    return Config(n=cfg.scaling.idle_n, conc=cfg.conc, timeout=max(cfg.timeout, 600.0))


if __name__ == "__main__":
    sys.exit(main())
