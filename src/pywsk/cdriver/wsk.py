"""The WSK half of a loaded C driver: registration and the provider's dispatch tables.

What it does: :class:`WskRuntime` adds the ``pyb_Wsk*`` functions to
:class:`~pywsk.cdriver.callbacks.CallbackRuntime`.  ``WskRegister`` /
``WskCaptureProviderNPI`` register a pywsk client for the C registration; every member of
the provider tables (``wskdispatch.c``) arrives at :meth:`WskRuntime.pyb_WskCall` with its
parameters, which are converted (SOCKADDR_IN / SOCKADDR_IN6, WSK_BUF with its MDL chain,
UNICODE_STRING, ADDRINFOEXW, WSK_INSPECT_ID, the option buffers of WskControlSocket,
WSK_EVENT_CALLBACK_CONTROL) and handed to pywsk's provider function of the same name.
Results that are C memory (an address, an ADDRINFOEXW chain, the names of
WskGetNameInfo, a new socket in ``IoStatus.Information``) are written back before the C
completion routine runs.  Datagram sockets and the extended calls are
:mod:`pywsk.cdriver.datagram`'s.

What it refuses: a function number it does not know completes its IRP with
STATUS_NOT_IMPLEMENTED; a family other than AF_INET / AF_INET6 reaches pywsk as an
unknown SOCKADDR, which pywsk answers with its status; an unknown socket, client or
address list is a BugCheck.

What always holds: a C socket stays mapped to its pywsk socket after WskCloseSocket
(quarantined), so a use after close reaches pywsk's check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pywsk.nt as nt

from ..nt.status import NTSTATUS
from ..wsk import (
    ADDRINFOEXW,
    AF_INET6,
    NPI_WSK_INTERFACE_ID,
    PPVOID,
    PSIZE_T,
    SO_WSK_EVENT_CALLBACK,
    SOCKADDR,
    SOCKADDR_IN,
    SOCKADDR_IN6,
    SOL_SOCKET,
    UNICODE_STRING,
    WSK_CLIENT_DISPATCH,
    WSK_CLIENT_NPI,
    WSK_EVENT_CALLBACK_CONTROL,
    WSK_FLAG_CONNECTION_SOCKET,
    WSK_INSPECT_ID,
    WSK_PROVIDER_NPI,
    WSK_REGISTRATION,
    WSK_SET_STATIC_EVENT_CALLBACKS,
    WskCaptureProviderNPI,
    WskDeregister,
    WskRegister,
    WskReleaseProviderNPI,
)
from .callbacks import sock_family
from .datagram import DatagramRuntime
from .runtime import Leak, signed32

__all__ = ["WskRuntime"]

_NPI_BYTES = NPI_WSK_INTERFACE_ID.bytes_le


class WskRuntime(DatagramRuntime):
    """A loaded driver's runtime, WSK included."""

    def __init__(self, module: Any, name: str) -> None:
        self._registrations: dict[int, WSK_REGISTRATION] = {}
        self._npis: dict[int, WSK_PROVIDER_NPI] = {}
        super().__init__(module, name)
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
            self.lib.PYWSK_FN_GET_ADDRESS_INFO: self._get_address_info,
            self.lib.PYWSK_FN_FREE_ADDRESS_INFO: self._free_address_info,
            self.lib.PYWSK_FN_GET_NAME_INFO: self._get_name_info,
            self.lib.PYWSK_FN_INSPECT_COMPLETE: self._inspect_complete,
            **self.datagram_calls(),
        }
        # Calls that write results into C memory before the completion routine runs.
        self._out_calls = frozenset({
            self.lib.PYWSK_FN_GET_LOCAL_ADDRESS, self.lib.PYWSK_FN_GET_REMOTE_ADDRESS,
            self.lib.PYWSK_FN_ACCEPT, self.lib.PYWSK_FN_GET_ADDRESS_INFO,
            self.lib.PYWSK_FN_RECEIVE_FROM, self.lib.PYWSK_FN_RECEIVE_EX,
            self.lib.PYWSK_FN_GET_NAME_INFO,
        })  # fmt: skip
        # C ADDRINFOEXW chains handed out: head address -> (pywsk chain, C memory).
        self._addrinfo: dict[int, tuple[ADDRINFOEXW, list[Any]]] = {}

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

    def unicode_in(self, pointer: int) -> UNICODE_STRING | None:
        if not pointer:
            return None
        c = self.ffi.cast("UNICODE_STRING *", pointer)
        raw = (
            bytes(self.ffi.buffer(self.ffi.cast("char *", c.Buffer), c.Length)) if c.Length else b""
        )
        return UNICODE_STRING(raw.decode("utf-16-le", errors="replace"))

    def _get_address_info(self, target: int, args: Any, irp: Any, cirp: Any = None) -> int:
        client, dispatch_table = self._provider(target)
        node, service, namespace, provider, hints, result = (args[i] for i in range(6))
        given: ADDRINFOEXW | None = None
        if hints:
            h = self.ffi.cast("ADDRINFOEXW *", hints)
            given = ADDRINFOEXW(h.ai_flags, h.ai_family, h.ai_socktype, h.ai_protocol)
        out: PPVOID[ADDRINFOEXW] = PPVOID()
        if cirp is not None and result:
            self.on_completion(cirp, lambda: self._addrinfo_out(out.value, result))
        return int(
            dispatch_table.WskGetAddressInfo(
                client, self.unicode_in(node), self.unicode_in(service), namespace,
                provider or None, given, out, None, None, irp,
            )
        )  # fmt: skip

    def _inspect_complete(self, target: int, args: Any, irp: Any) -> int:
        sock = self._socket_of(target)
        inspect_id: WSK_INSPECT_ID | None = None
        if args[0]:
            c = self.ffi.cast("WSK_INSPECT_ID *", args[0])
            inspect_id = WSK_INSPECT_ID(int(c.Key), int(c.SerialNumber))
        return int(sock.Dispatch.WskInspectComplete(sock, inspect_id, args[1], irp))

    def _get_name_info(self, target: int, args: Any, irp: Any, cirp: Any = None) -> int:
        client, dispatch_table = self._provider(target)
        address, length, node, service, flags = (args[i] for i in range(5))
        names = [self._unicode_out_box(pointer) for pointer in (node, service)]
        if cirp is not None:
            self.on_completion(cirp, lambda: self._unicode_out(names, (node, service)))
        return int(dispatch_table.WskGetNameInfo(
            client, self.sockaddr_in(address) if address else None, length, names[0], names[1],
            flags, None, None, irp,
        ))  # fmt: skip

    def _unicode_out_box(self, pointer: int) -> UNICODE_STRING | None:
        """A pywsk UNICODE_STRING the provider fills, with the C string's room."""
        if not pointer:
            return None
        return UNICODE_STRING("", self.ffi.cast("UNICODE_STRING *", pointer).MaximumLength)

    def _unicode_out(self, names: list[UNICODE_STRING | None], pointers: tuple[int, int]) -> None:
        """Copy filled names into the C UNICODE_STRINGs' buffers (NUL-terminated if room)."""
        for name, pointer in zip(names, pointers, strict=True):
            if name is None or not pointer:
                continue
            c = self.ffi.cast("UNICODE_STRING *", pointer)
            data = (name.Buffer or "").encode("utf-16-le")[: c.MaximumLength]
            if c.Buffer != self.ffi.NULL:
                self.ffi.memmove(c.Buffer, data, len(data))
                if len(data) + 2 <= c.MaximumLength:
                    c.Buffer[len(data) // 2] = 0
            c.Length = len(data) if c.Buffer != self.ffi.NULL else 0

    def _addrinfo_out(self, chain: ADDRINFOEXW | None, result: int) -> None:
        """Copy a pywsk ADDRINFOEXW chain into C memory and store its head at ``result``."""
        keep: list[Any] = []
        head: Any = self.ffi.NULL
        previous: Any = None
        item = chain
        while item is not None:
            node = self.ffi.new("ADDRINFOEXW *")
            keep.append(node)
            node.ai_flags, node.ai_family = item.ai_flags, item.ai_family
            node.ai_socktype, node.ai_protocol = item.ai_socktype, item.ai_protocol
            if item.ai_addr is not None:
                memory = self.ffi.new("char[]", 32)
                keep.append(memory)
                self.sockaddr_out(item.ai_addr, self.address(memory))
                node.ai_addr = self.ffi.cast("SOCKADDR *", memory)
                node.ai_addrlen = 28 if isinstance(item.ai_addr, SOCKADDR_IN6) else 16
            if item.ai_canonname:
                text = item.ai_canonname.encode("utf-16-le")
                name = self.ffi.new("uint16_t[]", len(text) // 2 + 1)
                self.ffi.memmove(name, text, len(text))
                keep.append(name)
                node.ai_canonname = name
            if previous is None:
                head = node
            else:
                previous.ai_next = node
            previous = node
            item = item.ai_next
        if head != self.ffi.NULL:
            with self._lock:
                self._addrinfo[self.address(head)] = (chain, keep)  # type: ignore[assignment]
        self.ffi.cast("ADDRINFOEXW **", result)[0] = head

    def _free_address_info(self, target: int, args: Any, irp: Any) -> int:
        client, dispatch_table = self._provider(target)
        with self._lock:
            entry = self._addrinfo.pop(args[0], None)
        if entry is None:
            raise nt.BugCheck(
                nt.BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                f"WskFreeAddressInfo on 0x{args[0]:x}, which WskGetAddressInfo did not return "
                "(or was freed already)",
            )
        dispatch_table.WskFreeAddressInfo(client, entry[0])
        return 0

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

    def _close_socket(self, target: int, args: Any, irp: Any) -> int:
        sock = self._socket_of(target)
        self.wait_for_late_releases()
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

    def pyb_WskCall(self, function: int, target: Any, args: Any, cirp: Any, caller: int) -> int:
        handler = self._calls.get(function)
        irp = self._irp(cirp) if cirp else None
        if handler is None:
            return self._not_implemented(irp)
        address = self.address(target)
        if function in self._out_calls:
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
