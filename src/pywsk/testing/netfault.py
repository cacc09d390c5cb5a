"""Real kernel packet loss on loopback, with nftables, for tests.

:class:`PacketDropper` creates its own ``inet`` table (``pywsk_test_<pid>_<n>``) with one
filter chain, adds rules that drop TCP segments to or from a port, removes them again,
and always deletes the table on exit. Rules only ever match loopback traffic
(``127.0.0.0/8`` and ``::1`` on ``lo``).

By default the chain sits on the ``input`` hook: segments are transmitted (so
:class:`~pywsk.testing.capture.WireCapture` sees every retransmission) and then lost on
the way in, exactly like loss on a real network. ``hook="output"`` drops them before
they reach the wire instead.

Needs root and ``nft``; check :meth:`PacketDropper.available` and skip otherwise.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import shutil
import subprocess
from types import TracebackType
from typing import Literal, Self

__all__ = ["Direction", "Hook", "NftError", "PacketDropper"]

Direction = Literal["to", "from", "both"]
"""``"to"``: segments whose destination port is the port; ``"from"``: source port."""
Hook = Literal["input", "output"]

_TABLE_PREFIX = "pywsk_test_"
_CHAIN = "faults"
_names = itertools.count(1)
_HANDLE = re.compile(r"# handle (\d+)")
_STALE = re.compile(rf"^table inet ({_TABLE_PREFIX}(\d+)_\d+)$")


class NftError(RuntimeError):
    """An ``nft`` command failed; the message carries its stderr."""


def _nft(*args: str, script: str | None = None, timeout: float = 5.0) -> str:
    command = ["nft", *args]
    try:
        done = subprocess.run(
            command,
            input=script,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise NftError(f"{' '.join(command)}: no answer in {timeout} s") from e
    if done.returncode != 0:
        raise NftError(f"{' '.join(command)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, it is just not ours
    return True


class PacketDropper:
    """Drop TCP segments on loopback for chosen ports, with a table of its own.

    >>> with PacketDropper() as dropper:          # doctest: +SKIP
    ...     dropper.drop(port)                    # both directions
    ...     ...                                   # the connection sees only loss
    ...     dropper.heal()                        # traffic flows again
    """

    def __init__(self, *, hook: Hook = "input", timeout: float = 5.0) -> None:
        if hook not in ("input", "output"):
            raise ValueError(f"hook must be 'input' or 'output', not {hook!r}")
        self.hook: Hook = hook
        self.timeout = timeout
        self.table = f"{_TABLE_PREFIX}{os.getpid()}_{next(_names)}"
        self._rules: dict[int, list[int]] = {}  # port -> rule handles
        self._created = False
        self._closed = False

    @staticmethod
    @functools.cache
    def available() -> bool:
        """True when rules can be installed here: root, ``nft``, and nftables in the kernel."""
        if os.geteuid() != 0 or shutil.which("nft") is None:
            return False
        try:
            _nft("list", "tables", timeout=5.0)
        except (NftError, OSError):
            return False
        return True

    @staticmethod
    def remove_stale_tables(timeout: float = 5.0) -> list[str]:
        """Delete tables left behind by test processes that no longer exist."""
        removed = []
        for line in _nft("list", "tables", timeout=timeout).splitlines():
            match = _STALE.match(line.strip())
            if match and not _pid_alive(int(match.group(2))):
                _nft("delete", "table", "inet", match.group(1), timeout=timeout)
                removed.append(match.group(1))
        return removed

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Create the table and its (empty) chain."""
        if self._created or self._closed:
            raise RuntimeError("PacketDropper.start() called twice or after close()")
        self.remove_stale_tables(self.timeout)
        _nft(
            "-f",
            "-",
            script=(
                f"table inet {self.table} {{\n"
                f"  chain {_CHAIN} {{\n"
                f"    type filter hook {self.hook} priority filter; policy accept;\n"
                "  }\n"
                "}\n"
            ),
            timeout=self.timeout,
        )
        self._created = True
        return self

    def close(self) -> None:
        """Delete the table (and so every rule). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._rules.clear()
        if self._created:
            _nft("delete", "table", "inet", self.table, timeout=self.timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- faults ---------------------------------------------------------------------------------

    def drop(self, port: int, direction: Direction = "both") -> None:
        """Drop loopback TCP segments to (``"to"``), from (``"from"``) or both ways of ``port``."""
        if not self._created or self._closed:
            raise RuntimeError("PacketDropper is not started")
        if not 0 < port < 65536:
            raise ValueError(f"not a TCP port: {port!r}")
        if direction not in ("to", "from", "both"):
            raise ValueError(f"direction must be 'to', 'from' or 'both', not {direction!r}")
        iface = "iifname" if self.hook == "input" else "oifname"
        matches = []
        if direction in ("to", "both"):
            matches.append(f"tcp dport {port}")
        if direction in ("from", "both"):
            matches.append(f"tcp sport {port}")
        handles = self._rules.setdefault(port, [])
        for match in matches:
            for family in ("ip daddr 127.0.0.0/8", "ip6 daddr ::1"):
                out = _nft(
                    "--echo",
                    "--handle",
                    "add",
                    "rule",
                    "inet",
                    self.table,
                    _CHAIN,
                    *f'{iface} "lo" {family} {match} counter drop'.split(),
                    timeout=self.timeout,
                )
                found = _HANDLE.search(out)
                if found is None:
                    raise NftError(f"nft did not report a rule handle: {out!r}")
                handles.append(int(found.group(1)))

    def heal(self, port: int | None = None) -> None:
        """Remove the drop rules for ``port``, or all of them."""
        if not self._created or self._closed:
            return
        ports = list(self._rules) if port is None else [port]
        for p in ports:
            for handle in self._rules.pop(p, []):
                _nft(
                    "delete",
                    "rule",
                    "inet",
                    self.table,
                    _CHAIN,
                    "handle",
                    str(handle),
                    timeout=self.timeout,
                )

    @property
    def dropping(self) -> list[int]:
        """Ports that currently have drop rules."""
        return sorted(self._rules)

    def ruleset(self) -> str:
        """``nft list table`` output for this table, with packet counters (for messages)."""
        return _nft("list", "table", "inet", self.table, timeout=self.timeout)

    def dropped_packets(self) -> int:
        """Packets dropped by this table's rules so far (sum of the rule counters)."""
        return sum(int(n) for n in re.findall(r"counter packets (\d+)", self.ruleset()))
