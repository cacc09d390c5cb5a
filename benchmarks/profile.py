"""Profile one implementation's workload with py-spy: both processes, then the hot spots.

    python -m benchmarks.profile pywsk churn [--n 20000] [--rate 500]
    python -m benchmarks.profile pywsk bulk-cubic
    python -m benchmarks.profile pywsk dgram-1400 [--n 20000]

Both the server and the client run under ``py-spy record`` (raw, collapsed stacks, every
thread, idle excluded); the output is, per process, the share of samples whose innermost
frame is each function ("own") and the share that has the function anywhere on the stack
("total").  ``pip install py-spy`` first.  Used for docs/performance.md.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import BATCH
from .run import ROOT, implementations

Counts = collections.Counter[str]


def _function(frame: str) -> str:
    """``name (path/file.py:line)`` -> ``name (file.py)``: lines of one function merged."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.split(':')[0]).name})" if where else name


def aggregate(path: Path) -> tuple[int, Counts, Counts]:
    total = 0
    own: Counts = collections.Counter()
    inclusive: Counts = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";") if not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return total, own, inclusive


def show(label: str, path: Path, top: int) -> None:
    total, own, inclusive = aggregate(path)
    print(f"\n== {label}: {total} samples ==")
    print("  own%  total%  function")
    for name, count in own.most_common(top):
        print(f"{100 * count / total:6.1f} {100 * inclusive[name] / total:6.1f}   {name}")
    print("  -- by total --")
    for name, count in inclusive.most_common(top):
        if "pywsk" in name or "impl_" in name or "(connection.py)" in name:
            print(f"{100 * own[name] / total:6.1f} {100 * count / total:6.1f}   {name}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    ap.add_argument("impl")
    ap.add_argument("workload", choices=("churn", "bulk", "bulk-cubic", "dgram-64", "dgram-1400"))
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--conc", type=int, default=64)
    ap.add_argument("--bytes", type=int, default=1 << 30)
    ap.add_argument("--rate", type=int, default=500, help="samples per second")
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args(argv)
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    impl = {i.name: i for i in implementations(Path("/nonexistent"))}[args.impl]
    out = Path(tempfile.mkdtemp(prefix="pywsk-profile-"))
    record = [spy, "record", "-r", str(args.rate), "-f", "raw", "--threads", "-o"]
    if args.workload.startswith("dgram-"):
        size, batch = args.workload.split("-")[1], str(BATCH)
        srv_args, cli_args = ["dgram-server", str(args.n), size, batch], [str(args.n), size, batch]
        cli_mode = "dgram-client"
    elif args.workload == "churn":
        srv_args, cli_args = ["churn-server", str(args.n)], [str(args.n), str(args.conc)]
        cli_mode = "churn-client"
    else:
        cc = "default" if args.workload == "bulk" else "cubic"
        srv_args, cli_args, cli_mode = ["bulk-recv"], [str(args.bytes), cc], "bulk-send"
    server = subprocess.Popen(
        [*record, str(out / "server.txt"), "--", *impl.argv, *srv_args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    while not line.startswith("PORT"):
        line = server.stdout.readline()
    port = line.split()[1]
    client = subprocess.run(
        [*record, str(out / "client.txt"), "--", *impl.argv, cli_mode, port, *cli_args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    server.wait()
    print(client.stdout.strip().splitlines()[-1] if client.stdout.strip() else client.stderr)
    show(f"{args.impl} {args.workload} client", out / "client.txt", args.top)
    show(f"{args.impl} {args.workload} server", out / "server.txt", args.top)
    print(f"\nraw profiles: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
