"""The WSK half of a loaded C driver: registration, the provider's dispatch tables, sockets,
and event callbacks into C.

What it does: :class:`WskRuntime` adds to :class:`~pywsk.cdriver.runtime.Runtime` the
``pyb_Wsk*`` functions.  ``WskRegister`` / ``WskCaptureProviderNPI`` register a pywsk
client for the C registration; every member of the provider tables (``wskdispatch.c``)
arrives at :meth:`WskRuntime.pyb_WskCall` with its parameters, which are converted
(SOCKADDR_IN / SOCKADDR_IN6, WSK_BUF with its MDL chain, the option buffers of
WskControlSocket, WSK_EVENT_CALLBACK_CONTROL) and handed to pywsk's provider function of
the same name on the pywsk socket behind the C socket.  Results that are C memory
(a local or remote address, a new socket in ``IoStatus.Information``) are written back
before the C completion routine runs.  A client dispatch table given by C (WskSocket,
WskSocketConnect, WskAccept, WskAcceptEvent's out-parameter) becomes a pywsk table whose
callbacks call the C functions; a receive indication is handed to C as C
WSK_DATA_INDICATION elements over pywsk's own buffers, kept until WskRelease if C retains it.

What it refuses: calls pywsk does not implement for C (WskGetAddressInfo, WskGetNameInfo,
WskInspectComplete and inspect/abort callbacks, the Ex calls' control information) complete
their IRP with STATUS_NOT_IMPLEMENTED; a family other than AF_INET / AF_INET6 is handed to
pywsk as an unknown SOCKADDR, which pywsk answers with its status.

What always holds: a C socket stays mapped to its pywsk socket after WskCloseSocket
(quarantined), so a use after close reaches pywsk's check; client callbacks run where
pywsk runs them (the provider thread), at the IRQL pywsk sets.
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
    NPI_WSK_INTERFACE_ID,
    PPVOID,
    PSIZE_T,
    SO_WSK_EVENT_CALLBACK,
    SOCKADDR,
    SOCKADDR_IN,
    SOCKADDR_IN6,
    SOL_SOCKET,
    WSK_BUF,
    WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_CLIENT_DISPATCH,
    WSK_CLIENT_LISTEN_DISPATCH,
    WSK_CLIENT_NPI,
    WSK_CLIENT_STREAM_DISPATCH,
    WSK_DATA_INDICATION,
    WSK_EVENT_CALLBACK_CONTROL,
    WSK_FLAG_CONNECTION_SOCKET,
    WSK_FLAG_LISTEN_SOCKET,
    WSK_FLAG_STREAM_SOCKET,
    WSK_PROVIDER_CONNECTION_DISPATCH,
    WSK_PROVIDER_LISTEN_DISPATCH,
    WSK_PROVIDER_NPI,
    WSK_PROVIDER_STREAM_DISPATCH,
    WSK_REGISTRATION,
    WSK_SET_STATIC_EVENT_CALLBACKS,
    WSK_SOCKET,
    WskCaptureProviderNPI,
    WskDeregister,
    WskRegister,
    WskReleaseProviderNPI,
)
from .runtime import Leak, Runtime, signed32

__all__ = ["WskRuntime"]

_NPI_BYTES = NPI_WSK_INTERFACE_ID.bytes_le
#: How long WskCloseSocket waits for early WskReleases to reach pywsk.
LATE_RELEASE_WAIT = 5.0


class _UnknownAddress(SOCKADDR):
    """A SOCKADDR of a family pywsk does not model (pywsk answers with its status)."""

    def __init__(self, family: int) -> None:
        self.family = family

    @property
    def sa_family(self) -> int:
        return self.family


class WskRuntime(Runtime):
    """A loaded driver's runtime, WSK included."""

    def __init__(self, module: Any, name: str) -> None:
        self._registrations: dict[int, WSK_REGISTRATION] = {}
        self._npis: dict[int, WSK_PROVIDER_NPI] = {}
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
        self._calls: dict[int, Callable[..., int]] = {
            self.lib.PYWSK_FN_SOCKET: self._socket,
            self.lib.PYWSK_FN_SOCKET_CONNECT: self._socket_connect,
            self.lib.PYWSK_FN_CONTROL_CLIENT: self._control_client,
            self.lib.PYWSK_FN_CONTROL_SOCKET: self._control_socket,
            self.lib.PYWSK_FN_CLOSE_SOCKET: self._close_socket,
            self.lib.PYWSK_FN_BIND: self._address_call("WskBind"),
            self.lib.PYWSK_FN_CONNECT: self._address_call("WskConnect"),
            self.lib.PYWSK_FN_LISTEN: self._listen,
            self.lib.PYWSK_FN_ACCEPT: self._accept,
            self.lib.PYWSK_FN_GET_LOCAL_ADDRESS: self._address_out("WskGetLocalAddress"),
            self.lib.PYWSK_FN_GET_REMOTE_ADDRESS: self._address_out("WskGetRemoteAddress"),
            self.lib.PYWSK_FN_SEND: self._buffer_call("WskSend"),
            self.lib.PYWSK_FN_RECEIVE: self._buffer_call("WskReceive"),
            self.lib.PYWSK_FN_DISCONNECT: self._buffer_call("WskDisconnect"),
            self.lib.PYWSK_FN_RELEASE: self._release,
        }

    # --- registration ------------------------------------------------------------------------
    def pyb_WskRegister(self, cnpi: Any, creg: Any, *site: Any) -> int:
        npi = self.ffi.cast("WSK_CLIENT_NPI *", cnpi)
        if npi == self.ffi.NULL or npi.Dispatch == self.ffi.NULL or creg == self.ffi.NULL:
            return signed32(NTSTATUS.STATUS_INVALID_PARAMETER)
        registration = WSK_REGISTRATION()
        client = WSK_CLIENT_NPI(
            self.address(npi.ClientContext), WSK_CLIENT_DISPATCH(npi.Dispatch.Version, 0, None)
        )
        status = WskRegister(client, registration)
        if status == NTSTATUS.STATUS_SUCCESS:
            self._registrations[self.address(creg)] = registration
        return signed32(status)

    def _registration(self, creg: Any) -> WSK_REGISTRATION:
        registration = self._registrations.get(self.address(creg))
        if registration is None:
            raise nt.BugCheck(
                nt.BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                "a WSK_REGISTRATION that WskRegister did not initialise (or one deregistered)",
            )
        return registration

    def pyb_WskCaptureProviderNPI(self, creg: Any, timeout: int, cnpi: Any, *site: Any) -> int:
        npi = WSK_PROVIDER_NPI()
        status = WskCaptureProviderNPI(self._registration(creg), timeout, npi)
        if status == NTSTATUS.STATUS_SUCCESS:
            out = self.ffi.cast("WSK_PROVIDER_NPI *", cnpi)
            self._npis[self.address(creg)] = npi
            out.Client = self.ffi.cast("void *", creg)  # the client handle is the registration
            out.Dispatch = self.ffi.cast(
                "WSK_PROVIDER_DISPATCH *", self.lib.PywskRtProviderDispatch()
            )
        return signed32(status)

    def pyb_WskRegistrationOp(self, op: int, creg: Any, *site: Any) -> None:
        registration = self._registration(creg)
        if op == 0:
            WskReleaseProviderNPI(registration)
        else:
            WskDeregister(registration)
            del self._registrations[self.address(creg)]

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

    def information(self, value: Any) -> int:
        if isinstance(value, WSK_SOCKET):
            return self.c_socket(value)
        return super().information(value)

    def _socket(self, target: int, args: Any, irp: Any) -> int:
        client, dispatch_table = self._provider(target)
        family, kind, protocol, flags, context, dispatch, sd = (args[i] for i in range(7))
        return int(dispatch_table.WskSocket(
            client, family, kind, protocol, flags, context or None,
            self._client_dispatch(flags, dispatch), None, None, sd or None, irp,
        ))  # fmt: skip

    def _socket_connect(self, target: int, args: Any, irp: Any) -> int:
        client, dispatch_table = self._provider(target)
        kind, protocol, local, remote, flags, context, dispatch, sd = (args[i] for i in range(8))
        return int(dispatch_table.WskSocketConnect(
            client, kind, protocol, self.sockaddr_in(local), self.sockaddr_in(remote), flags,
            context or None, self._client_dispatch(WSK_FLAG_CONNECTION_SOCKET, dispatch),
            None, None, sd or None, irp,
        ))  # fmt: skip

    def _provider(self, target: int) -> tuple[Any, Any]:
        """The pywsk client and provider table behind a C ``PWSK_CLIENT``."""
        npi = self._npis.get(target)
        if npi is None or npi.Dispatch is None:
            raise nt.BugCheck(
                nt.BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                f"0x{target:x} is not a WSK client from WskCaptureProviderNPI",
            )
        return npi.Client, npi.Dispatch

    def _event_control(self, pointer: int) -> WSK_EVENT_CALLBACK_CONTROL:
        c = self.ffi.cast("WSK_EVENT_CALLBACK_CONTROL *", pointer)
        npi_id: Any = None
        if c.NpiId != self.ffi.NULL:
            raw = bytes(self.ffi.buffer(self.ffi.cast("char *", c.NpiId), 16))
            npi_id = NPI_WSK_INTERFACE_ID if raw == _NPI_BYTES else raw
        return WSK_EVENT_CALLBACK_CONTROL(npi_id, c.EventMask)

    def _control_client(self, target: int, args: Any, irp: Any) -> int:
        client, dispatch_table = self._provider(target)
        code, in_size, in_buf, out_size, out_buf, out_returned = (args[i] for i in range(6))
        returned = PSIZE_T() if out_returned else None
        if code == WSK_SET_STATIC_EVENT_CALLBACKS and in_buf:
            given: Any = self._event_control(in_buf)
        else:
            given = self._bytes(in_buf, in_size)
        status: int = dispatch_table.WskControlClient(
            client,
            code,
            in_size,
            given,
            out_size,
            self._bytes(out_buf, out_size),
            returned,
            irp,
        )
        if returned is not None:
            self.ffi.cast("size_t *", out_returned)[0] = returned.value
        return status

    def _bytes(self, pointer: int, size: int) -> Any:
        return self.ffi.buffer(self.ffi.cast("char *", pointer), size) if pointer and size else None

    def _control_socket(self, target: int, args: Any, irp: Any) -> int:
        sock = self._socket_of(target)
        kind, code, level, in_size, in_buf, out_size, out_buf, out_returned = (
            args[i] for i in range(8)
        )
        if (level, code) == (SOL_SOCKET, SO_WSK_EVENT_CALLBACK) and in_buf:
            given: Any = self._event_control(in_buf)
        else:
            given = self._bytes(in_buf, in_size)
        returned = PSIZE_T() if out_returned else None
        status: int = sock.Dispatch.WskControlSocket(
            sock, kind, code, level, in_size, given, out_size, self._bytes(out_buf, out_size),
            returned, irp,
        )  # fmt: skip
        if returned is not None and irp is None:
            self.ffi.cast("size_t *", out_returned)[0] = returned.value
        return status

    def _socket_of(self, target: int) -> WSK_SOCKET:
        sock = self._sockets.get(target)
        if sock is None:
            raise nt.BugCheck(
                nt.BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                f"0x{target:x} is not a WSK socket",
            )
        return sock

    def _close_socket(self, target: int, args: Any, irp: Any) -> int:
        sock = self._socket_of(target)
        with self._late_done:  # WskReleases the driver already made go first
            self._late_done.wait_for(lambda: self._late == 0, LATE_RELEASE_WAIT)
        return int(sock.Dispatch.WskCloseSocket(sock, irp))

    def _address_call(self, name: str) -> Callable[..., int]:
        def call(target: int, args: Any, irp: Any) -> int:
            sock = self._socket_of(target)
            return getattr(sock.Dispatch, name)(sock, self.sockaddr_in(args[0]), args[1], irp)  # type: ignore[no-any-return]

        return call

    def _address_out(self, name: str) -> Callable[..., int]:
        def call(target: int, args: Any, irp: Any, cirp: Any = None) -> int:
            sock = self._socket_of(target)
            address: SOCKADDR = SOCKADDR_IN6() if sock_family(sock) == AF_INET6 else SOCKADDR_IN()
            pointer = args[0]
            if cirp is not None:
                self.on_completion(cirp, lambda: self.sockaddr_out(address, pointer))
            return getattr(sock.Dispatch, name)(sock, address, irp)  # type: ignore[no-any-return]

        return call

    def _buffer_call(self, name: str) -> Callable[..., int]:
        def call(target: int, args: Any, irp: Any) -> int:
            sock = self._socket_of(target)
            return getattr(sock.Dispatch, name)(sock, self.wsk_buf(args[0]), args[1], irp)  # type: ignore[no-any-return]

        return call

    def _copy_out(self, cirp: Any, address: SOCKADDR, pointer: int) -> None:
        self.on_completion(cirp, lambda: self.sockaddr_out(address, pointer))

    def _listen(self, target: int, args: Any, irp: Any) -> int:
        sock = self._socket_of(target)
        return sock.Dispatch.WskListen(sock, irp)  # type: ignore[no-any-return]

    def _accept(self, target: int, args: Any, irp: Any, cirp: Any = None) -> int:
        sock = self._socket_of(target)
        flags, context, dispatch, local, remote = (args[i] for i in range(5))
        six = sock_family(sock) == AF_INET6
        addresses: list[SOCKADDR | None] = []
        for pointer in (local, remote):
            address = (SOCKADDR_IN6() if six else SOCKADDR_IN()) if pointer else None
            addresses.append(address)
            if address is not None and cirp is not None:
                self._copy_out(cirp, address, pointer)
        return sock.Dispatch.WskAccept(  # type: ignore[no-any-return]
            sock, flags, context or None,
            self._client_dispatch(WSK_FLAG_CONNECTION_SOCKET, dispatch), addresses[0], addresses[1], irp,
        )  # fmt: skip

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

    def _late_release(self, sock: WSK_SOCKET, indication: WSK_DATA_INDICATION) -> None:
        try:
            sock.Dispatch.WskRelease(sock, indication)
        finally:
            with self._late_done:
                self._late -= 1
                self._late_done.notify_all()

    def pyb_WskCall(self, function: int, target: Any, args: Any, cirp: Any) -> int:
        handler = self._calls.get(function)
        irp = self._irp(cirp) if cirp != self.ffi.NULL else None
        if handler is None:
            return self._not_implemented(irp)
        address = self.address(target)
        if function in (self.lib.PYWSK_FN_GET_LOCAL_ADDRESS, self.lib.PYWSK_FN_GET_REMOTE_ADDRESS,
                        self.lib.PYWSK_FN_ACCEPT):  # fmt: skip
            status = handler(address, args, irp, cirp if irp is not None else None)
        else:
            status = handler(address, args, irp)
        if function == self.lib.PYWSK_FN_CLOSE_SOCKET and irp is not None:
            self.on_completion(cirp, lambda: self._quarantine_freed(self._sockets, address))
        return signed32(status)

    def _not_implemented(self, irp: Any) -> int:
        status = NTSTATUS.STATUS_NOT_IMPLEMENTED
        if irp is not None:
            nt.begin_request(irp, "pywsk.cdriver")
            irp.IoStatus.Status = status
            irp.IoStatus.Information = 0
            with nt.running_at(nt.DISPATCH_LEVEL):
                nt.IoCompleteRequest(irp)
        return signed32(status)

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
            with self._lock:
                self._in_callback.discard(head)
                early = self._early.pop(head, None)
                unclaimed = (
                    self._retained.pop(head, None) if status != NTSTATUS.STATUS_PENDING else None
                )
            if unclaimed is not None:
                self._drop_indication(keep)
            if early is not None:
                if status == NTSTATUS.STATUS_PENDING:
                    subsystem.engine.post(self._late_release, *early)  # after pywsk records it
                else:
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
        accept = c.WskAcceptEvent
        return WSK_CLIENT_LISTEN_DISPATCH(
            WskAcceptEvent=None if accept == self.ffi.NULL else self._accept_event(accept)
        )

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

    def leaks(self) -> list[Leak]:
        found = super().leaks()
        with self._lock:
            sockets = list(self._sockets.values())
            registrations = list(self._registrations)
        found += [
            Leak("socket", f"{s!r} not closed") for s in sockets if not getattr(s, "closed", True)
        ]
        found += [Leak("WSK registration", f"0x{r:x} not deregistered") for r in registrations]
        return found


def sock_family(sock: WSK_SOCKET) -> int:
    """The Windows address family of a pywsk socket."""
    family = getattr(sock, "family", None)
    if family is None:
        inner = getattr(sock, "sock", None)
        if isinstance(inner, socket.socket):
            return AF_INET6 if inner.family == socket.AF_INET6 else AF_INET
        return AF_INET
    return int(family)
