"""MDLs: how a WSK client describes its buffers to the provider.

What it does: models memory descriptor lists over Python buffers.  :func:`IoAllocateMdl`
describes ``Length`` bytes of any object with the buffer protocol (``bytes``,
``bytearray``, ``memoryview``, ``mmap``, ``array``) and can chain the MDL to an IRP;
:func:`MmProbeAndLockPages` / :func:`MmUnlockPages` and :func:`MmBuildMdlForNonPagedPool`
make its pages usable for I/O; :func:`MmGetSystemAddressForMdlSafe` maps it;
:func:`IoFreeMdl` releases it.  For the provider, :func:`mdl_chain_views` turns an
``(Mdl, Offset, Length)`` triple into ``memoryview`` slices, and :func:`mdl_is_locked` /
:func:`mdl_chain_writable` check a chain before I/O.  Pool blocks (ExAllocatePoolWithTag
and the rest) are in :mod:`pywsk.nt.pool`; their names are importable from here too.

The rules, from Microsoft's pages (IoAllocateMdl, IoFreeMdl, MmProbeAndLockPages,
MmUnlockPages, MmBuildMdlForNonPagedPool, MmGetSystemAddressForMdlSafe):

1. An MDL describes its buffer but does not make it usable: before I/O its pages are
   locked (MmProbeAndLockPages, matched by exactly one MmUnlockPages) or the buffer is
   non-paged and the MDL was built with MmBuildMdlForNonPagedPool.  An MDL built that way
   must never be locked or unlocked.
2. MmProbeAndLockPages checks the access asked for: IoWriteAccess / IoModifyAccess on a
   buffer that cannot be written raises STATUS_ACCESS_VIOLATION, which the caller
   catches (``__try/__except`` in C, ``except StatusException`` here).
3. An MDL is unlocked before IoFreeMdl (and freed before the pool block it describes).

What it refuses: breaking a rule above, or touching a freed MDL, raises
:class:`~pywsk.nt.bugcheck.BugCheck` before anything changes.  Bad Python input that C
could not even express - an object without the buffer protocol (``TypeError``), a
non-contiguous buffer, a ``Length`` outside ``1..len(buffer)`` (``ValueError``) - raises
the ordinary Python exception.

Choices where the pages are silent or Windows would crash (``docs/fidelity.md``):

* ``MappedSystemVa`` is the ``memoryview`` of the described bytes while the MDL is
  mapped (``None`` otherwise), and :func:`MmGetSystemAddressForMdlSafe` returns that same
  view; after :func:`IoFreeMdl` it is released, so a stale use fails loudly.
  ``StartVa`` and ``ByteOffset`` come from the buffer's real address when ctypes can read
  it (``StartVa`` is then the page-aligned address, an ``int``); otherwise both are 0.
* Python buffers that did not come from the pool count as pageable: locking them needs
  IRQL <= APC_LEVEL, as for any pageable address.  MmBuildMdlForNonPagedPool accepts
  them all the same (Python never pages memory out), but refuses paged pool.
* The pool-allocation failure hook of :mod:`pywsk.nt.irp` (``_allocation_hook``) also
  governs IoAllocateMdl and a new mapping by MmGetSystemAddressForMdlSafe, with the
  function name as argument.
* Use after free is reported as DRIVER_CAUGHT_MODIFYING_FREED_POOL, other broken rules
  as DRIVER_VERIFIER_DETECTED_VIOLATION.

What always holds: an MDL's ``_view`` is exactly ``ByteCount`` bytes of its buffer, and
every view handed out is a slice of it, so nothing here can read or write outside a
buffer the caller described.
"""

from __future__ import annotations

import ctypes
import mmap
import weakref
from typing import TYPE_CHECKING, Any, Final

from . import hooks as _hooks
from .bugcheck import BugCheck, BugCheckCode
from .irp import IrpState
from .irql import APC_LEVEL, DISPATCH_LEVEL, require_irql_at_most

# The pool's names, importable from here too (pywsk.nt.pool is their home).
from .pool import PAGE_SIZE as PAGE_SIZE
from .pool import POOL_FLAG_CACHE_ALIGNED as POOL_FLAG_CACHE_ALIGNED
from .pool import POOL_FLAG_NON_PAGED as POOL_FLAG_NON_PAGED
from .pool import POOL_FLAG_NON_PAGED_EXECUTE as POOL_FLAG_NON_PAGED_EXECUTE
from .pool import POOL_FLAG_PAGED as POOL_FLAG_PAGED
from .pool import POOL_FLAG_RAISE_ON_FAILURE as POOL_FLAG_RAISE_ON_FAILURE
from .pool import POOL_FLAG_UNINITIALIZED as POOL_FLAG_UNINITIALIZED
from .pool import POOL_FLAG_USE_QUOTA as POOL_FLAG_USE_QUOTA
from .pool import POOL_FLAGS as POOL_FLAGS
from .pool import POOL_TYPE as POOL_TYPE
from .pool import ExAllocatePool2 as ExAllocatePool2
from .pool import ExAllocatePoolWithTag as ExAllocatePoolWithTag
from .pool import ExFreePool as ExFreePool
from .pool import ExFreePoolWithTag as ExFreePoolWithTag
from .pool import NonPagedPool as NonPagedPool
from .pool import NonPagedPoolNx as NonPagedPoolNx
from .pool import PagedPool as PagedPool
from .pool import StatusException as StatusException
from .pool import hook_refuses, pool_block_of, pool_lock
from .status import NTSTATUS

if TYPE_CHECKING:
    from collections.abc import Callable

    from .irp import IRP
    from .irql import KIRQL
    from .pool import PoolBlock

__all__ = [
    # Types and constants
    "KPROCESSOR_MODE",
    "KernelMode",
    "UserMode",
    "LOCK_OPERATION",
    "IoReadAccess",
    "IoWriteAccess",
    "IoModifyAccess",
    "MM_PAGE_PRIORITY",
    "LowPagePriority",
    "NormalPagePriority",
    "HighPagePriority",
    "MdlMappingNoWrite",
    "MdlMappingNoExecute",
    "MDL_MAPPED_TO_SYSTEM_VA",
    "MDL_PAGES_LOCKED",
    "MDL_SOURCE_IS_NONPAGED_POOL",
    "MDL_PARTIAL",
    "MDL_WRITE_OPERATION",
    "MDL_IO_SPACE",
    "MDL",
    "PMDL",
    # MDLs
    "IoAllocateMdl",
    "IoFreeMdl",
    "MmBuildMdlForNonPagedPool",
    "MmProbeAndLockPages",
    "MmUnlockPages",
    "MmGetMdlByteCount",
    "MmGetMdlByteOffset",
    "MmGetSystemAddressForMdlSafe",
    # Provider helpers (not Microsoft names)
    "mdl_chain_views",
    "mdl_is_locked",
    "mdl_chain_writable",
]

KPROCESSOR_MODE = int
KernelMode: Final = 0
UserMode: Final = 1

LOCK_OPERATION = int
IoReadAccess: Final = 0
IoWriteAccess: Final = 1
IoModifyAccess: Final = 2

MM_PAGE_PRIORITY = int
LowPagePriority: Final = 0
NormalPagePriority: Final = 16
HighPagePriority: Final = 32
#: OR'd into the priority: the mapping may not be written (a read-only view is returned).
MdlMappingNoWrite: Final = 0x80000000
#: OR'd into the priority: the mapping is not executable (always true here).
MdlMappingNoExecute: Final = 0x40000000

MDL_MAPPED_TO_SYSTEM_VA: Final = 0x0001
MDL_PAGES_LOCKED: Final = 0x0002
MDL_SOURCE_IS_NONPAGED_POOL: Final = 0x0004
MDL_PARTIAL: Final = 0x0010
MDL_WRITE_OPERATION: Final = 0x0080
MDL_IO_SPACE: Final = 0x0800

# IoAllocateMdl (Windows 7 and later): at most 4 GiB - PAGE_SIZE per MDL; longer gives NULL.
_MAX_MDL_LENGTH = (1 << 32) - PAGE_SIZE

# Flags MmProbeAndLockPages refuses: the MDL already describes its pages.
_DESCRIBED = MDL_PAGES_LOCKED | MDL_SOURCE_IS_NONPAGED_POOL | MDL_PARTIAL | MDL_IO_SPACE


# --- Buffer addresses ---------------------------------------------------------------


class _PyBuffer(ctypes.Structure):
    # Py_buffer from Include/pybuffer.h; ``obj`` is a plain pointer so that ctypes leaves
    # its reference count to PyBuffer_Release.
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_void_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


def _make_address_reader() -> Callable[[memoryview], int | None] | None:
    try:
        # Indexing gives private function objects: other users of ctypes.pythonapi keep
        # their own argtypes.
        get = ctypes.pythonapi["PyObject_GetBuffer"]
        release = ctypes.pythonapi["PyBuffer_Release"]
    except (AttributeError, ValueError):  # not CPython
        return None
    get.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
    get.restype = ctypes.c_int
    release.argtypes = [ctypes.POINTER(_PyBuffer)]
    release.restype = None

    def read(view: memoryview) -> int | None:
        info = _PyBuffer()
        try:
            get(view, ctypes.byref(info), 0)  # PyBUF_SIMPLE: contiguous bytes
        except Exception:
            return None
        try:
            address = info.buf
            return int(address) if address is not None else None
        finally:
            release(ctypes.byref(info))

    return read


_read_address = _make_address_reader()


def _buffer_address(view: memoryview) -> int | None:
    """The address of ``view``'s first byte, or None when ctypes cannot tell."""
    if _read_address is None or view.nbytes == 0:
        return None
    return _read_address(view)


# --- MDLs ---------------------------------------------------------------------------


class MDL:
    """A memory descriptor list.  Allocate with :func:`IoAllocateMdl`; never construct directly.

    ``Next`` chains MDLs (one WSK_BUF may span several); ``ByteCount`` is the length
    described, ``ByteOffset`` the start's offset within its page, ``MdlFlags`` the
    ``MDL_*`` flags.  ``MappedSystemVa`` is the mapped ``memoryview`` (or None) and
    ``StartVa`` the page-aligned address (0 when unknown).
    """

    __slots__ = (
        "ByteCount",
        "ByteOffset",
        "MappedSystemVa",
        "MdlFlags",
        "Next",
        "StartVa",
        "__weakref__",
        "_freed",
        "_pool",
        "_view",
    )

    def __init__(self, view: memoryview, pool: PoolBlock | None) -> None:
        self.Next: MDL | None = None
        self.ByteCount: int = view.nbytes
        address = _buffer_address(view)
        self.ByteOffset: int = 0 if address is None else address % PAGE_SIZE
        self.StartVa: int = 0 if address is None else address - self.ByteOffset
        self.MdlFlags: int = 0
        self.MappedSystemVa: memoryview | None = None
        self._view = view
        self._pool = pool
        self._freed = False

    @property
    def writable(self) -> bool:
        """True when the described buffer may be written (received into)."""
        return not self._view.readonly

    def __repr__(self) -> str:
        state = "freed" if self._freed else f"flags=0x{self.MdlFlags:04X}"
        return f"<MDL {self.ByteCount} bytes {state} at 0x{id(self):x}>"


PMDL = MDL


def _check_live(Mdl: MDL, function: str) -> None:
    if Mdl._freed:
        raise BugCheck(
            BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL,
            f"{function} on an MDL that was already freed (IoFreeMdl)",
            id(Mdl),
        )


def _walk(Mdl: MDL | None, function: str) -> list[MDL]:
    """Every MDL of the chain starting at ``Mdl``; refuses freed MDLs and loops."""
    chain: list[MDL] = []
    seen: set[int] = set()
    while Mdl is not None:
        _check_live(Mdl, function)
        if id(Mdl) in seen:
            raise BugCheck(
                BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                f"{function}: the MDL chain loops back on itself through Next",
                id(Mdl),
            )
        seen.add(id(Mdl))
        chain.append(Mdl)
        Mdl = Mdl.Next
    return chain


def IoAllocateMdl(
    VirtualAddress: Any,
    Length: int,
    SecondaryBuffer: bool,
    ChargeQuota: bool,
    Irp: IRP | None,
) -> MDL | None:
    """Allocate an MDL describing the first ``Length`` bytes of ``VirtualAddress``.

    ``VirtualAddress`` is any object with the buffer protocol (C passes a pointer; pass
    ``memoryview(buf)[offset:]`` to start inside a buffer).  With an ``Irp``, the MDL
    becomes ``Irp.MdlAddress`` (``SecondaryBuffer`` FALSE) or is appended to the end of the
    chain that starts there (``SecondaryBuffer`` TRUE).  Returns None when the allocation
    fails: simulated exhaustion, or a ``Length`` over 4 GiB - PAGE_SIZE (IoAllocateMdl).
    The MDL's pages are not locked yet (see MmProbeAndLockPages).

    Raises ``TypeError`` for an object without the buffer protocol and ``ValueError`` for
    a non-contiguous buffer or a ``Length`` outside ``1..len(buffer)`` (in C, a length past
    the buffer is undefined behaviour; here it is refused outright).  Raises BugCheck for
    a freed pool block or IRP, a SecondaryBuffer request on an IRP without an MDL, or a
    call above DISPATCH_LEVEL.
    """
    require_irql_at_most(DISPATCH_LEVEL, "IoAllocateMdl")
    if isinstance(VirtualAddress, mmap.mmap) and VirtualAddress.closed:
        raise BugCheck(
            BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL,
            "IoAllocateMdl on a pool block (mmap) that was already freed",
            id(VirtualAddress),
        )
    if isinstance(Length, bool) or not isinstance(Length, int):
        raise TypeError(f"IoAllocateMdl: Length must be an int, not {type(Length).__name__}")
    with memoryview(VirtualAddress) as raw:
        if not raw.c_contiguous:
            raise ValueError("IoAllocateMdl: the buffer must be C-contiguous")
        with raw.cast("B") as flat:
            available = flat.nbytes
            if not 1 <= Length <= available:
                raise ValueError(
                    f"IoAllocateMdl: Length must be between 1 and the buffer's {available} "
                    f"bytes, not {Length}"
                )
            view = flat[:Length]
    owner = view.obj
    pool = pool_block_of(owner)
    if Irp is not None:
        if Irp.state is IrpState.FREED:
            view.release()
            raise BugCheck(
                BugCheckCode.DRIVER_CAUGHT_MODIFYING_FREED_POOL,
                "IoAllocateMdl for an IRP that was already freed",
                id(Irp),
            )
        if SecondaryBuffer and Irp.MdlAddress is None:
            view.release()
            raise BugCheck(
                BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                "IoAllocateMdl with SecondaryBuffer TRUE for an IRP that has no MdlAddress "
                "chain to append to",
                id(Irp),
            )
    if Length > _MAX_MDL_LENGTH or hook_refuses("IoAllocateMdl"):
        view.release()
        return None
    mdl = MDL(view, pool)
    if pool is not None:
        with pool_lock:
            pool.mdls = [r for r in pool.mdls if r() is not None]
            pool.mdls.append(weakref.ref(mdl))
    if Irp is not None:
        if SecondaryBuffer:
            _walk(Irp.MdlAddress, "IoAllocateMdl")[-1].Next = mdl
        else:
            Irp.MdlAddress = mdl
    if _hooks.observer is not None:
        _hooks.observer.event("mdl-allocated", mdl)
    return mdl


def IoFreeMdl(Mdl: MDL) -> None:
    """Release an MDL (only this one, not the MDLs chained after it).

    IoFreeMdl: the pages of an MDL locked with MmProbeAndLockPages are unlocked first
    (MmUnlockPages); freeing it locked, or freeing it twice, raises BugCheck.  The MDL's
    view - including the one MmGetSystemAddressForMdlSafe returned - is released.
    The MDL is not removed from an IRP's ``MdlAddress``: the caller does that.
    """
    require_irql_at_most(DISPATCH_LEVEL, "IoFreeMdl")
    _check_live(Mdl, "IoFreeMdl")
    if Mdl.MdlFlags & MDL_PAGES_LOCKED:
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            "IoFreeMdl on an MDL whose pages are still locked: call MmUnlockPages first",
            id(Mdl),
        )
    Mdl._freed = True
    Mdl.MappedSystemVa = None
    Mdl._view.release()
    if _hooks.observer is not None:
        _hooks.observer.event("mdl-freed", Mdl)
    pool = Mdl._pool
    if pool is not None:
        with pool_lock:
            pool.mdls = [r for r in pool.mdls if (m := r()) is not None and m is not Mdl]
        Mdl._pool = None


def MmBuildMdlForNonPagedPool(MemoryDescriptorList: MDL) -> None:
    """Mark an MDL over non-paged memory as describing its (resident, mapped) pages.

    MmBuildMdlForNonPagedPool: the MDL is then usable for I/O without locking, and must
    never be passed to MmProbeAndLockPages or MmUnlockPages.  Refuses (BugCheck) an MDL
    whose pages are locked already, and one over paged pool.
    """
    require_irql_at_most(DISPATCH_LEVEL, "MmBuildMdlForNonPagedPool")
    mdl = MemoryDescriptorList
    _check_live(mdl, "MmBuildMdlForNonPagedPool")
    if mdl.MdlFlags & MDL_PAGES_LOCKED:
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            "MmBuildMdlForNonPagedPool on an MDL whose pages were locked with MmProbeAndLockPages",
            id(mdl),
        )
    if mdl._pool is not None and mdl._pool.paged:
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            "MmBuildMdlForNonPagedPool on an MDL that describes paged pool",
            id(mdl),
        )
    mdl.MdlFlags |= MDL_SOURCE_IS_NONPAGED_POOL | MDL_MAPPED_TO_SYSTEM_VA
    mdl.MappedSystemVa = mdl._view


def MmProbeAndLockPages(
    MemoryDescriptorList: MDL,
    AccessMode: KPROCESSOR_MODE,
    Operation: LOCK_OPERATION,
) -> None:
    """Lock the pages an MDL describes, checking the access ``Operation`` asks for.

    MmProbeAndLockPages: IoReadAccess needs a readable buffer; IoWriteAccess and
    IoModifyAccess (equivalent) need a writable one, or :class:`StatusException` is
    raised with STATUS_ACCESS_VIOLATION and the MDL is left unlocked.  Each successful
    call is matched by one MmUnlockPages.  Refuses (BugCheck) locking an MDL that is
    already locked or was built with MmBuildMdlForNonPagedPool, and a call above
    APC_LEVEL for pageable memory (anything but non-paged pool) or above DISPATCH_LEVEL.
    """
    mdl = MemoryDescriptorList
    nonpaged = mdl._pool is not None and not mdl._pool.paged
    limit: KIRQL = DISPATCH_LEVEL if nonpaged else APC_LEVEL
    require_irql_at_most(limit, "MmProbeAndLockPages")
    _check_live(mdl, "MmProbeAndLockPages")
    if AccessMode not in (KernelMode, UserMode):
        raise ValueError(f"MmProbeAndLockPages: AccessMode {AccessMode!r} is not a KPROCESSOR_MODE")
    if Operation not in (IoReadAccess, IoWriteAccess, IoModifyAccess):
        raise ValueError(f"MmProbeAndLockPages: Operation {Operation!r} is not a LOCK_OPERATION")
    if mdl.MdlFlags & _DESCRIBED:
        what = (
            "is already locked (MmUnlockPages first)"
            if mdl.MdlFlags & MDL_PAGES_LOCKED
            else "was built with MmBuildMdlForNonPagedPool (or is partial) and must not be locked"
        )
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            f"MmProbeAndLockPages on an MDL that {what}",
            id(mdl),
            mdl.MdlFlags,
        )
    write = Operation != IoReadAccess
    if write and not mdl.writable:
        raise StatusException(
            NTSTATUS.STATUS_ACCESS_VIOLATION,
            "MmProbeAndLockPages for IoWriteAccess/IoModifyAccess on a read-only buffer",
        )
    mdl.MdlFlags |= MDL_PAGES_LOCKED | (MDL_WRITE_OPERATION if write else 0)


def MmUnlockPages(MemoryDescriptorList: MDL) -> None:
    """Unlock the pages MmProbeAndLockPages locked, and drop any system mapping of them.

    MmUnlockPages: refuses (BugCheck) an MDL that is not locked, including one built with
    MmBuildMdlForNonPagedPool.
    """
    require_irql_at_most(DISPATCH_LEVEL, "MmUnlockPages")
    mdl = MemoryDescriptorList
    _check_live(mdl, "MmUnlockPages")
    if not mdl.MdlFlags & MDL_PAGES_LOCKED:
        raise BugCheck(
            BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
            "MmUnlockPages on an MDL whose pages are not locked by MmProbeAndLockPages",
            id(mdl),
            mdl.MdlFlags,
        )
    mdl.MdlFlags &= ~(MDL_PAGES_LOCKED | MDL_WRITE_OPERATION | MDL_MAPPED_TO_SYSTEM_VA)
    mdl.MappedSystemVa = None


def MmGetMdlByteCount(Mdl: MDL) -> int:
    """The number of bytes the MDL describes."""
    _check_live(Mdl, "MmGetMdlByteCount")
    return Mdl.ByteCount


def MmGetMdlByteOffset(Mdl: MDL) -> int:
    """The offset of the described buffer's start within its page."""
    _check_live(Mdl, "MmGetMdlByteOffset")
    return Mdl.ByteOffset


def MmGetSystemAddressForMdlSafe(Mdl: MDL, Priority: MM_PAGE_PRIORITY) -> memoryview | None:
    """The system-space view of the bytes this MDL (not its chain) describes.

    MmGetSystemAddressForMdlSafe: the MDL's pages are locked or it was built for non-paged
    pool; otherwise BugCheck.  A mapped MDL returns its ``MappedSystemVa``; a locked one
    is mapped now (this can fail: None, under simulated exhaustion).  ``Priority`` is
    LowPagePriority, NormalPagePriority or HighPagePriority, optionally OR'd with
    MdlMappingNoExecute and MdlMappingNoWrite (which gives a read-only view).
    """
    require_irql_at_most(DISPATCH_LEVEL, "MmGetSystemAddressForMdlSafe")
    _check_live(Mdl, "MmGetSystemAddressForMdlSafe")
    base = Priority & ~(MdlMappingNoExecute | MdlMappingNoWrite)
    if base not in (LowPagePriority, NormalPagePriority, HighPagePriority):
        raise ValueError(f"MmGetSystemAddressForMdlSafe: Priority 0x{Priority:X} is not valid")
    if Mdl.MappedSystemVa is None:
        if not Mdl.MdlFlags & (MDL_PAGES_LOCKED | MDL_SOURCE_IS_NONPAGED_POOL):
            raise BugCheck(
                BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                "MmGetSystemAddressForMdlSafe on an MDL whose pages are neither locked "
                "(MmProbeAndLockPages) nor non-paged (MmBuildMdlForNonPagedPool)",
                id(Mdl),
                Mdl.MdlFlags,
            )
        if hook_refuses("MmGetSystemAddressForMdlSafe"):
            return None
        Mdl.MappedSystemVa = Mdl._view
        Mdl.MdlFlags |= MDL_MAPPED_TO_SYSTEM_VA
    view = Mdl.MappedSystemVa
    return view.toreadonly() if Priority & MdlMappingNoWrite else view


# --- Provider helpers ---------------------------------------------------------------


def mdl_chain_views(Mdl: MDL | None, Offset: int, Length: int) -> list[memoryview] | None:
    """The slices covering ``Length`` bytes from ``Offset`` in the first MDL, through ``Next``.

    Returns None for a request no chain could satisfy: a negative ``Offset`` or
    ``Length``, no MDL but a non-zero ``Length``, an ``Offset`` past the first MDL's
    ``ByteCount``, or ``Offset + Length`` past the chain's last byte.  ``Length`` 0 gives
    ``[]``.  Every slice is non-empty and is a slice of an MDL's view, so it never reaches
    outside a described buffer.  A freed MDL (or a looping chain) raises BugCheck.
    """
    if Offset < 0 or Length < 0:
        return None
    if Mdl is None:
        return [] if Length == 0 else None
    if Mdl._freed:
        _check_live(Mdl, "mdl_chain_views")
    if Offset > Mdl.ByteCount:
        return None
    if Mdl.Next is None:
        # One MDL (the common case): one slice, or None if the request runs past it.
        if Length == 0:
            return []
        end = Offset + Length
        if end > Mdl.ByteCount:
            return None
        return [Mdl._view[Offset:end]]
    views: list[memoryview] = []
    seen: set[int] = set()
    current: MDL | None = Mdl
    start = Offset
    remaining = Length
    while remaining > 0:
        if current is None:
            for view in views:
                view.release()
            return None
        _check_live(current, "mdl_chain_views")
        if id(current) in seen:
            raise BugCheck(
                BugCheckCode.DRIVER_VERIFIER_DETECTED_VIOLATION,
                "mdl_chain_views: the MDL chain loops back on itself through Next",
                id(current),
            )
        seen.add(id(current))
        take = min(remaining, current.ByteCount - start)
        if take > 0:
            views.append(current._view[start : start + take])
            remaining -= take
        start = 0
        current = current.Next
    return views


def mdl_is_locked(Mdl: MDL | None) -> bool:
    """True when every MDL of the chain is locked or built for non-paged pool (None: True).

    The provider asks before I/O; an MDL that is neither is reported to the observer
    (``mdl-not-locked``), as the verifier's MDL-003.
    """
    usable = MDL_PAGES_LOCKED | MDL_SOURCE_IS_NONPAGED_POOL
    if Mdl is not None and Mdl.Next is None:
        if Mdl._freed:
            _check_live(Mdl, "mdl_is_locked")
        unlocked = None if Mdl.MdlFlags & usable else Mdl
    else:
        unlocked = next((m for m in _walk(Mdl, "mdl_is_locked") if not m.MdlFlags & usable), None)
    if unlocked is not None and _hooks.observer is not None:
        _hooks.observer.event("mdl-not-locked", unlocked)
    return unlocked is None


def mdl_chain_writable(Mdl: MDL | None) -> bool:
    """True when every MDL of the chain describes a writable buffer (None: True)."""
    if Mdl is not None and Mdl.Next is None and not Mdl._freed:  # one MDL: no walk
        return not Mdl._view.readonly
    return all(m.writable for m in _walk(Mdl, "mdl_chain_writable"))
