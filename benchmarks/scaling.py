"""Scaling measurements: churn beside idle connections, heap per idle connection, and how
long after our FIN is acknowledged a graceful WskDisconnect completes.

* **idle** - churn with ``ScalingConfig.idle`` idle connections open (opened by the client
  before the clock starts, accepted and held by the server, each pywsk one with a WskReceive
  pending, as a driver waiting for data has) against churn with none, interleaved.
* **heap** - Python heap per idle pywsk connection, from ``tracemalloc``, in a process of
  its own: the client side (WskSocketConnect; the peer is a plain-socket process) and the
  server side (WskAccept), each with nothing pending and then with a WskReceive pending
  (its IRP, MDL and Op; the 4 KiB receive buffer is non-paged pool - an ``mmap``, outside
  the Python heap - and is reported apart, with the resident-memory growth).  A uvloop
  Protocol connection is measured the same way for reference.
* **finack** - how long after the FIN-ACK moment a graceful WskDisconnect completes.  The
  moment is the kernel's own: the ``sock:inet_sock_set_state`` tracepoint fires inside
  ``tcp_set_state`` when the ACK of our FIN moves the socket FIN_WAIT1 -> FIN_WAIT2; it is
  recorded in a private ftrace instance with ``trace_clock`` = ``mono`` (CLOCK_MONOTONIC,
  the clock of ``time.perf_counter``), matched to the connection by its local port.  The
  completion routine timestamps itself with ``perf_counter``; the difference is the time
  pywsk takes to notice and complete.  Nothing polls the socket (a TCP_INFO poller in
  another process was tried first: its reads take the socket lock and moved the moment they
  measured).  Two paths: *at once* (an idle peer: the FIN leaves with the call) and *behind
  data* (256 KiB and the FIN queued behind a peer window of a few KiB; the peer then reads,
  and the ACK arrives among the ACKs of the data).  A plain-Python socket doing the least
  possible (``shutdown``, then TCP_INFO after each edge-triggered epoll wake-up) is measured
  the same way, interleaved, as the floor for Python.  Needs root (tracefs); skipped
  otherwise.  The tracing instance is removed afterwards.
"""

from __future__ import annotations

import gc
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .run import Impl

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIN_ACKED = (5, 6, 7)  # TCP_FIN_WAIT2, TCP_TIME_WAIT, TCP_CLOSE
#: Data queued ahead of the FIN in the deferred path (the peer's window is a few KiB), and
#: the send buffer that lets the kernel take all of it at once.
DEFERRED_BYTES = 256 * 1024
SNDBUF = 1 << 20
PEER_RCVBUF = 4096


@dataclass
class ScalingConfig:
    #: Idle connections held open during the churn of the "idle" comparison.
    idle: int = 10_000
    #: Churn connections per run in the "idle" comparison.
    idle_n: int = 10_000
    idle_reps: int = 3
    idle_impls: tuple[str, ...] = ("c-epoll", "pywsk", "pywsk.aio")
    #: Idle connections the heap measurement opens.
    heap_conns: int = 2_000
    #: FIN-ACK samples per path.
    finack_samples: int = 200
    #: Tries of each fairness scenario (benchmarks.fairness).
    fairness_tries: int = 40
    #: Connections of the two strace'd churns per implementation (benchmarks.syscalls).
    strace_small: int = 200
    strace_large: int = 1_200
    #: WskSends and churn connections counted by benchmarks.pycalls.
    pycalls_sends: int = 5_000
    pycalls_conns: int = 1_000


def run(
    cfg: ScalingConfig,
    wanted: list[str],
    impls: dict[str, Impl],
    churn: Callable[[Impl, int], dict[str, Any]],
) -> dict[str, Any]:
    """Run the measurements named in ``wanted``; each result is JSON-ready."""
    out: dict[str, Any] = {}
    if "idle" in wanted:
        out["idle"] = idle_churn(cfg, impls, churn)
    if "heap" in wanted:
        out["heap"] = {
            side: child(["heap", side, str(cfg.heap_conns)]) for side in ("client", "server")
        }
        out["heap"]["uvloop-reference"] = child(["heap", "uvloop", str(cfg.heap_conns)])
    if "finack" in wanted:
        out["finack"] = child(["finack", str(cfg.finack_samples)])
    return out


def invalid_runs(scale: dict[str, Any]) -> list[Any]:
    """Records of the scaling measurements that failed verification or did not run."""
    bad: list[Any] = [r for r in scale.get("idle", {}).get("records", []) if not r["ok"]]
    for name in ("client", "server", "uvloop-reference"):
        res = scale.get("heap", {}).get(name)
        if res is not None and not res.get("ok"):
            bad.append(res)
    if "finack" in scale and not scale["finack"].get("ok"):
        bad.append(scale["finack"])
    return bad


def idle_churn(
    cfg: ScalingConfig, impls: dict[str, Impl], churn: Callable[[Impl, int], dict[str, Any]]
) -> dict[str, Any]:
    records = []
    names = [name for name in cfg.idle_impls if name in impls]
    for rep in range(cfg.idle_reps):
        for name in names:
            order = (0, cfg.idle) if rep % 2 == 0 else (cfg.idle, 0)
            for idle in order:
                rec = churn(impls[name], idle)
                rec["rep"] = rep
                records.append(rec)
                rate = rec.get("metric")
                shown = f"{rate:9.1f} conn/s" if rate else "INVALID " + str(rec.get("problems"))
                print(f"  idle {idle:6d} {name:13s} {shown}", flush=True)
    summary = {}
    for name in names:
        row: dict[str, Any] = {}
        for idle in (0, cfg.idle):
            ok = [r for r in records if r["impl"] == name and r["idle"] == idle and r["ok"]]
            if ok:
                row[str(idle)] = {
                    "rate": statistics.median(r["metric"] for r in ok),
                    "cpu_us": statistics.median(r["cpu_total"] / r["n"] * 1e6 for r in ok),
                    "runs": len(ok),
                }
        if len(row) == 2:
            row["rate_ratio"] = row[str(cfg.idle)]["rate"] / row["0"]["rate"]
            row["cpu_ratio"] = row[str(cfg.idle)]["cpu_us"] / row["0"]["cpu_us"]
        summary[name] = row
    return {"idle": cfg.idle, "n": cfg.idle_n, "records": records, "summary": summary}


def child(args: list[str], module: str = "benchmarks.scaling") -> dict[str, Any]:
    """Run one measurement (of this module, or of ``module``) in a fresh process; its last
    line is JSON."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            result["ok"] = proc.returncode == 0 and result.get("ok", True)
            return result
    return {"ok": False, "args": args, "rc": proc.returncode, "stderr": proc.stderr[-3000:]}


# ---------------------------------------------------------------------------- heap ---


def _hold_accept() -> int:
    """Peer process: accept connections and hold them until stdin closes."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    held: list[socket.socket] = []

    def accept_forever() -> None:
        while True:
            held.append(listener.accept()[0])

    threading.Thread(target=accept_forever, daemon=True).start()
    sys.stdin.read()
    return 0


def _hold_connect(port: str, count: str) -> int:
    """Peer process: open ``count`` connections and hold them until stdin closes."""
    held = [socket.create_connection(("127.0.0.1", int(port))) for _ in range(int(count))]
    print(f"CONNECTED {len(held)}", flush=True)
    sys.stdin.read()
    return 0


def _peer(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.scaling", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _top(snapshot: tracemalloc.Snapshot, base: tracemalloc.Snapshot, count: int) -> list[str]:
    lines = []
    for stat in snapshot.compare_to(base, "lineno")[:12]:
        frame = stat.traceback[0]
        where = f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}:{frame.lineno}"
        lines.append(f"{stat.size_diff / count:8.1f} B/conn  {where}")
    return lines


def heap(side: str, count_arg: str) -> int:
    """Python heap per idle connection (see the module notes)."""
    count = int(count_arg)
    if side == "uvloop":
        return _heap_uvloop(count)
    from pywsk.nt import STATUS_MORE_PROCESSING_REQUIRED, IoAllocateIrp, IoSetCompletionRoutine
    from pywsk.wsk import WSK_BUF

    from .impl_pywsk import Driver, _pool_buffer, conn_dispatch, listen_dispatch

    driver = Driver()

    def done(_device: Any, _irp: Any, _context: Any) -> int:
        return STATUS_MORE_PROCESSING_REQUIRED

    if side == "client":
        peer, line = _peer("hold-accept")
        port = int(line.split()[1])

        def open_one() -> Any:
            return driver.connect(port)

        warm = [open_one() for _ in range(20)]
    else:
        listen, port = driver.listen()
        peer, line = _peer("hold-connect", str(port), str(count + 20))
        table = listen_dispatch(listen)

        def open_one() -> Any:
            status, sock = driver.call(table.WskAccept, listen, 0, None, None, None, None)
            assert status == 0, hex(status)
            return sock

        warm = [open_one() for _ in range(20)]
    for sock in warm:  # warm every cache and free list before measuring
        driver.call(conn_dispatch(sock).WskCloseSocket, sock)
    tracemalloc.start(1)
    rss0, m0 = _rss(), _traced()
    base = tracemalloc.take_snapshot()
    socks = [open_one() for _ in range(count)]
    rss1, m1 = _rss(), _traced()
    snap1 = tracemalloc.take_snapshot()
    pending = []
    for sock in socks:
        irp = IoAllocateIrp(1, False)
        assert irp is not None
        IoSetCompletionRoutine(irp, done, None, True, True, True)
        _pool, mdl = _pool_buffer(4096)
        conn_dispatch(sock).WskReceive(sock, WSK_BUF(mdl, 0, 4096), 0, irp)
        pending.append((irp, _pool, mdl))
    rss2, m2 = _rss(), _traced()
    snap2 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    result = {
        "side": side,
        "conns": count,
        "heap_bytes_per_conn": (m1 - m0) / count,
        "heap_bytes_per_conn_with_receive": (m2 - m0) / count,
        "receive_pending_extra": (m2 - m1) / count,
        "pool_bytes_per_conn": 4096,
        "rss_bytes_per_conn": (rss1 - rss0) / count,
        "rss_bytes_per_conn_with_receive": (rss2 - rss0) / count,
        "top_connected": _top(snap1, base, count),
        "top_with_receive": _top(snap2, base, count),
    }
    for sock in socks:
        driver.call(conn_dispatch(sock).WskCloseSocket, sock)
    assert peer.stdin is not None
    peer.stdin.close()
    peer.wait()
    print(json.dumps(result))
    return 0


def _heap_uvloop(count: int) -> int:
    import asyncio

    import uvloop

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        peer, line = _peer("hold-accept")
        port = int(line.split()[1])
        warm = [
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port) for _ in range(20)
        ]
        for transport, _ in warm:
            transport.close()
        await asyncio.sleep(0.1)
        tracemalloc.start(1)
        rss0, m0 = _rss(), _traced()
        base = tracemalloc.take_snapshot()
        conns = [
            await loop.create_connection(asyncio.Protocol, "127.0.0.1", port) for _ in range(count)
        ]
        rss1, m1 = _rss(), _traced()
        snap = tracemalloc.take_snapshot()
        tracemalloc.stop()
        for transport, _ in conns:
            transport.close()
        assert peer.stdin is not None
        peer.stdin.close()
        peer.wait()
        return {
            "side": "uvloop Protocol (reading)",
            "conns": count,
            "heap_bytes_per_conn": (m1 - m0) / count,
            "rss_bytes_per_conn": (rss1 - rss0) / count,
            "top_connected": _top(snap, base, count),
        }

    print(json.dumps(uvloop.run(main())))
    return 0


# -------------------------------------------------------------------------- finack ---


class StateTrace:
    """The kernel's own timestamps of FIN_WAIT1 -> FIN_WAIT2, from the ``sock:inet_sock_set_state``
    tracepoint, in a private ftrace instance whose clock is ``mono`` (CLOCK_MONOTONIC, the
    clock of ``time.perf_counter``).  The event fires inside ``tcp_set_state`` while the ACK
    of our FIN is processed: it is the FIN-ACK moment itself, and reading it touches neither
    the socket nor its lock.  Needs root; everything is undone by :meth:`close` (the instance
    is removed, and tracefs unmounted if this mounted it)."""

    EVENT = "events/sock/inet_sock_set_state"

    def __init__(self) -> None:
        self.mounted: str | None = None
        root = Path("/sys/kernel/tracing")
        if not (root / "instances").is_dir():
            mount_point = tempfile.mkdtemp(prefix="pywsk-tracefs-")
            subprocess.run(["mount", "-t", "tracefs", "nodev", mount_point], check=True)
            self.mounted = mount_point
            root = Path(mount_point)
        self.instance = root / "instances" / f"pywsk-bench-{os.getpid()}"
        self.instance.mkdir()
        (self.instance / "trace_clock").write_text("mono")
        (self.instance / self.EVENT / "filter").write_text("oldstate == 4 && newstate == 5")
        (self.instance / self.EVENT / "enable").write_text("1")

    @staticmethod
    def available() -> bool:
        return os.geteuid() == 0 and "tracefs" in Path("/proc/filesystems").read_text()

    def moments(self) -> dict[int, list[float]]:
        """Local port -> the times its socket went FIN_WAIT1 -> FIN_WAIT2."""
        found: dict[int, list[float]] = {}
        for line in (self.instance / "trace").read_text().splitlines():
            if "inet_sock_set_state" not in line or line.startswith("#"):
                continue
            stamp = float(line.split("inet_sock_set_state")[0].split()[-1].rstrip(":"))
            sport = int(line.split("sport=")[1].split()[0])
            found.setdefault(sport, []).append(stamp)
        return found

    def close(self) -> None:
        (self.instance / self.EVENT / "enable").write_text("0")
        self.instance.rmdir()
        if self.mounted is not None:
            subprocess.run(["umount", self.mounted], check=False)
            os.rmdir(self.mounted)


def _drain_peer() -> int:
    """Peer process: a listener with a small receive buffer (so that a sender can fill the
    window); for each "drain" line on stdin, accept one connection, read it to EOF, close."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PEER_RCVBUF)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    for _line in sys.stdin:
        conn, _ = listener.accept()
        total = 0
        while chunk := conn.recv(65536):
            total += len(chunk)
        conn.close()
        print(f"ok {total}", flush=True)
    return 0


def finack(samples_arg: str) -> int:
    """Completion time after the FIN-ACK moment: pywsk and a plain-Python socket doing the
    least possible, on both paths, ``samples`` of each, interleaved."""
    from pywsk.nt import (
        STATUS_MORE_PROCESSING_REQUIRED,
        STATUS_PENDING,
        STATUS_SUCCESS,
        Executive,
        IoSetCompletionRoutine,
        KernelMode,
        KeSetEvent,
        KeWaitForSingleObject,
    )
    from pywsk.wsk import SO_SNDBUF, SOL_SOCKET, WSK_BUF, WskSetOption

    from .impl_pywsk import Driver, _irp, _notification, _pool_buffer, conn_dispatch

    if not StateTrace.available():
        print(json.dumps({"skipped": "needs root and tracefs for the state tracepoint"}))
        return 0
    samples = int(samples_arg)
    peer, line = _peer("drain-peer")
    port = int(line.split()[1])
    assert peer.stdin is not None
    assert peer.stdout is not None
    driver = Driver()
    payload = WSK_BUF(_pool_buffer(DEFERRED_BYTES, b"d" * DEFERRED_BYTES)[1], 0, DEFERRED_BYTES)
    # (local port, path, completion time, call time, completed inside the call)
    done: list[tuple[int, str, float, float, bool]] = []
    not_deferred = {"pywsk": 0, "raw python": 0}

    def drain() -> None:
        assert peer.stdin is not None
        assert peer.stdout is not None
        peer.stdin.write("drain\n")
        peer.stdin.flush()

    def drained() -> None:
        assert peer.stdout is not None
        assert peer.stdout.readline().startswith("ok")

    def pywsk_sample(mode: str) -> None:
        sock = driver.connect(port)
        table = conn_dispatch(sock)
        local = sock.sock.getsockname()[1]  # type: ignore[attr-defined]
        completed: list[float] = []
        event = _notification()

        def on_disconnected(_device: Any, irp: Any, _context: Any) -> int:
            completed.append(time.perf_counter())
            KeSetEvent(event, 0, False)
            return STATUS_MORE_PROCESSING_REQUIRED

        irp = _irp()
        IoSetCompletionRoutine(irp, on_disconnected, None, True, True, True)
        if mode == "behind data":
            status = table.WskControlSocket(
                sock, WskSetOption, SO_SNDBUF, SOL_SOCKET, 4, SNDBUF, 0, None, None, None
            )
            assert status == STATUS_SUCCESS, hex(status)
            status, sent = driver.call(table.WskSend, sock, payload, 0)
            assert status == STATUS_SUCCESS, hex(status)
            assert sent == DEFERRED_BYTES, sent
        t_call = time.perf_counter()
        status = table.WskDisconnect(sock, None, 0, irp)
        if mode == "behind data" and status != STATUS_PENDING:
            not_deferred["pywsk"] += 1
        drain()
        KeWaitForSingleObject(event, Executive, KernelMode, False, -10 * 10_000_000)
        drained()
        done.append((local, f"pywsk {mode}", completed[0], t_call, status != STATUS_PENDING))
        driver.call(table.WskCloseSocket, sock)

    def raw_sample(mode: str) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        local = sock.getsockname()[1]

        def state() -> int:
            return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0])

        ep = select.epoll()
        ep.register(sock.fileno(), select.EPOLLOUT | select.EPOLLET | select.EPOLLRDHUP)
        if mode == "behind data":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
            assert sock.send(b"d" * DEFERRED_BYTES) == DEFERRED_BYTES
        t_call = time.perf_counter()
        sock.shutdown(socket.SHUT_WR)
        at_once = state() in FIN_ACKED
        if mode == "behind data" and at_once:
            not_deferred["raw python"] += 1
        drain()
        while state() not in FIN_ACKED:
            ep.poll(10)
        done.append((local, f"raw python {mode}", time.perf_counter(), t_call, at_once))
        drained()
        ep.close()
        sock.close()

    trace = StateTrace()
    try:
        for _ in range(samples):
            for mode in ("at once", "behind data"):
                pywsk_sample(mode)
                raw_sample(mode)
        moments = trace.moments()
    finally:
        trace.close()
    peer.stdin.close()
    peer.wait()
    rows: dict[str, list[tuple[float, float, bool]]] = {}
    unmatched = 0
    for local, path, t_complete, t_call, inline in done:
        stamps = [t for t in moments.get(local, []) if t_call - 1e-6 <= t <= t_complete + 1e-5]
        if not stamps:
            unmatched += 1
            continue
        t_ack = stamps[-1]
        rows.setdefault(path, []).append(
            ((t_complete - t_ack) * 1e6, (t_ack - t_call) * 1e6, inline)
        )
    summary = {}
    for path, values in rows.items():
        added = sorted(v[0] for v in values)
        summary[path] = {
            "samples": len(values),
            "median_us": statistics.median(added),
            "p90_us": added[int(0.9 * (len(added) - 1))],
            "min_us": added[0],
            "median_call_to_ack_us": statistics.median(v[1] for v in values),
            "completed_in_call": sum(v[2] for v in values),
        }
    print(
        json.dumps(
            {
                "method": "sock:inet_sock_set_state tracepoint, trace_clock mono",
                "summary": summary,
                "not_deferred": not_deferred,
                "unmatched": unmatched,
                "samples": samples,
            }
        )
    )
    return 0


def main() -> int:
    commands: dict[str, Callable[..., int]] = {
        "heap": heap,
        "finack": finack,
        "hold-accept": _hold_accept,
        "hold-connect": _hold_connect,
        "drain-peer": _drain_peer,
    }
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(f"usage: python -m benchmarks.scaling {{{','.join(commands)}}} ARGS", file=sys.stderr)
        return 2
    return commands[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
