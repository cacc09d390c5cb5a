"""How the client runtime names what it shows: addresses, flags, statuses, payloads.

What it does: small pure functions shared by the runtime, the tracer's labels and the
``pywsk`` reports - ``[::1]:80``, ``WSK_FLAG_ABORTIVE|WSK_FLAG_AT_DISPATCH_LEVEL``,
``STATUS_CONNECTION_REFUSED (nothing is listening there)``, ``b'hi'`` or ``12 B``.

What it refuses: nothing. What always holds: payloads longer than the preview limit, or
any payload when ``show`` is false, are shown by their length only.
"""

from __future__ import annotations

from typing import Any

from ..trace import short_status
from ..wsk import (
    WSK_EVENT_ACCEPT,
    WSK_EVENT_DISABLE,
    WSK_EVENT_DISCONNECT,
    WSK_EVENT_RECEIVE,
    WSK_EVENT_SEND_BACKLOG,
    WSK_FLAG_ABORTIVE,
    WSK_FLAG_AT_DISPATCH_LEVEL,
)

__all__ = ["describe_address", "event_names", "explain", "flag_names", "preview"]

_HINTS = {
    "STATUS_CONNECTION_REFUSED": "nothing is listening there",
    "STATUS_HOST_UNREACHABLE": "no route to that host",
    "STATUS_NETWORK_UNREACHABLE": "no route to that network",
    "STATUS_IO_TIMEOUT": "the connection attempt timed out",
    "STATUS_NOT_FOUND": "the name does not resolve",
    "STATUS_ADDRESS_ALREADY_ASSOCIATED": "the address is already in use",
    "STATUS_INVALID_ADDRESS_COMPONENT": "that address is not available on this machine",
    "STATUS_ACCESS_DENIED": "permission denied",
}


def explain(status: int | None) -> str:
    """``STATUS_CONNECTION_REFUSED (nothing is listening there)``."""
    name = short_status(status)
    hint = _HINTS.get(name)
    return f"{name} ({hint})" if hint else name


def describe_address(address: tuple[Any, ...]) -> str:
    """``127.0.0.1:80`` or ``[::1]:80``."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _names(value: int, table: tuple[tuple[int, str], ...]) -> str:
    return "|".join(name for bit, name in table if value & bit) or "0"


def event_names(mask: int) -> str:
    """``WSK_EVENT_ACCEPT|WSK_EVENT_DISCONNECT`` for an SO_WSK_EVENT_CALLBACK mask."""
    return _names(
        mask,
        (
            (WSK_EVENT_ACCEPT, "WSK_EVENT_ACCEPT"),
            (WSK_EVENT_DISCONNECT, "WSK_EVENT_DISCONNECT"),
            (WSK_EVENT_RECEIVE, "WSK_EVENT_RECEIVE"),
            (WSK_EVENT_SEND_BACKLOG, "WSK_EVENT_SEND_BACKLOG"),
            (WSK_EVENT_DISABLE, "WSK_EVENT_DISABLE"),
        ),
    )


def flag_names(flags: int) -> str:
    """``WSK_FLAG_ABORTIVE|WSK_FLAG_AT_DISPATCH_LEVEL`` for an event callback's Flags."""
    return _names(
        flags,
        (
            (WSK_FLAG_ABORTIVE, "WSK_FLAG_ABORTIVE"),
            (WSK_FLAG_AT_DISPATCH_LEVEL, "WSK_FLAG_AT_DISPATCH_LEVEL"),
        ),
    )


def preview(data: bytes, show: bool, limit: int = 24) -> str:
    """``b'hi'`` for a short payload when ``show``, else ``12 B``."""
    if show and len(data) <= limit:
        return repr(data)
    return f"{len(data)} B"
