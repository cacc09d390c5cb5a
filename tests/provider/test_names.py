"""WskGetAddressInfo / WskFreeAddressInfo / WskGetNameInfo through the system resolver
(localhost and numeric addresses only)."""

from __future__ import annotations

import pytest

from pywsk.nt import (
    DISPATCH_LEVEL,
    STATUS_NOT_FOUND,
    STATUS_NOT_SUPPORTED,
    STATUS_PENDING,
    STATUS_SUCCESS,
    BugCheck,
    IoAllocateIrp,
    running_at,
)
from pywsk.testing.driver import WskTestClient
from pywsk.wsk import (
    ADDRINFOEXW,
    AF_INET,
    AF_INET6,
    AI_NUMERICHOST,
    IPPROTO_TCP,
    NI_NUMERICHOST,
    NI_NUMERICSERV,
    NS_ALL,
    PPVOID,
    SOCK_STREAM,
    UNICODE_STRING,
    RtlInitUnicodeString,
    sockaddr_from_tuple,
)


def resolve(
    wsk: WskTestClient,
    node: str | None,
    service: str | None,
    family: int = 0,
    flags: int = 0,
    namespace: int = NS_ALL,
) -> tuple[int | None, ADDRINFOEXW | None]:
    assert wsk.provider.Dispatch is not None
    node_name, service_name = UNICODE_STRING(), UNICODE_STRING()
    RtlInitUnicodeString(node_name, node)
    RtlInitUnicodeString(service_name, service)
    hints = ADDRINFOEXW(
        ai_family=family, ai_socktype=SOCK_STREAM, ai_protocol=IPPROTO_TCP, ai_flags=flags
    )
    result: PPVOID[ADDRINFOEXW] = PPVOID()
    request = wsk.call(
        "WskGetAddressInfo",
        wsk.provider.Dispatch.WskGetAddressInfo,
        wsk.provider.Client,
        node_name,
        service_name,
        namespace,
        None,
        hints,
        result,
        None,
        None,
    )
    assert request.returned in (STATUS_PENDING, request.status)
    return request.status, result.value


def chain(head: ADDRINFOEXW | None) -> list[ADDRINFOEXW]:
    out = []
    while head is not None:
        out.append(head)
        head = head.ai_next
    return out


@pytest.mark.parametrize(
    ("node", "family", "expected"),
    [
        ("127.0.0.1", AF_INET, ("127.0.0.1", 8080)),
        ("::1", AF_INET6, ("::1", 8080, 0, 0)),
    ],
)
def test_numeric_addresses(
    wsk: WskTestClient, node: str, family: int, expected: tuple[object, ...]
) -> None:
    status, head = resolve(wsk, node, "8080", family, AI_NUMERICHOST)
    assert status == STATUS_SUCCESS
    entries = chain(head)
    assert entries
    assert all(e.ai_family == family for e in entries)
    assert entries[0].ai_addr is not None
    assert entries[0].ai_addr.to_tuple() == expected
    assert wsk.provider.Dispatch is not None
    wsk.provider.Dispatch.WskFreeAddressInfo(wsk.provider.Client, head)  # type: ignore[misc]
    with pytest.raises(BugCheck):
        wsk.provider.Dispatch.WskFreeAddressInfo(wsk.provider.Client, head)  # type: ignore[misc]


def test_localhost_resolves_to_loopback(wsk: WskTestClient) -> None:
    status, head = resolve(wsk, "localhost", "80")
    assert status == STATUS_SUCCESS
    hosts = {e.ai_addr.to_tuple()[0] for e in chain(head) if e.ai_addr is not None}
    assert hosts & {"127.0.0.1", "::1"}
    assert wsk.provider.Dispatch is not None
    wsk.provider.Dispatch.WskFreeAddressInfo(wsk.provider.Client, head)  # type: ignore[misc]


def test_unresolvable_and_unsupported(wsk: WskTestClient) -> None:
    status, head = resolve(wsk, "not-an-address", None, AF_INET, AI_NUMERICHOST)
    assert (status, head) == (STATUS_NOT_FOUND, None)
    status, _ = resolve(wsk, "127.0.0.1", None, namespace=99)
    assert status == STATUS_NOT_SUPPORTED


@pytest.mark.parametrize(
    ("address", "host"), [(("127.0.0.1", 5000), "127.0.0.1"), (("::1", 5000), "::1")]
)
def test_get_name_info_numeric(wsk: WskTestClient, address: tuple[str, int], host: str) -> None:
    assert wsk.provider.Dispatch is not None
    node, service = UNICODE_STRING(None, 2 * 1025), UNICODE_STRING(None, 2 * 32)
    request = wsk.call(
        "WskGetNameInfo",
        wsk.provider.Dispatch.WskGetNameInfo,
        wsk.provider.Client,
        sockaddr_from_tuple(address),
        28,
        node,
        service,
        NI_NUMERICHOST | NI_NUMERICSERV,
        None,
        None,
    )
    assert request.status == STATUS_SUCCESS
    assert (str(node), str(service)) == (host, "5000")


def test_name_resolution_is_passive_level_only(wsk: WskTestClient) -> None:
    assert wsk.provider.Dispatch is not None
    irp = IoAllocateIrp(1, False)
    assert irp is not None
    with running_at(DISPATCH_LEVEL), pytest.raises(BugCheck, match="PASSIVE_LEVEL"):
        wsk.provider.Dispatch.WskGetAddressInfo(  # type: ignore[misc]
            wsk.provider.Client,
            UNICODE_STRING("localhost"),
            None,
            NS_ALL,
            None,
            None,
            PPVOID(),
            None,
            None,
            irp,
        )
