"""The driver-style WSK client runtime: a helper for each WSK function a client uses.

What it does: :class:`Client` (on :class:`~pywsk.client.base.ClientBase`: registration,
the provider NPI, IRPs, buffers, the tracer) issues WSK calls the way a kernel driver does
- an IRP from IoAllocateIrp, a completion routine (invoked on success, error and cancel)
that returns STATUS_MORE_PROCESSING_REQUIRED, buffers in non-paged pool described by MDLs,
freed with the IRP - each call a :class:`~pywsk.client.call.Call`.  The ``pywsk``
commands and :mod:`pywsk.testing.driver` are both built on it.

What it refuses: waits without a bound - every wait takes a timeout.  The connection helpers
(:meth:`Client.connect`, :meth:`Client.listen`, ...) raise
:class:`~pywsk.client.base.ClientError`, with the status, when a call they depend on fails.

What always holds: a graceful :meth:`Client.disconnect` is learned as our FIN and an
abortive one as our RST (:meth:`ClientBase.ends`) only when it succeeded - a refused or
failed one is not an end of ours - before the tracer hears of its completion; a socket its
helpers bring is adopted (:attr:`~pywsk.client.base.ClientBase.sockets`, closed by
:meth:`ClientBase.close`) - by :meth:`Client.accept` before anyone waiting for the call
wakes.  The lower-level ``*_call`` helpers issue without waiting or adopting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from ..core.ending import Ending
from ..nt import (
    STATUS_SUCCESS,
)
from ..trace import short_status
from ..wsk import (
    ADDRINFOEXW,
    AF_INET,
    AF_INET6,
    IPPROTO_TCP,
    NPI_WSK_INTERFACE_ID,
    NS_ALL,
    PPVOID,
    SO_WSK_EVENT_CALLBACK,
    SOCK_STREAM,
    SOCKADDR_STORAGE,
    SOL_SOCKET,
    UNICODE_STRING,
    WSK_BUF,
    WSK_EVENT_CALLBACK_CONTROL,
    WSK_FLAG_ABORTIVE,
    WSK_FLAG_CONNECTION_SOCKET,
    WSK_FLAG_LISTEN_SOCKET,
    WSK_SOCKET,
    RtlInitUnicodeString,
    WskSetOption,
    sockaddr_from_tuple,
)
from .base import Buffer, ClientBase, ClientError, lock_buffer
from .call import Call
from .ends import Context
from .words import describe_address, event_names, explain, preview

__all__ = ["Client"]


class Client(ClientBase):
    """A registered WSK client with a helper for each WSK function it uses; every call,
    completion and event callback is told to its tracer."""

    # --- client-level calls -------------------------------------------------------------------
    def resolve(self, host: str, port: int, timeout: float) -> list[tuple[Any, ...]]:
        """WskGetAddressInfo for ``host``: the TCP addresses, IPv4 first; [] if none."""
        call = self.resolve_call(host, port)
        if not call.completed_within(timeout):
            call.cancel()
            call.completed_within(1.0)
            raise ClientError(f"cannot resolve {host!r}: no answer within {timeout:g} s")
        if call.status != STATUS_SUCCESS:
            raise ClientError(f"cannot resolve {host!r}: {explain(call.status)}", call.status)
        return self.addresses(call)

    def resolve_call(self, host: str, port: int) -> Call:
        """WskGetAddressInfo for ``host`` and ``port`` (does not wait); read the answer with
        :meth:`addresses` once the call succeeded."""
        dispatch = self.provider.Dispatch
        assert dispatch is not None
        assert dispatch.WskGetAddressInfo is not None
        node, service = UNICODE_STRING(), UNICODE_STRING()
        RtlInitUnicodeString(node, host)
        RtlInitUnicodeString(service, str(port))
        hints = ADDRINFOEXW(ai_socktype=SOCK_STREAM, ai_protocol=IPPROTO_TCP)
        result: PPVOID[ADDRINFOEXW] = PPVOID()
        call = self.issue(
            "WskGetAddressInfo",
            f"WskGetAddressInfo({host!r}, {str(port)!r})",
            dispatch.WskGetAddressInfo,
            self.provider.Client,
            node,
            service,
            NS_ALL,
            None,
            hints,
            result,
            None,
            None,
        )
        call.out = result
        return call

    def addresses(self, call: Call) -> list[tuple[Any, ...]]:
        """The TCP addresses a successful :meth:`resolve_call` found, IPv4 first, without
        repeats; frees the answer (WskFreeAddressInfo)."""
        dispatch = self.provider.Dispatch
        assert dispatch is not None
        result: PPVOID[ADDRINFOEXW] = call.out
        found: list[tuple[Any, ...]] = []
        element = result.value
        while element is not None:
            if element.ai_addr is not None and element.ai_family in (AF_INET, AF_INET6):
                address = element.ai_addr.to_tuple()
                if address not in found:
                    found.append(address)
            element = element.ai_next
        if result.value is not None and dispatch.WskFreeAddressInfo is not None:
            dispatch.WskFreeAddressInfo(self.provider.Client, result.value)
            result.value = None
        found.sort(key=lambda a: ":" in str(a[0]))
        return found

    def socket(
        self,
        family: int,
        flags: int = WSK_FLAG_CONNECTION_SOCKET,
        context: Any = None,
        dispatch: Any = None,
        label: str | None = None,
    ) -> WSK_SOCKET:
        """WskSocket (completes inline in pywsk; waited for with a bound anyway)."""
        call = self.socket_call(family, flags, context, dispatch, label=label)
        call.completed_within(10.0)
        if call.status != STATUS_SUCCESS or not isinstance(call.information, WSK_SOCKET):
            raise ClientError(f"WskSocket failed: {short_status(call.status)}", call.status)
        self.adopt(call.information)
        return call.information

    def socket_call(
        self,
        family: int,
        flags: int = WSK_FLAG_CONNECTION_SOCKET,
        context: Any = None,
        dispatch: Any = None,
        *,
        label: str | None = None,
        keep: bool = False,
    ) -> Call:
        """WskSocket of a TCP socket (does not wait; the caller adopts the socket)."""
        provider = self.provider.Dispatch
        assert provider is not None
        return self.issue(
            "WskSocket",
            label or "WskSocket",
            provider.WskSocket,
            self.provider.Client,
            family,
            SOCK_STREAM,
            IPPROTO_TCP,
            flags,
            context,
            dispatch,
            None,
            None,
            None,
            keep=keep,
        )

    def socket_connect_call(
        self,
        remote: tuple[Any, ...],
        local: tuple[Any, ...],
        context: Any = None,
        dispatch: Any = None,
        *,
        keep: bool = False,
    ) -> Call:
        """WskSocketConnect from ``local`` to ``remote`` (does not wait; the caller adopts
        the socket)."""
        provider = self.provider.Dispatch
        assert provider is not None
        return self.issue(
            "WskSocketConnect",
            f"WskSocketConnect({describe_address(local)} -> {describe_address(remote)})",
            provider.WskSocketConnect,
            self.provider.Client,
            SOCK_STREAM,
            IPPROTO_TCP,
            sockaddr_from_tuple(local),
            sockaddr_from_tuple(remote),
            0,
            context,
            dispatch,
            None,
            None,
            None,
            keep=keep,
        )

    def bind_call(self, sock: WSK_SOCKET, address: tuple[Any, ...]) -> Call:
        """WskBind to ``address`` (does not wait; a listening socket then listens)."""
        return self.issue(
            "WskBind",
            f"WskBind({describe_address(address)})",
            sock.Dispatch.WskBind,
            sock,
            sockaddr_from_tuple(address),
            0,
        )

    def connect_call(self, sock: WSK_SOCKET, remote: tuple[Any, ...]) -> Call:
        """WskConnect to ``remote`` (does not wait; IoCancelIrp abandons it)."""
        return self.issue(
            "WskConnect",
            f"WskConnect({describe_address(remote)})",
            sock.Dispatch.WskConnect,
            sock,
            sockaddr_from_tuple(remote),
            0,
        )

    def option_call(self, sock: WSK_SOCKET, level: int, option: int, value: int) -> Call:
        """WskControlSocket(WskSetOption) of a 4-byte ``value``, with wsk.h constants
        (does not wait)."""
        return self.issue(
            "WskControlSocket",
            f"WskControlSocket(WskSetOption, level {level}, option {option}, {value})",
            sock.Dispatch.WskControlSocket,
            sock,
            WskSetOption,
            option,
            level,
            4,
            value,
            0,
            None,
            None,
        )

    def connect(
        self,
        remote: tuple[Any, ...],
        *,
        timeout: float,
        context: Context | None = None,
        events: int = 0,
    ) -> WSK_SOCKET:
        """WskSocket, WskBind (the wildcard address, port 0), WskConnect (cancelled after
        ``timeout``), then SO_WSK_EVENT_CALLBACK with ``events``; raises ClientError."""
        family = AF_INET6 if ":" in str(remote[0]) else AF_INET
        sock = self.socket(
            family,
            WSK_FLAG_CONNECTION_SOCKET,
            context,
            self.connection_dispatch,
            label="WskSocket(WSK_FLAG_CONNECTION_SOCKET)",
        )
        if context is not None:
            context.socket = sock
        local = ("::", 0) if family == AF_INET6 else ("0.0.0.0", 0)
        bind = self.bind_call(sock, local)
        bind.completed_within(timeout)
        if bind.status != STATUS_SUCCESS:
            self.close_socket(sock)
            raise ClientError(
                f"WskBind({describe_address(local)}) failed: {explain(bind.status)}", bind.status
            )
        call = self.connect_call(sock, remote)
        if not call.completed_within(timeout):
            call.cancel()
            call.completed_within(5.0)
            self.close_socket(sock)
            raise ClientError(
                f"cannot connect to {describe_address(remote)}: no answer within {timeout:g} s"
                f" (WskConnect cancelled: {short_status(call.status)})",
                call.status,
            )
        if call.status != STATUS_SUCCESS:
            self.close_socket(sock)
            raise ClientError(
                f"cannot connect to {describe_address(remote)}: {explain(call.status)}",
                call.status,
            )
        if events:
            self.set_events(sock, events)
        return sock

    def socket_connect(
        self,
        remote: tuple[Any, ...],
        *,
        timeout: float,
        context: Context | None = None,
        events: int = 0,
        local: tuple[Any, ...] | None = None,
    ) -> WSK_SOCKET:
        """WskSocketConnect (create, bind, connect in one call), then the events; its IRP
        cannot be cancelled, so a connect that never answers is left to the kernel."""
        family = AF_INET6 if ":" in str(remote[0]) else AF_INET
        if local is None:
            local = ("::", 0) if family == AF_INET6 else ("0.0.0.0", 0)
        call = self.socket_connect_call(remote, local, context, self.connection_dispatch)
        if not call.completed_within(timeout):
            raise ClientError(
                f"cannot connect to {describe_address(remote)}: no answer within {timeout:g} s"
            )
        if call.status != STATUS_SUCCESS or not isinstance(call.information, WSK_SOCKET):
            raise ClientError(
                f"cannot connect to {describe_address(remote)}: {explain(call.status)}",
                call.status,
            )
        sock = call.information
        self.adopt(sock)
        if context is not None:
            context.socket = sock
        if events:
            self.set_events(sock, events)
        return sock

    def listen(
        self,
        address: tuple[Any, ...],
        *,
        context: Any = None,
        dispatch: Any = None,
        events: int = 0,
    ) -> WSK_SOCKET:
        """WskSocket(WSK_FLAG_LISTEN_SOCKET), WskBind (which binds *and* listens), then
        SO_WSK_EVENT_CALLBACK with ``events``; raises ClientError."""
        family = AF_INET6 if ":" in str(address[0]) else AF_INET
        sock = self.socket(
            family,
            WSK_FLAG_LISTEN_SOCKET,
            context,
            dispatch,
            label="WskSocket(WSK_FLAG_LISTEN_SOCKET)",
        )
        bind = self.bind_call(sock, address)
        bind.completed_within(10.0)
        if bind.status != STATUS_SUCCESS:
            self.close_socket(sock)
            raise ClientError(
                f"cannot listen on {describe_address(address)}: {explain(bind.status)}",
                bind.status,
            )
        if events:
            try:
                self.set_events(sock, events)
            except ClientError:
                self.close_socket(sock)
                raise
        return sock

    def accept(
        self,
        listener: WSK_SOCKET,
        *,
        context: Any = None,
        dispatch: Any = None,
        local: Any = None,
        remote: Any = None,
        flags: int = 0,
        keep: bool = False,
    ) -> Call:
        """WskAccept (does not wait); ``local`` / ``remote`` are optional SOCKADDR
        out-parameters.  The socket it brings joins :attr:`sockets` before anyone waiting for
        the call wakes."""
        return self.issue(
            "WskAccept",
            "WskAccept",
            listener.Dispatch.WskAccept,
            listener,
            flags,
            context,
            dispatch,
            local,
            remote,
            on_complete=self.adopt_accepted,
            keep=keep,
        )

    def adopt_accepted(self, call: Call) -> None:
        """Completion hook of a WskAccept: adopt the socket it brought."""
        if call.status == STATUS_SUCCESS and isinstance(call.information, WSK_SOCKET):
            self.adopt(call.information)

    def set_events(self, sock: WSK_SOCKET, mask: int) -> int:
        """SO_WSK_EVENT_CALLBACK (no IRP); returns the status (traced); ClientError if it
        failed."""
        control = WSK_EVENT_CALLBACK_CONTROL(NPI_WSK_INTERFACE_ID, mask)
        call = Call("WskControlSocket", client=self, socket=sock)
        call.label = f"WskControlSocket(SO_WSK_EVENT_CALLBACK, {event_names(mask)})"
        status: int = sock.Dispatch.WskControlSocket(
            sock, WskSetOption, SO_WSK_EVENT_CALLBACK, SOL_SOCKET, 0, control, 0, None, None, None
        )
        call.returned = status
        call.returned_at = call.issued_at  # no IRP: the status is the whole answer
        self.tracer.returned(call)
        if status != STATUS_SUCCESS:
            raise ClientError(
                f"enabling {event_names(mask)} failed: {short_status(status)}", status
            )
        return status

    # --- connection calls ----------------------------------------------------------------------
    def send(
        self,
        sock: WSK_SOCKET,
        data: bytes | memoryview,
        flags: int = 0,
        *,
        label: str | None = None,
        record: bool = True,
        group: str | None = None,
        keep: bool = False,
        locked: bool = False,
    ) -> Call:
        """WskSend of ``data``: copied into pool, freed with the IRP - or, ``locked``, the
        caller's own memory described by MDLs locked with MmProbeAndLockPages
        (:func:`~pywsk.client.base.lock_buffer`), unlocked with the IRP; the caller keeps
        ``data`` unchanged until the call is over."""
        if locked:
            view = memoryview(data).cast("B")
            buf, free = lock_buffer(view, write=False)
            shown = label or f"WskSend({view.nbytes} B)"
        else:
            payload = bytes(data)
            _pool, buf, free = self.buffer(payload)
            shown = label or f"WskSend({preview(payload, self.show_data)})"
        return self.issue(
            "WskSend",
            shown,
            sock.Dispatch.WskSend,
            sock,
            buf,
            flags,
            record=record,
            resources=(free,),
            group=group,
            keep=keep,
        )

    def receive(
        self,
        sock: WSK_SOCKET,
        size: int,
        flags: int = 0,
        *,
        record: bool = True,
        group: str | None = None,
        keep: bool = False,
        into: Buffer | None = None,
    ) -> Call:
        """WskReceive of at most ``size`` bytes; what arrived is :attr:`Call.data`.  The
        buffer is fresh pool freed with the IRP, or ``into`` (at least ``size`` bytes, from
        :func:`~pywsk.client.base.allocate_buffer`), which the caller keeps and frees."""
        if into is None:
            pool, buf, free = self.buffer(size)
            resources: tuple[Callable[[], None], ...] = (free,)
        else:
            pool, whole, _free = into
            buf, resources = WSK_BUF(whole.Mdl, 0, size), ()
        return self.issue(
            "WskReceive",
            f"WskReceive({size} B)",
            sock.Dispatch.WskReceive,
            sock,
            buf,
            flags,
            record=record,
            receive_pool=pool,
            resources=resources,
            group=group,
            keep=keep,
        )

    def disconnect(
        self,
        sock: WSK_SOCKET,
        final: bytes | None = None,
        *,
        abortive: bool = False,
        label: str | None = None,
        keep: bool = False,
    ) -> Call:
        """WskDisconnect: graceful (our FIN, after ``final``) or abortive (our RST); learned
        as an end of ours (:meth:`ends`) only once it succeeded."""
        resources: tuple[Callable[[], None], ...] = ()
        buf: WSK_BUF | None = None
        if final is not None:
            _pool, buf, free = self.buffer(final)
            resources = (free,)
        text = "NULL" if final is None else f"Buffer={preview(final, self.show_data)}"
        flag_text = "WSK_FLAG_ABORTIVE" if abortive else "0"
        return self.issue(
            "WskDisconnect",
            label or f"WskDisconnect({text}, {flag_text})",
            sock.Dispatch.WskDisconnect,
            sock,
            buf,
            WSK_FLAG_ABORTIVE if abortive else 0,
            resources=resources,
            keep=keep,
            ending=Ending.OUR_RST if abortive else Ending.OUR_FIN,
        )

    def _address(self, sock: WSK_SOCKET, name: str) -> tuple[Any, ...] | None:
        call = self.address_call(sock, name, record=False)
        if not call.completed_within(5.0) or call.status != STATUS_SUCCESS:
            return None
        with contextlib.suppress(ValueError):
            address: tuple[Any, ...] = call.out.to_tuple()
            return address
        return None

    def address_call(self, sock: WSK_SOCKET, name: str, *, record: bool = True) -> Call:
        """``WskGetLocalAddress`` or ``WskGetRemoteAddress`` (``name``; does not wait): the
        address is ``call.out.to_tuple()`` once the call succeeded."""
        out = SOCKADDR_STORAGE()
        call = self.issue(name, name, getattr(sock.Dispatch, name), sock, out, record=record)
        call.out = out
        return call

    def remote_address(self, sock: WSK_SOCKET) -> tuple[Any, ...] | None:
        """WskGetRemoteAddress (not traced); None if it failed."""
        return self._address(sock, "WskGetRemoteAddress")

    def local_address(self, sock: WSK_SOCKET) -> tuple[Any, ...] | None:
        """WskGetLocalAddress (not traced); None if it failed."""
        return self._address(sock, "WskGetLocalAddress")
