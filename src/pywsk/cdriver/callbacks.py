"""Conversions between C and pywsk's WSK structures, and client callbacks into C.

What it does: :class:`CallbackRuntime` adds to :class:`~pywsk.cdriver.runtime.Runtime`
the conversions every WSK call needs (SOCKADDR_IN / SOCKADDR_IN6 both ways, WSK_BUF with
its MDL chain, the C socket object of a pywsk socket) and turns a client dispatch table
given by C (WskSocket, WskSocketConnect, WskAccept, WskAcceptEvent's out-parameter) into a
pywsk table whose callbacks call the C functions.  A receive indication reaches C as C
WSK_DATA_INDICATION elements and C MDLs over pywsk's own buffers, kept until WskRelease if
C retains it; a WskRelease that comes before pywsk has recorded the retention (another
thread of the driver may release at once) is completed on the provider thread right after.

What it refuses: WskRelease of a list the driver does not hold (BugCheck).

What always holds: callbacks run where pywsk runs them (the provider thread, at
DISPATCH_LEVEL); a stopped driver's callbacks return a neutral status without running C.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pywsk.nt as nt

from ..nt.status import NTSTATUS
from ..provider import subsystem
from ..wsk import (
    AF_INET,
    AF_INET6,
    IN6_ADDR,
    IN_ADDR,
    PPVOID,
    PSIZE_T,
    SOCKADDR,
    SOCKADDR_IN,
    SOCKADDR_IN6,
    WSK_BUF,
    WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_CLIENT_LISTEN_DISPATCH,
    WSK_CLIENT_STREAM_DISPATCH,
    WSK_DATA_INDICATION,
    WSK_FLAG_CONNECTION_SOCKET,
    WSK_FLAG_DATAGRAM_SOCKET,
    WSK_FLAG_LISTEN_SOCKET,
    WSK_FLAG_STREAM_SOCKET,
    WSK_INSPECT_ID,
    WSK_PROVIDER_CONNECTION_DISPATCH,
    WSK_PROVIDER_DATAGRAM_DISPATCH,
    WSK_PROVIDER_LISTEN_DISPATCH,
    WSK_PROVIDER_STREAM_DISPATCH,
    WSK_SOCKET,
    WskInspectReject,
)
from .kernel import KernelRuntime

__all__ = ["CallbackRuntime", "sock_family"]

#: How long WskCloseSocket waits for early WskReleases to reach pywsk.
LATE_RELEASE_WAIT = 5.0


class _UnknownAddress(SOCKADDR):
    """A SOCKADDR of a family pywsk does not model (pywsk answers with its status)."""

    def __init__(self, family: int) -> None:
        self.family = family

    @property
    def sa_family(self) -> int:
        return self.family


class CallbackRuntime(KernelRuntime):
    """A loaded driver's runtime: conversions and client callbacks (see the module notes)."""

    def __init__(self, module: Any, name: str) -> None:
        self._sockets: dict[int, WSK_SOCKET] = {}
        self._c_sockets: dict[int, int] = {}  # id(pywsk socket) -> C address
        self._retained: dict[int, tuple[WSK_DATA_INDICATION, list[Any]]] = {}
        # Lists whose WskReceiveEvent is still running, and WskReleases that came too early
        # for pywsk (it records a retained list when the callback has returned): done on the
        # provider thread right after it recorded it.
        self._in_callback: set[int] = set()
        self._early: dict[int, tuple[WSK_SOCKET, WSK_DATA_INDICATION]] = {}
        self._late = 0
        super().__init__(module, name)
        self._late_done = threading.Condition(self._lock)

    def _socket_of(self, target: int) -> WSK_SOCKET:
        sock = self._sockets.get(target)
        if sock is None:
            raise nt.BugCheck(
                nt.BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                f"0x{target:x} is not a WSK socket",
            )
        return sock

    def wait_for_late_releases(self) -> None:
        """Before a close: the WskReleases the driver already made reach pywsk first."""
        with self._late_done:
            self._late_done.wait_for(lambda: self._late == 0, LATE_RELEASE_WAIT)

    # --- conversions -------------------------------------------------------------------------
    def sockaddr_in(self, pointer: int) -> SOCKADDR:
        """The pywsk SOCKADDR for a C ``SOCKADDR *`` (AF_INET or AF_INET6)."""
        family = self.ffi.cast("SOCKADDR *", pointer).sa_family
        if family == AF_INET:
            raw = bytes(self.ffi.buffer(self.ffi.cast("char *", pointer), 8))
            port = int.from_bytes(raw[2:4], "little")
            return SOCKADDR_IN(AF_INET, port, IN_ADDR(raw[4:8]))
        if family == AF_INET6:
            six = self.ffi.cast("SOCKADDR_IN6 *", pointer)
            raw = bytes(self.ffi.buffer(self.ffi.cast("char *", pointer), 24))
            return SOCKADDR_IN6(
                AF_INET6, six.sin6_port, six.sin6_flowinfo, IN6_ADDR(raw[8:24]), six.sin6_scope_id
            )
        return _UnknownAddress(family)

    def sockaddr_out(self, address: SOCKADDR, pointer: int) -> None:
        """Write a pywsk SOCKADDR into C memory (a SOCKADDR_IN or SOCKADDR_IN6)."""
        memory = self.ffi.buffer(self.ffi.cast("char *", pointer), 16)
        if isinstance(address, SOCKADDR_IN):
            memory[0:16] = (
                AF_INET.to_bytes(2, "little")
                + address.sin_port.to_bytes(2, "little")
                + address.sin_addr.s_b
                + bytes(8)
            )
        elif isinstance(address, SOCKADDR_IN6):
            six = self.ffi.cast("SOCKADDR_IN6 *", pointer)
            six.sin6_family = AF_INET6
            six.sin6_port = address.sin6_port
            six.sin6_flowinfo = address.sin6_flowinfo
            self.ffi.buffer(self.ffi.cast("char *", pointer + 8), 16)[0:16] = address.sin6_addr.Byte
            six.sin6_scope_id = address.sin6_scope_id

    def wsk_buf(self, pointer: int) -> WSK_BUF | None:
        if pointer == 0:
            return None
        c = self.ffi.cast("WSK_BUF *", pointer)
        return WSK_BUF(self.mdl_chain(c.Mdl), c.Offset, c.Length)

    def c_socket(self, sock: WSK_SOCKET) -> int:
        """The C socket for a pywsk socket (made on first sight)."""
        address = self._c_sockets.get(id(sock))
        if address is None:
            dispatch = sock.Dispatch
            kind = (
                WSK_FLAG_LISTEN_SOCKET
                if isinstance(dispatch, WSK_PROVIDER_LISTEN_DISPATCH)
                else WSK_FLAG_CONNECTION_SOCKET
                if isinstance(dispatch, WSK_PROVIDER_CONNECTION_DISPATCH)
                else WSK_FLAG_STREAM_SOCKET
                if isinstance(dispatch, WSK_PROVIDER_STREAM_DISPATCH)
                else WSK_FLAG_DATAGRAM_SOCKET
                if isinstance(dispatch, WSK_PROVIDER_DATAGRAM_DISPATCH)
                else 0
            )
            pointer = self.lib.PywskRtNewSocket(kind)
            if pointer == self.ffi.NULL:
                raise MemoryError("no memory for a socket object")
            address = self.address(pointer)
            with self._lock:
                self._sockets[address] = sock
                self._c_sockets[id(sock)] = address
        return address

    def _released(self, table: dict[int, Any], address: int, obj: Any) -> None:
        # The pywsk socket may live on (and its id with it, or be reused by a new socket's):
        # it must not map to memory that malloc may hand out again.
        if table is self._sockets and obj is not None and self._c_sockets.get(id(obj)) == address:
            del self._c_sockets[id(obj)]

    def information(self, value: Any) -> int:
        if isinstance(value, WSK_SOCKET):
            return self.c_socket(value)
        return super().information(value)

    def _release(self, target: int, args: Any, irp: Any) -> int:
        sock = self._socket_of(target)
        with self._lock:
            retained = self._retained.pop(args[0], None)
            early = retained is not None and args[0] in self._in_callback
            if early:
                self._early[args[0]] = (sock, retained[0])  # type: ignore[index]
                self._late += 1
        if retained is None:
            raise nt.BugCheck(
                nt.BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                f"WskRelease on 0x{args[0]:x}, which is not a data indication list the driver retained",
            )
        indication, keep = retained
        self._drop_indication(keep)  # C's views go first: pywsk releases the buffers
        if early:
            return NTSTATUS.STATUS_SUCCESS
        return int(sock.Dispatch.WskRelease(sock, indication))

    def _after_retained(self, head: int) -> None:
        """On the provider thread, after pywsk recorded a retained list: a WskRelease the
        driver made before that is done now."""
        with self._lock:
            self._in_callback.discard(head)
            early = self._early.pop(head, None)
        if early is not None:
            self._late_release(*early)

    def _late_release(self, sock: WSK_SOCKET, indication: WSK_DATA_INDICATION) -> None:
        try:
            sock.Dispatch.WskRelease(sock, indication)
        finally:
            with self._late_done:
                self._late -= 1
                self._late_done.notify_all()

    # --- client callbacks into C ---------------------------------------------------------------
    def _client_dispatch(self, flags: int, pointer: int) -> Any:
        if not pointer:
            return None
        if flags & WSK_FLAG_STREAM_SOCKET:
            stream = self.ffi.cast("WSK_CLIENT_STREAM_DISPATCH *", pointer)
            return WSK_CLIENT_STREAM_DISPATCH(
                self._listen_dispatch(self.address(stream.Listen)),
                self._connection_dispatch(self.address(stream.Connect)),
            )
        if flags & WSK_FLAG_LISTEN_SOCKET:
            return self._listen_dispatch(pointer)
        if flags & WSK_FLAG_CONNECTION_SOCKET:
            return self._connection_dispatch(pointer)
        if flags & WSK_FLAG_DATAGRAM_SOCKET:
            return self.datagram_dispatch(pointer)
        return None

    def datagram_dispatch(self, pointer: int) -> Any:
        """The client table of a datagram socket (:mod:`pywsk.cdriver.datagram`)."""
        return None

    def _callback(self, function: Any, convert: Callable[..., tuple[Any, ...]], failed: int) -> Any:
        if function == self.ffi.NULL:
            return None

        def callback(*args: Any) -> int:
            ran, result = self.invoke(function, *convert(*args))
            return (result & 0xFFFFFFFF) if ran else failed

        return callback

    def _connection_dispatch(self, pointer: int) -> WSK_CLIENT_CONNECTION_DISPATCH | None:
        if not pointer:
            return None
        c = self.ffi.cast("WSK_CLIENT_CONNECTION_DISPATCH *", pointer)
        return WSK_CLIENT_CONNECTION_DISPATCH(
            WskReceiveEvent=self._receive_event(c.WskReceiveEvent),
            WskDisconnectEvent=self._callback(
                c.WskDisconnectEvent, lambda ctx, flags: (ctx or 0, flags), NTSTATUS.STATUS_SUCCESS
            ),
            WskSendBacklogEvent=self._callback(
                c.WskSendBacklogEvent, lambda ctx, size: (ctx or 0, size), NTSTATUS.STATUS_SUCCESS
            ),
        )

    def _receive_event(self, function: Any) -> Any:
        if function == self.ffi.NULL:
            return None

        def callback(
            context: Any, flags: int, indication: WSK_DATA_INDICATION | None, size: int,
            accepted: PSIZE_T,
        ) -> int:  # fmt: skip
            head, keep = self._c_indication(indication)
            if head:  # before C runs: it may hand the list to a thread that releases it at once
                with self._lock:
                    self._retained[head] = (indication, keep)  # type: ignore[assignment]
                    self._in_callback.add(head)
            out = self.ffi.new("size_t *")
            ran, result = self.invoke(function, context or 0, flags, head, size, out)
            accepted.value = int(out[0])
            status = (result & 0xFFFFFFFF) if ran else NTSTATUS.STATUS_DATA_NOT_ACCEPTED
            if not head:
                return status
            if status == NTSTATUS.STATUS_PENDING:
                # pywsk records the retention when this returns: a WskRelease until then is
                # deferred, and done after it (posted work runs after this handler).
                subsystem.engine.post(self._after_retained, head)
                return status
            with self._lock:
                self._in_callback.discard(head)
                early = self._early.pop(head, None)
                self._retained.pop(head, None)
            self._drop_indication(keep)
            if early is not None:  # released, though not retained: nothing for pywsk to do
                with self._late_done:
                    self._late -= 1
                    self._late_done.notify_all()
            return status

        return callback

    def _c_indication(self, indication: WSK_DATA_INDICATION | None) -> tuple[int, list[Any]]:
        """C WSK_DATA_INDICATION elements (and C MDLs) over pywsk's indicated buffers."""
        keep: list[Any] = []
        head = 0
        previous: Any = None
        while indication is not None:
            node = self.ffi.new("WSK_DATA_INDICATION *")
            keep.append(node)
            node.Buffer.Offset = indication.Buffer.Offset
            node.Buffer.Length = indication.Buffer.Length
            node.Buffer.Mdl = self._c_mdl_chain(indication.Buffer.Mdl, keep)
            if previous is None:
                head = self.address(node)
            else:
                previous.Next = node
            previous = node
            indication = indication.Next
        return head, keep

    def _c_mdl_chain(self, mdl: nt.MDL | None, keep: list[Any]) -> Any:
        first: Any = self.ffi.NULL
        previous: Any = None
        while mdl is not None:
            view = mdl._view
            data = self.ffi.from_buffer(view)
            cmdl = self.ffi.new("MDL *")
            address = self.address(data)
            cmdl.StartVa = self.ffi.cast("void *", address & ~(nt.PAGE_SIZE - 1))
            cmdl.ByteOffset = address & (nt.PAGE_SIZE - 1)
            cmdl.ByteCount = mdl.ByteCount
            keep += [data, cmdl]
            with self._lock:
                self._mdls[self.address(cmdl)] = mdl
            if previous is None:
                first = cmdl
            else:
                previous.Next = cmdl
            previous = cmdl
            mdl = mdl.Next
        return first

    def _drop_indication(self, keep: list[Any]) -> None:
        with self._lock:
            for item in keep:
                if self.ffi.typeof(item) is self.ffi.typeof("MDL *"):
                    self._mdls.pop(self.address(item), None)
        for item in keep:
            if self.ffi.typeof(item).kind == "array":
                self.ffi.release(item)

    def _listen_dispatch(self, pointer: int) -> WSK_CLIENT_LISTEN_DISPATCH | None:
        if not pointer:
            return None
        c = self.ffi.cast("WSK_CLIENT_LISTEN_DISPATCH *", pointer)
        accept, inspect, abort = c.WskAcceptEvent, c.WskInspectEvent, c.WskAbortEvent
        null = self.ffi.NULL
        return WSK_CLIENT_LISTEN_DISPATCH(
            WskAcceptEvent=None if accept == null else self._accept_event(accept),
            WskInspectEvent=None if inspect == null else self._inspect_event(inspect),
            WskAbortEvent=None if abort == null else self._abort_event(abort),
        )

    def _c_inspect_id(self, inspect_id: WSK_INSPECT_ID | None) -> Any:
        if inspect_id is None:
            return self.ffi.NULL
        c = self.ffi.new("WSK_INSPECT_ID *")
        c.Key, c.SerialNumber = inspect_id.Key, inspect_id.SerialNumber
        return c

    def _inspect_event(self, function: Any) -> Callable[..., int]:
        def callback(
            context: Any, local: SOCKADDR | None, remote: SOCKADDR | None,
            inspect_id: WSK_INSPECT_ID | None,
        ) -> int:  # fmt: skip
            addresses = self.ffi.new("char[]", 2 * 128)
            base = self.address(addresses)
            for address, at in ((local, base), (remote, base + 128)):
                if address is not None:
                    self.sockaddr_out(address, at)
            c_id = self._c_inspect_id(inspect_id)
            ran, result = self.invoke(
                function,
                context or 0,
                base if local is not None else 0,
                base + 128 if remote is not None else 0,
                c_id,
            )
            return (result & 0xFFFFFFFF) if ran else WskInspectReject

        return callback

    def _abort_event(self, function: Any) -> Callable[..., int]:
        def callback(context: Any, inspect_id: WSK_INSPECT_ID) -> int:
            ran, result = self.invoke(function, context or 0, self._c_inspect_id(inspect_id))
            return (result & 0xFFFFFFFF) if ran else NTSTATUS.STATUS_SUCCESS

        return callback

    def _accept_event(self, function: Any) -> Callable[..., int]:
        def callback(
            context: Any, flags: int, local: SOCKADDR, remote: SOCKADDR,
            sock: WSK_SOCKET | None, out_context: PPVOID[Any], out_dispatch: PPVOID[Any],
        ) -> int:  # fmt: skip
            addresses = self.ffi.new("char[]", 2 * 128)
            base = self.address(addresses)
            self.sockaddr_out(local, base)
            self.sockaddr_out(remote, base + 128)
            c_context = self.ffi.new("void **")
            c_dispatch = self.ffi.new("WSK_CLIENT_CONNECTION_DISPATCH **")
            accept = self.c_socket(sock) if sock is not None else 0
            ran, result = self.invoke(
                function, context or 0, flags, base, base + 128, accept, c_context, c_dispatch
            )
            if not ran:
                return NTSTATUS.STATUS_REQUEST_NOT_ACCEPTED
            out_context.value = self.address(c_context[0]) or None
            out_dispatch.value = self._connection_dispatch(self.address(c_dispatch[0]))
            return result & 0xFFFFFFFF

        return callback


def sock_family(sock: WSK_SOCKET) -> int:
    """The Windows address family of a pywsk socket."""
    family = getattr(sock, "family", None)
    if family is None:
        inner = getattr(sock, "sock", None)
        if isinstance(inner, socket.socket):
            return AF_INET6 if inner.family == socket.AF_INET6 else AF_INET
        return AF_INET
    return int(family)
