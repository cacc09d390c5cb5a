"""The bad-input campaign: every dispatch function x every argument, given bad values.

What it does: for each WSK dispatch function (provider, connection, listening, stream
tables) it builds a call that would be good, on a fresh socket in the state the call
needs, then replaces one argument at a time with a value of the wrong type, a wrong value
and None, issues the call on a real IRP, and checks that the call ended cleanly:

* it returned an NTSTATUS (an int), or - only for memory the caller corrupted (a freed or
  looping MDL chain, a freed IRP, an IRP pending elsewhere) - raised BugCheck *before* the
  IRP was taken (the IRP is still the caller's, untouched);
* a wrong type, or None where the argument is required, got a failure status;
* the IRP completed exactly once, at once or (a call that legitimately waits) by the time
  its socket was closed, within a bound;
* nothing was reported through ``sys.unraisablehook``;
* an unrelated connection still carries data afterwards.

A NULL IRP must give STATUS_INVALID_PARAMETER with nothing to complete (where the
function requires an IRP).

Run as a script (``python campaign.py [--verifier]``) it prints ``N cases tried, M clean``
and the unclean cases, with Python's own unraisable hook - no pytest hooks in the way.
"""

from __future__ import annotations

import argparse
import faulthandler
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from pywsk import verifier
from pywsk.client import allocate_buffer
from pywsk.nt import (
    STATUS_INVALID_PARAMETER,
    STATUS_PENDING,
    ExFreePool,
    IoAllocateIrp,
    IoFreeIrp,
    IoFreeMdl,
    IoSetCompletionRoutine,
    IrpState,
    status_name,
)
from pywsk.nt.bugcheck import BugCheck
from pywsk.nt.mdl import MDL
from pywsk.nt.status import NT_ERROR
from pywsk.testing.driver import Request, WskTestClient
from pywsk.wsk import (
    AF_INET,
    IPPROTO_TCP,
    NS_ALL,
    PPVOID,
    PSIZE_T,
    SO_RCVBUF,
    SOCK_STREAM,
    SOCKADDR_IN,
    SOCKADDR_STORAGE,
    SOL_SOCKET,
    UNICODE_STRING,
    WSK_BUF,
    WSK_DATA_INDICATION,
    WSK_FLAG_LISTEN_SOCKET,
    WSK_FLAG_STREAM_SOCKET,
    WSK_INSPECT_ID,
    WSK_SOCKET,
    WSK_TRANSPORT_LIST_QUERY,
    WskSetOption,
    sockaddr_from_tuple,
)

#: How long a case may take to complete its IRP once its socket is closed.
BOUND = 10.0

# Argument kinds: what a bad value of each looks like.
ULONG = "ulong"  # a ULONG (flags, sizes, codes, levels)
SOCKET = "socket"  # a PWSK_SOCKET
CLIENT = "client"  # a PWSK_CLIENT
BUFFER = "buffer"  # a required PWSK_BUF
OPT_BUFFER = "opt-buffer"  # a PWSK_BUF that may be NULL
IN_ADDR = "in-address"  # a PSOCKADDR read by the provider
OUT_ADDR = "out-address"  # a PSOCKADDR the provider fills
OPT_OUT_ADDR = "opt-out-address"  # ... that may be NULL
OPAQUE = "opaque"  # a PVOID the provider only hands back (contexts, dispatch tables)
VALUE = "value"  # an option's input / output buffer
SIZE_BOX = "size-box"  # an optional PSIZE_T
INDICATION = "indication"  # a PWSK_DATA_INDICATION
INSPECT = "inspect-id"  # a PWSK_INSPECT_ID
NAME = "name"  # a PUNICODE_STRING (name resolution)
RESULT = "result"  # a PADDRINFOEXW * out-parameter

#: Kinds whose wrong type or None must be refused with a failure status.
STRICT = {ULONG, SOCKET, CLIENT, BUFFER, IN_ADDR, OUT_ADDR, INDICATION, RESULT}


@dataclass
class Variant:
    label: str
    make: Callable[[World], Any]
    #: "type" / "none": a failure status is required (for STRICT kinds); "value": any status.
    group: str
    #: The call may raise BugCheck before taking the IRP (memory the caller corrupted).
    bugcheck: bool = False


def _freed_mdl_buffer(world: World) -> WSK_BUF:
    buf = world.buffer(b"data")
    assert buf.Mdl is not None
    IoFreeMdl(buf.Mdl)
    return buf


def _looping_buffer(world: World) -> WSK_BUF:
    first = world.buffer(b"ab")
    second = world.buffer(b"cd")
    assert first.Mdl is not None
    assert second.Mdl is not None
    first.Mdl.Next = second.Mdl
    second.Mdl.Next = first.Mdl
    return WSK_BUF(first.Mdl, 0, 8)


def _buffer_with(**fields: Any) -> Callable[[World], WSK_BUF]:
    def make(world: World) -> WSK_BUF:
        buf = world.buffer(b"data")
        for name, value in fields.items():
            setattr(buf, name, value)
        return buf

    return make


def _bad_address(world: World) -> SOCKADDR_IN:
    address = cast(SOCKADDR_IN, sockaddr_from_tuple(("127.0.0.1", 1)))
    address.sin_addr = "not an address"  # type: ignore[assignment]
    return address


def _variants(kind: str) -> list[Variant]:
    none = Variant("None", lambda w: None, "none")
    text = Variant('"3"', lambda w: "3", "type")
    if kind == ULONG:
        return [
            text,
            Variant("1.5", lambda w: 1.5, "type"),
            Variant("2**40", lambda w: 2**40, "type"),
            Variant("-1", lambda w: -1, "type"),
            Variant("0x40000000", lambda w: 0x40000000, "value"),
            none,
        ]
    if kind in (SOCKET, CLIENT):
        return [text, Variant("closed", lambda w: w.closed_socket(), "value"), none]
    if kind in (BUFFER, OPT_BUFFER):
        return [
            text,
            Variant('Offset "3"', _buffer_with(Offset="3"), "type"),
            Variant("Length 1.5", _buffer_with(Length=1.5), "type"),
            Variant('Mdl "x"', _buffer_with(Mdl="x"), "type"),
            Variant("Mdl None, Length 4", _buffer_with(Mdl=None), "type"),
            Variant("Offset past end", _buffer_with(Offset=100), "value"),
            Variant("Length past end", _buffer_with(Length=2**40), "value"),
            Variant("Offset -1", _buffer_with(Offset=-1), "type"),
            Variant("freed MDL", _freed_mdl_buffer, "value", bugcheck=True),
            Variant("looping MDL chain", _looping_buffer, "value", bugcheck=True),
            none,
        ]
    if kind == IN_ADDR:
        return [
            text,
            Variant("sin_addr str", _bad_address, "type"),
            Variant("IPv6 on IPv4", lambda w: sockaddr_from_tuple(("::1", 1)), "value"),
            Variant("empty storage", lambda w: SOCKADDR_STORAGE(), "value"),
            none,
        ]
    if kind in (OUT_ADDR, OPT_OUT_ADDR):
        return [text, Variant("int", lambda w: 7, "type"), none]
    if kind == VALUE:
        return [
            text,
            Variant("2**31", lambda w: 2**31, "value"),
            Variant("2**40", lambda w: 2**40, "value"),
            Variant("1.5", lambda w: 1.5, "type"),
            none,
        ]
    if kind == SIZE_BOX:
        return [text, Variant("int", lambda w: 4, "type"), none]
    if kind == INDICATION:
        return [text, Variant("not retained", lambda w: WSK_DATA_INDICATION(), "value"), none]
    if kind == INSPECT:
        return [text, Variant("unknown id", lambda w: WSK_INSPECT_ID(1, 2), "value"), none]
    if kind in (NAME, RESULT):
        return [text, Variant("int", lambda w: 5, "type"), none]
    return [text, Variant("int", lambda w: 5, "value"), none]  # OPAQUE


class World:
    """One registered client, a Linux listener, and a sentinel connection."""

    def __init__(self) -> None:
        self.wsk = WskTestClient()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.server.settimeout(BOUND)
        self.address = self.server.getsockname()
        self.keep: list[socket.socket] = []
        self.buffers: list[tuple[Any, MDL]] = []
        self.sentinel, self.sentinel_peer = self.connected()

    def buffer(self, data: bytes) -> WSK_BUF:
        """A WSK_BUF over non-paged pool holding ``data``; freed by :meth:`close`."""
        pool, buf, _free = allocate_buffer(data, b"wskt")  # freed by close, below
        assert buf.Mdl is not None
        self.buffers.append((pool, buf.Mdl))
        return buf

    def connected(self) -> tuple[WSK_SOCKET, socket.socket]:
        sock = self.wsk.connect(self.address)
        peer, _ = self.server.accept()
        peer.settimeout(BOUND)
        self.keep.append(peer)
        return sock, peer

    def fresh(self, flags: int = 0) -> WSK_SOCKET:
        from pywsk.wsk import WSK_FLAG_CONNECTION_SOCKET

        made = self.wsk.socket(AF_INET, flags or WSK_FLAG_CONNECTION_SOCKET)
        return cast(WSK_SOCKET, made.information)

    def bound(self, flags: int = 0) -> WSK_SOCKET:
        sock = self.fresh(flags)
        request = self.wsk.call(
            "WskBind", sock.Dispatch.WskBind, sock, sockaddr_from_tuple(("127.0.0.1", 0)), 0
        )
        assert request.status == 0, request
        return sock

    def closed_socket(self) -> WSK_SOCKET:
        sock = self.fresh()
        self.wsk.close_socket(sock)
        return sock

    def sentinel_works(self) -> bool:
        buf = self.buffer(b"ping")
        request = self.wsk.start("WskSend", self.sentinel.Dispatch.WskSend, self.sentinel, buf, 0)
        try:
            request.wait(BOUND)
            got = b""
            while len(got) < 4:
                chunk = self.sentinel_peer.recv(4 - len(got))
                if not chunk:
                    return False
                got += chunk
        except (TimeoutError, OSError):
            return False
        return request.status == 0 and got == b"ping"

    def close(self) -> None:
        self.wsk.close()
        for item in self.keep:
            item.close()
        self.server.close()
        for _pool, mdl in self.buffers:
            mdl.Next = None  # the looping chains
            if not mdl._freed:
                IoFreeMdl(mdl)
        for pool, _mdl in self.buffers:
            ExFreePool(pool)


@dataclass
class Spec:
    """One dispatch function: how to make a good call, and its arguments' kinds."""

    name: str
    make: Callable[[World], tuple[Callable[..., int], list[Any], WSK_SOCKET | None]]
    kinds: list[str]
    irp: str = "required"  # "optional" (WskControlSocket / WskControlClient), "none" (WskRelease)
    passive: bool = False


def _on(state: Callable[[World], WSK_SOCKET], member: str, *rest: Callable[[World], Any]) -> Any:
    def make(world: World) -> tuple[Callable[..., int], list[Any], WSK_SOCKET | None]:
        sock = state(world)
        return getattr(sock.Dispatch, member), [sock, *(r(world) for r in rest)], sock

    return make


def _connected(world: World) -> WSK_SOCKET:
    return world.connected()[0]


def _listening(world: World) -> WSK_SOCKET:
    return world.wsk.listen()


def _stream_bound(world: World) -> WSK_SOCKET:
    return world.bound(WSK_FLAG_STREAM_SOCKET)


def _buf(world: World) -> WSK_BUF:
    return world.buffer(b"data")


def _const(value: Any) -> Callable[[World], Any]:
    return lambda world: value


def _loopback(world: World) -> Any:
    return sockaddr_from_tuple(("127.0.0.1", 0))


def _server(world: World) -> Any:
    return sockaddr_from_tuple(world.address)


def _storage(world: World) -> Any:
    return SOCKADDR_STORAGE()


def _provider(member: str, *rest: Callable[[World], Any]) -> Any:
    def make(world: World) -> tuple[Callable[..., int], list[Any], WSK_SOCKET | None]:
        dispatch = world.wsk.provider.Dispatch
        client = world.wsk.provider.Client
        return getattr(dispatch, member), [client, *(r(world) for r in rest)], None

    return make


def specs() -> list[Spec]:
    zero = _const(0)
    none = _const(None)
    control = [WskSetOption, SO_RCVBUF, SOL_SOCKET, 4]
    control_args = [*(_const(v) for v in control), _const(65536), zero, none, none]
    control_kinds = [SOCKET, ULONG, ULONG, ULONG, ULONG, VALUE, ULONG, VALUE, SIZE_BOX]
    out: list[Spec] = [
        Spec(
            "WskBind",
            _on(lambda w: w.fresh(), "WskBind", _loopback, zero),
            [SOCKET, IN_ADDR, ULONG],
        ),
        Spec(
            "WskConnect",
            _on(lambda w: w.bound(), "WskConnect", _server, zero),
            [SOCKET, IN_ADDR, ULONG],
        ),
        Spec("WskSend", _on(_connected, "WskSend", _buf, zero), [SOCKET, BUFFER, ULONG]),
        Spec("WskReceive", _on(_connected, "WskReceive", _buf, zero), [SOCKET, BUFFER, ULONG]),
        Spec(
            "WskDisconnect",
            _on(_connected, "WskDisconnect", _buf, zero),
            [SOCKET, OPT_BUFFER, ULONG],
        ),
        Spec(
            "WskGetLocalAddress",
            _on(_connected, "WskGetLocalAddress", _storage),
            [SOCKET, OUT_ADDR],
        ),
        Spec(
            "WskGetRemoteAddress",
            _on(_connected, "WskGetRemoteAddress", _storage),
            [SOCKET, OUT_ADDR],
        ),
        Spec(
            "WskControlSocket",
            _on(_connected, "WskControlSocket", *control_args),
            control_kinds,
            irp="optional",
        ),
        Spec("WskCloseSocket", _on(_connected, "WskCloseSocket"), [SOCKET]),
        Spec(
            "WskRelease",
            _on(_connected, "WskRelease", lambda w: WSK_DATA_INDICATION()),
            [SOCKET, INDICATION],
            irp="none",
        ),
        Spec(
            "WskReceiveEx",
            _on(_connected, "WskReceiveEx", _buf, zero, none, none, none),
            [SOCKET, BUFFER, ULONG, OPAQUE, OPAQUE, OPAQUE],
        ),
        Spec(
            "WskSendEx",
            _on(_connected, "WskSendEx", _buf, zero, zero, none),
            [SOCKET, BUFFER, ULONG, ULONG, OPAQUE],
        ),
        Spec(
            "WskAccept",
            _on(_listening, "WskAccept", zero, none, none, _storage, _storage),
            [SOCKET, ULONG, OPAQUE, OPAQUE, OPT_OUT_ADDR, OPT_OUT_ADDR],
        ),
        Spec(
            "WskInspectComplete",
            _on(_listening, "WskInspectComplete", _const(WSK_INSPECT_ID(1, 1)), zero),
            [SOCKET, INSPECT, ULONG],
        ),
        Spec(
            "WskBind (listening)",
            _on(lambda w: w.fresh(WSK_FLAG_LISTEN_SOCKET), "WskBind", _loopback, zero),
            [SOCKET, IN_ADDR, ULONG],
        ),
        Spec(
            "WskGetLocalAddress (listening)",
            _on(_listening, "WskGetLocalAddress", _storage),
            [SOCKET, OUT_ADDR],
        ),
        Spec(
            "WskControlSocket (listening)",
            _on(_listening, "WskControlSocket", *control_args),
            control_kinds,
            irp="optional",
        ),
        Spec("WskListen", _on(_stream_bound, "WskListen"), [SOCKET]),
        Spec(
            "WskConnect (stream)",
            _on(_stream_bound, "WskConnect", _server, zero),
            [SOCKET, IN_ADDR, ULONG],
        ),
        Spec(
            "WskSocket",
            _provider(
                "WskSocket",
                _const(AF_INET),
                _const(SOCK_STREAM),
                _const(IPPROTO_TCP),
                _const(WSK_FLAG_LISTEN_SOCKET),
                none,
                none,
                none,
                none,
                none,
            ),
            [CLIENT, ULONG, ULONG, ULONG, ULONG, OPAQUE, OPAQUE, OPAQUE, OPAQUE, OPAQUE],
        ),
        Spec(
            "WskSocketConnect",
            _provider(
                "WskSocketConnect",
                _const(SOCK_STREAM),
                _const(IPPROTO_TCP),
                _loopback,
                _server,
                zero,
                none,
                none,
                none,
                none,
                none,
            ),
            [CLIENT, ULONG, ULONG, IN_ADDR, IN_ADDR, ULONG, OPAQUE, OPAQUE, OPAQUE, OPAQUE, OPAQUE],
        ),
        Spec(
            "WskControlClient",
            _provider(
                "WskControlClient",
                _const(WSK_TRANSPORT_LIST_QUERY),
                zero,
                none,
                _const(4),
                lambda w: [None] * 4,
                lambda w: PSIZE_T(),
            ),
            [CLIENT, ULONG, ULONG, VALUE, ULONG, VALUE, SIZE_BOX],
            irp="optional",
        ),
        Spec(
            "WskGetAddressInfo",
            _provider(
                "WskGetAddressInfo",
                lambda w: UNICODE_STRING("localhost"),
                none,
                _const(NS_ALL),
                none,
                none,
                lambda w: PPVOID(),
                none,
                none,
            ),
            [CLIENT, NAME, NAME, ULONG, OPAQUE, OPAQUE, RESULT, OPAQUE, OPAQUE],
            passive=True,
        ),
        Spec(
            "WskGetNameInfo",
            _provider(
                "WskGetNameInfo",
                _server,
                _const(16),
                lambda w: UNICODE_STRING(""),
                none,
                zero,
                none,
                none,
            ),
            [CLIENT, IN_ADDR, ULONG, NAME, NAME, ULONG, OPAQUE, OPAQUE],
            passive=True,
        ),
    ]
    return out


@dataclass
class Case:
    spec: Spec
    index: int  # the argument replaced (-1: the IRP)
    variant: Variant

    @property
    def id(self) -> str:
        where = "Irp" if self.index < 0 else f"arg{self.index}({self.spec.kinds[self.index]})"
        return f"{self.spec.name}:{where}={self.variant.label}"


def cases() -> Iterator[Case]:
    for spec in specs():
        for index, kind in enumerate(spec.kinds):
            for variant in _variants(kind):
                yield Case(spec, index, variant)
        if spec.irp == "none":
            continue
        yield Case(spec, -1, Variant("NULL", lambda w: None, "none"))
        yield Case(spec, -1, Variant('"3"', lambda w: "3", "type"))
        yield Case(spec, -1, Variant("freed IRP", _freed_irp, "value", bugcheck=True))


def _freed_irp(world: World) -> Any:
    irp = IoAllocateIrp(1, False)
    assert irp is not None
    IoFreeIrp(irp)
    return irp


def run_case(world: World, case: Case) -> str | None:
    """Run one case; None when it ended cleanly, else what was wrong."""
    reported: list[Any] = []
    previous = sys.unraisablehook

    def hook(args: Any) -> None:
        reported.append(args)
        previous(args)

    sys.unraisablehook = hook
    try:
        problem = _run(world, case)
    finally:
        sys.unraisablehook = previous
    if problem is None and reported:
        first = reported[0]
        problem = f"reported {first.exc_type.__name__}: {first.exc_value} ({first.err_msg})"
    if problem is None and not world.sentinel_works():
        problem = "another connection stopped working"
    return problem


def _run(world: World, case: Case) -> str | None:
    function, args, sock = case.spec.make(world)
    request: Request | None = None
    irp: Any
    returned: Any
    if case.index >= 0 and case.spec.irp == "none":
        args[case.index] = case.variant.make(world)
        returned = function(*args)
        if not isinstance(returned, int):
            return f"returned {returned!r}, not an NTSTATUS"
        if case.spec.kinds[case.index] in STRICT and not NT_ERROR(returned):
            return f"returned {status_name(returned)} for a bad argument"
        return None
    if case.index >= 0:
        args[case.index] = case.variant.make(world)
        irp = IoAllocateIrp(1, False)
        assert irp is not None
        request = Request(case.spec.name, irp)
        IoSetCompletionRoutine(irp, request.routine, None, True, True, True)
    else:
        irp = case.variant.make(world)
    try:
        returned = function(*args, irp)
    except BugCheck as exc:
        if not case.variant.bugcheck:
            return f"BugCheck {exc}"
        if request is not None and request.irp.state is not IrpState.IDLE:
            return f"BugCheck after the IRP was taken: {exc}"
        if request is not None:
            IoFreeIrp(request.irp)
        return None
    except Exception as exc:
        return f"raised {type(exc).__name__}: {exc}"
    if not isinstance(returned, int):
        return f"returned {returned!r}, not an NTSTATUS"
    if request is None:
        refused = case.variant.label in ("NULL", '"3"') and case.spec.irp == "required"
        if refused and returned != STATUS_INVALID_PARAMETER:
            return f"no IRP: returned {status_name(returned)}"
        return None
    strict = case.spec.kinds[case.index] in STRICT and case.variant.group in ("type", "none")
    optional_none = case.variant.group == "none" and case.spec.kinds[case.index] in (
        OPT_BUFFER,
        OPT_OUT_ADDR,
    )
    if not request.done and returned == STATUS_PENDING and sock is not None:
        world.wsk.close_socket(sock)  # a call that waits legitimately ends at close
    try:
        request.wait(BOUND)
    except TimeoutError:
        return f"returned {status_name(returned)}; IRP still pending after {BOUND} s"
    if request.completions != 1:
        return f"completion routine ran {request.completions} times"
    IoFreeIrp(request.irp)
    assert request.status is not None
    if request.status == 0 and isinstance(request.information, WSK_SOCKET):
        world.wsk.sockets.append(request.information)  # a socket the call made: closed later
    if strict and not optional_none and not NT_ERROR(request.status):
        return f"completed {status_name(request.status)} for a bad argument"
    return None


def run_all(verbose: bool = False) -> tuple[int, list[str]]:
    world = World()
    problems: list[str] = []
    tried = 0
    try:
        for case in cases():
            tried += 1
            problem = run_case(world, case)
            if problem is not None:
                problems.append(f"{case.id}: {problem}")
                print(f"UNCLEAN {problems[-1]}", flush=True)
            elif verbose:
                print(f"clean {case.id}")
    finally:
        world.close()
    return tried, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verifier", action="store_true", help="run with the verifier on")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up (and dump) after")
    options = parser.parse_args()
    if options.verifier:
        verifier.enable(mode="collect", resource_warnings=False)
    started = time.monotonic()
    faulthandler.dump_traceback_later(options.timeout, exit=True)
    tried, problems = run_all(options.verbose)
    clean = tried - len(problems)
    print(
        f"badinput: {tried} cases tried, {clean} clean"
        f" (verifier {'on' if options.verifier else 'off'}, {time.monotonic() - started:.1f} s)"
    )
    return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
