"""MDLs and pool: every rule of pywsk.nt.mdl, against the Microsoft pages it cites."""

from __future__ import annotations

import array
import ctypes
import itertools
import mmap
from collections.abc import Iterator

import pytest

from pywsk.nt import irp as irp_module
from pywsk.nt import mdl as mdl_module
from pywsk.nt.bugcheck import BugCheck, BugCheckCode
from pywsk.nt.irp import IRP, IoAllocateIrp, IoFreeIrp
from pywsk.nt.irql import DISPATCH_LEVEL, running_at
from pywsk.nt.mdl import (
    MDL,
    MDL_MAPPED_TO_SYSTEM_VA,
    MDL_PAGES_LOCKED,
    MDL_SOURCE_IS_NONPAGED_POOL,
    MDL_WRITE_OPERATION,
    PAGE_SIZE,
    POOL_FLAG_CACHE_ALIGNED,
    POOL_FLAG_NON_PAGED,
    POOL_FLAG_PAGED,
    POOL_FLAG_RAISE_ON_FAILURE,
    POOL_FLAG_UNINITIALIZED,
    ExAllocatePool2,
    ExAllocatePoolWithTag,
    ExFreePool,
    ExFreePoolWithTag,
    HighPagePriority,
    IoAllocateMdl,
    IoFreeMdl,
    IoModifyAccess,
    IoReadAccess,
    IoWriteAccess,
    KernelMode,
    LowPagePriority,
    MdlMappingNoExecute,
    MdlMappingNoWrite,
    MmBuildMdlForNonPagedPool,
    MmGetMdlByteCount,
    MmGetMdlByteOffset,
    MmGetSystemAddressForMdlSafe,
    MmProbeAndLockPages,
    MmUnlockPages,
    NonPagedPool,
    NonPagedPoolNx,
    NormalPagePriority,
    PagedPool,
    StatusException,
    UserMode,
    mdl_chain_views,
    mdl_chain_writable,
    mdl_is_locked,
)
from pywsk.nt.status import NTSTATUS


def allocate(buffer: object, length: int | None = None, irp: IRP | None = None) -> MDL:
    size = memoryview(buffer).nbytes  # type: ignore[arg-type]
    mdl = IoAllocateMdl(buffer, size if length is None else length, False, False, irp)
    assert mdl is not None
    return mdl


def pool(size: int, tag: int | bytes | str = b"test") -> mmap.mmap:
    block = ExAllocatePoolWithTag(NonPagedPoolNx, size, tag)
    assert block is not None
    return block


def address_of(buffer: object) -> int:
    """The address of a buffer's first byte, read independently of pywsk."""
    if isinstance(buffer, bytes):
        value = ctypes.cast(ctypes.c_char_p(buffer), ctypes.c_void_p).value
    else:
        probe = ctypes.c_char.from_buffer(buffer)  # type: ignore[arg-type]
        value = ctypes.addressof(probe)
        del probe
    assert value is not None
    return value


def mapped(mdl: MDL) -> memoryview | None:
    """``mdl.MappedSystemVa``, read afresh (mypy keeps no narrowing across calls)."""
    return mdl.MappedSystemVa


@pytest.fixture
def no_hook() -> Iterator[None]:
    saved = irp_module._allocation_hook
    irp_module._allocation_hook = None
    yield
    irp_module._allocation_hook = saved


# --- IoAllocateMdl --------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: b"0123456789",
        lambda: bytearray(b"0123456789"),
        lambda: memoryview(bytearray(b"xx0123456789"))[2:],
        lambda: array.array("B", b"0123456789"),
    ],
    ids=["bytes", "bytearray", "memoryview-slice", "array"],
)
def test_allocate_describes_any_buffer(make: object) -> None:
    buffer = make()  # type: ignore[operator]
    mdl = allocate(buffer, 10)
    assert mdl.ByteCount == 10 == MmGetMdlByteCount(mdl)
    assert bytes(mdl._view) == b"0123456789"
    assert mdl._view.nbytes == mdl.ByteCount
    assert mdl.writable is (not isinstance(buffer, bytes))
    assert mdl.Next is None
    assert mdl.MdlFlags == 0
    assert mdl.MappedSystemVa is None
    IoFreeMdl(mdl)


def test_allocate_describes_a_prefix_and_multibyte_arrays_in_bytes() -> None:
    buffer = bytearray(b"abcdefgh")
    mdl = allocate(buffer, 3)
    assert bytes(mdl._view) == b"abc"
    words = array.array("i", [1, 2, 3])
    wide = allocate(words, 3 * words.itemsize)
    assert wide.ByteCount == 3 * words.itemsize
    IoFreeMdl(mdl)
    IoFreeMdl(wide)


@pytest.mark.parametrize("buffer", [bytearray(5000), b"y" * 5000], ids=["bytearray", "bytes"])
def test_byte_offset_and_start_va_come_from_the_real_address(buffer: bytes | bytearray) -> None:
    for skip in (0, 1, 100):
        view = memoryview(buffer)[skip:]
        mdl = allocate(view)
        address = address_of(buffer) + skip
        assert mdl.ByteOffset == address % PAGE_SIZE == MmGetMdlByteOffset(mdl)
        assert mdl.StartVa == address - mdl.ByteOffset
        assert mdl.StartVa % PAGE_SIZE == 0
        IoFreeMdl(mdl)
        view.release()


def test_allocate_refuses_bad_lengths_and_buffers() -> None:
    buffer = bytearray(8)
    for length in (0, -1, 9):
        with pytest.raises(ValueError, match="Length"):
            IoAllocateMdl(buffer, length, False, False, None)
    with pytest.raises(TypeError):
        IoAllocateMdl(buffer, "4", False, False, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        IoAllocateMdl(buffer, True, False, False, None)
    with pytest.raises(TypeError):
        IoAllocateMdl(object(), 1, False, False, None)
    with pytest.raises(ValueError, match="contiguous"):
        IoAllocateMdl(memoryview(buffer)[::2], 2, False, False, None)
    buffer.append(0)  # no view was left behind by the refusals


def test_allocate_returns_none_past_the_maximum_length(
    monkeypatch: pytest.MonkeyPatch, no_hook: None
) -> None:
    monkeypatch.setattr(mdl_module, "_MAX_MDL_LENGTH", 4)
    irp = IoAllocateIrp(1, False)
    assert irp is not None
    assert IoAllocateMdl(bytearray(5), 5, False, False, irp) is None
    assert irp.MdlAddress is None
    assert IoAllocateMdl(bytearray(5), 4, False, False, None) is not None


def test_allocate_chains_to_the_irp() -> None:
    irp = IoAllocateIrp(1, False)
    assert irp is not None
    first = allocate(bytearray(1), irp=irp)
    assert irp.MdlAddress is first
    second = IoAllocateMdl(bytearray(2), 2, True, False, irp)
    third = IoAllocateMdl(bytearray(3), 3, True, False, irp)
    assert second is not None
    assert third is not None
    assert first.Next is second
    assert second.Next is third
    assert third.Next is None
    assert irp.MdlAddress is first
    # A primary MDL replaces MdlAddress (the old chain stays the caller's business).
    fresh = allocate(bytearray(4), irp=irp)
    assert irp.MdlAddress is fresh
    assert fresh.Next is None


def test_allocate_secondary_without_a_primary_is_a_bug() -> None:
    irp = IoAllocateIrp(1, False)
    assert irp is not None
    buffer = bytearray(4)
    with pytest.raises(BugCheck) as caught:
        IoAllocateMdl(buffer, 4, True, False, irp)
    assert caught.value.code == BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION
    assert irp.MdlAddress is None
    buffer.append(0)  # the refused MDL's view was released


def test_allocate_for_a_freed_irp_is_a_bug() -> None:
    irp = IoAllocateIrp(1, False)
    assert irp is not None
    IoFreeIrp(irp)
    with pytest.raises(BugCheck) as caught:
        IoAllocateMdl(bytearray(4), 4, False, False, irp)
    assert caught.value.code == BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL


def test_allocate_honours_the_allocation_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def hook(function: str) -> bool:
        asked.append(function)
        return False

    irp = IoAllocateIrp(1, False)
    assert irp is not None
    monkeypatch.setattr(irp_module, "_allocation_hook", hook)
    buffer = bytearray(4)
    assert IoAllocateMdl(buffer, 4, False, False, irp) is None
    assert asked == ["IoAllocateMdl"]
    assert irp.MdlAddress is None
    buffer.append(0)
    monkeypatch.setattr(irp_module, "_allocation_hook", lambda function: True)
    assert IoAllocateMdl(buffer, 4, False, False, irp) is irp.MdlAddress


def test_allocate_above_dispatch_level_is_refused() -> None:
    with running_at(DISPATCH_LEVEL + 1), pytest.raises(BugCheck) as caught:
        IoAllocateMdl(bytearray(1), 1, False, False, None)
    assert caught.value.code == BugCheckCode.DRIVER_IRQL_NOT_LESS_OR_EQUAL
    with running_at(DISPATCH_LEVEL):
        IoFreeMdl(allocate(bytearray(1)))


# --- IoFreeMdl ------------------------------------------------------------------------


def test_free_releases_the_view() -> None:
    buffer = bytearray(4)
    mdl = allocate(buffer)
    MmBuildMdlForNonPagedPool(mdl)
    mapping = MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority)
    assert mapping is not None
    with pytest.raises(BufferError):
        buffer.append(0)  # the MDL pins the buffer
    IoFreeMdl(mdl)
    buffer.append(0)
    with pytest.raises(ValueError, match="released"):
        mapping[0]  # a stale mapping fails loudly
    assert mapped(mdl) is None


def test_free_twice_and_use_after_free_are_bugs() -> None:
    mdl = allocate(bytearray(4))
    IoFreeMdl(mdl)
    for use in (
        lambda: IoFreeMdl(mdl),
        lambda: MmGetMdlByteCount(mdl),
        lambda: MmGetMdlByteOffset(mdl),
        lambda: MmBuildMdlForNonPagedPool(mdl),
        lambda: MmProbeAndLockPages(mdl, KernelMode, IoReadAccess),
        lambda: MmUnlockPages(mdl),
        lambda: MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority),
        lambda: mdl_chain_views(mdl, 0, 1),
        lambda: mdl_chain_views(mdl, 0, 0),
        lambda: mdl_is_locked(mdl),
        lambda: mdl_chain_writable(mdl),
    ):
        with pytest.raises(BugCheck) as caught:
            use()
        assert caught.value.code == BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL


def test_free_while_locked_is_a_bug() -> None:
    mdl = allocate(bytearray(4))
    MmProbeAndLockPages(mdl, KernelMode, IoWriteAccess)
    with pytest.raises(BugCheck, match="MmUnlockPages first"):
        IoFreeMdl(mdl)
    assert mdl.MdlFlags & MDL_PAGES_LOCKED  # nothing changed
    MmUnlockPages(mdl)
    IoFreeMdl(mdl)


# --- MmProbeAndLockPages / MmUnlockPages ------------------------------------------------


# mdl_is_locked on an unlocked MDL is the verifier's MDL-003 observation point: without it.
@pytest.mark.no_verifier
@pytest.mark.parametrize("operation", [IoWriteAccess, IoModifyAccess])
def test_locking_read_only_memory_for_write_raises_access_violation(operation: int) -> None:
    mdl = allocate(b"read only")
    with pytest.raises(StatusException) as caught:
        MmProbeAndLockPages(mdl, KernelMode, operation)
    assert caught.value.status == NTSTATUS.STATUS_ACCESS_VIOLATION
    assert "STATUS_ACCESS_VIOLATION" in str(caught.value)
    assert mdl.MdlFlags == 0
    assert not mdl_is_locked(mdl)
    MmProbeAndLockPages(mdl, KernelMode, IoReadAccess)  # reading is fine
    assert mdl.MdlFlags == MDL_PAGES_LOCKED
    MmUnlockPages(mdl)
    IoFreeMdl(mdl)


@pytest.mark.parametrize("mode", [KernelMode, UserMode])
def test_lock_and_unlock(mode: int) -> None:
    mdl = allocate(bytearray(4))
    MmProbeAndLockPages(mdl, mode, IoWriteAccess)
    assert mdl.MdlFlags == MDL_PAGES_LOCKED | MDL_WRITE_OPERATION
    assert mdl_is_locked(mdl)
    MmUnlockPages(mdl)
    assert mdl.MdlFlags == 0
    MmProbeAndLockPages(mdl, mode, IoReadAccess)  # may lock again after unlocking
    assert mdl.MdlFlags == MDL_PAGES_LOCKED
    MmUnlockPages(mdl)
    IoFreeMdl(mdl)


def test_lock_twice_and_unlock_unlocked_are_bugs() -> None:
    mdl = allocate(bytearray(4))
    with pytest.raises(BugCheck, match="not locked"):
        MmUnlockPages(mdl)
    MmProbeAndLockPages(mdl, KernelMode, IoReadAccess)
    with pytest.raises(BugCheck, match="already locked"):
        MmProbeAndLockPages(mdl, KernelMode, IoWriteAccess)
    assert mdl.MdlFlags == MDL_PAGES_LOCKED
    MmUnlockPages(mdl)
    with pytest.raises(BugCheck):
        MmUnlockPages(mdl)


def test_nonpaged_mdls_are_never_locked_or_unlocked() -> None:
    mdl = allocate(bytearray(4))
    MmBuildMdlForNonPagedPool(mdl)
    assert mdl.MdlFlags == MDL_SOURCE_IS_NONPAGED_POOL | MDL_MAPPED_TO_SYSTEM_VA
    assert mdl_is_locked(mdl)
    with pytest.raises(BugCheck, match="MmBuildMdlForNonPagedPool"):
        MmProbeAndLockPages(mdl, KernelMode, IoReadAccess)
    with pytest.raises(BugCheck):
        MmUnlockPages(mdl)
    IoFreeMdl(mdl)  # no unlock needed


def test_lock_refuses_bad_mode_and_operation() -> None:
    mdl = allocate(bytearray(4))
    with pytest.raises(ValueError, match="AccessMode"):
        MmProbeAndLockPages(mdl, 2, IoReadAccess)
    with pytest.raises(ValueError, match="Operation"):
        MmProbeAndLockPages(mdl, KernelMode, 3)
    assert mdl.MdlFlags == 0


def test_lock_irql_depends_on_pageability() -> None:
    pageable = allocate(bytearray(4))
    with running_at(DISPATCH_LEVEL), pytest.raises(BugCheck) as caught:
        MmProbeAndLockPages(pageable, KernelMode, IoReadAccess)
    assert caught.value.code == BugCheckCode.DRIVER_IRQL_NOT_LESS_OR_EQUAL
    assert pageable.MdlFlags == 0
    block = pool(PAGE_SIZE)
    nonpaged = allocate(block)
    with running_at(DISPATCH_LEVEL):
        MmProbeAndLockPages(nonpaged, KernelMode, IoWriteAccess)
        MmUnlockPages(nonpaged)
        IoFreeMdl(nonpaged)
    ExFreePool(block)


# --- MmBuildMdlForNonPagedPool ------------------------------------------------------------


def test_build_for_nonpaged_pool() -> None:
    block = pool(100)
    mdl = allocate(block)
    MmBuildMdlForNonPagedPool(mdl)
    assert mdl.MdlFlags & MDL_SOURCE_IS_NONPAGED_POOL
    assert mdl.MdlFlags & MDL_MAPPED_TO_SYSTEM_VA
    assert mdl.MappedSystemVa is not None
    assert mdl.MappedSystemVa.nbytes == 100
    IoFreeMdl(mdl)
    ExFreePoolWithTag(block, b"test")


def test_build_refuses_locked_mdls_and_paged_pool() -> None:
    mdl = allocate(bytearray(4))
    MmProbeAndLockPages(mdl, KernelMode, IoReadAccess)
    with pytest.raises(BugCheck, match="locked"):
        MmBuildMdlForNonPagedPool(mdl)
    assert mdl.MdlFlags == MDL_PAGES_LOCKED
    paged = ExAllocatePoolWithTag(PagedPool, 64, b"page")
    assert paged is not None
    over_paged = allocate(paged)
    with pytest.raises(BugCheck, match="paged pool"):
        MmBuildMdlForNonPagedPool(over_paged)
    assert over_paged.MdlFlags == 0
    IoFreeMdl(over_paged)
    ExFreePool(paged)


# --- MmGetSystemAddressForMdlSafe -----------------------------------------------------------


def test_system_address_needs_locked_or_nonpaged_pages() -> None:
    buffer = bytearray(b"abcd")
    mdl = allocate(buffer)
    with pytest.raises(BugCheck, match="neither locked"):
        MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority)
    MmProbeAndLockPages(mdl, KernelMode, IoWriteAccess)
    mapping = MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority | MdlMappingNoExecute)
    assert mapping is not None
    assert mdl.MdlFlags & MDL_MAPPED_TO_SYSTEM_VA
    assert mapping is mdl.MappedSystemVa
    assert MmGetSystemAddressForMdlSafe(mdl, HighPagePriority) is mapping
    mapping[0] = ord("z")
    assert buffer[0] == ord("z")
    read_only = MmGetSystemAddressForMdlSafe(mdl, LowPagePriority | MdlMappingNoWrite)
    assert read_only is not None
    assert read_only.readonly
    assert bytes(read_only) == b"zbcd"
    read_only.release()
    MmUnlockPages(mdl)
    assert mapped(mdl) is None
    assert not mdl.MdlFlags & MDL_MAPPED_TO_SYSTEM_VA
    MmProbeAndLockPages(mdl, KernelMode, IoReadAccess)
    with pytest.raises(ValueError, match="Priority"):
        MmGetSystemAddressForMdlSafe(mdl, 7)


def test_system_address_mapping_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    mdl = allocate(bytearray(4))
    MmProbeAndLockPages(mdl, KernelMode, IoReadAccess)
    nonpaged = allocate(bytearray(4))
    MmBuildMdlForNonPagedPool(nonpaged)
    monkeypatch.setattr(irp_module, "_allocation_hook", lambda function: False)
    assert MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority) is None
    assert not mdl.MdlFlags & MDL_MAPPED_TO_SYSTEM_VA
    # A non-paged MDL is mapped already: nothing to allocate, nothing can fail.
    assert MmGetSystemAddressForMdlSafe(nonpaged, NormalPagePriority) is not None


# --- Provider helpers ---------------------------------------------------------------------


PAD = 3
CHAINS = [(1,), (4,), (3, 1, 2), (2, 2), (1, 1, 1), (2, 5)]


def build_chain(sizes: tuple[int, ...]) -> tuple[MDL, list[bytearray], bytes]:
    """A chain over padded buffers: PAD bytes 0xEE before and after each described range."""
    buffers: list[bytearray] = []
    mdls: list[MDL] = []
    value = 1
    for size in sizes:
        content = bytes(range(value, value + size))
        value += size
        buffer = bytearray(b"\xee" * PAD + content + b"\xee" * PAD)
        buffers.append(buffer)
        with memoryview(buffer) as whole:
            mdls.append(allocate(whole[PAD:], size))
    for before, after in itertools.pairwise(mdls):
        before.Next = after
    described = b"".join(bytes(b[PAD:-PAD]) for b in buffers)
    return mdls[0], buffers, described


@pytest.mark.parametrize("sizes", CHAINS, ids=str)
def test_chain_views_exhaustively(sizes: tuple[int, ...]) -> None:
    head, buffers, described = build_chain(sizes)
    originals = [bytes(b) for b in buffers]
    total = len(described)
    for offset, length in itertools.product(range(-2, sizes[0] + 3), range(-2, total + 3)):
        views = mdl_chain_views(head, offset, length)
        valid = offset >= 0 and length >= 0 and offset <= sizes[0] and offset + length <= total
        if not valid:
            assert views is None, (offset, length)
            continue
        assert views is not None, (offset, length)
        assert b"".join(bytes(v) for v in views) == described[offset : offset + length]
        assert all(v.nbytes > 0 for v in views)
        assert all(any(v.obj is b for b in buffers) for v in views)
        # Writing through every view changes exactly the requested bytes, nothing else.
        for v in views:
            v[:] = b"\xff" * v.nbytes
        expected = bytearray(described)
        expected[offset : offset + length] = b"\xff" * length
        position = 0
        for buffer, size in zip(buffers, sizes, strict=True):
            assert buffer[:PAD] == b"\xee" * PAD
            assert buffer[-PAD:] == b"\xee" * PAD
            assert buffer[PAD:-PAD] == expected[position : position + size]
            position += size
        for v in views:
            v.release()
        for buffer, original in zip(buffers, originals, strict=True):
            buffer[:] = original


def test_chain_views_without_an_mdl() -> None:
    assert mdl_chain_views(None, 0, 0) == []
    assert mdl_chain_views(None, 7, 0) == []
    assert mdl_chain_views(None, 0, 1) is None
    assert mdl_chain_views(None, -1, 0) is None
    assert mdl_chain_views(None, 0, -1) is None


def test_chain_views_zero_length_still_checks_the_offset() -> None:
    head = allocate(bytearray(2))
    assert mdl_chain_views(head, 2, 0) == []
    assert mdl_chain_views(head, 3, 0) is None


def test_chain_that_loops_is_a_bug() -> None:
    first = allocate(bytearray(2))
    second = allocate(bytearray(2))
    first.Next = second
    second.Next = first
    for use in (
        lambda: mdl_chain_views(first, 0, 100),
        lambda: mdl_is_locked(first),
        lambda: mdl_chain_writable(first),
    ):
        with pytest.raises(BugCheck, match="loops"):
            use()
    views = mdl_chain_views(first, 1, 3)  # a loop past the requested bytes is not walked
    assert views is not None
    assert [v.nbytes for v in views] == [1, 2]


def test_freed_mdl_inside_a_chain_is_a_bug() -> None:
    head, _, _ = build_chain((2, 2))
    assert head.Next is not None
    IoFreeMdl(head.Next)
    assert mdl_chain_views(head, 0, 2) is not None  # the freed MDL is not reached
    with pytest.raises(BugCheck):
        mdl_chain_views(head, 0, 3)
    with pytest.raises(BugCheck):
        mdl_is_locked(head)


@pytest.mark.no_verifier  # unlocked chains are asked about on purpose (MDL-003 otherwise)
def test_chain_is_locked_and_writable() -> None:
    assert mdl_is_locked(None)
    assert mdl_chain_writable(None)
    head = allocate(bytearray(2))
    tail = allocate(b"ro")
    head.Next = tail
    assert not mdl_is_locked(head)
    assert not mdl_chain_writable(head)
    assert mdl_chain_writable(tail.Next)
    MmProbeAndLockPages(head, KernelMode, IoWriteAccess)
    assert not mdl_is_locked(head)
    MmBuildMdlForNonPagedPool(tail)
    assert mdl_is_locked(head)
    head.Next = allocate(bytearray(1))
    assert mdl_chain_writable(head)


# --- Pool ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 100, PAGE_SIZE, PAGE_SIZE + 1, 5 * PAGE_SIZE])
def test_pool_is_page_aligned(size: int) -> None:
    block = pool(size)
    assert isinstance(block, mmap.mmap)
    assert len(block) == size
    assert address_of(block) % mmap.PAGESIZE == 0
    mdl = allocate(block)
    assert mdl.ByteOffset == 0
    with memoryview(block) as whole:
        inner = allocate(whole[size // 2 :])
    assert inner.ByteOffset == (size // 2) % PAGE_SIZE
    IoFreeMdl(mdl)
    IoFreeMdl(inner)
    ExFreePool(block)
    assert block.closed


def test_pool2_is_zeroed_and_checks_its_flags(no_hook: None) -> None:
    block = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, b"pl2 ")
    assert block is not None
    assert block[:] == bytes(64)
    ExFreePoolWithTag(block, b"pl2 ")
    for flags in (
        POOL_FLAG_PAGED,
        POOL_FLAG_NON_PAGED | POOL_FLAG_UNINITIALIZED | POOL_FLAG_CACHE_ALIGNED,
        POOL_FLAG_NON_PAGED | (1 << 40),  # an unknown optional flag is ignored
    ):
        block = ExAllocatePool2(flags, 64, "tag1")
        assert block is not None, hex(flags)
        ExFreePool(block)
    for flags in (0, POOL_FLAG_NON_PAGED | POOL_FLAG_PAGED, POOL_FLAG_NON_PAGED | 0x4000):
        assert ExAllocatePool2(flags, 64, b"tag1") is None, hex(flags)
    with pytest.raises(StatusException) as caught:
        ExAllocatePool2(POOL_FLAG_RAISE_ON_FAILURE, 64, b"tag1")
    assert caught.value.status == NTSTATUS.STATUS_INSUFFICIENT_RESOURCES


def test_pool_honours_the_allocation_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def hook(function: str) -> bool:
        asked.append(function)
        return False

    monkeypatch.setattr(irp_module, "_allocation_hook", hook)
    assert ExAllocatePoolWithTag(NonPagedPool, 10, b"hook") is None
    assert ExAllocatePool2(POOL_FLAG_NON_PAGED, 10, b"hook") is None
    with pytest.raises(StatusException):
        ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_RAISE_ON_FAILURE, 10, b"hook")
    assert asked == ["ExAllocatePoolWithTag", "ExAllocatePool2", "ExAllocatePool2"]


def test_pool_returns_none_when_memory_runs_out(no_hook: None) -> None:
    assert ExAllocatePoolWithTag(NonPagedPool, 1 << 62, b"huge") is None


def test_pool_refuses_zero_bytes_zero_tags_and_bad_arguments() -> None:
    with pytest.raises(BugCheck, match="zero-byte"):
        ExAllocatePoolWithTag(NonPagedPool, 0, b"zero")
    with pytest.raises(BugCheck, match="tag of zero"):
        ExAllocatePoolWithTag(NonPagedPool, 10, 0)
    with pytest.raises(BugCheck, match="zero-byte"):
        ExAllocatePool2(POOL_FLAG_NON_PAGED, 0, b"zero")
    with pytest.raises(ValueError, match="PoolType"):
        ExAllocatePoolWithTag(7, 10, b"type")
    with pytest.raises(ValueError, match="negative"):
        ExAllocatePoolWithTag(NonPagedPool, -1, b"size")
    for tag in (b"", b"toolong", "t\u00e9st", 1 << 32, -1):
        with pytest.raises(ValueError):
            ExAllocatePoolWithTag(NonPagedPool, 10, tag)
    with pytest.raises(TypeError):
        ExAllocatePoolWithTag(NonPagedPool, 10, 1.5)  # type: ignore[arg-type]


def test_pool_tags_match_in_every_spelling() -> None:
    c_tag = int.from_bytes(b"wskp", "little")  # C's 'pksw', shown as "wskp"
    spellings: list[tuple[int | bytes | str, int | bytes | str]] = [
        (b"wskp", "wskp"),
        ("wskp", c_tag),
        (c_tag, b"wskp"),
        (b"ab", int.from_bytes(b"ab", "little")),
    ]
    for alloc_tag, free_tag in spellings:
        block = pool(10, alloc_tag)
        ExFreePoolWithTag(block, free_tag)
        assert block.closed


def test_pool_free_with_the_wrong_tag_is_a_bug() -> None:
    block = pool(10, b"good")
    with pytest.raises(BugCheck, match="tag"):
        ExFreePoolWithTag(block, b"evil")
    assert not block.closed
    ExFreePoolWithTag(block, b"good")


def test_pool_double_free_and_foreign_memory_are_bugs() -> None:
    block = pool(10)
    ExFreePool(block)
    with pytest.raises(BugCheck) as caught:
        ExFreePool(block)
    assert caught.value.code == BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL
    with pytest.raises(BugCheck) as caught:
        ExFreePoolWithTag(block, b"test")
    assert caught.value.code == BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL
    with pytest.raises(BugCheck) as caught:
        IoAllocateMdl(block, 1, False, False, None)
    assert caught.value.code == BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL
    foreign = mmap.mmap(-1, 10)
    with pytest.raises(BugCheck, match="did not come from the pool"):
        ExFreePool(foreign)
    assert not foreign.closed
    foreign.close()


def test_pool_freed_while_an_mdl_describes_it_is_a_bug() -> None:
    block = pool(PAGE_SIZE)
    mdl = allocate(block)
    with pytest.raises(BugCheck, match="MDL describes it"):
        ExFreePool(block)
    assert not block.closed
    block[0] = 1  # still usable
    IoFreeMdl(mdl)
    ExFreePool(block)


def test_pool_freed_while_a_view_is_in_use_is_a_bug() -> None:
    block = pool(PAGE_SIZE)
    mdl = allocate(block)
    views = mdl_chain_views(mdl, 0, 10)
    assert views is not None
    IoFreeMdl(mdl)
    with pytest.raises(BugCheck, match="view of it is still in use"):
        ExFreePool(block)
    assert not block.closed
    for view in views:
        view.release()
    ExFreePool(block)


def test_pool_irql() -> None:
    with running_at(DISPATCH_LEVEL):
        block = pool(10)
        with pytest.raises(BugCheck) as caught:
            ExAllocatePoolWithTag(PagedPool, 10, b"page")
        assert caught.value.code == BugCheckCode.DRIVER_IRQL_NOT_LESS_OR_EQUAL
        with pytest.raises(BugCheck):
            ExAllocatePool2(POOL_FLAG_PAGED, 10, b"page")
        ExFreePool(block)
    paged = ExAllocatePoolWithTag(PagedPool, 10, b"page")
    assert paged is not None
    with running_at(DISPATCH_LEVEL), pytest.raises(BugCheck):
        ExFreePool(paged)
    assert not paged.closed
    ExFreePool(paged)


def test_status_exception_carries_its_status() -> None:
    error = StatusException(NTSTATUS.STATUS_ACCESS_VIOLATION, "probe")
    assert error.status == NTSTATUS.STATUS_ACCESS_VIOLATION
    assert str(error) == "STATUS_ACCESS_VIOLATION (0xC0000005): probe"
    assert isinstance(error, Exception)
