/* sync_client.c - a blocking WSK client in the style of the common C wrapper libraries:
 * one IRP and one KEVENT per socket, the IRP reused (IoReuseIrp) for every call, each call
 * waited for at PASSIVE_LEVEL with a timeout; a timed-out call is cancelled (IoCancelIrp)
 * and its completion still waited for, because the IRP is the socket's and must come back.
 *
 *   EchoOnce(Port, TimeoutMs)    connect, send "ping", receive the echo, disconnect
 *                                gracefully, read until the peer's FIN, close
 *   ResolveLoopback(Port, Family) WskGetAddressInfo / WskFreeAddressInfo on 127.0.0.1 or ::1
 *   SilentPeer(Port, TimeoutMs)  connect, receive from a peer that says nothing: the
 *                                receive times out, is cancelled, and the connection is
 *                                aborted (RST) before closing; returns STATUS_IO_TIMEOUT
 *
 *   pywsk driver build examples/c/sync_client.c -o sync_client.so
 *   pywsk driver run sync_client.so --once --call 'EchoOnce PORT 5000'
 */
#include <ntddk.h>
#include <wsk.h>

#define KS_TAG 'cysK'
#define KS_BUFFER 4096

typedef struct _KSOCKET {
    PWSK_SOCKET Socket;
    PWSK_PROVIDER_CONNECTION_DISPATCH Dispatch;
    PIRP Irp;                           /* the socket's one IRP */
    KEVENT Event;                       /* set by its completion routine */
    PUCHAR Buffer;                      /* KS_BUFFER bytes of non-paged pool ... */
    PMDL Mdl;                           /* ... and the MDL describing them */
} KSOCKET, *PKSOCKET;

static WSK_REGISTRATION Registration;
static WSK_PROVIDER_NPI ProviderNpi;
static const WSK_CLIENT_DISPATCH ClientDispatch = { MAKE_WSK_VERSION(1, 0), 0, NULL };

static IO_COMPLETION_ROUTINE KspCompletion;
static NTSTATUS KspCompletion(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    UNREFERENCED_PARAMETER(Irp);
    KeSetEvent((PKEVENT)Context, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED;   /* the IRP stays the socket's */
}

/* Make the socket's IRP ready for the next call. */
static PIRP KspPrepare(PKSOCKET S)
{
    KeResetEvent(&S->Event);
    IoReuseIrp(S->Irp, STATUS_UNSUCCESSFUL);
    IoSetCompletionRoutine(S->Irp, KspCompletion, &S->Event, TRUE, TRUE, TRUE);
    return S->Irp;
}

/* Wait for the call that returned Status; after TimeoutMs (0: no limit), cancel it and
 * wait for its completion, which always comes.  A cancelled call reports STATUS_IO_TIMEOUT. */
static NTSTATUS KspWait(PKSOCKET S, NTSTATUS Status, ULONG TimeoutMs, ULONG_PTR *Information)
{
    BOOLEAN TimedOut = FALSE;
    if (Status == STATUS_PENDING) {
        LARGE_INTEGER Timeout;
        Timeout.QuadPart = -(LONGLONG)TimeoutMs * 10 * 1000;
        if (KeWaitForSingleObject(&S->Event, Executive, KernelMode, FALSE, TimeoutMs ? &Timeout : NULL)
            == STATUS_TIMEOUT) {
            TimedOut = TRUE;
            IoCancelIrp(S->Irp);
            KeWaitForSingleObject(&S->Event, Executive, KernelMode, FALSE, NULL);
        }
    }
    Status = S->Irp->IoStatus.Status;
    if (Information != NULL)
        *Information = S->Irp->IoStatus.Information;
    return TimedOut && Status == STATUS_CANCELLED ? STATUS_IO_TIMEOUT : Status;
}

static VOID KsFree(PKSOCKET S)
{
    if (S->Mdl) IoFreeMdl(S->Mdl);
    if (S->Buffer) ExFreePoolWithTag(S->Buffer, KS_TAG);
    if (S->Irp) IoFreeIrp(S->Irp);
    ExFreePoolWithTag(S, KS_TAG);
}

static NTSTATUS KsConnect(USHORT Port, ULONG TimeoutMs, PKSOCKET *Result)
{
    SOCKADDR_IN Local, Remote;
    ULONG_PTR Information = 0;
    PKSOCKET S = ExAllocatePoolZero(NonPagedPoolNx, sizeof *S, KS_TAG);
    if (S == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    KeInitializeEvent(&S->Event, NotificationEvent, FALSE);
    S->Irp = IoAllocateIrp(1, FALSE);
    S->Buffer = ExAllocatePoolWithTag(NonPagedPoolNx, KS_BUFFER, KS_TAG);
    S->Mdl = S->Buffer ? IoAllocateMdl(S->Buffer, KS_BUFFER, FALSE, FALSE, NULL) : NULL;
    if (S->Irp == NULL || S->Mdl == NULL) {
        KsFree(S);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    MmBuildMdlForNonPagedPool(S->Mdl);
    IN4ADDR_SETLOOPBACK(&Local);
    IN4ADDR_SETLOOPBACK(&Remote);
    Remote.sin_port = RtlUshortByteSwap(Port);
    NTSTATUS Status = ProviderNpi.Dispatch->WskSocketConnect(ProviderNpi.Client, SOCK_STREAM, IPPROTO_TCP,
        (PSOCKADDR)&Local, (PSOCKADDR)&Remote, 0, NULL, NULL, NULL, NULL, NULL, KspPrepare(S));
    Status = KspWait(S, Status, TimeoutMs, &Information);
    if (!NT_SUCCESS(Status)) {
        KsFree(S);
        return Status;
    }
    S->Socket = (PWSK_SOCKET)Information;
    S->Dispatch = (PWSK_PROVIDER_CONNECTION_DISPATCH)S->Socket->Dispatch;
    *Result = S;
    return STATUS_SUCCESS;
}

static NTSTATUS KsSend(PKSOCKET S, const void *Data, ULONG Length, ULONG TimeoutMs)
{
    ULONG_PTR Sent = 0;
    if (Length > KS_BUFFER) return STATUS_INVALID_PARAMETER;
    RtlCopyMemory(S->Buffer, Data, Length);
    WSK_BUF Buffer = { S->Mdl, 0, Length };
    NTSTATUS Status = KspWait(S, S->Dispatch->WskSend(S->Socket, &Buffer, 0, KspPrepare(S)), TimeoutMs, &Sent);
    return NT_SUCCESS(Status) && Sent != Length ? STATUS_UNSUCCESSFUL : Status;
}

/* Receive into the socket's buffer; *Received is 0 at the peer's FIN. */
static NTSTATUS KsReceive(PKSOCKET S, ULONG TimeoutMs, ULONG_PTR *Received)
{
    WSK_BUF Buffer = { S->Mdl, 0, KS_BUFFER };
    return KspWait(S, S->Dispatch->WskReceive(S->Socket, &Buffer, 0, KspPrepare(S)), TimeoutMs, Received);
}

static NTSTATUS KsDisconnect(PKSOCKET S, ULONG Flags, ULONG TimeoutMs)
{
    return KspWait(S, S->Dispatch->WskDisconnect(S->Socket, NULL, Flags, KspPrepare(S)), TimeoutMs, NULL);
}

static NTSTATUS KsClose(PKSOCKET S)
{
    NTSTATUS Status = KspWait(S, S->Dispatch->WskCloseSocket(S->Socket, KspPrepare(S)), 0, NULL);
    KsFree(S);
    return Status;
}

NTSTATUS EchoOnce(USHORT Port, ULONG TimeoutMs)
{
    PKSOCKET S;
    ULONG_PTR Received = 0, Total = 0;
    UCHAR Echo[4];
    NTSTATUS Status = KsConnect(Port, TimeoutMs, &S);
    if (!NT_SUCCESS(Status)) return Status;
    Status = KsSend(S, "ping", 4, TimeoutMs);
    while (NT_SUCCESS(Status) && Total < 4) {
        Status = KsReceive(S, TimeoutMs, &Received);
        if (NT_SUCCESS(Status) && Received == 0) Status = STATUS_CONNECTION_DISCONNECTED;
        for (ULONG_PTR i = 0; NT_SUCCESS(Status) && i < Received && Total < 4; i++) Echo[Total++] = S->Buffer[i];
    }
    if (NT_SUCCESS(Status) && !RtlEqualMemory(Echo, "ping", 4)) Status = STATUS_UNSUCCESSFUL;
    DbgPrint("sync_client: echo -> 0x%08X\n", (unsigned)Status);
    if (NT_SUCCESS(Status)) Status = KsDisconnect(S, 0, TimeoutMs);
    DbgPrint("sync_client: graceful disconnect -> 0x%08X\n", (unsigned)Status);
    while (NT_SUCCESS(Status)) {             /* until the peer's FIN */
        Status = KsReceive(S, TimeoutMs, &Received);
        if (NT_SUCCESS(Status) && Received == 0) break;
    }
    if (!NT_SUCCESS(Status)) KsDisconnect(S, WSK_FLAG_ABORTIVE, 0);
    NTSTATUS Closed = KsClose(S);
    return NT_SUCCESS(Status) ? Closed : Status;
}

NTSTATUS SilentPeer(USHORT Port, ULONG TimeoutMs)
{
    PKSOCKET S;
    ULONG_PTR Received = 0;
    NTSTATUS Status = KsConnect(Port, TimeoutMs, &S);
    if (!NT_SUCCESS(Status)) return Status;
    Status = KsReceive(S, TimeoutMs, &Received);
    DbgPrint("sync_client: receive from a silent peer -> 0x%08X\n", (unsigned)Status);
    if (Status == STATUS_IO_TIMEOUT) {       /* abort: the peer sees an RST */
        NTSTATUS Aborted = KsDisconnect(S, WSK_FLAG_ABORTIVE, 0);
        DbgPrint("sync_client: abortive disconnect -> 0x%08X\n", (unsigned)Aborted);
    }
    KsClose(S);
    return Status;
}

/* Name resolution: WskGetAddressInfo on the loopback address of Family and the service
 * Port (in decimal), checked and given back with WskFreeAddressInfo. */
NTSTATUS ResolveLoopback(USHORT Port, ADDRESS_FAMILY Family)
{
    WCHAR Digits[8], Service[8];
    int Count = 0;
    USHORT Rest = Port;
    do { Digits[Count++] = (WCHAR)(u'0' + Rest % 10); Rest /= 10; } while (Rest != 0);
    for (int i = 0; i < Count; i++) Service[i] = Digits[Count - 1 - i];
    Service[Count] = 0;
    UNICODE_STRING Node, ServiceName;
    RtlInitUnicodeString(&Node, Family == AF_INET6 ? u"::1" : u"127.0.0.1");
    RtlInitUnicodeString(&ServiceName, Service);
    ADDRINFOEXW Hints;
    RtlZeroMemory(&Hints, sizeof Hints);
    Hints.ai_family = Family;
    Hints.ai_socktype = SOCK_STREAM;
    Hints.ai_flags = AI_NUMERICHOST;
    PADDRINFOEXW Result = NULL;
    KEVENT Event;
    KeInitializeEvent(&Event, NotificationEvent, FALSE);
    PIRP Irp = IoAllocateIrp(1, FALSE);
    if (Irp == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    IoSetCompletionRoutine(Irp, KspCompletion, &Event, TRUE, TRUE, TRUE);
    NTSTATUS Status = ProviderNpi.Dispatch->WskGetAddressInfo(ProviderNpi.Client, &Node, &ServiceName, NS_ALL,
        NULL, &Hints, &Result, NULL, NULL, Irp);
    if (Status == STATUS_PENDING)
        KeWaitForSingleObject(&Event, Executive, KernelMode, FALSE, NULL);
    Status = Irp->IoStatus.Status;
    IoFreeIrp(Irp);
    if (!NT_SUCCESS(Status)) return Status;
    USHORT Found = 0;
    if (Result != NULL && Result->ai_addr != NULL && Result->ai_family == Family)
        Found = RtlUshortByteSwap(Family == AF_INET6 ? ((PSOCKADDR_IN6)Result->ai_addr)->sin6_port
                                                     : ((PSOCKADDR_IN)Result->ai_addr)->sin_port);
    DbgPrint("sync_client: resolved port %u, family %d\n", Found, Result ? Result->ai_family : -1);
    if (Result != NULL) ProviderNpi.Dispatch->WskFreeAddressInfo(ProviderNpi.Client, Result);
    return Found == Port ? STATUS_SUCCESS : STATUS_NOT_FOUND;
}

static DRIVER_UNLOAD Unload;
static VOID Unload(PDRIVER_OBJECT DriverObject)
{
    UNREFERENCED_PARAMETER(DriverObject);
    WskReleaseProviderNPI(&Registration);
    WskDeregister(&Registration);
}

DRIVER_INITIALIZE DriverEntry;
NTSTATUS DriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    WSK_CLIENT_NPI ClientNpi = { NULL, &ClientDispatch };
    UNREFERENCED_PARAMETER(RegistryPath);
    NTSTATUS Status = WskRegister(&ClientNpi, &Registration);
    if (!NT_SUCCESS(Status)) return Status;
    Status = WskCaptureProviderNPI(&Registration, WSK_INFINITE_WAIT, &ProviderNpi);
    if (!NT_SUCCESS(Status)) {
        WskDeregister(&Registration);
        return Status;
    }
    DriverObject->DriverUnload = Unload;
    return STATUS_SUCCESS;
}
