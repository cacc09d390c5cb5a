"""Helpers shared by the verifier's tests."""

from __future__ import annotations

import socket
from collections.abc import Callable

from pywsk import verifier
from pywsk.testing.driver import WskTestClient
from pywsk.wsk import WSK_SOCKET

Listener = Callable[..., socket.socket]
WAIT = 10.0


def ids(violations: verifier.Verifier | list[verifier.Violation]) -> list[str]:
    """The check IDs of a verifier's findings (or of a list of violations), in order."""
    found = violations.found if isinstance(violations, verifier.Verifier) else violations
    return [violation.check.id for violation in found]


def connected(wsk: WskTestClient, listener: Listener) -> tuple[WSK_SOCKET, socket.socket]:
    """A WSK connection to a fresh loopback listener, and the accepted peer socket."""
    lsock = listener()
    sock = wsk.connect(lsock.getsockname()[:2])
    peer, _ = lsock.accept()
    peer.settimeout(WAIT)
    return sock, peer
