/* runtime.c - the C side of pywsk's driver runtime: the wdm.h entry points a driver calls.
 *
 * Each entry point keeps the C structures (IRP, MDL, KEVENT) the driver sees, and forwards
 * to pywsk's Python implementation on the object behind the same address (bridge.h: the
 * cffi "extern Python" functions; pywsk.cdriver.runtime implements them).  The C file and
 * line of the driver's call go along, so the verifier can name them.
 *
 * Stops: when pywsk refuses a call with a bug check (or the driver calls KeBugCheckEx),
 * Python marks the driver stopped.  Every entry point checks the mark after its Python call
 * and, if set, unwinds (longjmp) to the innermost place where Python entered the driver on
 * this thread (PywskRtInvoke).  So a stopped driver runs no more of its own code; Python
 * reports the stop.  Only C frames of the driver are skipped by the unwind. */
#define _GNU_SOURCE                     /* MAP_FIXED_NOREPLACE */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "wsk.h"
#include "bridge.h"

/* The functions are defined under their WDK names below; the headers' macros are not wanted here. */
#undef IoAllocateIrp
#undef IoInitializeIrp
#undef IoFreeIrp
#undef IoReuseIrp
#undef IoSetCompletionRoutine
#undef IoCancelIrp
#undef IoAllocateMdl
#undef IoFreeMdl
#undef MmBuildMdlForNonPagedPool
#undef MmProbeAndLockPages
#undef MmUnlockPages
#undef MmGetSystemAddressForMdlSafe
#undef ExAllocatePoolWithTag
#undef ExAllocatePool2
#undef ExAllocatePoolZero
#undef ExAllocatePoolUninitialized
#undef ExFreePoolWithTag
#undef ExFreePool
#undef KeInitializeEvent
#undef KeSetEvent
#undef KeResetEvent
#undef KeClearEvent
#undef KeReadStateEvent
#undef KeWaitForSingleObject
#undef KeWaitForMultipleObjects
#undef WskRegister
#undef WskCaptureProviderNPI
#undef WskReleaseProviderNPI
#undef WskDeregister
#undef ExRaiseStatus

#define NO_SITE NULL, 0, NULL
/* a call site as the Python side takes it */
#define SITE (uintptr_t)File_, Line_, (uintptr_t)Func_
#define NO_PY_SITE 0, 0, 0
#if defined(__x86_64__) || defined(__i386__)
#define CPU_PAUSE() __builtin_ia32_pause()
#else
#define CPU_PAUSE() ((void)0)
#endif

/* ---- stops: entries from Python and the unwind ---- */
typedef struct _PYWSK_ENTRY { jmp_buf Jump; struct _PYWSK_ENTRY *Outer; } PYWSK_ENTRY;
static __thread PYWSK_ENTRY *EntryTop;
volatile int PywskRtStopped;

static void Unwind(void)
{
    PYWSK_ENTRY *Entry = EntryTop;
    if (Entry == NULL) {
        /* A thread the runtime did not start: nothing to unwind to. */
        fputs("pywsk: the driver was stopped on a thread with no entry to unwind to\n", stderr);
        abort();
    }
    EntryTop = Entry->Outer;
    longjmp(Entry->Jump, 1);
}
#define CHECK() do { if (PywskRtStopped) Unwind(); } while (0)

/* Python enters the driver only here: call Function with up to eight integer or pointer
 * arguments.  Returns 0 and the result, or 1 when the driver was stopped. */
int PywskRtInvoke(void *Function, const uintptr_t *Args, intptr_t *Result)
{
    PYWSK_ENTRY Entry;
    Entry.Outer = EntryTop;
    if (setjmp(Entry.Jump) != 0)
        return 1;                       /* Unwind() restored EntryTop */
    if (PywskRtStopped)
        return 1;
    EntryTop = &Entry;
    *Result = ((intptr_t (*)(uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t,
                             uintptr_t))Function)(Args[0], Args[1], Args[2], Args[3], Args[4], Args[5], Args[6], Args[7]);
    EntryTop = Entry.Outer;
    return 0;
}

void PywskRtRelease(void *Memory) { free(Memory); }

/* ---- freed pool: no-access pages, as the Driver Verifier's special pool ----
 * A pool block is an anonymous mapping of whole pages.  When the driver frees one, Python
 * unmaps it and asks for the range back as PROT_NONE (PywskRtQuarantine), with a report
 * of where it was made and freed; a later touch faults, and the SIGSEGV handler prints
 * the report before the process dies of the fault (nothing can resume a driver that
 * touched freed memory).  Faults elsewhere go to the handler that was there before. */
#define QUARANTINE_SLOTS 1024
typedef struct { uintptr_t Start; size_t Size; char *Report; } PYWSK_FREED;
static PYWSK_FREED Freed[QUARANTINE_SLOTS];
static pthread_mutex_t FreedLock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction PreviousSegv;
static int SegvInstalled;

static void OnSegv(int Signal, siginfo_t *Info, void *Context)
{
    uintptr_t At = (uintptr_t)Info->si_addr;
    for (int i = 0; i < QUARANTINE_SLOTS; i++) {
        PYWSK_FREED *F = &Freed[i];
        uintptr_t Start = __atomic_load_n(&F->Start, __ATOMIC_ACQUIRE);
        if (Start && At >= Start && At < Start + F->Size && F->Report) {
            static const char Head[] = "pywsk: bug check 0xD5 (DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL): ";
            ssize_t Ignored = write(2, Head, sizeof Head - 1);
            Ignored = write(2, F->Report, strlen(F->Report));
            Ignored = write(2, "\n", 1);
            (void)Ignored;
            signal(SIGSEGV, SIG_DFL);           /* the access faults again, and ends it */
            return;
        }
    }
    if (PreviousSegv.sa_flags & SA_SIGINFO && PreviousSegv.sa_sigaction != NULL) {
        PreviousSegv.sa_sigaction(Signal, Info, Context);
        return;
    }
    sigaction(SIGSEGV, &PreviousSegv, NULL);    /* faults again under the previous handler */
}

/* Keep [Start, Start + Size) unmapped-but-reserved; 1 if it is, 0 if the range was taken. */
int PywskRtQuarantine(void *Start, size_t Size, const char *Report)
{
    void *Reserved = mmap(Start, Size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_NORESERVE, -1, 0);
    if (Reserved == MAP_FAILED) return 0;
    if (Reserved != Start) { munmap(Reserved, Size); return 0; }   /* an old kernel ignored the hint */
    pthread_mutex_lock(&FreedLock);
    if (!SegvInstalled) {
        struct sigaction Action;
        memset(&Action, 0, sizeof Action);
        Action.sa_sigaction = OnSegv;
        Action.sa_flags = SA_SIGINFO | SA_NODEFER;
        sigemptyset(&Action.sa_mask);
        sigaction(SIGSEGV, &Action, &PreviousSegv);
        SegvInstalled = 1;
    }
    int Slot = -1;
    for (int i = 0; i < QUARANTINE_SLOTS && Slot < 0; i++)
        if (Freed[i].Start == 0) Slot = i;
    if (Slot >= 0) {
        free(Freed[Slot].Report);       /* the slot's previous report (kept until now) */
        Freed[Slot].Size = Size;
        Freed[Slot].Report = strdup(Report);
        __atomic_store_n(&Freed[Slot].Start, (uintptr_t)Start, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&FreedLock);
    if (Slot < 0) { munmap(Start, Size); return 0; }
    return 1;
}

/* The range leaves the quarantine: its addresses can be mapped again. */
void PywskRtUnquarantine(void *Start)
{
    pthread_mutex_lock(&FreedLock);
    for (int i = 0; i < QUARANTINE_SLOTS; i++)
        if (Freed[i].Start == (uintptr_t)Start) {
            __atomic_store_n(&Freed[i].Start, 0, __ATOMIC_RELEASE);
            munmap(Start, Freed[i].Size);
            /* The report stays allocated: a handler running now may still read it. */
        }
    pthread_mutex_unlock(&FreedLock);
}
void PywskRtCheck(void) { CHECK(); }
void *PywskRtNextLocation(void *Irp) { return IoGetNextIrpStackLocation((PIRP)Irp); }

/* ---- structured exceptions (the __try/__except substitute of wdm.h) ---- */
static __thread PYWSK_TRY_FRAME *TryTop;

int PywskTryPush(PYWSK_TRY_FRAME *Frame)
{
    if (Frame->State == 0) {            /* entering */
        Frame->Outer = TryTop;
        TryTop = Frame;
        Frame->State = 1;
        return 1;
    }
    if (Frame->State == 1)              /* left the body with break */
        TryTop = Frame->Outer;
    return 0;
}

int PywskTryBody(PYWSK_TRY_FRAME *Frame)
{
    if (Frame->State == 1) { Frame->State = 5; return 1; }
    TryTop = Frame->Outer;              /* the body ran to its end */
    Frame->State = 3;
    return 0;
}

int PywskTryHandler(PYWSK_TRY_FRAME *Frame, LONG Filter)
{
    (void)Filter;
    if (Frame->State == 2) { Frame->State = 4; return 1; }
    Frame->State = 3;
    return 0;
}

static void RaiseStatus(NTSTATUS Status, PYWSK_SITE_PARAMS)
{
    PYWSK_TRY_FRAME *Frame = TryTop;
    if (Frame == NULL) {
        pyb_Stop(1, Status, "an exception was raised and no __try block handles it", SITE);
        CHECK();
        return;
    }
    TryTop = Frame->Outer;
    Frame->Code = Status;
    Frame->State = 2;
    longjmp(Frame->Jump, 1);
}

VOID ExRaiseStatus(NTSTATUS Status) { RaiseStatus(Status, NO_SITE); }
VOID PywskExRaiseStatus(NTSTATUS Status, PYWSK_SITE_PARAMS) { RaiseStatus(Status, File_, Line_, Func_); }

/* ---- IRPs: the driver's struct; the pywsk IRP behind its address ---- */
USHORT IoSizeOfIrp(CCHAR StackSize)
{
    return (USHORT)(sizeof(IRP) + (size_t)(UCHAR)StackSize * sizeof(IO_STACK_LOCATION));
}

static void ResetIrp(PIRP Irp, USHORT Size, CCHAR StackSize)
{
    memset(Irp, 0, Size);
    Irp->Type = 6;                      /* IO_TYPE_IRP */
    Irp->Size = Size;
    Irp->StackCount = StackSize;
    Irp->CurrentLocation = (CHAR)(StackSize + 1);
    Irp->Tail.Overlay.CurrentStackLocation = (PIO_STACK_LOCATION)(Irp + 1) + (UCHAR)StackSize;
    InitializeListHead(&Irp->ThreadListEntry);
}

PIRP PywskIoAllocateIrp(CCHAR StackSize, BOOLEAN ChargeQuota, PYWSK_SITE_PARAMS)
{
    USHORT Size = IoSizeOfIrp(StackSize);
    PIRP Irp = malloc(Size);
    if (Irp == NULL) return NULL;
    ResetIrp(Irp, Size, StackSize);
    int Ok = pyb_IoAllocateIrp(Irp, StackSize, ChargeQuota, SITE);
    CHECK();
    if (!Ok) { free(Irp); return NULL; }
    return Irp;
}
PIRP IoAllocateIrp(CCHAR StackSize, BOOLEAN ChargeQuota) { return PywskIoAllocateIrp(StackSize, ChargeQuota, NO_SITE); }

VOID PywskIoInitializeIrp(PIRP Irp, USHORT PacketSize, CCHAR StackSize, PYWSK_SITE_PARAMS)
{
    if (pyb_IoInitializeIrp(Irp, PacketSize, StackSize, IoSizeOfIrp(StackSize), SITE))
        ResetIrp(Irp, PacketSize, StackSize);
    CHECK();
}
VOID IoInitializeIrp(PIRP Irp, USHORT PacketSize, CCHAR StackSize) { PywskIoInitializeIrp(Irp, PacketSize, StackSize, NO_SITE); }

/* Freed IRPs are quarantined by Python (not returned to malloc at once), so a later use
 * still reaches the freed pywsk IRP and its bug check. */
VOID PywskIoFreeIrp(PIRP Irp, PYWSK_SITE_PARAMS) { pyb_IoFreeIrp(Irp, SITE); CHECK(); }
VOID IoFreeIrp(PIRP Irp) { PywskIoFreeIrp(Irp, NO_SITE); }

VOID PywskIoReuseIrp(PIRP Irp, NTSTATUS Status, PYWSK_SITE_PARAMS)
{
    if (pyb_IoReuseIrp((uintptr_t)Irp, Status, SITE)) {
        CCHAR StackCount = Irp->StackCount;
        USHORT Size = Irp->Size;
        UCHAR AllocationFlags = Irp->AllocationFlags;
        ResetIrp(Irp, Size, StackCount);
        Irp->AllocationFlags = AllocationFlags;
        Irp->IoStatus.Status = Status;
    }
    CHECK();
}
VOID IoReuseIrp(PIRP Irp, NTSTATUS Status) { PywskIoReuseIrp(Irp, Status, NO_SITE); }

VOID PywskIoSetCompletionRoutine(PIRP Irp, PIO_COMPLETION_ROUTINE Routine, PVOID Context,
    BOOLEAN OnSuccess, BOOLEAN OnError, BOOLEAN OnCancel, PYWSK_SITE_PARAMS)
{
    if (pyb_IoSetCompletionRoutine((uintptr_t)Irp, Routine != NULL, OnSuccess, OnError, OnCancel, SITE)) {
        PIO_STACK_LOCATION Next = IoGetNextIrpStackLocation(Irp);
        Next->CompletionRoutine = Routine;
        Next->Context = Context;
        Next->Control = (UCHAR)((OnSuccess ? SL_INVOKE_ON_SUCCESS : 0) | (OnError ? SL_INVOKE_ON_ERROR : 0)
                                | (OnCancel ? SL_INVOKE_ON_CANCEL : 0));
    }
    CHECK();
}
VOID IoSetCompletionRoutine(PIRP Irp, PIO_COMPLETION_ROUTINE Routine, PVOID Context,
    BOOLEAN OnSuccess, BOOLEAN OnError, BOOLEAN OnCancel)
{ PywskIoSetCompletionRoutine(Irp, Routine, Context, OnSuccess, OnError, OnCancel, NO_SITE); }

BOOLEAN PywskIoCancelIrp(PIRP Irp, PYWSK_SITE_PARAMS)
{
    BOOLEAN Result = (BOOLEAN)pyb_IoCancelIrp(Irp, SITE);
    CHECK();
    return Result;
}
BOOLEAN IoCancelIrp(PIRP Irp) { return PywskIoCancelIrp(Irp, NO_SITE); }

/* ---- MDLs ---- */
PMDL PywskIoAllocateMdl(PVOID Va, ULONG Length, BOOLEAN Secondary, BOOLEAN ChargeQuota, PIRP Irp, PYWSK_SITE_PARAMS)
{
    PMDL Mdl = calloc(1, sizeof *Mdl);
    if (Mdl == NULL) return NULL;
    Mdl->Size = (CSHORT)sizeof *Mdl;
    Mdl->StartVa = (PVOID)((uintptr_t)Va & ~(uintptr_t)(PAGE_SIZE - 1));
    Mdl->ByteOffset = (ULONG)((uintptr_t)Va & (PAGE_SIZE - 1));
    Mdl->ByteCount = Length;
    int Ok = pyb_IoAllocateMdl(Mdl, Va, Length, Secondary, ChargeQuota, Irp, SITE);
    CHECK();
    if (!Ok) { free(Mdl); return NULL; }
    if (Irp != NULL) {
        if (!Secondary) Irp->MdlAddress = Mdl;
        else { PMDL Last = Irp->MdlAddress; while (Last->Next) Last = Last->Next; Last->Next = Mdl; }
    }
    return Mdl;
}
PMDL IoAllocateMdl(PVOID Va, ULONG Length, BOOLEAN Secondary, BOOLEAN ChargeQuota, PIRP Irp)
{ return PywskIoAllocateMdl(Va, Length, Secondary, ChargeQuota, Irp, NO_SITE); }

VOID PywskIoFreeMdl(PMDL Mdl, PYWSK_SITE_PARAMS) { pyb_IoFreeMdl(Mdl, SITE); CHECK(); }
VOID IoFreeMdl(PMDL Mdl) { PywskIoFreeMdl(Mdl, NO_SITE); }

static NTSTATUS MdlOp(int Op, PMDL Mdl, int Arg, PYWSK_SITE_PARAMS)
{
    NTSTATUS Status = pyb_MdlOp(Op, Mdl, Arg, SITE);
    CHECK();
    return Status;
}
VOID PywskMmBuildMdlForNonPagedPool(PMDL Mdl, PYWSK_SITE_PARAMS)
{
    if (NT_SUCCESS(MdlOp(0, Mdl, 0, File_, Line_, Func_))) {
        Mdl->MdlFlags |= MDL_SOURCE_IS_NONPAGED_POOL;
        Mdl->MappedSystemVa = (PCHAR)Mdl->StartVa + Mdl->ByteOffset;
    }
}
VOID MmBuildMdlForNonPagedPool(PMDL Mdl) { PywskMmBuildMdlForNonPagedPool(Mdl, NO_SITE); }
VOID PywskMmProbeAndLockPages(PMDL Mdl, KPROCESSOR_MODE Mode, LOCK_OPERATION Operation, PYWSK_SITE_PARAMS)
{
    (void)Mode;
    NTSTATUS Status = MdlOp(1, Mdl, Operation, File_, Line_, Func_);
    if (!NT_SUCCESS(Status)) RaiseStatus(Status, File_, Line_, Func_);
    else Mdl->MdlFlags |= MDL_PAGES_LOCKED;
}
VOID MmProbeAndLockPages(PMDL Mdl, KPROCESSOR_MODE Mode, LOCK_OPERATION Operation)
{ PywskMmProbeAndLockPages(Mdl, Mode, Operation, NO_SITE); }
VOID PywskMmUnlockPages(PMDL Mdl, PYWSK_SITE_PARAMS)
{
    if (NT_SUCCESS(MdlOp(2, Mdl, 0, File_, Line_, Func_))) Mdl->MdlFlags &= ~MDL_PAGES_LOCKED;
}
VOID MmUnlockPages(PMDL Mdl) { PywskMmUnlockPages(Mdl, NO_SITE); }
PVOID PywskMmGetSystemAddressForMdlSafe(PMDL Mdl, ULONG Priority, PYWSK_SITE_PARAMS)
{
    if (!NT_SUCCESS(MdlOp(3, Mdl, (int)Priority, File_, Line_, Func_))) return NULL;
    Mdl->MdlFlags |= MDL_MAPPED_TO_SYSTEM_VA;
    Mdl->MappedSystemVa = (PCHAR)Mdl->StartVa + Mdl->ByteOffset;
    return Mdl->MappedSystemVa;
}
PVOID MmGetSystemAddressForMdlSafe(PMDL Mdl, ULONG Priority) { return PywskMmGetSystemAddressForMdlSafe(Mdl, Priority, NO_SITE); }

/* ---- pool ---- */
PVOID PywskExAllocatePool(ULONG Function, ULONG64 TypeOrFlags, SIZE_T Size, ULONG Tag, PYWSK_SITE_PARAMS)
{
    PVOID P = pyb_ExAllocatePool((int)Function, TypeOrFlags, Size, Tag, SITE);
    CHECK();
    return P;
}
PVOID ExAllocatePoolWithTag(POOL_TYPE Type, SIZE_T Size, ULONG Tag) { return PywskExAllocatePool(0, Type, Size, Tag, NO_SITE); }
PVOID ExAllocatePoolUninitialized(POOL_TYPE Type, SIZE_T Size, ULONG Tag) { return PywskExAllocatePool(0, Type, Size, Tag, NO_SITE); }
PVOID ExAllocatePoolZero(POOL_TYPE Type, SIZE_T Size, ULONG Tag) { return PywskExAllocatePool(1, Type, Size, Tag, NO_SITE); }
PVOID ExAllocatePool2(POOL_FLAGS Flags, SIZE_T Size, ULONG Tag) { return PywskExAllocatePool(2, Flags, Size, Tag, NO_SITE); }
VOID PywskExFreePool(PVOID P, ULONG Tag, int HasTag, PYWSK_SITE_PARAMS) { pyb_ExFreePool(P, Tag, HasTag, SITE); CHECK(); }
VOID ExFreePoolWithTag(PVOID P, ULONG Tag) { PywskExFreePool(P, Tag, 1, NO_SITE); }
VOID ExFreePool(PVOID P) { PywskExFreePool(P, 0, 0, NO_SITE); }

NTSTATUS ExInitializeLookasideListEx(PLOOKASIDE_LIST_EX L, ALLOCATE_FUNCTION_EX *Allocate,
    FREE_FUNCTION_EX *Free, POOL_TYPE PoolType, ULONG Flags, SIZE_T Size, ULONG Tag, USHORT Depth)
{
    (void)Depth;
    L->PoolType = PoolType; L->Size = Size; L->Tag = Tag; L->Flags = Flags;
    L->Allocate = Allocate; L->Free = Free;
    return STATUS_SUCCESS;
}
VOID ExDeleteLookasideListEx(PLOOKASIDE_LIST_EX L) { (void)L; }

/* ---- events and waits ---- */
VOID PywskKeInitializeEvent(PRKEVENT Event, EVENT_TYPE Type, BOOLEAN State, PYWSK_SITE_PARAMS)
{
    memset(Event, 0, sizeof *Event);
    Event->Header.Type = (UCHAR)Type;
    pyb_KeInitializeEvent(Event, Type, State, SITE);
    CHECK();
}
VOID KeInitializeEvent(PRKEVENT Event, EVENT_TYPE Type, BOOLEAN State) { PywskKeInitializeEvent(Event, Type, State, NO_SITE); }
static LONG EventOp(int Op, PRKEVENT Event, PYWSK_SITE_PARAMS)
{
    LONG Previous = pyb_KeEventOp(Op, Event, SITE);
    CHECK();
    return Previous;
}
LONG PywskKeSetEvent(PRKEVENT Event, KPRIORITY Increment, BOOLEAN Wait, PYWSK_SITE_PARAMS)
{ (void)Increment; (void)Wait; return EventOp(0, Event, File_, Line_, Func_); }
LONG PywskKeResetEvent(PRKEVENT Event, int Clear, PYWSK_SITE_PARAMS) { return EventOp(Clear ? 2 : 1, Event, File_, Line_, Func_); }
LONG PywskKeReadStateEvent(PRKEVENT Event, PYWSK_SITE_PARAMS) { return EventOp(3, Event, File_, Line_, Func_); }
LONG KeSetEvent(PRKEVENT Event, KPRIORITY Increment, BOOLEAN Wait) { return PywskKeSetEvent(Event, Increment, Wait, NO_SITE); }
LONG KeResetEvent(PRKEVENT Event) { return EventOp(1, Event, NO_SITE); }
VOID KeClearEvent(PRKEVENT Event) { EventOp(2, Event, NO_SITE); }
LONG KeReadStateEvent(PRKEVENT Event) { return EventOp(3, Event, NO_SITE); }

NTSTATUS PywskKeWaitForMultipleObjects(ULONG Count, PVOID Object[], WAIT_TYPE WaitType,
    KWAIT_REASON WaitReason, KPROCESSOR_MODE WaitMode, BOOLEAN Alertable, PLARGE_INTEGER Timeout,
    PKWAIT_BLOCK WaitBlockArray, PYWSK_SITE_PARAMS)
{
    NTSTATUS Status = pyb_KeWait(Count, Object, WaitType, WaitReason, WaitMode, Alertable,
                                 Timeout != NULL, Timeout ? Timeout->QuadPart : 0,
                                 WaitBlockArray != NULL, SITE);
    CHECK();
    return Status;
}
NTSTATUS PywskKeWaitForSingleObject(PVOID Object, KWAIT_REASON WaitReason, KPROCESSOR_MODE WaitMode,
    BOOLEAN Alertable, PLARGE_INTEGER Timeout, PYWSK_SITE_PARAMS)
{
    PVOID Objects[1] = { Object };
    NTSTATUS Status = pyb_KeWait(1, Objects, -1 /* KeWaitForSingleObject */, WaitReason, WaitMode, Alertable,
                                 Timeout != NULL, Timeout ? Timeout->QuadPart : 0, 0, SITE);
    CHECK();
    return Status;
}
NTSTATUS KeWaitForSingleObject(PVOID Object, KWAIT_REASON WaitReason, KPROCESSOR_MODE WaitMode,
    BOOLEAN Alertable, PLARGE_INTEGER Timeout)
{ return PywskKeWaitForSingleObject(Object, WaitReason, WaitMode, Alertable, Timeout, NO_SITE); }
NTSTATUS KeWaitForMultipleObjects(ULONG Count, PVOID Object[], WAIT_TYPE WaitType,
    KWAIT_REASON WaitReason, KPROCESSOR_MODE WaitMode, BOOLEAN Alertable, PLARGE_INTEGER Timeout,
    PKWAIT_BLOCK WaitBlockArray)
{ return PywskKeWaitForMultipleObjects(Count, Object, WaitType, WaitReason, WaitMode, Alertable, Timeout, WaitBlockArray, NO_SITE); }

NTSTATUS KeDelayExecutionThread(KPROCESSOR_MODE WaitMode, BOOLEAN Alertable, PLARGE_INTEGER Interval)
{
    KEVENT Never;
    PywskKeInitializeEvent(&Never, NotificationEvent, FALSE, NO_SITE);
    NTSTATUS Status = PywskKeWaitForSingleObject(&Never, Executive, WaitMode, Alertable, Interval, NO_SITE);
    pyb_KeEventOp(4, &Never, NO_PY_SITE);          /* forget it */
    return Status == STATUS_TIMEOUT ? STATUS_SUCCESS : Status;
}

VOID KeQuerySystemTime(PLARGE_INTEGER T) { T->QuadPart = pyb_Time(0); }
VOID KeQuerySystemTimePrecise(PLARGE_INTEGER T) { T->QuadPart = pyb_Time(0); }
ULONGLONG KeQueryInterruptTime(void) { return (ULONGLONG)pyb_Time(1); }

/* ---- IRQL and spin locks ---- */
KIRQL KeGetCurrentIrql(void) { return (KIRQL)pyb_Irql(0, 0); }
VOID KeRaiseIrql(KIRQL NewIrql, PKIRQL OldIrql) { *OldIrql = (KIRQL)pyb_Irql(1, NewIrql); CHECK(); }
KIRQL KeRaiseIrqlToDpcLevel(void) { KIRQL Old = (KIRQL)pyb_Irql(1, DISPATCH_LEVEL); CHECK(); return Old; }
VOID KeLowerIrql(KIRQL NewIrql) { pyb_Irql(2, NewIrql); CHECK(); }
VOID KeInitializeSpinLock(PKSPIN_LOCK SpinLock) { __atomic_store_n(SpinLock, 0, __ATOMIC_RELEASE); }
VOID KeAcquireSpinLockAtDpcLevel(PKSPIN_LOCK SpinLock)
{
    /* A stopped driver may have unwound past a release: its spinners unwind too. */
    while (__atomic_exchange_n(SpinLock, 1, __ATOMIC_ACQUIRE) != 0)
        while (__atomic_load_n(SpinLock, __ATOMIC_RELAXED) != 0) {
            CHECK();
            CPU_PAUSE();
        }
}
VOID KeReleaseSpinLockFromDpcLevel(PKSPIN_LOCK SpinLock) { __atomic_store_n(SpinLock, 0, __ATOMIC_RELEASE); }
VOID KeAcquireSpinLock(PKSPIN_LOCK SpinLock, PKIRQL OldIrql)
{
    *OldIrql = KeRaiseIrqlToDpcLevel();
    KeAcquireSpinLockAtDpcLevel(SpinLock);
}
VOID KeReleaseSpinLock(PKSPIN_LOCK SpinLock, KIRQL NewIrql)
{
    KeReleaseSpinLockFromDpcLevel(SpinLock);
    KeLowerIrql(NewIrql);
}

/* ---- SList (a spin lock around a LIFO) ---- */
VOID InitializeSListHead(PSLIST_HEADER H) { memset(H, 0, sizeof *H); }
static void SListLock(PSLIST_HEADER H)
{ while (__atomic_exchange_n(&H->Private_.Lock, 1, __ATOMIC_ACQUIRE)) { CHECK(); CPU_PAUSE(); } }
static void SListUnlock(PSLIST_HEADER H) { __atomic_store_n(&H->Private_.Lock, 0, __ATOMIC_RELEASE); }
PSLIST_ENTRY InterlockedPushEntrySList(PSLIST_HEADER H, PSLIST_ENTRY E)
{
    SListLock(H);
    PSLIST_ENTRY First = H->Private_.First;
    E->Next = First; H->Private_.First = E; H->Private_.Depth++;
    SListUnlock(H);
    return First;
}
PSLIST_ENTRY InterlockedPopEntrySList(PSLIST_HEADER H)
{
    SListLock(H);
    PSLIST_ENTRY First = H->Private_.First;
    if (First) { H->Private_.First = First->Next; H->Private_.Depth--; }
    SListUnlock(H);
    return First;
}
PSLIST_ENTRY InterlockedFlushSList(PSLIST_HEADER H)
{
    SListLock(H);
    PSLIST_ENTRY First = H->Private_.First;
    H->Private_.First = NULL; H->Private_.Depth = 0;
    SListUnlock(H);
    return First;
}
USHORT QueryDepthSList(PSLIST_HEADER H) { return H->Private_.Depth; }

/* ---- strings ---- */
VOID RtlInitUnicodeString(PUNICODE_STRING D, PCWSTR S)
{
    size_t n = 0;
    if (S) while (S[n]) n++;
    D->Buffer = (PWSTR)S;
    D->Length = (USHORT)(n * sizeof(WCHAR));
    D->MaximumLength = S ? (USHORT)(D->Length + sizeof(WCHAR)) : 0;
}
VOID RtlInitAnsiString(PANSI_STRING D, PCSZ S)
{
    D->Buffer = (PCHAR)S;
    D->Length = S ? (USHORT)strlen(S) : 0;
    D->MaximumLength = S ? (USHORT)(D->Length + 1) : 0;
}
static WCHAR Fold(WCHAR c) { return (c >= 'a' && c <= 'z') ? (WCHAR)(c - 32) : c; }
BOOLEAN RtlEqualUnicodeString(PCUNICODE_STRING A, PCUNICODE_STRING B, BOOLEAN CaseInSensitive)
{
    if (A->Length != B->Length) return FALSE;
    for (USHORT i = 0; i < A->Length / sizeof(WCHAR); i++) {
        WCHAR x = A->Buffer[i], y = B->Buffer[i];
        if (CaseInSensitive) { x = Fold(x); y = Fold(y); }
        if (x != y) return FALSE;
    }
    return TRUE;
}
VOID RtlCopyUnicodeString(PUNICODE_STRING D, PCUNICODE_STRING S)
{
    if (S == NULL) { D->Length = 0; return; }
    USHORT n = S->Length < D->MaximumLength ? S->Length : D->MaximumLength;
    memcpy(D->Buffer, S->Buffer, n);
    D->Length = n;
    if (n + sizeof(WCHAR) <= D->MaximumLength) D->Buffer[n / sizeof(WCHAR)] = 0;
}

/* ---- debug output, assertions, bug checks ---- */
static ULONG Print(int Level, PCSTR Format, va_list Arguments)
{
    char Text[1024];
    vsnprintf(Text, sizeof Text, Format, Arguments);
    pyb_DbgPrint(Level, Text);
    return 0;  /* STATUS_SUCCESS */
}
ULONG DbgPrint(PCSTR Format, ...)
{
    va_list a; va_start(a, Format); ULONG r = Print(DPFLTR_INFO_LEVEL, Format, a); va_end(a); return r;
}
ULONG DbgPrintEx(ULONG ComponentId, ULONG Level, PCSTR Format, ...)
{
    (void)ComponentId;
    va_list a; va_start(a, Format); ULONG r = Print((int)Level, Format, a); va_end(a); return r;
}
VOID DbgBreakPoint(void) { pyb_Stop(2, 0x80000003, "DbgBreakPoint (no debugger attached)", NO_PY_SITE); CHECK(); }
VOID PywskAssertFailed(PCSTR Expression, PYWSK_SITE_PARAMS) { pyb_Stop(3, 0, Expression, SITE); CHECK(); }
VOID PywskKeBugCheckEx(ULONG Code, ULONG_PTR P1, ULONG_PTR P2, ULONG_PTR P3, ULONG_PTR P4, PYWSK_SITE_PARAMS)
{
    char Text[160];
    snprintf(Text, sizeof Text, "KeBugCheckEx(0x%X, 0x%lX, 0x%lX, 0x%lX, 0x%lX)", (unsigned)Code,
             (unsigned long)P1, (unsigned long)P2, (unsigned long)P3, (unsigned long)P4);
    pyb_Stop(4, (int32_t)Code, Text, SITE);
    CHECK();
    abort();  /* KeBugCheckEx does not return */
}

/* ---- system threads: a thread object starts with the KEVENT its end signals ---- */
typedef struct _PYWSK_THREAD {
    KEVENT Done;                        /* first: waiting on the thread waits on this */
    PKSTART_ROUTINE StartRoutine;
    PVOID StartContext;
    pthread_t Thread;
    LONG References;                    /* the handle, the thread itself, ObReference... */
} PYWSK_THREAD;
static POBJECT_TYPE ThreadType = (POBJECT_TYPE)&ThreadType;
POBJECT_TYPE *PsThreadType = &ThreadType;
static __thread PYWSK_THREAD *CurrentThread;

static void Dereference(PYWSK_THREAD *T)
{
    if (__atomic_sub_fetch(&T->References, 1, __ATOMIC_ACQ_REL) == 0) {
        pyb_KeEventOp(4, &T->Done, NO_PY_SITE);
        free(T);
    }
}

static void *ThreadMain(void *Argument)
{
    PYWSK_THREAD *T = Argument;
    uintptr_t Args[8] = { (uintptr_t)T->StartContext };
    intptr_t Ignored;
    CurrentThread = T;
    PywskRtInvoke((void *)T->StartRoutine, Args, &Ignored);
    pyb_KeEventOp(0, &T->Done, NO_PY_SITE);
    Dereference(T);
    /* The thread's last call into Python: once it has counted the thread out, unload may
     * go on and the process may end - this thread must not need the interpreter again. */
    pyb_ThreadEvent(1, NULL);
    return NULL;
}

NTSTATUS PsCreateSystemThread(PHANDLE ThreadHandle, ULONG DesiredAccess, POBJECT_ATTRIBUTES ObjectAttributes,
    HANDLE ProcessHandle, PCLIENT_ID ClientId, PKSTART_ROUTINE StartRoutine, PVOID StartContext)
{
    (void)DesiredAccess; (void)ObjectAttributes; (void)ProcessHandle; (void)ClientId;
    PYWSK_THREAD *T = calloc(1, sizeof *T);
    if (T == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    PywskKeInitializeEvent(&T->Done, NotificationEvent, FALSE, NO_SITE);
    T->StartRoutine = StartRoutine;
    T->StartContext = StartContext;
    T->References = 2;
    pthread_attr_t Attributes;
    pthread_attr_init(&Attributes);
    pthread_attr_setdetachstate(&Attributes, PTHREAD_CREATE_DETACHED);
    pyb_ThreadEvent(0, T);              /* counted from now: unload waits even for a thread
                                         * that has not started running yet */
    int Error = pthread_create(&T->Thread, &Attributes, ThreadMain, T);
    pthread_attr_destroy(&Attributes);
    if (Error) {
        pyb_KeEventOp(4, &T->Done, NO_PY_SITE);
        free(T);
        pyb_ThreadEvent(1, NULL);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    *ThreadHandle = T;
    return STATUS_SUCCESS;
}

NTSTATUS PsTerminateSystemThread(NTSTATUS ExitStatus)
{
    (void)ExitStatus;
    if (CurrentThread == NULL) return STATUS_INVALID_PARAMETER;
    Unwind();                           /* back to ThreadMain's PywskRtInvoke */
    return STATUS_SUCCESS;
}

PETHREAD PsGetCurrentThread(void) { return CurrentThread; }

NTSTATUS ObReferenceObjectByHandle(HANDLE Handle, ACCESS_MASK DesiredAccess, POBJECT_TYPE ObjectType,
    KPROCESSOR_MODE AccessMode, PVOID *Object, PVOID HandleInformation)
{
    (void)DesiredAccess; (void)AccessMode; (void)HandleInformation;
    if (Handle == NULL || (ObjectType != NULL && ObjectType != ThreadType)) return STATUS_INVALID_HANDLE;
    __atomic_add_fetch(&((PYWSK_THREAD *)Handle)->References, 1, __ATOMIC_ACQ_REL);
    *Object = Handle;
    return STATUS_SUCCESS;
}
VOID ObDereferenceObject(PVOID Object) { Dereference(Object); }
NTSTATUS ZwClose(HANDLE Handle)
{
    if (Handle == NULL) return STATUS_INVALID_HANDLE;
    Dereference(Handle);
    return STATUS_SUCCESS;
}

/* ---- WSK registration (the provider's tables are in wskdispatch.c) ---- */
const NPIID NPI_WSK_INTERFACE_ID = { 0x2227e803, 0x8d8b, 0x11d4, { 0xab, 0xad, 0x00, 0x90, 0x27, 0x71, 0x9e, 0x09 } };

NTSTATUS PywskWskRegister(PWSK_CLIENT_NPI Npi, PWSK_REGISTRATION Registration, PYWSK_SITE_PARAMS)
{
    NTSTATUS Status = pyb_WskRegister(Npi, Registration, SITE);
    CHECK();
    return Status;
}
NTSTATUS WskRegister(PWSK_CLIENT_NPI Npi, PWSK_REGISTRATION Registration) { return PywskWskRegister(Npi, Registration, NO_SITE); }
NTSTATUS PywskWskCaptureProviderNPI(PWSK_REGISTRATION Registration, ULONG WaitTimeout, PWSK_PROVIDER_NPI Npi, PYWSK_SITE_PARAMS)
{
    NTSTATUS Status = pyb_WskCaptureProviderNPI(Registration, WaitTimeout, Npi, SITE);
    CHECK();
    return Status;
}
NTSTATUS WskCaptureProviderNPI(PWSK_REGISTRATION Registration, ULONG WaitTimeout, PWSK_PROVIDER_NPI Npi)
{ return PywskWskCaptureProviderNPI(Registration, WaitTimeout, Npi, NO_SITE); }
VOID PywskWskReleaseProviderNPI(PWSK_REGISTRATION Registration, PYWSK_SITE_PARAMS)
{ pyb_WskRegistrationOp(0, Registration, SITE); CHECK(); }
VOID WskReleaseProviderNPI(PWSK_REGISTRATION Registration) { PywskWskReleaseProviderNPI(Registration, NO_SITE); }
VOID PywskWskDeregister(PWSK_REGISTRATION Registration, PYWSK_SITE_PARAMS)
{ pyb_WskRegistrationOp(1, Registration, SITE); CHECK(); }
VOID WskDeregister(PWSK_REGISTRATION Registration) { PywskWskDeregister(Registration, NO_SITE); }
NTSTATUS WskQueryProviderCharacteristics(PWSK_REGISTRATION Registration, PWSK_PROVIDER_CHARACTERISTICS C)
{
    (void)Registration;
    C->HighestVersion = MAKE_WSK_VERSION(1, 0);
    C->LowestVersion = MAKE_WSK_VERSION(1, 0);
    return STATUS_SUCCESS;
}
