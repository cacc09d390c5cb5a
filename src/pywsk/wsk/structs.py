"""wsk.h structures: buffers, addresses, NPIs, registration, event control.

What it does: gives each structure a WSK client fills in or reads, with Microsoft's field
names and order, as small mutable classes: C code that fills a struct field by field
translates line for line (``Buf.Mdl = Mdl; Buf.Offset = 0; Buf.Length = n``), and
out-parameters are objects the provider fills in place.

What it refuses: nothing at construction; the provider validates a structure when it is
passed to a call (an Offset+Length beyond the MDL chain is STATUS_INVALID_PARAMETER there).

What always holds: addresses are kept in Windows layout - ports and IPv4 addresses in
network byte order, ``AF_INET6`` = 23 - so values copied from C code mean the same here.
"""

from __future__ import annotations

import ipaddress
import socket as _socket
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .constants import AF_INET, AF_INET6, AF_UNSPEC

if TYPE_CHECKING:
    from ..nt.mdl import MDL

__all__ = [
    "ADDRESS_FAMILY",
    "IN_ADDR",
    "IN6_ADDR",
    "SOCKADDR",
    "PSOCKADDR",
    "SOCKADDR_IN",
    "SOCKADDR_IN6",
    "SOCKADDR_STORAGE",
    "WSK_BUF",
    "PWSK_BUF",
    "WSK_DATA_INDICATION",
    "PWSK_DATA_INDICATION",
    "WSK_BUF_LIST",
    "PWSK_BUF_LIST",
    "WSK_DATAGRAM_INDICATION",
    "PWSK_DATAGRAM_INDICATION",
    "WSK_INSPECT_ID",
    "WSK_EVENT_CALLBACK_CONTROL",
    "WSK_PROVIDER_CHARACTERISTICS",
    "WSK_TRANSPORT",
    "WSK_SOCKET",
    "PWSK_SOCKET",
    "PWSK_CLIENT",
    "PSIZE_T",
    "PULONG",
    "PPVOID",
    "UNICODE_STRING",
    "PUNICODE_STRING",
    "RtlInitUnicodeString",
    "ADDRINFOEXW",
    "PADDRINFOEXW",
    "RtlUshortByteSwap",
    "RtlUlongByteSwap",
    "IN4ADDR_SETANY",
    "IN4ADDR_SETLOOPBACK",
    "IN6ADDR_SETANY",
    "IN6ADDR_SETLOOPBACK",
    "sockaddr_from_tuple",
]

ADDRESS_FAMILY = int


def RtlUshortByteSwap(Source: int) -> int:
    """Swap the two bytes of a USHORT (host order <-> network order on x86/x64)."""
    return ((Source & 0xFF) << 8) | ((Source >> 8) & 0xFF)


def RtlUlongByteSwap(Source: int) -> int:
    """Swap the four bytes of a ULONG."""
    return int.from_bytes((Source & 0xFFFFFFFF).to_bytes(4, "little"), "big")


def check_port(port: object, local: tuple[Any, ...] | None = None) -> int:
    """``port`` (and ``local``'s port, if given) as a TCP port: ``TypeError`` unless an
    int, ``ValueError`` outside 0..65535.  C's USHORT would wrap 65536 + p to p silently."""
    if local is not None:
        if not isinstance(local, tuple) or len(local) < 2:
            raise TypeError(f"the local address must be a (host, port) tuple, not {local!r}")
        check_port(local[1])
    return _ushort(port, "a port must be", "between 0 and 65535")


def _check_wire_port(value: object) -> int:
    """A ``sin_port`` / ``sin6_port`` value: a USHORT (network order)."""
    return _ushort(value, "sin_port is", "a USHORT (0..0xFFFF)")


def _ushort(value: object, subject: str, range_: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{subject} an int, not {type(value).__name__}")
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{subject} {range_}, not {value}")
    return value


def _port_from_wire(value: int) -> int:
    """A port as stored in a sockaddr (network order, read as a little-endian USHORT)."""
    return RtlUshortByteSwap(value) if sys.byteorder == "little" else value


def _port_to_wire(port: int) -> int:
    port = check_port(port)
    return RtlUshortByteSwap(port) if sys.byteorder == "little" else port


class IN_ADDR:
    """An IPv4 address: four bytes in network order (``s_addr`` reads them as a ULONG)."""

    __slots__ = ("s_b",)

    def __init__(self, s_b: bytes = b"\0\0\0\0") -> None:
        if len(s_b) != 4:
            raise ValueError("IN_ADDR holds exactly 4 bytes")
        self.s_b = bytes(s_b)

    @property
    def s_addr(self) -> int:
        """The address as the ULONG C code sees in memory (network byte order)."""
        return int.from_bytes(self.s_b, sys.byteorder)

    @s_addr.setter
    def s_addr(self, value: int) -> None:
        self.s_b = (value & 0xFFFFFFFF).to_bytes(4, sys.byteorder)

    def __str__(self) -> str:
        return _socket.inet_ntop(_socket.AF_INET, self.s_b)

    def __repr__(self) -> str:
        return f"IN_ADDR({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IN_ADDR) and other.s_b == self.s_b

    def __hash__(self) -> int:
        return hash(self.s_b)


class IN6_ADDR:
    """An IPv6 address: sixteen bytes in network order (``u.Byte`` in C)."""

    __slots__ = ("Byte",)

    def __init__(self, Byte: bytes = b"\0" * 16) -> None:
        if len(Byte) != 16:
            raise ValueError("IN6_ADDR holds exactly 16 bytes")
        self.Byte = bytes(Byte)

    def __str__(self) -> str:
        return str(ipaddress.IPv6Address(self.Byte))

    def __repr__(self) -> str:
        return f"IN6_ADDR({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IN6_ADDR) and other.Byte == self.Byte

    def __hash__(self) -> int:
        return hash(self.Byte)


class SOCKADDR:
    """Base of the socket-address structures (``sa_family`` first, as in C)."""

    @property
    def sa_family(self) -> int:
        """The address family (Windows numbering)."""
        return AF_UNSPEC

    def to_tuple(self) -> tuple[Any, ...]:
        """The address as a Python socket-module tuple."""
        raise NotImplementedError

    def set_from_tuple(self, family: int, address: tuple[Any, ...]) -> None:
        """Fill from a Python socket-module address (the provider fills out-parameters)."""
        raise NotImplementedError


PSOCKADDR = SOCKADDR


class SOCKADDR_IN(SOCKADDR):
    """``struct sockaddr_in``: family, port (network order), address."""

    def __init__(
        self,
        sin_family: int = AF_INET,
        sin_port: int = 0,
        sin_addr: IN_ADDR | None = None,
    ) -> None:
        self.sin_family = sin_family
        self.sin_port = sin_port
        self.sin_addr = sin_addr if sin_addr is not None else IN_ADDR()

    @property
    def sin_port(self) -> int:
        """The port in network order (a USHORT: ``ValueError`` outside 0..0xFFFF)."""
        return self._sin_port

    @sin_port.setter
    def sin_port(self, value: int) -> None:
        self._sin_port = _check_wire_port(value)

    @property
    def sa_family(self) -> int:
        return self.sin_family

    @property
    def port(self) -> int:
        """The port in host order (a Python convenience, not a C field)."""
        return _port_from_wire(self.sin_port)

    def to_tuple(self) -> tuple[str, int]:
        return (str(self.sin_addr), self.port)

    def set_from_tuple(self, family: int, address: tuple[Any, ...]) -> None:
        if family != AF_INET:
            raise ValueError("a SOCKADDR_IN cannot hold an IPv6 address")
        self.sin_family = AF_INET
        self.sin_port = _port_to_wire(address[1])
        self.sin_addr = IN_ADDR(_socket.inet_pton(_socket.AF_INET, address[0]))

    def __repr__(self) -> str:
        return f"SOCKADDR_IN({self.sin_addr}:{self.port})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SOCKADDR_IN) and (
            other.sin_family,
            other.sin_port,
            other.sin_addr,
        ) == (self.sin_family, self.sin_port, self.sin_addr)

    __hash__ = None  # type: ignore[assignment]


class SOCKADDR_IN6(SOCKADDR):
    """``struct sockaddr_in6``: family (23), port (network order), flow info, address, scope."""

    def __init__(
        self,
        sin6_family: int = AF_INET6,
        sin6_port: int = 0,
        sin6_flowinfo: int = 0,
        sin6_addr: IN6_ADDR | None = None,
        sin6_scope_id: int = 0,
    ) -> None:
        self.sin6_family = sin6_family
        self.sin6_port = sin6_port
        self.sin6_flowinfo = sin6_flowinfo
        self.sin6_addr = sin6_addr if sin6_addr is not None else IN6_ADDR()
        self.sin6_scope_id = sin6_scope_id

    @property
    def sin6_port(self) -> int:
        """The port in network order (a USHORT: ``ValueError`` outside 0..0xFFFF)."""
        return self._sin6_port

    @sin6_port.setter
    def sin6_port(self, value: int) -> None:
        self._sin6_port = _check_wire_port(value)

    @property
    def sa_family(self) -> int:
        return self.sin6_family

    @property
    def port(self) -> int:
        """The port in host order (a Python convenience, not a C field)."""
        return _port_from_wire(self.sin6_port)

    def to_tuple(self) -> tuple[str, int, int, int]:
        return (str(self.sin6_addr), self.port, self.sin6_flowinfo, self.sin6_scope_id)

    def set_from_tuple(self, family: int, address: tuple[Any, ...]) -> None:
        if family != AF_INET6:
            raise ValueError("a SOCKADDR_IN6 cannot hold an IPv4 address")
        self.sin6_family = AF_INET6
        self.sin6_port = _port_to_wire(address[1])
        host = str(address[0]).split("%", 1)[0]
        self.sin6_addr = IN6_ADDR(_socket.inet_pton(_socket.AF_INET6, host))
        self.sin6_flowinfo = int(address[2]) if len(address) > 2 else 0
        self.sin6_scope_id = int(address[3]) if len(address) > 3 else 0

    def __repr__(self) -> str:
        return f"SOCKADDR_IN6([{self.sin6_addr}]:{self.port})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SOCKADDR_IN6) and other.to_tuple() == self.to_tuple()

    __hash__ = None  # type: ignore[assignment]


class SOCKADDR_STORAGE(SOCKADDR):
    """Room for any address: the provider stores a SOCKADDR_IN or SOCKADDR_IN6 view in it.

    C code casts ``(PSOCKADDR_IN)&Storage``; here read :attr:`as_in` / :attr:`as_in6`.
    """

    def __init__(self) -> None:
        self.ss_family = AF_UNSPEC
        self._value: SOCKADDR_IN | SOCKADDR_IN6 | None = None

    @property
    def sa_family(self) -> int:
        return self.ss_family

    @property
    def as_in(self) -> SOCKADDR_IN:
        """The content viewed as a SOCKADDR_IN (ValueError if it holds another family)."""
        if not isinstance(self._value, SOCKADDR_IN):
            raise ValueError("this SOCKADDR_STORAGE does not hold an IPv4 address")
        return self._value

    @property
    def as_in6(self) -> SOCKADDR_IN6:
        """The content viewed as a SOCKADDR_IN6 (ValueError if it holds another family)."""
        if not isinstance(self._value, SOCKADDR_IN6):
            raise ValueError("this SOCKADDR_STORAGE does not hold an IPv6 address")
        return self._value

    def to_tuple(self) -> tuple[Any, ...]:
        if self._value is None:
            raise ValueError("this SOCKADDR_STORAGE is empty")
        return self._value.to_tuple()

    def set_from_tuple(self, family: int, address: tuple[Any, ...]) -> None:
        value: SOCKADDR_IN | SOCKADDR_IN6 = SOCKADDR_IN() if family == AF_INET else SOCKADDR_IN6()
        value.set_from_tuple(family, address)
        self._value = value
        self.ss_family = family

    def __repr__(self) -> str:
        return f"SOCKADDR_STORAGE({self._value!r})"


def sockaddr_from_tuple(address: tuple[Any, ...]) -> SOCKADDR_IN | SOCKADDR_IN6:
    """A SOCKADDR_IN or SOCKADDR_IN6 from ``("127.0.0.1", 5000)`` or ``("::1", 5000)``.

    A port that is not an int in 0..65535 raises ``TypeError`` / ``ValueError``."""
    host = str(address[0]).split("%", 1)[0]
    value: SOCKADDR_IN | SOCKADDR_IN6
    if ipaddress.ip_address(host).version == 4:
        value = SOCKADDR_IN()
        value.set_from_tuple(AF_INET, address)
    else:
        value = SOCKADDR_IN6()
        value.set_from_tuple(AF_INET6, address)
    return value


def IN4ADDR_SETANY(a: SOCKADDR_IN) -> None:
    """Set ``a`` to 0.0.0.0 port 0 (mstcpip.h)."""
    a.sin_family = AF_INET
    a.sin_port = 0
    a.sin_addr = IN_ADDR()


def IN4ADDR_SETLOOPBACK(a: SOCKADDR_IN) -> None:
    """Set ``a`` to 127.0.0.1 port 0 (mstcpip.h)."""
    a.sin_family = AF_INET
    a.sin_port = 0
    a.sin_addr = IN_ADDR(b"\x7f\0\0\1")


def IN6ADDR_SETANY(a: SOCKADDR_IN6) -> None:
    """Set ``a`` to :: port 0 (mstcpip.h)."""
    a.sin6_family = AF_INET6
    a.sin6_port = 0
    a.sin6_flowinfo = 0
    a.sin6_addr = IN6_ADDR()
    a.sin6_scope_id = 0


def IN6ADDR_SETLOOPBACK(a: SOCKADDR_IN6) -> None:
    """Set ``a`` to ::1 port 0 (mstcpip.h)."""
    IN6ADDR_SETANY(a)
    a.sin6_addr = IN6_ADDR(b"\0" * 15 + b"\1")


@dataclass(eq=False)
class WSK_BUF:
    """Data described by an MDL chain: ``Length`` bytes from ``Offset`` in the first MDL."""

    Mdl: MDL | None = None
    Offset: int = 0
    Length: int = 0


PWSK_BUF = WSK_BUF


@dataclass(eq=False)
class WSK_DATA_INDICATION:
    """One element of a receive-event indication list."""

    Next: WSK_DATA_INDICATION | None = None
    Buffer: WSK_BUF = field(default_factory=WSK_BUF)


PWSK_DATA_INDICATION = WSK_DATA_INDICATION


@dataclass(eq=False)
class WSK_BUF_LIST:
    """One datagram of a WskSendMessages batch; ``Next`` chains them (NULL ends the list)."""

    Next: WSK_BUF_LIST | None = None
    Buffer: WSK_BUF = field(default_factory=WSK_BUF)


PWSK_BUF_LIST = WSK_BUF_LIST


@dataclass(eq=False)
class WSK_DATAGRAM_INDICATION:
    """One datagram of a WskReceiveFromEvent indication list.

    ``ControlInfo`` is the datagram's control data in Windows layout (CMSGHDR objects, see
    :mod:`pywsk.wsk.cmsg`) as a read-only buffer, or None; ``RemoteAddress`` the sender.
    """

    Next: WSK_DATAGRAM_INDICATION | None = None
    Buffer: WSK_BUF = field(default_factory=WSK_BUF)
    ControlInfo: Any = None
    ControlInfoLength: int = 0
    RemoteAddress: SOCKADDR | None = None


PWSK_DATAGRAM_INDICATION = WSK_DATAGRAM_INDICATION


@dataclass
class WSK_INSPECT_ID:
    """Identifies a connection request on a conditional-accept listener (compare contents)."""

    Key: int = 0
    SerialNumber: int = 0


@dataclass
class WSK_EVENT_CALLBACK_CONTROL:
    """Input of SO_WSK_EVENT_CALLBACK and WSK_SET_STATIC_EVENT_CALLBACKS."""

    NpiId: Any = None
    EventMask: int = 0


@dataclass
class WSK_PROVIDER_CHARACTERISTICS:
    """The range of WSK versions a provider supports."""

    HighestVersion: int = 0
    LowestVersion: int = 0


@dataclass
class WSK_TRANSPORT:
    """One transport, as WSK_TRANSPORT_LIST_QUERY reports it."""

    Version: int = 0
    SocketType: int = 0
    Protocol: int = 0
    AddressFamily: int = 0
    ProviderId: Any = None


class WSK_SOCKET:
    """A socket object.  Its only public field is ``Dispatch``, the provider's table.

    C code casts it to the table of the socket's category:
    ``Dispatch = (PWSK_PROVIDER_CONNECTION_DISPATCH)(Socket->Dispatch)``; Python code
    may do the same with :func:`typing.cast` or just use it.
    """

    __slots__ = ("Dispatch", "__weakref__")

    def __init__(self, Dispatch: Any) -> None:
        self.Dispatch: Any = Dispatch


PWSK_SOCKET = WSK_SOCKET
#: The client object handed out by WskCaptureProviderNPI (opaque to the client).
PWSK_CLIENT = Any


class PSIZE_T:
    """An out-parameter of type SIZE_T (``SIZE_T *`` in C): read ``.value`` after the call."""

    __slots__ = ("value",)

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"PSIZE_T({self.value})"


class PULONG(PSIZE_T):
    """An out-parameter of type ULONG (``ULONG *`` in C)."""

    __slots__ = ()


T = TypeVar("T")


class PPVOID(Generic[T]):
    """A pointer-sized out-parameter (``PVOID *``, ``PADDRINFOEXW *``, ``CONST X **`` in C).

    The callee stores into ``.value``; the caller reads it after the call, as C code reads
    ``*Result``.  WskAcceptEvent's AcceptSocketContext and AcceptSocketDispatch are two of
    these: the client stores the accepted socket's context and dispatch table through them.
    """

    __slots__ = ("value",)

    def __init__(self, value: T | None = None) -> None:
        self.value: T | None = value

    def __repr__(self) -> str:
        return f"PPVOID({self.value!r})"


class UNICODE_STRING:
    """A counted UTF-16 string.  ``Length`` / ``MaximumLength`` are in bytes, as in C."""

    __slots__ = ("Buffer", "MaximumLength")

    def __init__(self, Buffer: str | None = None, MaximumLength: int | None = None) -> None:
        self.Buffer = Buffer
        self.MaximumLength = MaximumLength if MaximumLength is not None else 2 * len(Buffer or "")

    @property
    def Length(self) -> int:
        return 2 * len(self.Buffer or "")

    def __str__(self) -> str:
        return self.Buffer or ""

    def __repr__(self) -> str:
        return f"UNICODE_STRING({self.Buffer!r})"


PUNICODE_STRING = UNICODE_STRING


def RtlInitUnicodeString(DestinationString: UNICODE_STRING, SourceString: str | None) -> None:
    """Point ``DestinationString`` at ``SourceString`` (wdm.h)."""
    DestinationString.Buffer = SourceString
    DestinationString.MaximumLength = 2 * len(SourceString or "") + 2 * bool(SourceString)


@dataclass(eq=False)
class ADDRINFOEXW:
    """One result of WskGetAddressInfo (ws2def.h ``addrinfoexW``); ``ai_next`` chains them."""

    ai_flags: int = 0
    ai_family: int = AF_UNSPEC
    ai_socktype: int = 0
    ai_protocol: int = 0
    ai_addrlen: int = 0
    ai_canonname: str | None = None
    ai_addr: SOCKADDR | None = None
    ai_blob: Any = None
    ai_bloblen: int = 0
    ai_provider: Any = None
    ai_next: ADDRINFOEXW | None = None


PADDRINFOEXW = ADDRINFOEXW
