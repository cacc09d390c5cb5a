"""Non-paged and paged pool: the blocks a WSK client allocates for its buffers.

What it does: :func:`ExAllocatePoolWithTag`, :func:`ExAllocatePool2`,
:func:`ExFreePoolWithTag` and :func:`ExFreePool` hand out page-aligned "pool" blocks
(anonymous ``mmap`` objects) and take them back; this module keeps the bookkeeping of each
block (paged or not, its tag, freed or not, the MDLs :mod:`pywsk.nt.mdl` built over it).
:class:`StatusException` is the exception raised with an NTSTATUS, as ExRaiseStatus
raises one in C.

The rules, from Microsoft's pages (ExAllocatePoolWithTag, ExAllocatePool2,
ExFreePoolWithTag):

1. A pool block is freed only when no MDL describes it any more, with the tag it was
   allocated with (ExFreePoolWithTag).
2. A zero-byte or zero-tag pool allocation is a caller bug; an allocation that cannot be
   satisfied returns NULL (``None``), or raises with POOL_FLAG_RAISE_ON_FAILURE.

What it refuses: breaking a rule above, freeing memory that did not come from the pool or
a block freed already, or a block a view still refers to, raises
:class:`~pywsk.nt.bugcheck.BugCheck` before anything changes.  Bad Python input that C
could not even express - an unknown pool type, a tag that is not a ULONG or 1-4
characters, a byte count that is not an int or is negative - raises the ordinary Python
exception.

Choices where the pages are silent or Windows would crash (``docs/fidelity.md``):

* The pool-allocation failure hook of :mod:`pywsk.nt.irp` (``_allocation_hook``) governs
  ExAllocatePoolWithTag and ExAllocatePool2 (and, in :mod:`pywsk.nt.mdl`, IoAllocateMdl
  and a new mapping), with the function name as argument.
* The bug checks Windows raises as BAD_POOL_CALLER (0xC2) are reported as
  DRIVER_VERIFIER_DETECTED_VIOLATION; use after free as DRIVER_CAUGHT_MODIFYING_FREED_POOL.

What always holds: every block handed out is registered before it is returned, and
marked freed only after its ``mmap`` was closed; the bookkeeping is changed under
``pool_lock`` only.
"""

from __future__ import annotations

import mmap
import threading
import weakref
from typing import TYPE_CHECKING, Final

from . import hooks as _hooks
from . import irp as _irp
from .bugcheck import BugCheck, BugCheckCode
from .irp import IRP
from .irql import APC_LEVEL, DISPATCH_LEVEL, require_irql_at_most
from .status import NTSTATUS, status_name

if TYPE_CHECKING:
    from collections.abc import Callable

    from .mdl import MDL

__all__ = [
    "PAGE_SIZE",
    "POOL_TYPE",
    "NonPagedPool",
    "PagedPool",
    "NonPagedPoolNx",
    "POOL_FLAGS",
    "POOL_FLAG_USE_QUOTA",
    "POOL_FLAG_UNINITIALIZED",
    "POOL_FLAG_CACHE_ALIGNED",
    "POOL_FLAG_RAISE_ON_FAILURE",
    "POOL_FLAG_NON_PAGED",
    "POOL_FLAG_NON_PAGED_EXECUTE",
    "POOL_FLAG_PAGED",
    "StatusException",
    "ExAllocatePoolWithTag",
    "ExAllocatePool2",
    "ExFreePoolWithTag",
    "ExFreePool",
]

#: The page size MDL offsets and pool alignment are measured in.
PAGE_SIZE: Final = mmap.PAGESIZE

POOL_TYPE = int
NonPagedPool: Final = 0
PagedPool: Final = 1
NonPagedPoolNx: Final = 512

POOL_FLAGS = int
POOL_FLAG_USE_QUOTA: Final = 0x0001
POOL_FLAG_UNINITIALIZED: Final = 0x0002
POOL_FLAG_CACHE_ALIGNED: Final = 0x0008
POOL_FLAG_RAISE_ON_FAILURE: Final = 0x0020
POOL_FLAG_NON_PAGED: Final = 0x0040
POOL_FLAG_NON_PAGED_EXECUTE: Final = 0x0080
POOL_FLAG_PAGED: Final = 0x0100

_POOL_TYPES: Final = {NonPagedPool: False, NonPagedPoolNx: False, PagedPool: True}
_POOL2_KNOWN_REQUIRED: Final = (
    POOL_FLAG_USE_QUOTA
    | POOL_FLAG_UNINITIALIZED
    | POOL_FLAG_CACHE_ALIGNED
    | POOL_FLAG_RAISE_ON_FAILURE
    | POOL_FLAG_NON_PAGED
    | POOL_FLAG_NON_PAGED_EXECUTE
    | POOL_FLAG_PAGED
)
_POOL2_TYPES: Final = (POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED)


class StatusException(Exception):
    """An exception raised with an NTSTATUS, as ExRaiseStatus raises one in C.

    C drivers catch it with ``__try { ... } __except (EXCEPTION_EXECUTE_HANDLER)`` and read
    ``GetExceptionCode()``; Python drivers write ``except StatusException as e`` and read
    ``e.status``.  MmProbeAndLockPages raises it with STATUS_ACCESS_VIOLATION.
    """

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"{status_name(status)}: {message}")


def hook_refuses(function: str) -> bool:
    hook: Callable[[str], bool] | None = _irp._allocation_hook
    return hook is not None and not hook(function)


class PoolBlock:
    """Bookkeeping for one pool allocation (the caller holds only the mmap)."""

    __slots__ = ("__weakref__", "freed", "mdls", "paged", "tag")

    def __init__(self, paged: bool, tag: int) -> None:
        self.paged = paged
        self.tag = tag
        self.freed = False
        # The MDLs built over this block (weak references: an MDL collected without IoFreeMdl
        # must not be kept alive here).  A short list of refs costs a fifth of a WeakSet.
        self.mdls: list[weakref.ref[MDL]] = []


pool_lock = threading.Lock()
pool_blocks: weakref.WeakKeyDictionary[mmap.mmap, PoolBlock] = weakref.WeakKeyDictionary()


def pool_block_of(obj: object) -> PoolBlock | None:
    if not isinstance(obj, mmap.mmap):
        return None
    with pool_lock:
        return pool_blocks.get(obj)


def _tag_value(Tag: int | bytes | str, function: str) -> int:
    """A ULONG pool tag from an int or 1-4 characters (``b"wskp"`` as a debugger shows it)."""
    if isinstance(Tag, bool):
        raise TypeError(f"{function}: Tag must be an int, bytes or str, not bool")
    if isinstance(Tag, int):
        if not 0 <= Tag <= 0xFFFFFFFF:
            raise ValueError(f"{function}: Tag 0x{Tag:X} is not a ULONG")
        return Tag
    if isinstance(Tag, str):
        Tag = Tag.encode("ascii")
    if isinstance(Tag, bytes | bytearray):
        if not 1 <= len(Tag) <= 4:
            raise ValueError(f"{function}: Tag {Tag!r} must have 1 to 4 characters")
        # Memory order: C's 'pksw' is stored (and shown by poolmon) as "wskp".
        return int.from_bytes(Tag, "little")
    raise TypeError(f"{function}: Tag must be an int, bytes or str, not {type(Tag).__name__}")


def _allocate(paged: bool, NumberOfBytes: int, tag: int, function: str) -> mmap.mmap | None:
    if isinstance(NumberOfBytes, bool) or not isinstance(NumberOfBytes, int):
        raise TypeError(f"{function}: NumberOfBytes must be an int")
    if NumberOfBytes < 0:
        raise ValueError(f"{function}: NumberOfBytes must not be negative")
    if NumberOfBytes == 0:
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            f"{function}: a zero-byte pool allocation",
            0,
        )
    if tag == 0:
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            f"{function}: a pool allocation with a tag of zero",
            0x9B,
        )
    if hook_refuses(function):
        return None
    try:
        block = mmap.mmap(-1, NumberOfBytes)
    except (OSError, MemoryError, OverflowError, ValueError):
        return None
    with pool_lock:
        pool_blocks[block] = PoolBlock(paged, tag)
    if _hooks.observer is not None:
        _hooks.observer.event("pool-allocated", block, tag=tag, size=NumberOfBytes)
    return block


def ExAllocatePoolWithTag(
    PoolType: POOL_TYPE,
    NumberOfBytes: int,
    Tag: int | bytes | str,
) -> mmap.mmap | None:
    """Allocate ``NumberOfBytes`` of page-aligned pool, or return None when none is left.

    ExAllocatePoolWithTag: ``PoolType`` is NonPagedPool, NonPagedPoolNx or PagedPool (IRQL
    <= DISPATCH_LEVEL for non-paged, <= APC_LEVEL for paged).  A zero-byte request or a
    zero tag raises BugCheck.  The block is an anonymous ``mmap`` (whose contents happen to
    be zero).
    """
    if PoolType not in _POOL_TYPES:
        raise ValueError(f"ExAllocatePoolWithTag: PoolType {PoolType!r} is not modelled")
    paged = _POOL_TYPES[PoolType]
    require_irql_at_most(APC_LEVEL if paged else DISPATCH_LEVEL, "ExAllocatePoolWithTag")
    tag = _tag_value(Tag, "ExAllocatePoolWithTag")
    return _allocate(paged, NumberOfBytes, tag, "ExAllocatePoolWithTag")


def ExAllocatePool2(
    Flags: POOL_FLAGS,
    NumberOfBytes: int,
    Tag: int | bytes | str,
) -> mmap.mmap | None:
    """Allocate ``NumberOfBytes`` of zeroed, page-aligned pool, or return None.

    ExAllocatePool2: ``Flags`` holds exactly one of POOL_FLAG_NON_PAGED,
    POOL_FLAG_NON_PAGED_EXECUTE and POOL_FLAG_PAGED; required flags (the low 32 bits) that
    cannot be honoured fail the allocation.  With POOL_FLAG_RAISE_ON_FAILURE a failure
    raises :class:`StatusException` (STATUS_INSUFFICIENT_RESOURCES) instead of returning
    None.  A zero-byte request or a zero tag raises BugCheck.
    """
    kinds = [f for f in _POOL2_TYPES if Flags & f]
    paged = kinds == [POOL_FLAG_PAGED]
    require_irql_at_most(APC_LEVEL if paged else DISPATCH_LEVEL, "ExAllocatePool2")
    tag = _tag_value(Tag, "ExAllocatePool2")
    block: mmap.mmap | None = None
    if len(kinds) == 1 and not (Flags & 0xFFFFFFFF & ~_POOL2_KNOWN_REQUIRED):
        block = _allocate(paged, NumberOfBytes, tag, "ExAllocatePool2")
    if block is None and Flags & POOL_FLAG_RAISE_ON_FAILURE:
        raise StatusException(
            NTSTATUS.STATUS_INSUFFICIENT_RESOURCES,
            f"ExAllocatePool2 could not allocate {NumberOfBytes} bytes (flags 0x{Flags:X})",
        )
    return block


def _free(P: mmap.mmap | IRP, tag: int | None, function: str) -> None:
    if isinstance(P, IRP) and isinstance(P._memory, mmap.mmap):
        # C frees an IoInitializeIrp IRP through the same pointer: free its memory.
        P = P._memory
    block = pool_block_of(P)
    if block is None or not isinstance(P, mmap.mmap):
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            f"{function} on memory that did not come from the pool",
            id(P),
        )
    if block.freed:
        raise BugCheck(
            BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL,
            f"{function} on a pool block that was already freed",
            id(P),
        )
    require_irql_at_most(APC_LEVEL if block.paged else DISPATCH_LEVEL, function)
    if tag is not None and tag != block.tag:
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            f"{function} with tag 0x{tag:08X}; the block was allocated with 0x{block.tag:08X}",
            id(P),
            block.tag,
            tag,
        )
    with pool_lock:
        live = [m for r in block.mdls if (m := r()) is not None and not m._freed]
    if live:
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            f"{function}: pool freed while an MDL describes it (IoFreeMdl the MDL first)",
            id(P),
            id(live[0]),
        )
    _irp.release_initialized_irp(P, function)
    try:
        P.close()
    except BufferError:
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            f"{function}: pool freed while a view of it is still in use (an I/O or a "
            "mapping still refers to it)",
            id(P),
        ) from None
    block.freed = True
    if _hooks.observer is not None:
        _hooks.observer.event("pool-freed", P)


def ExFreePoolWithTag(P: mmap.mmap | IRP, Tag: int | bytes | str) -> None:
    """Free a pool block, checking that ``Tag`` is the tag it was allocated with.

    ExFreePoolWithTag: refuses (BugCheck) a block not from the pool, one freed already, a
    wrong tag, and a block an MDL or a view still refers to.
    """
    _free(P, _tag_value(Tag, "ExFreePoolWithTag"), "ExFreePoolWithTag")


def ExFreePool(P: mmap.mmap | IRP) -> None:
    """Free a pool block, whatever its tag (otherwise as :func:`ExFreePoolWithTag`)."""
    _free(P, None, "ExFreePool")
