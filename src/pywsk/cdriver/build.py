"""Building a C driver against pywsk: the include path, the flags, the compiled module.

What it does: :func:`include_dir` is the directory of the shipped headers (``wdm.h``,
``ntddk.h``, ``wsk.h``); :func:`cflags` the compiler flags a driver needs;
:func:`build_driver` compiles the driver's sources together with the runtime
(``runtime.c``, ``wskdispatch.c``) into one cffi extension module in API mode, whose
``extern "Python"`` functions :mod:`pywsk.cdriver.runtime` supplies when the driver is
loaded.  The module's name is the output file's name up to its first dot.

What it refuses: a missing source, an output name that is not a Python identifier, and a
compiler that fails (:class:`BuildError`, with the compiler's output).

What always holds: sources are compiled with absolute paths, so ``__FILE__`` (and the
verifier's reports) name the real files; the output is written only when the build
succeeded.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

__all__ = ["CDEF", "BuildError", "build_driver", "cflags", "include_dir"]

HERE = Path(__file__).resolve().parent

#: The compiler flags a driver needs: -fms-extensions for the unnamed basic-dispatch
#: member of wsk.h's provider tables (a Microsoft extension), -fno-strict-aliasing and
#: -fwrapv as the Microsoft compiler behaves, -fPIC for the shared object.
FLAGS: tuple[str, ...] = (
    "-fms-extensions",
    "-fno-strict-aliasing",
    "-fwrapv",
    "-fPIC",
    "-Wno-multichar",
    "-Wno-unknown-pragmas",
)

#: What Python sees of the runtime (cffi API mode checks it against the headers).
CDEF = """
typedef int32_t NTSTATUS;
typedef struct _GUID { ...; } GUID;
typedef struct _DEVICE_OBJECT DEVICE_OBJECT;
typedef struct _IRP IRP;
typedef struct _MDL MDL;
typedef struct _DRIVER_OBJECT DRIVER_OBJECT;
typedef struct _WSK_SOCKET WSK_SOCKET;
typedef struct _WSK_PROVIDER_DISPATCH WSK_PROVIDER_DISPATCH;
typedef NTSTATUS (*PIO_COMPLETION_ROUTINE)(DEVICE_OBJECT *, IRP *, void *);
typedef void (*PDRIVER_UNLOAD)(DRIVER_OBJECT *);
typedef struct _IO_STATUS_BLOCK { NTSTATUS Status; uintptr_t Information; ...; } IO_STATUS_BLOCK;
typedef struct _IO_STACK_LOCATION { unsigned char Control; PIO_COMPLETION_ROUTINE CompletionRoutine;
    void *Context; ...; } IO_STACK_LOCATION;
struct _IRP { MDL *MdlAddress; IO_STATUS_BLOCK IoStatus; unsigned char PendingReturned;
    unsigned char Cancel; ...; };
struct _MDL { MDL *Next; void *StartVa; uint32_t ByteCount; uint32_t ByteOffset; ...; };
typedef struct _UNICODE_STRING { uint16_t Length; uint16_t MaximumLength; uint16_t *Buffer; } UNICODE_STRING;
struct _DRIVER_OBJECT { UNICODE_STRING DriverName; PDRIVER_UNLOAD DriverUnload; ...; };
typedef struct sockaddr { uint16_t sa_family; ...; } SOCKADDR;
typedef struct sockaddr_in { uint16_t sin_family; uint16_t sin_port; ...; } SOCKADDR_IN;
typedef struct sockaddr_in6 { uint16_t sin6_family; uint16_t sin6_port; uint32_t sin6_flowinfo;
    uint32_t sin6_scope_id; ...; } SOCKADDR_IN6;
typedef struct addrinfoexW { int ai_flags; int ai_family; int ai_socktype; int ai_protocol;
    size_t ai_addrlen; uint16_t *ai_canonname; struct sockaddr *ai_addr; void *ai_blob; size_t ai_bloblen;
    GUID *ai_provider; struct addrinfoexW *ai_next; } ADDRINFOEXW;
typedef struct _WSK_BUF { MDL *Mdl; uint32_t Offset; size_t Length; } WSK_BUF;
typedef struct _WSK_DATA_INDICATION { struct _WSK_DATA_INDICATION *Next; WSK_BUF Buffer; }
    WSK_DATA_INDICATION;
typedef struct _WSK_BUF_LIST { struct _WSK_BUF_LIST *Next; WSK_BUF Buffer; } WSK_BUF_LIST;
typedef struct _WSACMSGHDR { size_t cmsg_len; int cmsg_level; int cmsg_type; } CMSGHDR;
typedef struct _WSK_DATAGRAM_INDICATION { struct _WSK_DATAGRAM_INDICATION *Next; WSK_BUF Buffer;
    CMSGHDR *ControlInfo; uint32_t ControlInfoLength; SOCKADDR *RemoteAddress; } WSK_DATAGRAM_INDICATION;
typedef NTSTATUS (*PFN_WSK_RECEIVE_FROM_EVENT)(void *, uint32_t, WSK_DATAGRAM_INDICATION *);
typedef struct _WSK_CLIENT_DATAGRAM_DISPATCH { PFN_WSK_RECEIVE_FROM_EVENT WskReceiveFromEvent; }
    WSK_CLIENT_DATAGRAM_DISPATCH;
typedef struct _WSK_INSPECT_ID { uintptr_t Key; uint32_t SerialNumber; } WSK_INSPECT_ID;
typedef enum { WskInspectReject, WskInspectAccept, WskInspectPend, WskInspectMax } WSK_INSPECT_ACTION;
typedef struct _WSK_EVENT_CALLBACK_CONTROL { GUID *NpiId; uint32_t EventMask; } WSK_EVENT_CALLBACK_CONTROL;
typedef struct _WSK_CLIENT_CONNECTION_DISPATCH WSK_CLIENT_CONNECTION_DISPATCH;
typedef NTSTATUS (*PFN_WSK_CLIENT_EVENT)(void *, uint32_t, void *, size_t);
typedef NTSTATUS (*PFN_WSK_RECEIVE_EVENT)(void *, uint32_t, WSK_DATA_INDICATION *, size_t, size_t *);
typedef NTSTATUS (*PFN_WSK_DISCONNECT_EVENT)(void *, uint32_t);
typedef NTSTATUS (*PFN_WSK_SEND_BACKLOG_EVENT)(void *, size_t);
typedef NTSTATUS (*PFN_WSK_ACCEPT_EVENT)(void *, uint32_t, SOCKADDR *, SOCKADDR *, WSK_SOCKET *, void **,
    const WSK_CLIENT_CONNECTION_DISPATCH **);
typedef WSK_INSPECT_ACTION (*PFN_WSK_INSPECT_EVENT)(void *, SOCKADDR *, SOCKADDR *, WSK_INSPECT_ID *);
typedef NTSTATUS (*PFN_WSK_ABORT_EVENT)(void *, WSK_INSPECT_ID *);
typedef struct _WSK_CLIENT_DISPATCH { uint16_t Version; uint16_t Reserved; PFN_WSK_CLIENT_EVENT WskClientEvent; }
    WSK_CLIENT_DISPATCH;
typedef struct _WSK_CLIENT_NPI { void *ClientContext; const WSK_CLIENT_DISPATCH *Dispatch; } WSK_CLIENT_NPI;
typedef struct _WSK_PROVIDER_NPI { void *Client; const WSK_PROVIDER_DISPATCH *Dispatch; } WSK_PROVIDER_NPI;
typedef struct _WSK_REGISTRATION { uint64_t ReservedRegistrationState; void *ReservedRegistrationContext;
    ...; } WSK_REGISTRATION;
struct _WSK_CLIENT_CONNECTION_DISPATCH { PFN_WSK_RECEIVE_EVENT WskReceiveEvent;
    PFN_WSK_DISCONNECT_EVENT WskDisconnectEvent; PFN_WSK_SEND_BACKLOG_EVENT WskSendBacklogEvent; };
typedef struct _WSK_CLIENT_LISTEN_DISPATCH { PFN_WSK_ACCEPT_EVENT WskAcceptEvent;
    PFN_WSK_INSPECT_EVENT WskInspectEvent; PFN_WSK_ABORT_EVENT WskAbortEvent; } WSK_CLIENT_LISTEN_DISPATCH;
typedef struct _WSK_CLIENT_STREAM_DISPATCH { const WSK_CLIENT_LISTEN_DISPATCH *Listen;
    const WSK_CLIENT_CONNECTION_DISPATCH *Connect; } WSK_CLIENT_STREAM_DISPATCH;

extern "Python+C" {
int pyb_IoAllocateIrp(void *, int, int, uintptr_t, int, uintptr_t);
int pyb_IoInitializeIrp(void *, int, int, int, uintptr_t, int, uintptr_t);
void pyb_IoFreeIrp(void *, uintptr_t, int, uintptr_t);
int pyb_IoReuseIrp(uintptr_t, int32_t, uintptr_t, int, uintptr_t);
int pyb_IoSetCompletionRoutine(uintptr_t, int, int, int, int, uintptr_t, int, uintptr_t);
int pyb_IoCancelIrp(void *, uintptr_t, int, uintptr_t);
int pyb_IoAllocateMdl(void *, void *, uint32_t, int, int, void *, uintptr_t, int, uintptr_t);
void pyb_IoFreeMdl(void *, uintptr_t, int, uintptr_t);
int32_t pyb_MdlOp(int, void *, int, uintptr_t, int, uintptr_t);
void *pyb_ExAllocatePool(int, uint64_t, size_t, uint32_t, uintptr_t, int, uintptr_t);
void pyb_ExFreePool(void *, uint32_t, int, uintptr_t, int, uintptr_t);
void pyb_KeInitializeEvent(void *, int, int, uintptr_t, int, uintptr_t);
int32_t pyb_KeEventOp(int, void *, uintptr_t, int, uintptr_t);
int32_t pyb_KeWait(uint32_t, void **, int, int, int, int, int, int64_t, int, uintptr_t, int,
                   uintptr_t);
int64_t pyb_Time(int);
int pyb_Irql(int, int);
void pyb_ThreadEvent(int, void *);
void pyb_DbgPrint(int, const char *);
void pyb_Stop(int, int32_t, const char *, uintptr_t, int, uintptr_t);
int32_t pyb_WskRegister(void *, void *, uintptr_t, int, uintptr_t);
int32_t pyb_WskCaptureProviderNPI(void *, uint32_t, void *, uintptr_t, int, uintptr_t);
void pyb_WskRegistrationOp(int, void *, uintptr_t, int, uintptr_t);
int32_t pyb_WskCall(int, uintptr_t, const uintptr_t *, uintptr_t, uintptr_t);
}

#define PYWSK_FN_SOCKET ...
#define PYWSK_FN_SOCKET_CONNECT ...
#define PYWSK_FN_CONTROL_CLIENT ...
#define PYWSK_FN_GET_ADDRESS_INFO ...
#define PYWSK_FN_FREE_ADDRESS_INFO ...
#define PYWSK_FN_GET_NAME_INFO ...
#define PYWSK_FN_CONTROL_SOCKET ...
#define PYWSK_FN_CLOSE_SOCKET ...
#define PYWSK_FN_BIND ...
#define PYWSK_FN_CONNECT ...
#define PYWSK_FN_LISTEN ...
#define PYWSK_FN_ACCEPT ...
#define PYWSK_FN_INSPECT_COMPLETE ...
#define PYWSK_FN_GET_LOCAL_ADDRESS ...
#define PYWSK_FN_GET_REMOTE_ADDRESS ...
#define PYWSK_FN_SEND ...
#define PYWSK_FN_RECEIVE ...
#define PYWSK_FN_DISCONNECT ...
#define PYWSK_FN_RELEASE ...
#define PYWSK_FN_CONNECT_EX ...
#define PYWSK_FN_SEND_EX ...
#define PYWSK_FN_RECEIVE_EX ...
#define PYWSK_FN_SEND_TO ...
#define PYWSK_FN_RECEIVE_FROM ...
#define PYWSK_FN_SEND_MESSAGES ...
#define PYWSK_FN_RELEASE_DATAGRAMS ...
extern volatile int PywskRtStopped;
int PywskRtInvoke(void *, const uintptr_t *, intptr_t *);
void PywskRtRelease(void *);
int PywskRtQuarantine(void *, size_t, const char *);
void PywskRtUnquarantine(void *);
IO_STACK_LOCATION *PywskRtNextLocation(void *);
void *PywskRtNewSocket(int);
void *PywskRtProviderDispatch(void);
"""


class BuildError(Exception):
    """The driver could not be built; ``output`` holds what the compiler said."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message + (f"\n{output}" if output else ""))
        self.output = output


def include_dir() -> Path:
    """The directory of the shipped headers (``-I`` it, or use :func:`cflags`)."""
    return HERE / "include"


def cflags() -> list[str]:
    """The flags to compile a driver's sources with pywsk's headers."""
    return [f"-I{include_dir()}", *FLAGS]


def module_name(output: str | os.PathLike[str]) -> str:
    """The extension module's name for ``output``: its file name up to the first dot."""
    name = Path(output).name.split(".", 1)[0]
    if not name.isidentifier():
        raise BuildError(f"the output file name must start with a C identifier, not {name!r}")
    return name


def build_driver(
    sources: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    extra_cflags: Sequence[str] = (),
    debug: bool = True,
) -> Path:
    """Compile ``sources`` with the runtime into the loadable driver ``output``.

    ``debug`` adds ``-g -O1`` (otherwise ``-O2 -g0``: no debug information, which Python's
    own compiler flags would add).  Returns the output's path.
    """
    try:
        from cffi import FFI  # the optional extra pywsk[c]
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise BuildError("building C drivers needs cffi: pip install 'pywsk[c]'") from exc
    paths = [Path(s).resolve() for s in sources]
    missing = [str(p) for p in paths if not p.is_file()]
    if not paths or missing:
        raise BuildError("no such source file: " + ", ".join(missing) if missing else "no sources")
    target = Path(output).resolve()
    name = module_name(target)
    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source(
        name,
        '#include "wsk.h"\n#include "bridge.h"\n',
        sources=[str(HERE / "runtime.c"), str(HERE / "wskdispatch.c"), *map(str, paths)],
        include_dirs=[str(include_dir()), str(HERE)],
        extra_compile_args=[*FLAGS, *(("-g", "-O1") if debug else ("-O2", "-g0")), *extra_cflags],
        libraries=["pthread"],
    )
    with tempfile.TemporaryDirectory(prefix="pywsk-driver-") as tmp:
        captured = io.StringIO()
        try:
            # setuptools' deprecation notices are not the driver's business.
            with warnings.catch_warnings(), contextlib.redirect_stdout(captured):
                warnings.simplefilter("ignore")
                built = ffi.compile(tmpdir=tmp, verbose=False)
        except Exception as exc:  # cffi raises distutils/setuptools errors of many kinds
            raise BuildError(
                f"compiling {', '.join(map(str, paths))} failed: {exc}", captured.getvalue()
            ) from exc
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, target)
    return target
