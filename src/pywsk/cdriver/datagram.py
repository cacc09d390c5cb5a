"""Datagram sockets and the extended calls for C drivers: conversions and WskReceiveFromEvent.

What it does: :class:`DatagramRuntime` converts the C parameters of WskSendTo,
WskReceiveFrom, WskSendMessages and the datagram WskRelease (WSK_BUF_LIST chains,
SOCKADDRs, control information as CMSGHDR buffers, the ULONG out-parameters), and of
WskConnectEx, WskSendEx and WskReceiveEx, and hands them to pywsk's provider functions.
Out-parameters (the sender's address, the control length and flags) are written back into
C memory before the C completion routine runs.  A C ``WskReceiveFromEvent`` gets a C
WSK_DATAGRAM_INDICATION chain over pywsk's indicated datagrams: each element with its C
MDL chain over the datagram's bytes, its control information and its sender's address.

What it refuses: a WskRelease of an element the driver does not hold (BugCheck); the
provider answers everything else with its own status.

What always holds: as pywsk's provider allows, any retained element can be released on
its own or with what its ``Next`` chain links to; an element's C memory lives until it is
released (STATUS_PENDING) or until the callback returns (any other status).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pywsk.nt as nt

from ..wsk import (
    AF_INET6,
    PULONG,
    SOCKADDR,
    SOCKADDR_IN,
    SOCKADDR_IN6,
    WSK_BUF_LIST,
    WSK_CLIENT_DATAGRAM_DISPATCH,
    WSK_DATAGRAM_INDICATION,
)
from .callbacks import CallbackRuntime, sock_family

__all__ = ["DatagramRuntime"]

#: Room for a sender's SOCKADDR_IN / SOCKADDR_IN6 in a C indication.
_ADDRESS_SIZE = 32


class DatagramRuntime(CallbackRuntime):
    """A loaded driver's runtime: datagram sockets and the extended calls (see the notes)."""

    def __init__(self, module: Any, name: str) -> None:
        # C element address -> (pywsk element, the element's C memory), while the driver may
        # hold it (registered before C sees it: another thread may release it at once).
        self._datagrams: dict[int, tuple[WSK_DATAGRAM_INDICATION, list[Any]]] = {}
        super().__init__(module, name)

    def datagram_calls(self) -> dict[int, Callable[..., int]]:
        """The WskCall handlers of this part, by function number."""
        lib = self.lib
        return {
            lib.PYWSK_FN_SEND_TO: self._send_to,
            lib.PYWSK_FN_RECEIVE_FROM: self._receive_from,
            lib.PYWSK_FN_SEND_MESSAGES: self._send_messages,
            lib.PYWSK_FN_RELEASE_DATAGRAMS: self._release_datagrams,
            lib.PYWSK_FN_CONNECT_EX: self._connect_ex,
            lib.PYWSK_FN_SEND_EX: self._send_ex,
            lib.PYWSK_FN_RECEIVE_EX: self._receive_ex,
        }

    # --- conversions ---------------------------------------------------------------------------
    def _address_or_none(self, pointer: int) -> SOCKADDR | None:
        return self.sockaddr_in(pointer) if pointer else None

    def _control(self, pointer: int, length: int) -> Any:
        """Control information (a CMSGHDR buffer) as a byte buffer over the C memory."""
        return self.ffi.buffer(self.ffi.cast("char *", pointer), length) if pointer else None

    def _ulong_box(self, pointer: int) -> PULONG | None:
        return PULONG(int(self.ffi.cast("uint32_t *", pointer)[0])) if pointer else None

    def _ulong_out(self, box: PULONG | None, pointer: int) -> None:
        if box is not None and pointer:
            self.ffi.cast("uint32_t *", pointer)[0] = int(box.value) & 0xFFFFFFFF

    def _buf_list(self, pointer: int) -> WSK_BUF_LIST | None:
        head: WSK_BUF_LIST | None = None
        last: WSK_BUF_LIST | None = None
        c = self.ffi.cast("WSK_BUF_LIST *", pointer)
        while c != self.ffi.NULL:
            item = WSK_BUF_LIST(None, self.wsk_buf(self.address(c) + self._buffer_offset))  # type: ignore[arg-type]
            if last is None:
                head = item
            else:
                last.Next = item
            last = item
            c = c.Next
        return head

    @property
    def _buffer_offset(self) -> int:
        return int(self.ffi.offsetof("WSK_BUF_LIST", "Buffer"))

    # --- calls ------------------------------------------------------------------------------------
    def _send_to(self, target: int, args: Any, irp: Any) -> int:
        return self._send("WskSendTo", self.wsk_buf, target, args, irp)

    def _send_messages(self, target: int, args: Any, irp: Any) -> int:
        return self._send("WskSendMessages", self._buf_list, target, args, irp)

    def _send(
        self, name: str, buffers: Callable[[int], Any], target: int, args: Any, irp: Any
    ) -> int:
        """WskSendTo / WskSendMessages: (buffer or list, flags, remote, control length and
        information)."""
        sock = self._socket_of(target)
        data, flags, remote, length, info = (args[i] for i in range(5))
        send = getattr(sock.Dispatch, name)
        return int(send(
            sock, buffers(data), flags, self._address_or_none(remote), length,
            self._control(info, length), irp,
        ))  # fmt: skip

    def _receive_from(self, target: int, args: Any, irp: Any, cirp: Any = None) -> int:
        sock = self._socket_of(target)
        buffer, flags, remote, length_at, info, flags_at = (args[i] for i in range(6))
        address: SOCKADDR | None = None
        if remote:
            address = SOCKADDR_IN6() if sock_family(sock) == AF_INET6 else SOCKADDR_IN()
        length = self._ulong_box(length_at)
        control_flags = self._ulong_box(flags_at)
        control = self._control(info, length.value) if length is not None and info else None

        def write_back() -> None:
            if address is not None:
                self.sockaddr_out(address, remote)
            self._ulong_out(length, length_at)
            self._ulong_out(control_flags, flags_at)

        if cirp is not None:
            self.on_completion(cirp, write_back)
        return int(sock.Dispatch.WskReceiveFrom(
            sock, self.wsk_buf(buffer), flags, address, length, control, control_flags, irp,
        ))  # fmt: skip

    def _connect_ex(self, target: int, args: Any, irp: Any) -> int:
        sock = self._socket_of(target)
        return int(sock.Dispatch.WskConnectEx(
            sock, self.sockaddr_in(args[0]), self.wsk_buf(args[1]), args[2], irp,
        ))  # fmt: skip

    def _send_ex(self, target: int, args: Any, irp: Any) -> int:
        sock = self._socket_of(target)
        buffer, flags, length, info = (args[i] for i in range(4))
        return int(sock.Dispatch.WskSendEx(
            sock, self.wsk_buf(buffer), flags, length, self._control(info, length), irp,
        ))  # fmt: skip

    def _receive_ex(self, target: int, args: Any, irp: Any, cirp: Any = None) -> int:
        sock = self._socket_of(target)
        buffer, flags, length_at, info, flags_at = (args[i] for i in range(5))
        length = self._ulong_box(length_at)
        control_flags = self._ulong_box(flags_at)
        control = self._control(info, length.value) if length is not None and info else None

        def write_back() -> None:
            self._ulong_out(length, length_at)
            self._ulong_out(control_flags, flags_at)

        if cirp is not None:
            self.on_completion(cirp, write_back)
        status = int(sock.Dispatch.WskReceiveEx(
            sock, self.wsk_buf(buffer), flags, length, control, control_flags, irp,
        ))  # fmt: skip
        write_back()  # (pywsk sets them in the call; the completion may come much later)
        return status

    def _release_datagrams(self, target: int, args: Any, irp: Any) -> int:
        sock = self._socket_of(target)
        first = args[0]
        # The elements the C chain links from ``first`` (the driver may have relinked
        # ``Next``): the provider walks the same chain, mirrored into its elements.
        chain: list[tuple[int, WSK_DATAGRAM_INDICATION, list[Any]]] = []
        c = self.ffi.cast("WSK_DATAGRAM_INDICATION *", first)
        with self._lock:
            while c != self.ffi.NULL:
                entry = self._datagrams.get(self.address(c))
                if entry is None:
                    break
                chain.append((self.address(c), *entry))
                c = c.Next
        if not chain:
            raise nt.BugCheck(
                nt.BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                f"WskRelease on 0x{first:x}, which is not a datagram indication the driver "
                "retained",
            )
        elements = [element for _, element, _ in chain]
        for element, following in zip(elements, [*elements[1:], None], strict=True):
            element.Next = following
        status = int(sock.Dispatch.WskRelease(sock, chain[0][1]))
        if status != nt.STATUS_SUCCESS:  # not this socket's: the driver still holds them
            return status
        with self._lock:
            for address, _, _ in chain:
                self._datagrams.pop(address, None)
        for _, _, keep in chain:
            self._drop_indication(keep)
        return status

    # --- WskReceiveFromEvent into C ----------------------------------------------------------------
    def datagram_dispatch(self, pointer: int) -> WSK_CLIENT_DATAGRAM_DISPATCH | None:
        """The pywsk client table for a C WSK_CLIENT_DATAGRAM_DISPATCH."""
        if not pointer:
            return None
        c = self.ffi.cast("WSK_CLIENT_DATAGRAM_DISPATCH *", pointer)
        function = c.WskReceiveFromEvent
        if function == self.ffi.NULL:
            return WSK_CLIENT_DATAGRAM_DISPATCH()
        return WSK_CLIENT_DATAGRAM_DISPATCH(WskReceiveFromEvent=self._receive_from_event(function))

    def _receive_from_event(self, function: Any) -> Callable[..., int]:
        def callback(context: Any, flags: int, indication: WSK_DATAGRAM_INDICATION | None) -> int:
            elements = self._c_datagrams(indication)
            head = elements[0][0] if elements else 0
            ran, result = self.invoke(function, context or 0, flags, head)
            status = (result & 0xFFFFFFFF) if ran else nt.STATUS_DATA_NOT_ACCEPTED
            if status != nt.STATUS_PENDING:  # not retained: C's views go now
                with self._lock:
                    for address, _ in elements:
                        self._datagrams.pop(address, None)
                for _, keep in elements:
                    self._drop_indication(keep)
            return status

        return callback

    def _c_datagrams(
        self, indication: WSK_DATAGRAM_INDICATION | None
    ) -> list[tuple[int, list[Any]]]:
        """C elements over pywsk's indicated datagrams: [(C address, its C memory)]."""
        out: list[tuple[int, list[Any]]] = []
        previous: Any = None
        while indication is not None:
            keep: list[Any] = []
            node = self.ffi.new("WSK_DATAGRAM_INDICATION *")
            keep.append(node)
            node.Buffer.Offset = indication.Buffer.Offset
            node.Buffer.Length = indication.Buffer.Length
            node.Buffer.Mdl = self._c_mdl_chain(indication.Buffer.Mdl, keep)
            if indication.RemoteAddress is not None:
                address = self.ffi.new("char[]", _ADDRESS_SIZE)
                keep.append(address)
                self.sockaddr_out(indication.RemoteAddress, self.address(address))
                node.RemoteAddress = self.ffi.cast("SOCKADDR *", address)
            if indication.ControlInfo is not None and indication.ControlInfoLength:
                raw = bytes(memoryview(indication.ControlInfo).cast("B"))
                control = self.ffi.new("char[]", max(len(raw), 1))
                self.ffi.memmove(control, raw, len(raw))
                keep.append(control)
                node.ControlInfo = self.ffi.cast("CMSGHDR *", control)
                node.ControlInfoLength = indication.ControlInfoLength
            if previous is not None:
                previous.Next = node
            previous = node
            out.append((self.address(node), keep))
            with self._lock:
                self._datagrams[self.address(node)] = (indication, keep)
            indication = indication.Next
        return out
