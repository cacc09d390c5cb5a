"""What every provider socket has: the kernel socket, the client's context, options, completion.

What it does: :class:`ProviderSocket` is the WSK_SOCKET the client holds, whatever its
category; it owns the Linux socket, the client's socket context and event dispatch table,
and implements the parts every category shares - completing IRPs (now, or later through a
pending :class:`Op` with a cancel routine), socket options through WskControlSocket, and
filling socket-address out-parameters; observers may read the Linux TCP state under it
(:meth:`ProviderSocket.tcp_state`, read-only).  :class:`Op` is one pending request.

What it refuses: options it does not know (STATUS_NOT_SUPPORTED), option buffers that do not
fit (STATUS_INVALID_PARAMETER / STATUS_BUFFER_TOO_SMALL).

What always holds: its methods run under the socket's lock (``lock``), on whichever thread
made the call or on the provider thread; a pending request completes exactly once
(``Op.done``), and its views of the client's buffers are dropped before the client's
completion routine runs, so the client may free the memory there.
"""

from __future__ import annotations

import functools
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar

from ..mechanics import linux
from ..nt import hooks
from ..nt.irp import IRP, IoMarkIrpPending, IoSetCancelRoutine, begin_request
from ..nt.irql import DISPATCH_LEVEL, running_at
from ..nt.mdl import mdl_chain_views, mdl_chain_writable, mdl_is_locked
from ..nt.status import NTSTATUS
from ..wsk.constants import (
    AF_INET6,
    NPI_WSK_INTERFACE_ID,
    SIO_WSK_QUERY_IDEAL_SEND_BACKLOG,
    SIO_WSK_QUERY_RECEIVE_BACKLOG,
    SIO_WSK_SET_REMOTE_ADDRESS,
    SIO_WSK_SET_TCP_SILENT_MODE,
    SO_CONDITIONAL_ACCEPT,
    SO_EXCLUSIVEADDRUSE,
    SO_KEEPALIVE,
    SO_RCVBUF,
    SO_REUSEADDR,
    SO_WSK_EVENT_CALLBACK,
    SO_WSK_SECURITY,
    SOL_SOCKET,
    TCP_NODELAY,
    WSK_EVENT_DISABLE,
    WskGetOption,
    WskIoctl,
    WskSetOption,
)
from ..wsk.structs import PSIZE_T, WSK_BUF, WSK_EVENT_CALLBACK_CONTROL, WSK_SOCKET
from .engine import report_exception

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..core.connection import OpKind
    from ..wsk.structs import SOCKADDR
    from .client import WskClient
    from .engine import Engine

__all__ = ["Op", "ProviderSocket", "internal_irp", "needs_irp", "read_in", "write_out"]


def internal_irp() -> IRP:
    """An IRP the provider uses for its own steps (no completion routine; never the client's)."""
    irp = IRP(1, False)
    begin_request(irp, "internal")
    return irp


class Op:
    """One pending request (an IRP inside the provider)."""

    __slots__ = (
        "done",
        "end",
        "flags",
        "irp",
        "kind",
        "owner",
        "status",
        "transferred",
        "views",
        "want",
    )

    def __init__(
        self,
        owner: ProviderSocket,
        kind: OpKind,
        irp: IRP,
        views: list[memoryview],
        flags: int = 0,
    ) -> None:
        self.owner = owner
        self.kind = kind
        self.irp = irp
        self.views = views
        self.flags = flags
        self.want = len(views[0]) if len(views) == 1 else sum(len(v) for v in views)
        self.transferred = 0
        #: A send wholly in the kernel: the stream offset just past its last byte (it
        #: completes once the peer has acknowledged that many bytes).
        self.end = -1
        self.done = False
        #: The status it completed with (valid once ``done``).
        self.status: int = NTSTATUS.STATUS_PENDING

    def cancel_routine(self, _device: object, irp: IRP) -> None:
        """Installed as the IRP's cancel routine: cancel in the calling thread, under the
        socket's lock (IoCancelIrp calls it outside the cancel lock)."""
        owner = self.owner
        owner.client.subsystem.engine.locked(owner.lock, owner.cancel, self)

    def remaining(self) -> list[memoryview]:
        """The part of the buffer not yet transferred."""
        skip = self.transferred
        if not skip:
            return self.views
        out: list[memoryview] = []
        for view in self.views:
            if skip >= len(view):
                skip -= len(view)
                continue
            out.append(view[skip:] if skip else view)
            skip = 0
        return out


class ProviderSocket(WSK_SOCKET):
    """The parts of a WSK socket every category shares."""

    __slots__ = (
        "_close_irp",
        "_disable_waiters",
        "_running",
        "calls_inside",
        "client",
        "closed",
        "context",
        "disabled_by_client",
        "dispatch_client",
        "engine",
        "events",
        "family",
        "local",
        "lock",
        "owner",
        "sock",
        "static_events",
    )

    #: The WSK_EVENT_* callbacks this category can enable with SO_WSK_EVENT_CALLBACK.
    EVENTS: ClassVar[int] = 0
    #: Which member of the client's dispatch table each event calls.
    EVENT_CALLBACKS: ClassVar[dict[int, str]] = {}

    def __init__(
        self,
        dispatch: Any,
        client: WskClient,
        family: int,
        sock: socket.socket,
        context: Any,
        dispatch_client: Any,
    ) -> None:
        super().__init__(dispatch)
        #: Guards this socket's state (docs/design.md, "Locks").  A stream socket and its
        #: role share one.
        self.lock = threading.Lock()
        self.client = client
        self.engine: Engine = client.subsystem.engine
        self.family = family  # Windows numbering (AF_INET / AF_INET6)
        self.sock = sock
        self.context = context
        self.dispatch_client = dispatch_client
        self.closed = False
        self.local: tuple[Any, ...] | None = None
        #: Enabled event callbacks (WSK_EVENT_* bits); all start disabled.
        self.events = 0
        #: Events enabled with WSK_SET_STATIC_EVENT_CALLBACKS: never disabled.
        self.static_events = client.static_events & self.EVENTS
        self.events |= self.static_events
        self._running: dict[int, int] = {}
        self._disable_waiters: list[tuple[int, IRP]] = []
        self._close_irp: IRP | None = None
        #: Events the client disabled itself (an inherited one must not come back).
        self.disabled_by_client = 0
        #: Dispatch calls on this socket currently inside the provider (nested ones too).
        self.calls_inside = 0
        #: The socket object the client holds, when this one works for it (a stream
        #: socket's role); None when the client holds this object itself.
        self.owner: ProviderSocket | None = None

    def tcp_state(self) -> int | None:
        """The Linux TCP state (``tcpi_state``, :data:`pywsk.mechanics.linux.ESTABLISHED`...)
        of the kernel socket under this one, for observation (WSK has no call for it); None
        once that socket is closed, or when it is not a TCP socket.  Reads only, without the
        socket's lock: safe from any thread, completion routines and callbacks included."""
        sock = self.sock
        try:
            return None if sock.fileno() < 0 else linux.tcp_state(sock)
        except OSError:
            return None

    # --- small helpers -------------------------------------------------------------------
    def _post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the provider thread soon, under this socket's lock."""
        engine = self.engine
        engine.post(engine.locked, self.lock, fn, *args)

    def _complete(self, irp: IRP, status: int, information: Any = 0) -> int:
        self.engine.complete(irp, status, information)
        return status

    def _pend(self, op: Op) -> int:
        IoMarkIrpPending(op.irp)
        IoSetCancelRoutine(op.irp, op.cancel_routine)
        if op.irp.Cancel and IoSetCancelRoutine(op.irp, None) is not None:
            # IoCancelIrp ran before the routine was installed: cancel now.
            self.cancel(op)
        return NTSTATUS.STATUS_PENDING

    def _finish(self, op: Op, status: int, information: Any = None) -> None:
        """Complete a pending op exactly once."""
        if op.done:
            return
        op.done = True
        op.status = status
        op.views = []  # release the client's buffers before its routine runs
        if op.irp.CancelRoutine is not None:  # only this socket installs one, under its lock
            IoSetCancelRoutine(op.irp, None)
        self.engine.complete(op.irp, status, op.transferred if information is None else information)

    def _views(self, Buffer: WSK_BUF | None, writable: bool = False) -> list[memoryview] | None:
        """The client's buffer as views (every MDL locked or built for non-paged pool, and
        writable for a receive; ``Offset`` + ``Length`` inside the chain), or None."""
        if not isinstance(Buffer, WSK_BUF):
            return None
        if Buffer.Mdl is not None and not mdl_is_locked(Buffer.Mdl):
            return None
        if writable and Buffer.Mdl is not None and not mdl_chain_writable(Buffer.Mdl):
            return None
        views = mdl_chain_views(Buffer.Mdl, Buffer.Offset, Buffer.Length)
        if views is None and hooks.observer is not None:
            hooks.observer.event("wsk-buf-out-of-range", self, buffer=Buffer)
        return views

    def unsupported(self, Irp: IRP) -> int:
        """A function this provider does not implement: STATUS_NOT_SUPPORTED, IRP completed."""
        return self._complete(Irp, NTSTATUS.STATUS_NOT_SUPPORTED)

    def cancel(self, op: Op) -> None:
        """IoCancelIrp reached ``op``: end it if the cancel can still win."""
        raise NotImplementedError

    def close(self, Irp: IRP) -> int:
        """WskCloseSocket."""
        raise NotImplementedError

    # --- event callbacks ---------------------------------------------------------------------
    def events_allowed_now(self) -> bool:
        """True when this socket's state allows enabling callbacks (after bind / connect)."""
        return True

    def on_events_changed(self) -> None:
        """Called after ``self.events`` changed (a category starts or stops watching)."""

    def callback_for(self, event: int) -> Callable[..., Any] | None:
        """The client's routine for ``event`` in its dispatch table, or None."""
        name = self.EVENT_CALLBACKS.get(event)
        return getattr(self.dispatch_client, name, None) if name else None

    def callbacks_running(self) -> bool:
        """True while any event callback of this socket is executing."""
        return any(self._running.values())

    def invoke(self, event: int, *args: Any) -> Any:
        """Call the client's routine for ``event`` (on the provider thread, at DISPATCH_LEVEL).

        Callbacks run on the provider thread only, so two of a socket never overlap.  The
        socket's lock is released while the routine runs (the completions recorded so far
        run first), so the routine may call back into this socket or any other.  An
        exception the routine raises is reported, not propagated; the result is then None.
        When the last running call returns, pending disables and a pending close complete.
        """
        routine = self.callback_for(event)
        if routine is None or self.closed:
            return None
        self._running[event] = self._running.get(event, 0) + 1
        engine = self.engine
        saved = engine.leave(self.lock)
        observer = hooks.observer
        began = time.monotonic() if observer is not None else 0.0
        try:
            with running_at(DISPATCH_LEVEL):
                try:
                    return routine(*args)
                finally:
                    if observer is not None:  # the verifier times code at DISPATCH_LEVEL
                        seconds = time.monotonic() - began
                        observer.event("callback-returned", self, routine=routine, seconds=seconds)
        except BaseException as exc:
            report_exception(exc, "in an event callback", routine)
            return None
        finally:
            engine.reenter(self.lock, saved)
            self._running[event] -= 1
            if not self._running[event]:
                self._callback_returned(event)

    def _callback_returned(self, event: int) -> None:
        waiting = [w for w in self._disable_waiters if w[0] == event]
        self._disable_waiters = [w for w in self._disable_waiters if w[0] != event]
        for _event, irp in waiting:
            self._complete(irp, NTSTATUS.STATUS_SUCCESS)
        if self._close_irp is not None and not self.callbacks_running():
            irp, self._close_irp = self._close_irp, None
            self._close_completed(irp)

    def _close_completed(self, Irp: IRP) -> None:
        """Complete a close IRP that waited for running callbacks."""
        self._complete(Irp, NTSTATUS.STATUS_SUCCESS)
        self.engine.after_completions(
            functools.partial(self.client.socket_closed, self.owner or self)
        )

    def finish_close(self, Irp: IRP) -> int:
        """The last step of every WskCloseSocket: complete now, or once callbacks returned."""
        if self.callbacks_running():
            IoMarkIrpPending(Irp)
            self._close_irp = Irp
            return NTSTATUS.STATUS_PENDING
        status = self._complete(Irp, NTSTATUS.STATUS_SUCCESS)
        # Only once the close IRP's routine ran may WskDeregister return.
        self.engine.after_completions(
            functools.partial(self.client.socket_closed, self.owner or self)
        )
        return status

    def _answer(self, Irp: IRP | None, status: int) -> int:
        return self._complete(Irp, status) if Irp is not None else status

    def _event_callback_control(self, control: Any, Irp: IRP | None) -> int:
        """SO_WSK_EVENT_CALLBACK: enable several events at once, or disable one."""
        if (
            not isinstance(control, WSK_EVENT_CALLBACK_CONTROL)
            or control.NpiId != NPI_WSK_INTERFACE_ID
        ):
            return self._answer(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        mask = control.EventMask & 0xFFFFFFFF
        if mask & WSK_EVENT_DISABLE:
            event = mask & ~WSK_EVENT_DISABLE
            if (
                event == 0
                or event & (event - 1)
                or not event & self.EVENTS
                or event & self.static_events
            ):
                # Exactly one event per disable; static events can never be disabled.
                return self._answer(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
            self.events &= ~event
            self.disabled_by_client |= event
            self.on_events_changed()
            if not self._running.get(event):
                return self._answer(Irp, NTSTATUS.STATUS_SUCCESS)
            if Irp is None:
                return NTSTATUS.STATUS_EVENT_PENDING
            IoMarkIrpPending(Irp)
            self._disable_waiters.append((event, Irp))
            return NTSTATUS.STATUS_PENDING
        if mask == 0 or mask & ~self.EVENTS:
            return self._answer(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if any(
            self.callback_for(bit) is None for bit in _bits(mask) if bit in self.EVENT_CALLBACKS
        ):
            return self._answer(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        if not self.events_allowed_now():
            return self._answer(Irp, NTSTATUS.STATUS_INVALID_DEVICE_STATE)
        self.events |= mask
        self.on_events_changed()
        return self._answer(Irp, NTSTATUS.STATUS_SUCCESS)

    # --- addresses -------------------------------------------------------------------------
    def _fill(self, target: SOCKADDR, address: tuple[Any, ...], Irp: IRP) -> int:
        try:
            linux.from_linux_address(target, linux.linux_family(self.family), address)
        except (ValueError, AttributeError):
            return self._complete(Irp, NTSTATUS.STATUS_INVALID_PARAMETER)
        return self._complete(Irp, NTSTATUS.STATUS_SUCCESS)

    # --- WskControlSocket -------------------------------------------------------------------
    def control(
        self,
        RequestType: int,
        ControlCode: int,
        Level: int,
        InputSize: int,
        InputBuffer: Any,
        OutputSize: int,
        OutputBuffer: Any,
        OutputSizeReturned: PSIZE_T | None,
        Irp: IRP | None,
    ) -> int:
        if (RequestType, Level, ControlCode) == (WskSetOption, SOL_SOCKET, SO_WSK_EVENT_CALLBACK):
            return self._event_callback_control(InputBuffer, Irp)
        status, out = self._control(
            RequestType, ControlCode, Level, InputSize, InputBuffer, OutputSize, OutputBuffer
        )
        if OutputSizeReturned is not None and Irp is None:
            OutputSizeReturned.value = out
        if Irp is not None:
            return self._complete(Irp, status, out if status == NTSTATUS.STATUS_SUCCESS else 0)
        return status

    def _control(
        self,
        kind: int,
        code: int,
        level: int,
        in_size: int,
        in_buf: Any,
        out_size: int,
        out_buf: Any,
    ) -> tuple[int, int]:
        if kind == WskIoctl:
            answer = self._ioctl(code, out_buf, out_size)
            return answer if answer is not None else (NTSTATUS.STATUS_NOT_SUPPORTED, 0)
        option = _OPTIONS.get((level, code))
        if option is None:
            return NTSTATUS.STATUS_NOT_SUPPORTED, 0
        linux_level, linux_name, scale = option
        if linux_level == socket.IPPROTO_IPV6 and self.family != AF_INET6:
            return NTSTATUS.STATUS_INVALID_PARAMETER, 0
        try:
            if kind == WskSetOption:
                value = read_in(in_buf, in_size)
                if value is None:
                    return NTSTATUS.STATUS_INVALID_PARAMETER, 0
                # An option value is a C int: a ULONG above INT_MAX (or a Python int no
                # ULONG holds) is refused there, not by an OverflowError inside.
                status = linux.set_wsk_option(self.sock, level, code, value)
                if status == NTSTATUS.STATUS_SUCCESS:
                    self.on_option_set(level, code)
                return status, 0
            if kind == WskGetOption:
                value = self.sock.getsockopt(linux_level, linux_name) // scale
                if code in (SO_KEEPALIVE, TCP_NODELAY):
                    value = 1 if value else 0
                return write_out(out_buf, out_size, value, 4)
        except OSError as exc:
            return linux.status_from_errno(exc.errno), 0
        return NTSTATUS.STATUS_INVALID_PARAMETER, 0

    def on_option_set(self, level: int, code: int) -> None:
        """Called after a socket option was set (a category may react)."""

    def _ioctl(self, code: int, out_buf: Any, out_size: int) -> tuple[int, int] | None:
        """An IOCTL of this category: (status, output bytes), or None if not one of its own."""
        return None


#: (Windows level, option) -> (Linux level, Linux option, scale from Windows units).
_OPTIONS = linux.WSK_OPTIONS


#: The options and IOCTLs whose pages say "the WSK application must specify a pointer to
#: an IRP" (spec section 9.1): (kind, level, code), level None for IOCTLs (ignored there).
_IRP_REQUIRED: frozenset[tuple[int, int | None, int]] = frozenset(
    {
        *(
            (kind, SOL_SOCKET, code)
            for kind in (WskSetOption, WskGetOption)
            for code in (
                SO_WSK_SECURITY,
                SO_REUSEADDR,
                SO_EXCLUSIVEADDRUSE,
                SO_CONDITIONAL_ACCEPT,
                SO_KEEPALIVE,
                SO_RCVBUF,
            )
        ),
        *(
            (WskIoctl, None, code)
            for code in (
                SIO_WSK_SET_REMOTE_ADDRESS,
                SIO_WSK_QUERY_IDEAL_SEND_BACKLOG,
                SIO_WSK_QUERY_RECEIVE_BACKLOG,
                SIO_WSK_SET_TCP_SILENT_MODE,
            )
        ),
    }
)


def needs_irp(kind: int, code: int, level: int) -> bool:
    """True for a WskControlSocket request whose page requires an IRP."""
    return (kind, None if kind == WskIoctl else level, code) in _IRP_REQUIRED


def read_in(buf: Any, size: int) -> int | None:
    """An option value from an int, a PULONG/PSIZE_T box, or a ULONG in a byte buffer."""
    if isinstance(buf, bool):
        return int(buf)
    if isinstance(buf, int):
        return buf
    if isinstance(buf, PSIZE_T):
        return buf.value
    try:
        raw = bytes(memoryview(buf))
    except TypeError:
        return None
    if size not in (1, 4, 8) or len(raw) < size:
        return None
    return int.from_bytes(raw[:size], "little")


def write_out(buf: Any, size: int, value: int, width: int) -> tuple[int, int]:
    """Write ``value`` to a PSIZE_T/PULONG box or a byte buffer of at least ``width`` bytes."""
    if isinstance(buf, PSIZE_T):
        buf.value = value
        return NTSTATUS.STATUS_SUCCESS, width
    try:
        view = memoryview(buf)
    except TypeError:
        return NTSTATUS.STATUS_INVALID_PARAMETER, 0
    if view.readonly:
        return NTSTATUS.STATUS_INVALID_PARAMETER, 0
    if size < width or len(view) < width:
        return NTSTATUS.STATUS_BUFFER_TOO_SMALL, 0
    view.cast("B")[:width] = struct.pack("<Q" if width == 8 else "<I", value)
    return NTSTATUS.STATUS_SUCCESS, width


def _bits(mask: int) -> list[int]:
    """The single-bit flags set in ``mask``."""
    return [1 << i for i in range(32) if mask & (1 << i)]
