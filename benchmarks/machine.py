"""Facts about the machine a benchmark ran on, read and never changed: kernel, CPUs, the
versions measured, the TCP sysctls that shape the results, the checkout's commit; and CPU
steal from ``/proc/stat``.

It refuses to change any of them (the harness leaves the machine as it is); the one thing it
sets is this process's own file-descriptor limit, raised to its hard limit.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def cpu_jiffies() -> tuple[int, int]:
    """(steal, total) jiffies from ``/proc/stat``."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    return values[7], sum(values)


def sysctl(name: str) -> str:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return "?"


def machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "missing"

    gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout
    return {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "uvloop": installed("uvloop"),
        "trio": installed("trio"),
        "matplotlib": installed("matplotlib"),
        "gcc": gcc.splitlines()[0] if gcc else "?",
        "tcp_congestion_control": sysctl("net.ipv4.tcp_congestion_control"),
        "tcp_max_tw_buckets": sysctl("net.ipv4.tcp_max_tw_buckets"),
        "tcp_tw_reuse": sysctl("net.ipv4.tcp_tw_reuse"),
        "ip_local_port_range": sysctl("net.ipv4.ip_local_port_range"),
        "loadavg_start": os.getloadavg(),
        "git_head": _git("rev-parse", "--short", "HEAD"),
        "src_uncommitted_files": len(_git("status", "--porcelain", "src").splitlines()),
    }


def _git(*args: str) -> str:
    """Which provider was measured: the checkout's commit (other work may be uncommitted)."""
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "?"
    return done.stdout.strip() if done.returncode == 0 else "?"


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def raise_fd_limit() -> None:
    """Let child processes hold the idle connections of the scaling runs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
