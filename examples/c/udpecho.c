/* udpecho.c - a UDP echo server as a WSK datagram client: one datagram socket
 * (WSK_FLAG_DATAGRAM_SOCKET), bound on loopback.  Two ways to receive:
 *
 *   StartServer(Port, Family, UseEvents)
 *       UseEvents = 1: WskReceiveFromEvent (enabled with SO_WSK_EVENT_CALLBACK) gets the
 *       datagrams as a WSK_DATAGRAM_INDICATION chain; each is echoed with WskSendTo from
 *       the indication's own buffer and sender address, the chain is retained
 *       (STATUS_PENDING) and given back with WskRelease when its last send completed.
 *       UseEvents = 0: a system thread issues WskReceiveFrom (with the ControlLength and
 *       ControlFlags out-parameters) and echoes each datagram with WskSendTo to the
 *       address it reported, one IRP each, reused.
 *   ServerPort()                the bound port
 *   SendBurst(Port, Count)      one WskSendMessages of Count datagrams ("burst 0", ...)
 *                               to 127.0.0.1:Port from a second socket
 *   StopServer()                WskCloseSocket, waited for
 *
 *   pywsk driver build examples/c/udpecho.c -o udpecho.so
 */
#include <ntddk.h>
#include <wsk.h>

#define UE_TAG 'ceU '
#define UE_DATAGRAM 2048
#define UE_BURST 16

static WSK_REGISTRATION Registration;
static WSK_PROVIDER_NPI Provider;
static const WSK_CLIENT_DISPATCH ClientDispatch = { MAKE_WSK_VERSION(1, 0), 0, NULL };

static PWSK_SOCKET Socket;
static USHORT Port;
static volatile LONG Stopping;
/* Events: a rundown count - the server's own reference, each callback while it runs, each
 * echo until its list is released; Idle is set when it reaches zero. */
static volatile LONG InFlight;
static KEVENT Idle;

static VOID Enter(void) { InterlockedIncrement(&InFlight); }
static VOID Leave(void) { if (InterlockedDecrement(&InFlight) == 0) KeSetEvent(&Idle, IO_NO_INCREMENT, FALSE); }
/* UseEvents = 0: the thread's receive and echo */
static PIRP ReceiveIrp, SendIrp;
static PUCHAR Buffer;
static PMDL BufferMdl;
static SOCKADDR_STORAGE From;

static PWSK_PROVIDER_DATAGRAM_DISPATCH Dispatch(PWSK_SOCKET S)
{
    return (PWSK_PROVIDER_DATAGRAM_DISPATCH)S->Dispatch;
}

/* ---- one request waited for, at PASSIVE_LEVEL ---- */
static IO_COMPLETION_ROUTINE Signal;
static NTSTATUS Signal(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    UNREFERENCED_PARAMETER(Irp);
    KeSetEvent((PKEVENT)Context, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

typedef struct _SYNC { KEVENT Event; PIRP Irp; } SYNC;

static PIRP SyncStart(SYNC *S)
{
    KeInitializeEvent(&S->Event, SynchronizationEvent, FALSE);
    S->Irp = IoAllocateIrp(1, FALSE);
    if (S->Irp != NULL) IoSetCompletionRoutine(S->Irp, Signal, &S->Event, TRUE, TRUE, TRUE);
    return S->Irp;
}

static NTSTATUS SyncEnd(SYNC *S, NTSTATUS Status, ULONG_PTR *Information)
{
    if (Status == STATUS_PENDING) KeWaitForSingleObject(&S->Event, Executive, KernelMode, FALSE, NULL);
    Status = S->Irp->IoStatus.Status;
    if (Information != NULL) *Information = S->Irp->IoStatus.Information;
    IoFreeIrp(S->Irp);
    return Status;
}

/* ---- UseEvents = 1: echo from the indication, release after the last send ---- */
typedef struct _ECHO { PWSK_DATAGRAM_INDICATION List; LONG Remaining; } ECHO, *PECHO;

static IO_COMPLETION_ROUTINE EventEchoSent;
static NTSTATUS EventEchoSent(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    PECHO Echo = Context;
    UNREFERENCED_PARAMETER(DeviceObject);
    IoFreeIrp(Irp);
    if (InterlockedDecrement(&Echo->Remaining) == 0) {
        Dispatch(Socket)->WskRelease(Socket, Echo->List);
        ExFreePoolWithTag(Echo, UE_TAG);
        Leave();
    }
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static NTSTATUS WSKAPI ReceiveFromEvent(PVOID SocketContext, ULONG Flags, PWSK_DATAGRAM_INDICATION List)
{
    PWSK_DATAGRAM_INDICATION Each;
    LONG Count = 0;
    UNREFERENCED_PARAMETER(SocketContext);
    UNREFERENCED_PARAMETER(Flags);
    Enter();
    if (List == NULL || Stopping) { Leave(); return STATUS_SUCCESS; }     /* closing */
    PECHO Echo = ExAllocatePool2(POOL_FLAG_NON_PAGED, sizeof *Echo, UE_TAG);
    if (Echo == NULL) { Leave(); return STATUS_DATA_NOT_ACCEPTED; }
    Enter();                                    /* the echo's, until its list is released */
    for (Each = List; Each != NULL; Each = Each->Next) Count++;
    Echo->List = List;
    Echo->Remaining = Count + 1;                /* + 1 until every send is issued */
    for (Each = List; Each != NULL; Each = Each->Next) {
        PIRP Irp = IoAllocateIrp(1, FALSE);
        if (Irp == NULL) { InterlockedDecrement(&Echo->Remaining); continue; }
        IoSetCompletionRoutine(Irp, EventEchoSent, Echo, TRUE, TRUE, TRUE);
        Dispatch(Socket)->WskSendTo(Socket, &Each->Buffer, 0, Each->RemoteAddress, 0, NULL, Irp);
    }
    if (InterlockedDecrement(&Echo->Remaining) == 0) {    /* every send done already */
        ExFreePoolWithTag(Echo, UE_TAG);
        Leave();
        Leave();
        return STATUS_SUCCESS;                  /* not retained: nothing to release */
    }
    Leave();
    return STATUS_PENDING;                      /* retained until the last send completes */
}

static const WSK_CLIENT_DATAGRAM_DISPATCH DatagramEvents = { ReceiveFromEvent };

/* ---- UseEvents = 0: a system thread; WskReceiveFrom, WskSendTo, again ----
 * (A completion routine must not issue the next WSK call itself: the thread does.) */
static KEVENT Done;
static HANDLE Thread;

static PIRP Arm(PIRP Irp)
{
    KeResetEvent(&Done);
    IoReuseIrp(Irp, STATUS_UNSUCCESSFUL);
    IoSetCompletionRoutine(Irp, Signal, &Done, TRUE, TRUE, TRUE);
    return Irp;
}

static NTSTATUS Finish(PIRP Irp, NTSTATUS Status)
{
    if (Status == STATUS_PENDING) KeWaitForSingleObject(&Done, Executive, KernelMode, FALSE, NULL);
    return Irp->IoStatus.Status;
}

static KSTART_ROUTINE Echoer;
static VOID Echoer(PVOID Context)
{
    UNREFERENCED_PARAMETER(Context);
    while (!Stopping) {
        WSK_BUF In = { BufferMdl, 0, UE_DATAGRAM };
        ULONG ControlLength = 0, ControlFlags = 0;
        NTSTATUS Status = Dispatch(Socket)->WskReceiveFrom(Socket, &In, 0, (PSOCKADDR)&From, &ControlLength,
            NULL, &ControlFlags, Arm(ReceiveIrp));
        if (!NT_SUCCESS(Finish(ReceiveIrp, Status)) || Stopping) break;   /* closed: cancelled */
        WSK_BUF Out = { BufferMdl, 0, ReceiveIrp->IoStatus.Information };
        Status = Dispatch(Socket)->WskSendTo(Socket, &Out, 0, (PSOCKADDR)&From, 0, NULL, Arm(SendIrp));
        if (!NT_SUCCESS(Finish(SendIrp, Status))) break;
    }
    PsTerminateSystemThread(STATUS_SUCCESS);
}

/* ---- set-up ---- */
static NTSTATUS OpenSocket(ADDRESS_FAMILY Family, const VOID *Events, PWSK_SOCKET *Out)
{
    SYNC S;
    ULONG_PTR Information = 0;
    if (SyncStart(&S) == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    NTSTATUS Status = SyncEnd(&S, Provider.Dispatch->WskSocket(Provider.Client, Family, SOCK_DGRAM, IPPROTO_UDP,
        WSK_FLAG_DATAGRAM_SOCKET, NULL, Events, NULL, NULL, NULL, S.Irp), &Information);
    *Out = (PWSK_SOCKET)Information;
    if (!NT_SUCCESS(Status)) return Status;
    SOCKADDR_STORAGE Local = { 0 };
    if (Family == AF_INET6) IN6ADDR_SETLOOPBACK((PSOCKADDR_IN6)&Local);
    else IN4ADDR_SETLOOPBACK((PSOCKADDR_IN)&Local);
    if (SyncStart(&S) == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    return SyncEnd(&S, Dispatch(*Out)->WskBind(*Out, (PSOCKADDR)&Local, 0, S.Irp), NULL);
}

NTSTATUS StartServer(USHORT Unused, ADDRESS_FAMILY Family, ULONG UseEvents)
{
    SYNC S;
    UNREFERENCED_PARAMETER(Unused);
    Stopping = 0;
    InFlight = 1;
    KeInitializeEvent(&Idle, NotificationEvent, FALSE);
    NTSTATUS Status = OpenSocket(Family, UseEvents ? &DatagramEvents : NULL, &Socket);
    if (!NT_SUCCESS(Status)) return Status;
    SOCKADDR_STORAGE Local = { 0 };
    if (SyncStart(&S) == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    Status = SyncEnd(&S, Dispatch(Socket)->WskGetLocalAddress(Socket, (PSOCKADDR)&Local, S.Irp), NULL);
    if (!NT_SUCCESS(Status)) return Status;
    Port = RtlUshortByteSwap(((PSOCKADDR_IN)&Local)->sin_port);   /* same offset in IN6 */
    if (UseEvents) {
        WSK_EVENT_CALLBACK_CONTROL Control = { (PNPIID)&NPI_WSK_INTERFACE_ID, WSK_EVENT_RECEIVE_FROM };
        return Dispatch(Socket)->WskControlSocket(Socket, WskSetOption, SO_WSK_EVENT_CALLBACK, SOL_SOCKET,
            sizeof Control, &Control, 0, NULL, NULL, NULL);
    }
    ReceiveIrp = IoAllocateIrp(1, FALSE);
    SendIrp = IoAllocateIrp(1, FALSE);
    Buffer = ExAllocatePool2(POOL_FLAG_NON_PAGED, UE_DATAGRAM, UE_TAG);
    BufferMdl = Buffer ? IoAllocateMdl(Buffer, UE_DATAGRAM, FALSE, FALSE, NULL) : NULL;
    if (!ReceiveIrp || !SendIrp || !BufferMdl) return STATUS_INSUFFICIENT_RESOURCES;
    MmBuildMdlForNonPagedPool(BufferMdl);
    KeInitializeEvent(&Done, NotificationEvent, FALSE);
    return PsCreateSystemThread(&Thread, THREAD_ALL_ACCESS, NULL, NULL, NULL, Echoer, NULL);
}

ULONG ServerPort(void) { return Port; }

NTSTATUS StopServer(void)
{
    SYNC S;
    LARGE_INTEGER Tenth;
    Tenth.QuadPart = -100 * 10 * 1000;          /* 100 ms */
    InterlockedExchange(&Stopping, 1);
    /* No call of the socket may be in progress when it is closed: wait for the echoes
     * (events), or stop the thread - cancelling its receive until it has seen Stopping. */
    LARGE_INTEGER TenSeconds;
    TenSeconds.QuadPart = -10LL * 1000 * 1000 * 10;
    Leave();
    if (KeWaitForSingleObject(&Idle, Executive, KernelMode, FALSE, &TenSeconds) == STATUS_TIMEOUT)
        return STATUS_IO_TIMEOUT;
    if (Thread != NULL) {
        PVOID Object;
        if (NT_SUCCESS(ObReferenceObjectByHandle(Thread, 0, *PsThreadType, KernelMode, &Object, NULL))) {
            int Tries = 100;                    /* 10 s */
            do IoCancelIrp(ReceiveIrp);
            while (KeWaitForSingleObject(Object, Executive, KernelMode, FALSE, &Tenth) == STATUS_TIMEOUT
                   && --Tries > 0);
            ObDereferenceObject(Object);
            if (Tries == 0) return STATUS_IO_TIMEOUT;
        }
        ZwClose(Thread);
        Thread = NULL;
    }
    if (SyncStart(&S) == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    NTSTATUS Status = SyncEnd(&S, Dispatch(Socket)->WskCloseSocket(Socket, S.Irp), NULL);

    if (BufferMdl) IoFreeMdl(BufferMdl);
    if (Buffer) ExFreePoolWithTag(Buffer, UE_TAG);
    if (ReceiveIrp) IoFreeIrp(ReceiveIrp);
    if (SendIrp) IoFreeIrp(SendIrp);
    BufferMdl = NULL; Buffer = NULL; ReceiveIrp = SendIrp = NULL;
    return Status;
}

NTSTATUS SendBurst(USHORT To, ULONG Count)
{
    PWSK_SOCKET Sender;
    SYNC S;
    WSK_BUF_LIST List[UE_BURST];
    PMDL Mdls[UE_BURST] = { 0 };
    CHAR Text[UE_BURST][8];
    if (Count == 0 || Count > UE_BURST) return STATUS_INVALID_PARAMETER;
    NTSTATUS Status = OpenSocket(AF_INET, NULL, &Sender);
    if (!NT_SUCCESS(Status)) return Status;
    for (ULONG i = 0; i < Count; i++) {
        ULONG Length = 7;
        RtlCopyMemory(Text[i], "burst ?", Length);
        Text[i][6] = (CHAR)('a' + i);           /* "burst a", "burst b", ... */
        Mdls[i] = IoAllocateMdl(Text[i], Length, FALSE, FALSE, NULL);
        if (Mdls[i] == NULL) { Status = STATUS_INSUFFICIENT_RESOURCES; break; }
        MmBuildMdlForNonPagedPool(Mdls[i]);
        List[i].Next = i + 1 < Count ? &List[i + 1] : NULL;
        List[i].Buffer.Mdl = Mdls[i];
        List[i].Buffer.Offset = 0;
        List[i].Buffer.Length = (SIZE_T)Length;
    }
    SOCKADDR_IN Remote;
    IN4ADDR_SETLOOPBACK(&Remote);
    Remote.sin_port = RtlUshortByteSwap(To);
    if (NT_SUCCESS(Status) && SyncStart(&S) != NULL)
        Status = SyncEnd(&S, Dispatch(Sender)->WskSendMessages(Sender, List, 0, (PSOCKADDR)&Remote, 0, NULL, S.Irp),
                         NULL);
    for (ULONG i = 0; i < Count; i++)
        if (Mdls[i]) IoFreeMdl(Mdls[i]);
    if (SyncStart(&S) != NULL) SyncEnd(&S, Dispatch(Sender)->WskCloseSocket(Sender, S.Irp), NULL);
    return Status;
}

static DRIVER_UNLOAD Unload;
static VOID Unload(PDRIVER_OBJECT DriverObject)
{
    UNREFERENCED_PARAMETER(DriverObject);
    WskReleaseProviderNPI(&Registration);
    WskDeregister(&Registration);
}

NTSTATUS DriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    WSK_CLIENT_NPI Npi = { NULL, &ClientDispatch };
    UNREFERENCED_PARAMETER(RegistryPath);
    NTSTATUS Status = WskRegister(&Npi, &Registration);
    if (!NT_SUCCESS(Status)) return Status;
    Status = WskCaptureProviderNPI(&Registration, WSK_INFINITE_WAIT, &Provider);
    if (!NT_SUCCESS(Status)) { WskDeregister(&Registration); return Status; }
    DriverObject->DriverUnload = Unload;
    return STATUS_SUCCESS;
}
