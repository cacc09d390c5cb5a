/* wdm.h - the part of the WDK's wdm.h that WSK client drivers use, for pywsk.
 *
 * Names (types, fields, macros, functions) are the WDK's.  Layouts are NOT: a driver is
 * recompiled from source against these headers (source-compatible, not binary-compatible),
 * so only names and C types matter.  Fields a driver must not touch are marked "private".
 * Build with gcc -fms-extensions (the unnamed struct members of wsk.h), or take the flags
 * from `pywsk driver cflags`.  docs/c-drivers.md lists every difference from the WDK.
 *
 * Runtime functions are macros that pass __FILE__/__LINE__/__func__ to the runtime, so the
 * verifier's reports name the driver's own source line; each is also a real function
 * (taking its address works; such calls report no line). */
#ifndef PYWSK_WDM_H
#define PYWSK_WDM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- SAL annotations and calling conventions: no-ops ---- */
#define IN
#define OUT
#define OPTIONAL
#define _In_
#define _In_opt_
#define _In_z_
#define _In_reads_(n)
#define _In_reads_bytes_(n)
#define _In_reads_opt_(n)
#define _In_reads_bytes_opt_(n)
#define _In_range_(a, b)
#define _In_opt_z_
#define _Inexpressible_(e)
#define _Out_writes_opt_(n)
#define _Out_writes_to_(n, m)
#define _Out_writes_bytes_to_(n, m)
#define _Out_writes_bytes_to_opt_(n, m)
#define _Inout_updates_(n)
#define _Inout_updates_bytes_(n)
#define _Inout_z_
#define _Outptr_opt_
#define _Outptr_result_buffer_(n)
#define _Outptr_result_bytebuffer_(n)
#define _Reserved_
#define _Pre_notnull_
#define _Pre_satisfies_(e)
#define _Post_writable_byte_size_(n)
#define _Null_terminated_
#define _Printf_format_string_
#define _Check_return_
#define _Return_type_success_(e)
#define _Requires_lock_not_held_(l)
#define _Guarded_by_(l)
#define _Interlocked_
#define _Notliteral_
#define _Literal_
#define _Strict_type_match_
#define _Maybe_raises_SEH_exception_
#define _Kernel_float_saved_
#define _Kernel_float_restored_
#define _Kernel_clear_do_init_(y)
#define _Kernel_IoGetDmaAdapter_
#define _Out_
#define _Out_opt_
#define _Out_writes_(n)
#define _Out_writes_bytes_(n)
#define _Out_writes_bytes_opt_(n)
#define _Inout_
#define _Inout_opt_
#define _Outptr_
#define _Outptr_result_maybenull_
#define _Must_inspect_result_
#define _Success_(e)
#define _Use_decl_annotations_
#define _IRQL_requires_(i)
#define _IRQL_requires_max_(i)
#define _IRQL_requires_min_(i)
#define _IRQL_requires_same_
#define _IRQL_raises_(i)
#define _IRQL_saves_
#define _IRQL_restores_
#define _IRQL_always_function_max_(i)
#define _Function_class_(c)
#define _Dispatch_type_(t)
#define _At_(t, a)
#define _When_(c, a)
#define _Post_invalid_
#define _Post_satisfies_(e)
#define _Frees_ptr_(p)
#define _Frees_ptr_opt_
#define _Ret_maybenull_
#define _Ret_range_(a, b)
#define _Field_size_(n)
#define _Field_size_bytes_(n)
#define _Field_size_bytes_part_(n, m)
#define _Kernel_requires_resource_held_(r)
#define _Requires_lock_held_(l)
#define _Releases_lock_(l)
#define _Acquires_lock_(l)
#define _Analysis_assume_(e)
#define __drv_allocatesMem(k)
#define __drv_freesMem(k)
#define __drv_aliasesMem
#define __drv_maxIRQL(i)
#define __drv_requiresIRQL(i)
#define __drv_strictTypeMatch(m)
#define NTAPI
#define NTKERNELAPI
#define NTSYSAPI
#define WINAPI
#define __stdcall
#define __cdecl
#define FASTCALL
#define FORCEINLINE static inline
#define DECLSPEC_ALIGN(n) __attribute__((aligned(n)))
#define DECLSPEC_NOINLINE __attribute__((noinline))
#define CONST const
#define VOID void
#define FALSE 0
#define TRUE 1
#ifndef NULL
#define NULL ((void *)0)
#endif
#define UNREFERENCED_PARAMETER(P) ((void)(P))
#define DBG_UNREFERENCED_PARAMETER(P) ((void)(P))
#define DBG_UNREFERENCED_LOCAL_VARIABLE(V) ((void)(V))
#define UNREFERENCED_LOCAL_VARIABLE(V) ((void)(V))
#define PAGED_CODE() ((void)0)
#define PAGED_CODE_LOCKED() ((void)0)
#define ARGUMENT_PRESENT(A) ((A) != NULL)
#define RTL_NUMBER_OF(A) (sizeof(A) / sizeof((A)[0]))
#define ARRAYSIZE(A) RTL_NUMBER_OF(A)
#define FIELD_OFFSET(T, F) ((LONG)offsetof(T, F))
#define CONTAINING_RECORD(Address, Type, Field) \
    ((Type *)((char *)(Address) - offsetof(Type, Field)))
#define max(a, b) (((a) > (b)) ? (a) : (b))
#define min(a, b) (((a) < (b)) ? (a) : (b))

/* ---- basic types (LP64: ULONG is 32 bits, as on Windows) ---- */
typedef void *PVOID, **PPVOID;
typedef char CHAR, *PCHAR, *PSTR, CCHAR;
typedef const char *PCSTR, *PCSZ;
typedef unsigned char UCHAR, *PUCHAR, BOOLEAN, *PBOOLEAN, BYTE, *PBYTE;
typedef int16_t SHORT, CSHORT, *PSHORT;
typedef uint16_t USHORT, *PUSHORT, WORD, WCHAR, *PWCHAR, *PWSTR;
typedef const uint16_t *PCWSTR;
typedef int32_t LONG, *PLONG, INT, BOOL;
typedef uint32_t ULONG, *PULONG, DWORD, UINT, *PUINT;
typedef int64_t LONGLONG, LONG64, *PLONG64;
typedef uint64_t ULONGLONG, ULONG64, *PULONG64;
typedef intptr_t LONG_PTR, INT_PTR;
typedef uintptr_t ULONG_PTR, *PULONG_PTR, SIZE_T, *PSIZE_T, UINT_PTR, DWORD_PTR;
typedef LONG NTSTATUS, *PNTSTATUS;            /* signed, as in C: NT_SUCCESS is >= 0 */
typedef UCHAR KIRQL, *PKIRQL;
typedef ULONG_PTR KSPIN_LOCK, *PKSPIN_LOCK;
typedef CCHAR KPROCESSOR_MODE;
typedef LONG KPRIORITY;
typedef PVOID HANDLE, *PHANDLE;
typedef ULONG ACCESS_MASK;
typedef PVOID PEPROCESS, PETHREAD, PKTHREAD, PSECURITY_DESCRIPTOR, PACCESS_STATE;
typedef struct _FILE_OBJECT FILE_OBJECT, *PFILE_OBJECT;
typedef union _LARGE_INTEGER {
    struct { ULONG LowPart; LONG HighPart; };
    struct { ULONG LowPart; LONG HighPart; } u;
    LONGLONG QuadPart;
} LARGE_INTEGER, *PLARGE_INTEGER;
typedef union _ULARGE_INTEGER {
    struct { ULONG LowPart; ULONG HighPart; };
    struct { ULONG LowPart; ULONG HighPart; } u;
    ULONGLONG QuadPart;
} ULARGE_INTEGER, *PULARGE_INTEGER;
typedef struct _GUID { ULONG Data1; USHORT Data2; USHORT Data3; UCHAR Data4[8]; } GUID, *PGUID;
typedef const GUID *LPCGUID;

/* ---- NTSTATUS ---- */
#define NT_SUCCESS(Status) (((NTSTATUS)(Status)) >= 0)
#define NT_INFORMATION(Status) ((((ULONG)(Status)) >> 30) == 1)
#define NT_WARNING(Status) ((((ULONG)(Status)) >> 30) == 2)
#define NT_ERROR(Status) ((((ULONG)(Status)) >> 30) == 3)
#include "pywsk_ntstatus.h"
#ifndef STATUS_WAIT_0
#define STATUS_WAIT_0 STATUS_SUCCESS
#endif

/* ---- IRQL ---- */
#define PASSIVE_LEVEL 0
#define LOW_LEVEL 0
#define APC_LEVEL 1
#define DISPATCH_LEVEL 2
#define HIGH_LEVEL 15
#define IO_NO_INCREMENT 0
#define IO_NETWORK_INCREMENT 2
#define KernelMode 0
#define UserMode 1

/* ---- call sites: what the verifier reports ---- */
#define PYWSK_SITE __FILE__, __LINE__, __func__
#define PYWSK_SITE_PARAMS const char *File_, int Line_, const char *Func_

/* ---- strings ---- */
typedef struct _UNICODE_STRING {
    USHORT Length;          /* bytes, without a terminator */
    USHORT MaximumLength;
    PWSTR Buffer;
} UNICODE_STRING, *PUNICODE_STRING;
typedef const UNICODE_STRING *PCUNICODE_STRING;
typedef struct _STRING { USHORT Length; USHORT MaximumLength; PCHAR Buffer; } STRING, ANSI_STRING, *PANSI_STRING;
/* L"..." is 32-bit wchar_t on Linux: use RTL_CONSTANT_STRING(u"...") or RtlInitUnicodeString(&s, u"...") */
#define RTL_CONSTANT_STRING(s) { (USHORT)(sizeof(s) - sizeof((s)[0])), (USHORT)sizeof(s), (PWSTR)(s) }
VOID RtlInitUnicodeString(PUNICODE_STRING DestinationString, PCWSTR SourceString);
VOID RtlInitAnsiString(PANSI_STRING DestinationString, PCSZ SourceString);
BOOLEAN RtlEqualUnicodeString(PCUNICODE_STRING String1, PCUNICODE_STRING String2, BOOLEAN CaseInSensitive);
VOID RtlCopyUnicodeString(PUNICODE_STRING DestinationString, PCUNICODE_STRING SourceString);
#define RtlCopyMemory(D, S, L) memcpy((D), (S), (L))
#define RtlMoveMemory(D, S, L) memmove((D), (S), (L))
#define RtlFillMemory(D, L, F) memset((D), (F), (L))
#define RtlZeroMemory(D, L) memset((D), 0, (L))
#define RtlSecureZeroMemory(D, L) memset((D), 0, (L))
#define RtlEqualMemory(A, B, L) (!memcmp((A), (B), (L)))
#define RtlCompareMemory(A, B, L) PywskRtlCompareMemory((A), (B), (L))
static inline SIZE_T PywskRtlCompareMemory(const void *A, const void *B, SIZE_T L)
{ SIZE_T i = 0; while (i < L && ((const UCHAR *)A)[i] == ((const UCHAR *)B)[i]) i++; return i; }
static inline USHORT RtlUshortByteSwap(USHORT Source) { return (USHORT)((Source << 8) | (Source >> 8)); }
static inline ULONG RtlUlongByteSwap(ULONG Source) { return __builtin_bswap32(Source); }
static inline ULONGLONG RtlUlonglongByteSwap(ULONGLONG Source) { return __builtin_bswap64(Source); }

/* ---- lists ---- */
typedef struct _LIST_ENTRY { struct _LIST_ENTRY *Flink, *Blink; } LIST_ENTRY, *PLIST_ENTRY;
typedef struct _SINGLE_LIST_ENTRY { struct _SINGLE_LIST_ENTRY *Next; } SINGLE_LIST_ENTRY, *PSINGLE_LIST_ENTRY;
FORCEINLINE VOID InitializeListHead(PLIST_ENTRY H) { H->Flink = H->Blink = H; }
FORCEINLINE BOOLEAN IsListEmpty(const LIST_ENTRY *H) { return (BOOLEAN)(H->Flink == H); }
FORCEINLINE BOOLEAN RemoveEntryList(PLIST_ENTRY E)
{ PLIST_ENTRY F = E->Flink, B = E->Blink; B->Flink = F; F->Blink = B; return (BOOLEAN)(F == B); }
FORCEINLINE PLIST_ENTRY RemoveHeadList(PLIST_ENTRY H) { PLIST_ENTRY E = H->Flink; RemoveEntryList(E); return E; }
FORCEINLINE PLIST_ENTRY RemoveTailList(PLIST_ENTRY H) { PLIST_ENTRY E = H->Blink; RemoveEntryList(E); return E; }
FORCEINLINE VOID InsertTailList(PLIST_ENTRY H, PLIST_ENTRY E)
{ PLIST_ENTRY B = H->Blink; E->Flink = H; E->Blink = B; B->Flink = E; H->Blink = E; }
FORCEINLINE VOID InsertHeadList(PLIST_ENTRY H, PLIST_ENTRY E)
{ PLIST_ENTRY F = H->Flink; E->Flink = F; E->Blink = H; F->Blink = E; H->Flink = E; }
FORCEINLINE VOID PushEntryList(PSINGLE_LIST_ENTRY H, PSINGLE_LIST_ENTRY E) { E->Next = H->Next; H->Next = E; }
FORCEINLINE PSINGLE_LIST_ENTRY PopEntryList(PSINGLE_LIST_ENTRY H)
{ PSINGLE_LIST_ENTRY E = H->Next; if (E) H->Next = E->Next; return E; }

/* ---- Interlocked: gcc's atomic builtins (full barriers, as on Windows) ---- */
#define InterlockedIncrement(A) __atomic_add_fetch((A), 1, __ATOMIC_SEQ_CST)
#define InterlockedDecrement(A) __atomic_sub_fetch((A), 1, __ATOMIC_SEQ_CST)
#define InterlockedExchange(T, V) __atomic_exchange_n((T), (V), __ATOMIC_SEQ_CST)
#define InterlockedExchangeAdd(A, V) __atomic_fetch_add((A), (V), __ATOMIC_SEQ_CST)
#define InterlockedAdd(A, V) __atomic_add_fetch((A), (V), __ATOMIC_SEQ_CST)
#define InterlockedOr(T, V) __atomic_fetch_or((T), (V), __ATOMIC_SEQ_CST)
#define InterlockedAnd(T, V) __atomic_fetch_and((T), (V), __ATOMIC_SEQ_CST)
#define InterlockedXor(T, V) __atomic_fetch_xor((T), (V), __ATOMIC_SEQ_CST)
#define InterlockedIncrement64 InterlockedIncrement
#define InterlockedDecrement64 InterlockedDecrement
#define InterlockedExchange64 InterlockedExchange
#define InterlockedExchangeAdd64 InterlockedExchangeAdd
#define InterlockedAdd64 InterlockedAdd
#define InterlockedExchangePointer(T, V) __atomic_exchange_n((T), (V), __ATOMIC_SEQ_CST)
#define InterlockedCompareExchange(D, E, C) __sync_val_compare_and_swap((D), (C), (E))
#define InterlockedCompareExchange64 InterlockedCompareExchange
#define InterlockedCompareExchangePointer(D, E, C) __sync_val_compare_and_swap((D), (C), (E))
#define ReadNoFence(A) __atomic_load_n((A), __ATOMIC_RELAXED)
#define WriteNoFence(A, V) __atomic_store_n((A), (V), __ATOMIC_RELAXED)
#define KeMemoryBarrier() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define MemoryBarrier() __atomic_thread_fence(__ATOMIC_SEQ_CST)

/* ---- SList: a lock-protected LIFO (the WDK's is lock-free; the behaviour is the same) ---- */
typedef struct _SLIST_ENTRY { struct _SLIST_ENTRY *Next; } SLIST_ENTRY, *PSLIST_ENTRY;
typedef union DECLSPEC_ALIGN(16) _SLIST_HEADER {
    struct { PSLIST_ENTRY First; ULONG Lock; USHORT Depth; } Private_;  /* private */
    ULONGLONG Alignment[2];
} SLIST_HEADER, *PSLIST_HEADER;
VOID InitializeSListHead(PSLIST_HEADER SListHead);
PSLIST_ENTRY InterlockedPushEntrySList(PSLIST_HEADER ListHead, PSLIST_ENTRY ListEntry);
PSLIST_ENTRY InterlockedPopEntrySList(PSLIST_HEADER ListHead);
PSLIST_ENTRY InterlockedFlushSList(PSLIST_HEADER ListHead);
USHORT QueryDepthSList(PSLIST_HEADER ListHead);
#define ExInitializeSListHead InitializeSListHead
#define ExInterlockedPushEntrySList(H, E, L) InterlockedPushEntrySList((H), (E))
#define ExInterlockedPopEntrySList(H, L) InterlockedPopEntrySList(H)
#define ExQueryDepthSList QueryDepthSList

/* ---- driver and device objects ---- */
typedef struct _DEVICE_OBJECT { CSHORT Type; USHORT Size; struct _DRIVER_OBJECT *DriverObject; PVOID DeviceExtension; } DEVICE_OBJECT, *PDEVICE_OBJECT;
typedef struct _DRIVER_OBJECT DRIVER_OBJECT, *PDRIVER_OBJECT;
typedef NTSTATUS DRIVER_INITIALIZE(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath);
typedef DRIVER_INITIALIZE *PDRIVER_INITIALIZE;
typedef VOID DRIVER_UNLOAD(PDRIVER_OBJECT DriverObject);
typedef DRIVER_UNLOAD *PDRIVER_UNLOAD;
struct _DRIVER_OBJECT {
    CSHORT Type;
    CSHORT Size;
    PDEVICE_OBJECT DeviceObject;
    ULONG Flags;
    PVOID DriverStart;
    ULONG DriverSize;
    PVOID DriverSection;
    PVOID DriverExtension;
    UNICODE_STRING DriverName;
    PUNICODE_STRING HardwareDatabase;
    PVOID FastIoDispatch;
    PDRIVER_INITIALIZE DriverInit;
    PVOID DriverStartIo;
    PDRIVER_UNLOAD DriverUnload;
    PVOID MajorFunction[28];
};

/* ---- IRPs ---- */
typedef struct _IO_STATUS_BLOCK {
    union { NTSTATUS Status; PVOID Pointer; };
    ULONG_PTR Information;
} IO_STATUS_BLOCK, *PIO_STATUS_BLOCK;

typedef struct _MDL MDL, *PMDL;
typedef struct _IRP IRP, *PIRP;
typedef NTSTATUS IO_COMPLETION_ROUTINE(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context);
typedef IO_COMPLETION_ROUTINE *PIO_COMPLETION_ROUTINE;
typedef VOID DRIVER_CANCEL(PDEVICE_OBJECT DeviceObject, PIRP Irp);
typedef DRIVER_CANCEL *PDRIVER_CANCEL;

#define SL_INVOKE_ON_CANCEL 0x20
#define SL_INVOKE_ON_SUCCESS 0x40
#define SL_INVOKE_ON_ERROR 0x80

typedef struct _IO_STACK_LOCATION {
    UCHAR MajorFunction;
    UCHAR MinorFunction;
    UCHAR Flags;
    UCHAR Control;
    union {
        struct { PVOID Argument1, Argument2, Argument3, Argument4; } Others;
    } Parameters;
    PDEVICE_OBJECT DeviceObject;
    PFILE_OBJECT FileObject;
    PIO_COMPLETION_ROUTINE CompletionRoutine;
    PVOID Context;
} IO_STACK_LOCATION, *PIO_STACK_LOCATION;

struct _IRP {
    CSHORT Type;
    USHORT Size;
    PMDL MdlAddress;
    ULONG Flags;
    union { struct _IRP *MasterIrp; LONG IrpCount; PVOID SystemBuffer; } AssociatedIrp;
    LIST_ENTRY ThreadListEntry;
    IO_STATUS_BLOCK IoStatus;
    KPROCESSOR_MODE RequestorMode;
    BOOLEAN PendingReturned;
    CHAR StackCount;
    CHAR CurrentLocation;
    BOOLEAN Cancel;
    KIRQL CancelIrql;
    CCHAR ApcEnvironment;
    UCHAR AllocationFlags;
    PIO_STATUS_BLOCK UserIosb;
    PVOID UserEvent;
    PDRIVER_CANCEL CancelRoutine;
    PVOID UserBuffer;
    union {
        struct {
            union { PVOID DriverContext[4]; };
            PETHREAD Thread;
            PCHAR AuxiliaryBuffer;
            LIST_ENTRY ListEntry;
            PIO_STACK_LOCATION CurrentStackLocation;
            PFILE_OBJECT OriginalFileObject;
        } Overlay;
    } Tail;
    /* the StackCount stack locations follow (IoSizeOfIrp) */
};

#define IoGetNextIrpStackLocation(Irp) ((Irp)->Tail.Overlay.CurrentStackLocation - 1)
#define IoGetCurrentIrpStackLocation(Irp) ((Irp)->Tail.Overlay.CurrentStackLocation)
#define IoCopyCurrentIrpStackLocationToNext(Irp) \
    do { PIO_STACK_LOCATION s_ = IoGetCurrentIrpStackLocation(Irp), n_ = IoGetNextIrpStackLocation(Irp); \
         memcpy(n_, s_, offsetof(IO_STACK_LOCATION, CompletionRoutine)); n_->Control = 0; } while (0)
#define IoSkipCurrentIrpStackLocation(Irp) \
    do { (Irp)->CurrentLocation++; (Irp)->Tail.Overlay.CurrentStackLocation++; } while (0)
#define IoMarkIrpPending(Irp) ((void)0)   /* a WSK client never returns STATUS_PENDING for an IRP */

PIRP PywskIoAllocateIrp(CCHAR StackSize, BOOLEAN ChargeQuota, PYWSK_SITE_PARAMS);
VOID PywskIoInitializeIrp(PIRP Irp, USHORT PacketSize, CCHAR StackSize, PYWSK_SITE_PARAMS);
VOID PywskIoFreeIrp(PIRP Irp, PYWSK_SITE_PARAMS);
VOID PywskIoReuseIrp(PIRP Irp, NTSTATUS Iostatus, PYWSK_SITE_PARAMS);
VOID PywskIoSetCompletionRoutine(PIRP Irp, PIO_COMPLETION_ROUTINE CompletionRoutine, PVOID Context,
    BOOLEAN InvokeOnSuccess, BOOLEAN InvokeOnError, BOOLEAN InvokeOnCancel, PYWSK_SITE_PARAMS);
BOOLEAN PywskIoCancelIrp(PIRP Irp, PYWSK_SITE_PARAMS);
USHORT IoSizeOfIrp(CCHAR StackSize);
PIRP IoAllocateIrp(CCHAR StackSize, BOOLEAN ChargeQuota);
VOID IoInitializeIrp(PIRP Irp, USHORT PacketSize, CCHAR StackSize);
VOID IoFreeIrp(PIRP Irp);
VOID IoReuseIrp(PIRP Irp, NTSTATUS Iostatus);
VOID IoSetCompletionRoutine(PIRP Irp, PIO_COMPLETION_ROUTINE CompletionRoutine, PVOID Context,
    BOOLEAN InvokeOnSuccess, BOOLEAN InvokeOnError, BOOLEAN InvokeOnCancel);
BOOLEAN IoCancelIrp(PIRP Irp);
#define IoAllocateIrp(S, Q) PywskIoAllocateIrp((S), (Q), PYWSK_SITE)
#define IoInitializeIrp(I, P, S) PywskIoInitializeIrp((I), (P), (S), PYWSK_SITE)
#define IoFreeIrp(I) PywskIoFreeIrp((I), PYWSK_SITE)
#define IoReuseIrp(I, S) PywskIoReuseIrp((I), (S), PYWSK_SITE)
#define IoSetCompletionRoutine(I, R, C, S, E, X) PywskIoSetCompletionRoutine((I), (R), (C), (S), (E), (X), PYWSK_SITE)
#define IoCancelIrp(I) PywskIoCancelIrp((I), PYWSK_SITE)

/* ---- MDLs ---- */
#define MDL_MAPPED_TO_SYSTEM_VA 0x0001
#define MDL_PAGES_LOCKED 0x0002
#define MDL_SOURCE_IS_NONPAGED_POOL 0x0004
#define MDL_PARTIAL 0x0010
#define MDL_ALLOCATED_FIXED_SIZE 0x0008
struct _MDL {
    struct _MDL *Next;
    CSHORT Size;
    CSHORT MdlFlags;
    PEPROCESS Process;
    PVOID MappedSystemVa;
    PVOID StartVa;
    ULONG ByteCount;
    ULONG ByteOffset;
};
typedef enum _LOCK_OPERATION { IoReadAccess, IoWriteAccess, IoModifyAccess } LOCK_OPERATION;
typedef enum _MM_PAGE_PRIORITY { LowPagePriority, NormalPagePriority = 16, HighPagePriority = 32 } MM_PAGE_PRIORITY;
#define MdlMappingNoWrite 0x80000000
#define MdlMappingNoExecute 0x40000000
#define PAGE_SIZE 4096
#define MmGetMdlByteCount(Mdl) ((Mdl)->ByteCount)
#define MmGetMdlByteOffset(Mdl) ((Mdl)->ByteOffset)
#define MmGetMdlVirtualAddress(Mdl) ((PVOID)((PCHAR)((Mdl)->StartVa) + (Mdl)->ByteOffset))
#define MmGetMdlPfnArray(Mdl) ((PVOID)((Mdl) + 1))
PMDL PywskIoAllocateMdl(PVOID VirtualAddress, ULONG Length, BOOLEAN SecondaryBuffer, BOOLEAN ChargeQuota, PIRP Irp, PYWSK_SITE_PARAMS);
VOID PywskIoFreeMdl(PMDL Mdl, PYWSK_SITE_PARAMS);
VOID PywskMmBuildMdlForNonPagedPool(PMDL MemoryDescriptorList, PYWSK_SITE_PARAMS);
VOID PywskMmProbeAndLockPages(PMDL MemoryDescriptorList, KPROCESSOR_MODE AccessMode, LOCK_OPERATION Operation, PYWSK_SITE_PARAMS);
VOID PywskMmUnlockPages(PMDL MemoryDescriptorList, PYWSK_SITE_PARAMS);
PVOID PywskMmGetSystemAddressForMdlSafe(PMDL Mdl, ULONG Priority, PYWSK_SITE_PARAMS);
PMDL IoAllocateMdl(PVOID VirtualAddress, ULONG Length, BOOLEAN SecondaryBuffer, BOOLEAN ChargeQuota, PIRP Irp);
VOID IoFreeMdl(PMDL Mdl);
VOID MmBuildMdlForNonPagedPool(PMDL MemoryDescriptorList);
VOID MmProbeAndLockPages(PMDL MemoryDescriptorList, KPROCESSOR_MODE AccessMode, LOCK_OPERATION Operation);
VOID MmUnlockPages(PMDL MemoryDescriptorList);
PVOID MmGetSystemAddressForMdlSafe(PMDL Mdl, ULONG Priority);
#define IoAllocateMdl(V, L, S, Q, I) PywskIoAllocateMdl((V), (L), (S), (Q), (I), PYWSK_SITE)
#define IoFreeMdl(M) PywskIoFreeMdl((M), PYWSK_SITE)
#define MmBuildMdlForNonPagedPool(M) PywskMmBuildMdlForNonPagedPool((M), PYWSK_SITE)
#define MmProbeAndLockPages(M, A, O) PywskMmProbeAndLockPages((M), (A), (O), PYWSK_SITE)
#define MmUnlockPages(M) PywskMmUnlockPages((M), PYWSK_SITE)
#define MmGetSystemAddressForMdlSafe(M, P) PywskMmGetSystemAddressForMdlSafe((M), (P), PYWSK_SITE)

/* ---- pool ---- */
typedef enum _POOL_TYPE {
    NonPagedPool = 0, NonPagedPoolExecute = 0, PagedPool = 1,
    NonPagedPoolMustSucceed = 2, NonPagedPoolCacheAligned = 4, PagedPoolCacheAligned = 5,
    NonPagedPoolNx = 512, NonPagedPoolNxCacheAligned = 516,
} POOL_TYPE;
typedef ULONG64 POOL_FLAGS;
#define POOL_FLAG_UNINITIALIZED 0x0000000000000002ULL
#define POOL_FLAG_CACHE_ALIGNED 0x0000000000000008ULL
#define POOL_FLAG_RAISE_ON_FAILURE 0x0000000000000020ULL
#define POOL_FLAG_NON_PAGED 0x0000000000000040ULL
#define POOL_FLAG_NON_PAGED_EXECUTE 0x0000000000000080ULL
#define POOL_FLAG_PAGED 0x0000000000000100ULL
typedef enum _EX_POOL_PRIORITY { LowPoolPriority, NormalPoolPriority = 16, HighPoolPriority = 32 } EX_POOL_PRIORITY;
PVOID PywskExAllocatePool(ULONG Function, ULONG64 PoolTypeOrFlags, SIZE_T NumberOfBytes, ULONG Tag, PYWSK_SITE_PARAMS);
VOID PywskExFreePool(PVOID P, ULONG Tag, int HasTag, PYWSK_SITE_PARAMS);
PVOID ExAllocatePoolWithTag(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag);
PVOID ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag);
PVOID ExAllocatePoolZero(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag);
PVOID ExAllocatePoolUninitialized(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag);
VOID ExFreePoolWithTag(PVOID P, ULONG Tag);
VOID ExFreePool(PVOID P);
#define ExAllocatePoolWithTag(T, N, G) PywskExAllocatePool(0, (T), (N), (G), PYWSK_SITE)
#define ExAllocatePoolUninitialized(T, N, G) PywskExAllocatePool(0, (T), (N), (G), PYWSK_SITE)
#define ExAllocatePoolZero(T, N, G) PywskExAllocatePool(1, (T), (N), (G), PYWSK_SITE)
#define ExAllocatePool2(F, N, G) PywskExAllocatePool(2, (F), (N), (G), PYWSK_SITE)
#define ExAllocatePoolWithTagPriority(T, N, G, P) PywskExAllocatePool(0, (T), (N), (G), PYWSK_SITE)
#define ExFreePoolWithTag(P, G) PywskExFreePool((P), (G), 1, PYWSK_SITE)
#define ExFreePool(P) PywskExFreePool((P), 0, 0, PYWSK_SITE)

/* lookaside lists: fixed-size blocks from pool (no caching: every block is tracked) */
typedef PVOID ALLOCATE_FUNCTION_EX(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag, PVOID Lookaside);
typedef VOID FREE_FUNCTION_EX(PVOID Buffer, PVOID Lookaside);
typedef struct _LOOKASIDE_LIST_EX {
    POOL_TYPE PoolType; SIZE_T Size; ULONG Tag; ULONG Flags;
    ALLOCATE_FUNCTION_EX *Allocate; FREE_FUNCTION_EX *Free;
} LOOKASIDE_LIST_EX, *PLOOKASIDE_LIST_EX, NPAGED_LOOKASIDE_LIST, *PNPAGED_LOOKASIDE_LIST;
NTSTATUS ExInitializeLookasideListEx(PLOOKASIDE_LIST_EX Lookaside, ALLOCATE_FUNCTION_EX *Allocate,
    FREE_FUNCTION_EX *Free, POOL_TYPE PoolType, ULONG Flags, SIZE_T Size, ULONG Tag, USHORT Depth);
VOID ExDeleteLookasideListEx(PLOOKASIDE_LIST_EX Lookaside);
#define ExAllocateFromLookasideListEx(L) \
    ((L)->Allocate ? (L)->Allocate((L)->PoolType, (L)->Size, (L)->Tag, (L)) \
                   : PywskExAllocatePool(0, (L)->PoolType, (L)->Size, (L)->Tag, PYWSK_SITE))
#define ExFreeToLookasideListEx(L, B) \
    ((L)->Free ? (L)->Free((B), (L)) : PywskExFreePool((B), (L)->Tag, 1, PYWSK_SITE))
#define ExInitializeNPagedLookasideList(L, A, F, Fl, S, T, D) \
    ((void)ExInitializeLookasideListEx((L), NULL, NULL, NonPagedPoolNx, (Fl), (S), (T), (D)))
#define ExDeleteNPagedLookasideList ExDeleteLookasideListEx
#define ExAllocateFromNPagedLookasideList ExAllocateFromLookasideListEx
#define ExFreeToNPagedLookasideList ExFreeToLookasideListEx

/* ---- dispatcher objects: events and waits ---- */
typedef enum _EVENT_TYPE { NotificationEvent, SynchronizationEvent } EVENT_TYPE;
typedef enum _WAIT_TYPE { WaitAll, WaitAny } WAIT_TYPE;
typedef enum _KWAIT_REASON { Executive = 0, UserRequest = 6, WrQueue = 15 } KWAIT_REASON;
typedef struct _DISPATCHER_HEADER {
    UCHAR Type; UCHAR Signalling; UCHAR Size; UCHAR Reserved1;
    LONG SignalState;
    LIST_ENTRY WaitListHead;           /* private */
} DISPATCHER_HEADER;
typedef struct _KEVENT { DISPATCHER_HEADER Header; } KEVENT, *PKEVENT, *PRKEVENT;
typedef struct _KWAIT_BLOCK { PVOID Private_[6]; } KWAIT_BLOCK, *PKWAIT_BLOCK;
#define THREAD_WAIT_OBJECTS 3
#define MAXIMUM_WAIT_OBJECTS 64
VOID PywskKeInitializeEvent(PRKEVENT Event, EVENT_TYPE Type, BOOLEAN State, PYWSK_SITE_PARAMS);
LONG PywskKeSetEvent(PRKEVENT Event, KPRIORITY Increment, BOOLEAN Wait, PYWSK_SITE_PARAMS);
LONG PywskKeResetEvent(PRKEVENT Event, int Clear, PYWSK_SITE_PARAMS);
LONG PywskKeReadStateEvent(PRKEVENT Event, PYWSK_SITE_PARAMS);
NTSTATUS PywskKeWaitForSingleObject(PVOID Object, KWAIT_REASON WaitReason, KPROCESSOR_MODE WaitMode,
    BOOLEAN Alertable, PLARGE_INTEGER Timeout, PYWSK_SITE_PARAMS);
NTSTATUS PywskKeWaitForMultipleObjects(ULONG Count, PVOID Object[], WAIT_TYPE WaitType,
    KWAIT_REASON WaitReason, KPROCESSOR_MODE WaitMode, BOOLEAN Alertable, PLARGE_INTEGER Timeout,
    PKWAIT_BLOCK WaitBlockArray, PYWSK_SITE_PARAMS);
VOID KeInitializeEvent(PRKEVENT Event, EVENT_TYPE Type, BOOLEAN State);
LONG KeSetEvent(PRKEVENT Event, KPRIORITY Increment, BOOLEAN Wait);
LONG KeResetEvent(PRKEVENT Event);
VOID KeClearEvent(PRKEVENT Event);
LONG KeReadStateEvent(PRKEVENT Event);
NTSTATUS KeWaitForSingleObject(PVOID Object, KWAIT_REASON WaitReason, KPROCESSOR_MODE WaitMode,
    BOOLEAN Alertable, PLARGE_INTEGER Timeout);
NTSTATUS KeWaitForMultipleObjects(ULONG Count, PVOID Object[], WAIT_TYPE WaitType,
    KWAIT_REASON WaitReason, KPROCESSOR_MODE WaitMode, BOOLEAN Alertable, PLARGE_INTEGER Timeout,
    PKWAIT_BLOCK WaitBlockArray);
#define KeInitializeEvent(E, T, S) PywskKeInitializeEvent((E), (T), (S), PYWSK_SITE)
#define KeSetEvent(E, I, W) PywskKeSetEvent((E), (I), (W), PYWSK_SITE)
#define KeResetEvent(E) PywskKeResetEvent((E), 0, PYWSK_SITE)
#define KeClearEvent(E) ((void)PywskKeResetEvent((E), 1, PYWSK_SITE))
#define KeReadStateEvent(E) PywskKeReadStateEvent((E), PYWSK_SITE)
#define KeWaitForSingleObject(O, R, M, A, T) PywskKeWaitForSingleObject((O), (R), (M), (A), (T), PYWSK_SITE)
#define KeWaitForMultipleObjects(C, O, T, R, M, A, Ti, W) \
    PywskKeWaitForMultipleObjects((C), (O), (T), (R), (M), (A), (Ti), (W), PYWSK_SITE)
VOID KeQuerySystemTime(PLARGE_INTEGER CurrentTime);
VOID KeQuerySystemTimePrecise(PLARGE_INTEGER CurrentTime);
ULONGLONG KeQueryInterruptTime(void);
NTSTATUS KeDelayExecutionThread(KPROCESSOR_MODE WaitMode, BOOLEAN Alertable, PLARGE_INTEGER Interval);

/* ---- IRQL and spin locks ---- */
KIRQL KeGetCurrentIrql(void);
VOID KeRaiseIrql(KIRQL NewIrql, PKIRQL OldIrql);
KIRQL KeRaiseIrqlToDpcLevel(void);
VOID KeLowerIrql(KIRQL NewIrql);
VOID KeInitializeSpinLock(PKSPIN_LOCK SpinLock);
VOID KeAcquireSpinLock(PKSPIN_LOCK SpinLock, PKIRQL OldIrql);
VOID KeReleaseSpinLock(PKSPIN_LOCK SpinLock, KIRQL NewIrql);
VOID KeAcquireSpinLockAtDpcLevel(PKSPIN_LOCK SpinLock);
VOID KeReleaseSpinLockFromDpcLevel(PKSPIN_LOCK SpinLock);

/* ---- system threads and object references ---- */
typedef VOID KSTART_ROUTINE(PVOID StartContext);
typedef KSTART_ROUTINE *PKSTART_ROUTINE;
typedef struct _OBJECT_ATTRIBUTES { ULONG Length; HANDLE RootDirectory; PUNICODE_STRING ObjectName; ULONG Attributes; PVOID SecurityDescriptor; PVOID SecurityQualityOfService; } OBJECT_ATTRIBUTES, *POBJECT_ATTRIBUTES;
typedef struct _CLIENT_ID { HANDLE UniqueProcess; HANDLE UniqueThread; } CLIENT_ID, *PCLIENT_ID;
typedef PVOID POBJECT_TYPE;
#define OBJ_KERNEL_HANDLE 0x00000200L
#define THREAD_ALL_ACCESS 0x001FFFFFL
#define SYNCHRONIZE 0x00100000L
#define InitializeObjectAttributes(p, n, a, r, s) \
    do { (p)->Length = sizeof(OBJECT_ATTRIBUTES); (p)->RootDirectory = (r); (p)->Attributes = (a); \
         (p)->ObjectName = (n); (p)->SecurityDescriptor = (s); (p)->SecurityQualityOfService = NULL; } while (0)
extern POBJECT_TYPE *PsThreadType;
NTSTATUS PsCreateSystemThread(PHANDLE ThreadHandle, ULONG DesiredAccess, POBJECT_ATTRIBUTES ObjectAttributes,
    HANDLE ProcessHandle, PCLIENT_ID ClientId, PKSTART_ROUTINE StartRoutine, PVOID StartContext);
NTSTATUS PsTerminateSystemThread(NTSTATUS ExitStatus);
NTSTATUS ObReferenceObjectByHandle(HANDLE Handle, ACCESS_MASK DesiredAccess, POBJECT_TYPE ObjectType,
    KPROCESSOR_MODE AccessMode, PVOID *Object, PVOID HandleInformation);
VOID ObDereferenceObject(PVOID Object);
#define ObfDereferenceObject ObDereferenceObject
NTSTATUS ZwClose(HANDLE Handle);
PETHREAD PsGetCurrentThread(void);

/* ---- debug output: DbgPrint goes to Python logging (the runner prints it on stderr) ---- */
#define DPFLTR_ERROR_LEVEL 0
#define DPFLTR_WARNING_LEVEL 1
#define DPFLTR_TRACE_LEVEL 2
#define DPFLTR_INFO_LEVEL 3
#define DPFLTR_IHVNETWORK_ID 78
#define DPFLTR_IHVDRIVER_ID 77
#define DPFLTR_DEFAULT_ID 101
ULONG DbgPrint(PCSTR Format, ...) __attribute__((format(printf, 1, 2)));
ULONG DbgPrintEx(ULONG ComponentId, ULONG Level, PCSTR Format, ...) __attribute__((format(printf, 3, 4)));
VOID DbgBreakPoint(void);
#if DBG || !defined(NDEBUG)
#define KdPrint(_x_) DbgPrint _x_
#define KdPrintEx(_x_) DbgPrintEx _x_
#else
#define KdPrint(_x_) ((void)0)
#define KdPrintEx(_x_) ((void)0)
#endif
VOID PywskAssertFailed(PCSTR Expression, PYWSK_SITE_PARAMS);
#define ASSERT(e) ((e) ? (void)0 : PywskAssertFailed(#e, PYWSK_SITE))
#define NT_ASSERT(e) ASSERT(e)
VOID PywskKeBugCheckEx(ULONG Code, ULONG_PTR P1, ULONG_PTR P2, ULONG_PTR P3, ULONG_PTR P4, PYWSK_SITE_PARAMS);
#define KeBugCheckEx(C, A, B, D, E) PywskKeBugCheckEx((C), (A), (B), (D), (E), PYWSK_SITE)
#define KeBugCheck(C) PywskKeBugCheckEx((C), 0, 0, 0, 0, PYWSK_SITE)

/* ---- structured exception handling: a macro-based substitute (docs/c-drivers.md) ----
 * __try { MmProbeAndLockPages(...); } __except (EXCEPTION_EXECUTE_HANDLER) { ... }
 * catches what the runtime raises (ExRaiseStatus, MmProbeAndLockPages' failures) in
 * calls made directly inside the __try block, on the same thread.  It does not catch
 * hardware faults (a bad pointer still crashes), and the filter expression is evaluated
 * but its value is ignored (the handler always runs).  No __finally, no __leave. */
#include <setjmp.h>
typedef struct _PYWSK_TRY_FRAME { jmp_buf Jump; struct _PYWSK_TRY_FRAME *Outer; NTSTATUS Code; int State; } PYWSK_TRY_FRAME;
int PywskTryPush(PYWSK_TRY_FRAME *Frame);
int PywskTryBody(PYWSK_TRY_FRAME *Frame);
int PywskTryHandler(PYWSK_TRY_FRAME *Frame, LONG Filter);
#define EXCEPTION_EXECUTE_HANDLER 1
#define EXCEPTION_CONTINUE_SEARCH 0
#define EXCEPTION_CONTINUE_EXECUTION (-1)
#define __try \
    for (PYWSK_TRY_FRAME pywsk_try_ = { .State = 0 }; PywskTryPush(&pywsk_try_);) \
        if (setjmp(pywsk_try_.Jump) == 0) \
            for (; PywskTryBody(&pywsk_try_);)
#define __except(filter) \
        else for (; PywskTryHandler(&pywsk_try_, (LONG)(filter));)
#define GetExceptionCode() (pywsk_try_.Code)
VOID ExRaiseStatus(NTSTATUS Status);
VOID PywskExRaiseStatus(NTSTATUS Status, PYWSK_SITE_PARAMS);
#define ExRaiseStatus(S) PywskExRaiseStatus((S), PYWSK_SITE)

#ifdef __cplusplus
}
#endif
#endif /* PYWSK_WDM_H */
