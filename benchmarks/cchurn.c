/* cchurn.c - the churn workload as a WSK client driver in C, run on pywsk (pywsk driver
 * build; benchmarks.impl_cdriver loads it).  The same program as benchmarks/impl_pywsk.py,
 * written as a Windows driver writes it: every request through the provider's dispatch
 * tables with an IRP and a completion routine; from the first completion on, every request
 * is issued from a completion routine (on pywsk's provider thread, at DISPATCH_LEVEL).
 * Each connection slot owns its IRPs and its receive buffer and reuses them (IoReuseIrp);
 * the payload is one non-paged pool block with one MDL, shared by every send.
 *
 *   ServerOpen(Ports)                    a listening socket on 127.0.0.1, port chosen by the
 *                                        system, written to Ports[0]
 *   ServerRun(N, TimeoutS, Result)       ACCEPTS WskAccepts outstanding; per connection:
 *                                        WskReceive to EOF, WskSend (the echo) and
 *                                        WskDisconnect, then WskCloseSocket; returns after N
 *   ClientRun(Port, N, Conc, TimeoutS, Result)
 *                                        N connections, Conc in flight: WskSocketConnect, then
 *                                        WskReceive | WskSend | WskDisconnect issued together,
 *                                        receives until EOF, WskCloseSocket
 *   CrossingLoop(Count)                  Count calls of KeGetCurrentIrql (each one C -> Python
 *                                        crossing of the runtime and back)
 *   ArmLoop(Count)                       Count IoReuseIrp + IoSetCompletionRoutine on one IRP
 *
 * Result (ULONG64[8]): connections, bytes, bad, requests issued, process CPU time in ns at
 * the first churn connection (server) , seconds * 1e9 of the run (client), 0, 0.
 * A request costs three C -> Python crossings (IoReuseIrp, IoSetCompletionRoutine, the
 * dispatch call) and one Python -> C crossing (its completion routine).
 */
#include <time.h>
#include <ntddk.h>
#include <wsk.h>

#define MSG 1024
#define ACCEPTS 16
#define TAG 'hcwC'

typedef struct _SLOT {
    PIRP Connect, Send, Disc, Recv;     /* the server uses Recv, Send and Disc */
    PUCHAR Buffer;
    PMDL Mdl;
    PWSK_SOCKET Socket;
    PWSK_PROVIDER_CONNECTION_DISPATCH Table;
    ULONG Got;
    ULONG Done;
    struct _SLOT *NextFree;
} SLOT, *PSLOT;

static WSK_REGISTRATION Registration;
static WSK_PROVIDER_NPI Provider;
static const WSK_CLIENT_DISPATCH ClientDispatch = { MAKE_WSK_VERSION(1, 0), 0, NULL };

static UCHAR Expected[MSG];
static PUCHAR Payload;
static PMDL PayloadMdl;
static SOCKADDR_IN Local, Remote;

/* The run's state: touched on the provider thread once the first completion ran. */
static struct {
    ULONG N, Conc, Started, Slots, Conns, Requests;
    ULONG64 Bytes, Bad;
    BOOLEAN Ramping, Failed;
    LONG64 CpuStart;
    ULONGLONG TEnd;
    KEVENT Finished;
    PWSK_SOCKET Listen;
    PSLOT Free;
} Run;

static LONG64 CpuNow(void)
{
    struct timespec T;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &T);
    return (LONG64)T.tv_sec * 1000000000 + T.tv_nsec;
}

static PIRP Arm(PIRP Irp, PIO_COMPLETION_ROUTINE Routine, PVOID Context)
{
    Run.Requests++;
    IoReuseIrp(Irp, STATUS_UNSUCCESSFUL);
    IoSetCompletionRoutine(Irp, Routine, Context, TRUE, TRUE, TRUE);
    return Irp;
}

static VOID Fail(void)
{
    Run.Failed = TRUE;
    KeSetEvent(&Run.Finished, IO_NO_INCREMENT, FALSE);
}

static PSLOT NewSlot(ULONG BufferSize)
{
    PSLOT S = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof *S, TAG);
    if (S == NULL) return NULL;
    S->Connect = IoAllocateIrp(1, FALSE);
    S->Send = IoAllocateIrp(1, FALSE);
    S->Disc = IoAllocateIrp(1, FALSE);
    S->Recv = IoAllocateIrp(1, FALSE);
    S->Buffer = ExAllocatePool2(POOL_FLAG_NON_PAGED, BufferSize, TAG);
    S->Mdl = S->Buffer ? IoAllocateMdl(S->Buffer, BufferSize, FALSE, FALSE, NULL) : NULL;
    if (!S->Connect || !S->Send || !S->Disc || !S->Recv || !S->Mdl) return NULL;  /* a failed run */
    MmBuildMdlForNonPagedPool(S->Mdl);
    return S;
}

/* ------------------------------------------------------------------------- client --- */
static IO_COMPLETION_ROUTINE ClientConnected, ClientSent, ClientDisconnected, ClientReceived, ClientClosed;

static VOID ClientStart(PSLOT S)
{
    Run.Started++;
    S->Got = 0;
    S->Done = 0;
    Provider.Dispatch->WskSocketConnect(Provider.Client, SOCK_STREAM, IPPROTO_TCP, (PSOCKADDR)&Local,
        (PSOCKADDR)&Remote, 0, NULL, NULL, NULL, NULL, NULL, Arm(S->Connect, ClientConnected, S));
}

static NTSTATUS ClientConnected(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    PSLOT S = Context;
    UNREFERENCED_PARAMETER(DeviceObject);
    if (!NT_SUCCESS(Irp->IoStatus.Status)) { Fail(); return STATUS_MORE_PROCESSING_REQUIRED; }
    S->Socket = (PWSK_SOCKET)Irp->IoStatus.Information;
    S->Table = (PWSK_PROVIDER_CONNECTION_DISPATCH)S->Socket->Dispatch;
    if (!Run.Ramping) {                 /* (not again inside a routine the ramp ran inline) */
        Run.Ramping = TRUE;
        while (Run.Slots < Run.Conc && Run.Slots < Run.N) {
            PSLOT More = NewSlot(2 * MSG);
            if (More == NULL) { Fail(); break; }
            Run.Slots++;
            ClientStart(More);
        }
        Run.Ramping = FALSE;
    }
    WSK_BUF In = { S->Mdl, 0, 2 * MSG };
    WSK_BUF Out = { PayloadMdl, 0, MSG };
    S->Table->WskReceive(S->Socket, &In, 0, Arm(S->Recv, ClientReceived, S));
    S->Table->WskSend(S->Socket, &Out, 0, Arm(S->Send, ClientSent, S));
    S->Table->WskDisconnect(S->Socket, NULL, 0, Arm(S->Disc, ClientDisconnected, S));
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static VOID ClientProgress(PSLOT S, ULONG Bit)
{
    S->Done |= Bit;
    if (S->Done == 7)                   /* sent, disconnected (FIN acknowledged) and EOF */
        S->Table->WskCloseSocket(S->Socket, Arm(S->Connect, ClientClosed, S));
}

static NTSTATUS ClientSent(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    if (Irp->IoStatus.Status != STATUS_SUCCESS || Irp->IoStatus.Information != MSG) Run.Bad++;
    ClientProgress(Context, 4);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static NTSTATUS ClientDisconnected(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    if (Irp->IoStatus.Status != STATUS_SUCCESS) Run.Bad++;
    ClientProgress(Context, 1);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static NTSTATUS ClientReceived(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    PSLOT S = Context;
    ULONG Got = (ULONG)Irp->IoStatus.Information;
    UNREFERENCED_PARAMETER(DeviceObject);
    if (Irp->IoStatus.Status != STATUS_SUCCESS) { Run.Bad++; Got = 0; }
    if (Got == 0) { ClientProgress(S, 2); return STATUS_MORE_PROCESSING_REQUIRED; }
    S->Got += Got;
    if (S->Got >= 2 * MSG) {            /* more than the echo: a failed run, not a hang */
        Run.Bad++;
        ClientProgress(S, 2);
        return STATUS_MORE_PROCESSING_REQUIRED;
    }
    WSK_BUF In = { S->Mdl, S->Got, 2 * MSG - S->Got };
    S->Table->WskReceive(S->Socket, &In, 0, Arm(S->Recv, ClientReceived, S));
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static NTSTATUS ClientClosed(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    PSLOT S = Context;
    UNREFERENCED_PARAMETER(DeviceObject);
    if (Irp->IoStatus.Status != STATUS_SUCCESS) Run.Bad++;
    Run.Conns++;
    Run.Bytes += S->Got;
    if (S->Got != MSG || RtlCompareMemory(S->Buffer, Expected, MSG) != MSG) Run.Bad++;
    S->Socket = NULL;
    S->Table = NULL;
    if (Run.Started < Run.N)
        ClientStart(S);
    else if (Run.Conns == Run.N) {
        Run.TEnd = KeQueryInterruptTime();
        KeSetEvent(&Run.Finished, IO_NO_INCREMENT, FALSE);
    }
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static NTSTATUS Wait(ULONG TimeoutS)
{
    LARGE_INTEGER Timeout;
    Timeout.QuadPart = -(LONGLONG)TimeoutS * 10 * 1000 * 1000;
    return KeWaitForSingleObject(&Run.Finished, Executive, KernelMode, FALSE, &Timeout);
}

NTSTATUS ClientRun(ULONG Port, ULONG N, ULONG Conc, ULONG TimeoutS, ULONG64 *Result)
{
    RtlZeroMemory(&Run, sizeof Run);
    KeInitializeEvent(&Run.Finished, NotificationEvent, FALSE);
    Run.N = N;
    Run.Conc = Conc;
    Local.sin_family = AF_INET;
    Local.sin_addr.s_addr = RtlUlongByteSwap(0x7f000001);
    Remote = Local;
    Remote.sin_port = RtlUshortByteSwap((USHORT)Port);
    PSLOT First = NewSlot(2 * MSG);
    if (First == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    ULONGLONG T0 = KeQueryInterruptTime();
    Run.Slots = 1;
    ClientStart(First);
    NTSTATUS Status = Wait(TimeoutS);
    Result[0] = Run.Conns;
    Result[1] = Run.Bytes;
    Result[2] = Run.Bad;
    Result[3] = Run.Requests;
    Result[5] = (Run.TEnd - T0) * 100;
    if (Status != STATUS_SUCCESS) return STATUS_IO_TIMEOUT;
    return Run.Failed ? STATUS_UNSUCCESSFUL : STATUS_SUCCESS;
}

/* ------------------------------------------------------------------------- server --- */
static IO_COMPLETION_ROUTINE ServerAccepted, ServerReceived, ServerSent, ServerDisconnected, ServerClosed;

static VOID Accept(PIRP Irp)
{
    /* A connection waiting in the backlog completes the accept inside the call: loop, so a
     * long backlog cannot recurse (the routine re-issues only after a pended accept). */
    PWSK_PROVIDER_LISTEN_DISPATCH Table = (PWSK_PROVIDER_LISTEN_DISPATCH)Run.Listen->Dispatch;
    while (!Run.Failed)
        if (Table->WskAccept(Run.Listen, 0, NULL, NULL, NULL, NULL, Arm(Irp, ServerAccepted, NULL))
            == STATUS_PENDING)
            return;
}

static VOID ServerReceive(PSLOT S)
{
    WSK_BUF In = { S->Mdl, S->Got, 4 * MSG - S->Got };
    S->Table->WskReceive(S->Socket, &In, 0, Arm(S->Recv, ServerReceived, S));
}

static NTSTATUS ServerAccepted(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    UNREFERENCED_PARAMETER(Context);
    if (Irp->IoStatus.Status != STATUS_SUCCESS) { Fail(); return STATUS_MORE_PROCESSING_REQUIRED; }
    if (Run.CpuStart == 0) Run.CpuStart = CpuNow();
    PSLOT S = Run.Free;
    if (S != NULL) Run.Free = S->NextFree;
    else if ((S = NewSlot(4 * MSG)) == NULL) { Fail(); return STATUS_MORE_PROCESSING_REQUIRED; }
    S->Socket = (PWSK_SOCKET)Irp->IoStatus.Information;
    S->Table = (PWSK_PROVIDER_CONNECTION_DISPATCH)S->Socket->Dispatch;
    S->Got = 0;
    S->Done = 0;
    ServerReceive(S);
    if (Irp->PendingReturned) Accept(Irp);  /* the next connection */
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static NTSTATUS ServerReceived(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    PSLOT S = Context;
    NTSTATUS Status = Irp->IoStatus.Status;
    ULONG Got = (ULONG)Irp->IoStatus.Information;
    UNREFERENCED_PARAMETER(DeviceObject);
    if (Status == STATUS_SUCCESS && Got && S->Got + Got < 4 * MSG) {
        S->Got += Got;
        ServerReceive(S);
        return STATUS_MORE_PROCESSING_REQUIRED;
    }
    if (Status != STATUS_SUCCESS || Got || S->Got == 0) {    /* broken: close it */
        if (S->Got) Run.Bad++;
        S->Table->WskCloseSocket(S->Socket, Arm(S->Recv, ServerClosed, S));
        return STATUS_MORE_PROCESSING_REQUIRED;
    }
    /* EOF after the message: echo it, then the graceful disconnect (queued behind it). */
    WSK_BUF Out = { S->Mdl, 0, S->Got };
    S->Table->WskSend(S->Socket, &Out, 0, Arm(S->Send, ServerSent, S));
    S->Table->WskDisconnect(S->Socket, NULL, 0, Arm(S->Disc, ServerDisconnected, S));
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static VOID ServerProgress(PSLOT S, ULONG Bit)
{
    S->Done |= Bit;
    if (S->Done == 3) {
        if (S->Got != MSG || RtlCompareMemory(S->Buffer, Expected, MSG) != MSG) Run.Bad++;
        Run.Conns++;
        Run.Bytes += S->Got;
        S->Table->WskCloseSocket(S->Socket, Arm(S->Recv, ServerClosed, S));
    }
}

static NTSTATUS ServerSent(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    PSLOT S = Context;
    UNREFERENCED_PARAMETER(DeviceObject);
    if (Irp->IoStatus.Status != STATUS_SUCCESS || Irp->IoStatus.Information != S->Got) Run.Bad++;
    ServerProgress(S, 1);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static NTSTATUS ServerDisconnected(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    if (Irp->IoStatus.Status != STATUS_SUCCESS) Run.Bad++;
    ServerProgress(Context, 2);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static NTSTATUS ServerClosed(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    PSLOT S = Context;
    UNREFERENCED_PARAMETER(DeviceObject);
    if (Irp->IoStatus.Status != STATUS_SUCCESS) Run.Bad++;
    S->Socket = NULL;
    S->Table = NULL;
    S->NextFree = Run.Free;
    Run.Free = S;
    if (Run.Conns == Run.N) KeSetEvent(&Run.Finished, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

/* One request on a fresh IRP, waited for (set-up only, at PASSIVE_LEVEL). */
static IO_COMPLETION_ROUTINE SyncDone;
static NTSTATUS SyncDone(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    UNREFERENCED_PARAMETER(Irp);
    KeSetEvent(Context, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static PIRP SyncIrp(PKEVENT Event)
{
    PIRP Irp = IoAllocateIrp(1, FALSE);
    KeInitializeEvent(Event, SynchronizationEvent, FALSE);
    if (Irp != NULL) IoSetCompletionRoutine(Irp, SyncDone, Event, TRUE, TRUE, TRUE);
    return Irp;
}

static NTSTATUS SyncEnd(PIRP Irp, PKEVENT Event, ULONG_PTR *Information)
{
    KeWaitForSingleObject(Event, Executive, KernelMode, FALSE, NULL);
    NTSTATUS Status = Irp->IoStatus.Status;
    if (Information) *Information = Irp->IoStatus.Information;
    IoFreeIrp(Irp);
    return Status;
}

NTSTATUS ServerOpen(USHORT *Ports)
{
    KEVENT Event;
    ULONG_PTR Information = 0;
    SOCKADDR_IN Address = { 0 };
    PIRP Irp = SyncIrp(&Event);
    if (Irp == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    Provider.Dispatch->WskSocket(Provider.Client, AF_INET, SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET,
        NULL, NULL, NULL, NULL, NULL, Irp);
    NTSTATUS Status = SyncEnd(Irp, &Event, &Information);
    if (!NT_SUCCESS(Status)) return Status;
    Run.Listen = (PWSK_SOCKET)Information;
    PWSK_PROVIDER_LISTEN_DISPATCH Table = (PWSK_PROVIDER_LISTEN_DISPATCH)Run.Listen->Dispatch;
    Address.sin_family = AF_INET;
    Address.sin_addr.s_addr = RtlUlongByteSwap(0x7f000001);
    if ((Irp = SyncIrp(&Event)) == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    Table->WskBind(Run.Listen, (PSOCKADDR)&Address, 0, Irp);
    if (!NT_SUCCESS(Status = SyncEnd(Irp, &Event, NULL))) return Status;
    if ((Irp = SyncIrp(&Event)) == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    Table->WskGetLocalAddress(Run.Listen, (PSOCKADDR)&Address, Irp);
    if (!NT_SUCCESS(Status = SyncEnd(Irp, &Event, NULL))) return Status;
    Ports[0] = RtlUshortByteSwap(Address.sin_port);
    return STATUS_SUCCESS;
}

NTSTATUS ServerRun(ULONG N, ULONG TimeoutS, ULONG64 *Result)
{
    PWSK_SOCKET Listen = Run.Listen;
    RtlZeroMemory(&Run, sizeof Run);
    KeInitializeEvent(&Run.Finished, NotificationEvent, FALSE);
    Run.N = N;
    Run.Listen = Listen;
    for (int i = 0; i < ACCEPTS; i++) {
        PIRP Irp = IoAllocateIrp(1, FALSE);
        if (Irp == NULL) return STATUS_INSUFFICIENT_RESOURCES;
        Accept(Irp);
    }
    NTSTATUS Status = Wait(TimeoutS);
    Result[0] = Run.Conns;
    Result[1] = Run.Bytes;
    Result[2] = Run.Bad;
    Result[3] = Run.Requests;
    Result[4] = (ULONG64)Run.CpuStart;
    if (Status != STATUS_SUCCESS) return STATUS_IO_TIMEOUT;
    return Run.Failed ? STATUS_UNSUCCESSFUL : STATUS_SUCCESS;
}

/* ------------------------------------------------------------------ crossings, entry --- */
ULONG CrossingLoop(ULONG Count)
{
    ULONG Sum = 0;
    for (ULONG i = 0; i < Count; i++) Sum += KeGetCurrentIrql();
    return Sum;
}

static IO_COMPLETION_ROUTINE Never;
static NTSTATUS Never(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    UNREFERENCED_PARAMETER(Irp);
    UNREFERENCED_PARAMETER(Context);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

/* Count preparations of one idle IRP for a request (IoReuseIrp + IoSetCompletionRoutine:
 * two crossings that carry their C call site, with pywsk's work behind them). */
NTSTATUS ArmLoop(ULONG Count)
{
    PIRP Irp = IoAllocateIrp(1, FALSE);
    if (Irp == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    for (ULONG i = 0; i < Count; i++) {
        IoReuseIrp(Irp, STATUS_UNSUCCESSFUL);
        IoSetCompletionRoutine(Irp, Never, NULL, TRUE, TRUE, TRUE);
    }
    IoFreeIrp(Irp);
    return STATUS_SUCCESS;
}

NTSTATUS DriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    WSK_CLIENT_NPI Npi = { NULL, &ClientDispatch };
    UNREFERENCED_PARAMETER(DriverObject);
    UNREFERENCED_PARAMETER(RegistryPath);
    for (int i = 0; i < MSG; i++) Expected[i] = (UCHAR)((i * 7 + 3) & 0xFF);
    Payload = ExAllocatePool2(POOL_FLAG_NON_PAGED, MSG, TAG);
    if (Payload == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    RtlCopyMemory(Payload, Expected, MSG);
    PayloadMdl = IoAllocateMdl(Payload, MSG, FALSE, FALSE, NULL);
    if (PayloadMdl == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    MmBuildMdlForNonPagedPool(PayloadMdl);
    NTSTATUS Status = WskRegister(&Npi, &Registration);
    if (!NT_SUCCESS(Status)) return Status;
    return WskCaptureProviderNPI(&Registration, WSK_INFINITE_WAIT, &Provider);
}
