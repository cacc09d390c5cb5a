/* echosrv.c - a WSK echo server driver in the style of Microsoft's WSK echo sample.
 *
 * - DriverEntry registers, captures the provider NPI and enables the accept, receive and
 *   disconnect events of every socket at once (WSK_SET_STATIC_EVENT_CALLBACKS); it starts
 *   a worker system thread, as the sample does with its work queue.
 * - StartServer(Port, Family) makes a listening socket on 127.0.0.1 (AF_INET, 2) or ::1
 *   (AF_INET6, 23) and binds it; ServerPort() tells the port.  WskAcceptEvent gives each
 *   connection a context and the connection dispatch table.
 * - WskReceiveEvent retains the indicated data (returns STATUS_PENDING) and queues it: the
 *   worker sends the same buffers back, and when every send has completed it hands the
 *   list back with WskRelease.  No WSK call is made from a completion routine.
 * - WskDisconnectEvent (the peer's FIN) queues a graceful WskDisconnect; when it completes
 *   and nothing is retained any more, the socket is closed, then its context freed.
 * - DriverUnload closes the listener and every connection, waits for them, stops the
 *   worker (waiting on the thread object) and deregisters.
 *
 *   pywsk driver build examples/c/echosrv.c -o echosrv.so
 *   pywsk driver run echosrv.so --call 'StartServer 40007 2'     (Ctrl-C unloads)
 */
#include <ntddk.h>
#include <wsk.h>

#define ECHO_TAG 'ohcE'

typedef enum { WorkEcho, WorkRelease, WorkDisconnect, WorkClose, WorkCloseAll, WorkFree, WorkStop } WORK_KIND;

typedef struct _CONNECTION {
    LIST_ENTRY Link;                    /* in Server.Connections */
    PWSK_SOCKET Socket;
    LONG Retained;                      /* indication lists not yet released */
    LONG Pending;                       /* work items queued for it, not yet done */
    BOOLEAN CloseWanted;
    BOOLEAN Disconnecting;              /* a WskDisconnect on Irp is under way */
    BOOLEAN Closing;
    PIRP Irp;                           /* for the disconnect and the close */
} CONNECTION, *PCONNECTION;

typedef struct _WORK {
    LIST_ENTRY Link;
    WORK_KIND Kind;
    PCONNECTION Connection;
    PWSK_DATA_INDICATION Indication;
    LONG Remaining;                     /* sends of this indication not yet completed */
} WORK, *PWORK;

static struct {
    WSK_REGISTRATION Registration;
    WSK_PROVIDER_NPI ProviderNpi;
    PWSK_SOCKET Listener;
    USHORT Port;
    KSPIN_LOCK Lock;                    /* Work, Connections */
    LIST_ENTRY Work;
    LIST_ENTRY Connections;
    KEVENT WorkReady;
    KEVENT AllClosed;
    PETHREAD Worker;
} Server;

static const WSK_CLIENT_DISPATCH ClientDispatch = { MAKE_WSK_VERSION(1, 0), 0, NULL };
static NTSTATUS WSKAPI_ReceiveEvent(PVOID, ULONG, PWSK_DATA_INDICATION, SIZE_T, SIZE_T *);
static NTSTATUS WSKAPI_DisconnectEvent(PVOID, ULONG);
static NTSTATUS WSKAPI_AcceptEvent(PVOID, ULONG, PSOCKADDR, PSOCKADDR, PWSK_SOCKET, PVOID *,
                                   CONST WSK_CLIENT_CONNECTION_DISPATCH **);
static const WSK_CLIENT_CONNECTION_DISPATCH ConnectionDispatch = { WSKAPI_ReceiveEvent, WSKAPI_DisconnectEvent, NULL };
static const WSK_CLIENT_LISTEN_DISPATCH ListenDispatch = { WSKAPI_AcceptEvent, NULL, NULL };

/* ---- the work queue ---- */
static VOID Post(PWORK Work)
{
    KIRQL Irql;
    KeAcquireSpinLock(&Server.Lock, &Irql);
    InsertTailList(&Server.Work, &Work->Link);
    KeReleaseSpinLock(&Server.Lock, Irql);
    KeSetEvent(&Server.WorkReady, IO_NO_INCREMENT, FALSE);
}

static VOID Queue(WORK_KIND Kind, PCONNECTION Connection, PWSK_DATA_INDICATION Indication)
{
    PWORK Work = ExAllocatePoolZero(NonPagedPoolNx, sizeof *Work, ECHO_TAG);
    if (Work == NULL) return;           /* a real driver would keep a reserve */
    Work->Kind = Kind;
    Work->Connection = Connection;
    Work->Indication = Indication;
    if (Connection != NULL) InterlockedIncrement(&Connection->Pending);
    Post(Work);
}

/* One send of an echo completed; after the last, the same work item releases the list. */
static VOID SendDone(PWORK Work)
{
    if (InterlockedDecrement(&Work->Remaining) == 0) {
        Work->Kind = WorkRelease;
        Post(Work);
    }
}

static IO_COMPLETION_ROUTINE SendComplete;
static NTSTATUS SendComplete(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    IoFreeIrp(Irp);
    SendDone(Context);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

/* The disconnect or the close of a connection completed: queue what comes next. */
static IO_COMPLETION_ROUTINE StepComplete;
static NTSTATUS StepComplete(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    PCONNECTION Connection = Context;
    UNREFERENCED_PARAMETER(DeviceObject);
    UNREFERENCED_PARAMETER(Irp);
    if (!Connection->Closing)
        Connection->Disconnecting = FALSE;  /* the worker reads it after this Queue */
    Queue(Connection->Closing ? WorkFree : WorkClose, Connection, NULL);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static PIRP StepIrp(PCONNECTION Connection)
{
    IoReuseIrp(Connection->Irp, STATUS_UNSUCCESSFUL);
    IoSetCompletionRoutine(Connection->Irp, StepComplete, Connection, TRUE, TRUE, TRUE);
    return Connection->Irp;
}

static PWSK_PROVIDER_CONNECTION_DISPATCH Dispatch(PCONNECTION Connection)
{
    return (PWSK_PROVIDER_CONNECTION_DISPATCH)Connection->Socket->Dispatch;
}

static VOID Close(PCONNECTION Connection)
{
    if (Connection->Closing) return;
    if (ReadNoFence(&Connection->Retained) > 0 || Connection->Disconnecting) {  /* later */
        Connection->CloseWanted = TRUE;
        return;
    }
    Connection->Closing = TRUE;
    Dispatch(Connection)->WskCloseSocket(Connection->Socket, StepIrp(Connection));
}

static VOID Echo(PWORK Work)
{
    PWSK_DATA_INDICATION Each;
    LONG Count = 0;
    for (Each = Work->Indication; Each != NULL; Each = Each->Next) Count++;
    Work->Remaining = Count;
    for (Each = Work->Indication; Each != NULL; Each = Each->Next) {
        PIRP Irp = IoAllocateIrp(1, FALSE);
        if (Irp == NULL) {              /* this element is not echoed */
            SendDone(Work);
            continue;
        }
        IoSetCompletionRoutine(Irp, SendComplete, Work, TRUE, TRUE, TRUE);
        Dispatch(Work->Connection)->WskSend(Work->Connection->Socket, &Each->Buffer, 0, Irp);
    }
}

static KSTART_ROUTINE Worker;
static VOID Worker(PVOID StartContext)
{
    UNREFERENCED_PARAMETER(StartContext);
    for (;;) {
        KIRQL Irql;
        PWORK Work = NULL;
        KeWaitForSingleObject(&Server.WorkReady, Executive, KernelMode, FALSE, NULL);
        for (;;) {
            KeAcquireSpinLock(&Server.Lock, &Irql);
            Work = IsListEmpty(&Server.Work) ? NULL : CONTAINING_RECORD(RemoveHeadList(&Server.Work), WORK, Link);
            KeReleaseSpinLock(&Server.Lock, Irql);
            if (Work == NULL) break;
            PCONNECTION Connection = Work->Connection;
            switch (Work->Kind) {
            case WorkEcho:
                if (Connection->Closing) {     /* too late to echo: give the list back */
                    Work->Kind = WorkRelease;
                    Post(Work);
                    continue;
                }
                Echo(Work);
                continue;               /* the last send completion posts it again */
            case WorkRelease:
                Dispatch(Connection)->WskRelease(Connection->Socket, Work->Indication);
                if (InterlockedDecrement(&Connection->Retained) == 0 && Connection->CloseWanted)
                    Close(Connection);
                break;
            case WorkDisconnect:
                if (!Connection->Closing && !Connection->Disconnecting && !Connection->CloseWanted) {
                    Connection->Disconnecting = TRUE;
                    Dispatch(Connection)->WskDisconnect(Connection->Socket, NULL, 0, StepIrp(Connection));
                }
                break;
            case WorkClose:
                Close(Connection);
                break;
            case WorkCloseAll:                  /* only this thread frees connections */
                for (PLIST_ENTRY Entry = Server.Connections.Flink; Entry != &Server.Connections;
                     Entry = Entry->Flink)
                    Close(CONTAINING_RECORD(Entry, CONNECTION, Link));
                break;
            case WorkFree:
                if (InterlockedCompareExchange(&Connection->Pending, 0, 0) > 1) {
                    Post(Work);                 /* after the work still queued for it */
                    continue;
                }
                IoFreeIrp(Connection->Irp);
                KeAcquireSpinLock(&Server.Lock, &Irql);
                RemoveEntryList(&Connection->Link);
                if (IsListEmpty(&Server.Connections))   /* under the lock: an accept clears it */
                    KeSetEvent(&Server.AllClosed, IO_NO_INCREMENT, FALSE);
                KeReleaseSpinLock(&Server.Lock, Irql);
                ExFreePoolWithTag(Connection, ECHO_TAG);
                ExFreePoolWithTag(Work, ECHO_TAG);
                continue;
            case WorkStop:
                ExFreePoolWithTag(Work, ECHO_TAG);
                PsTerminateSystemThread(STATUS_SUCCESS);
                return;
            }
            if (Connection != NULL) InterlockedDecrement(&Connection->Pending);
            ExFreePoolWithTag(Work, ECHO_TAG);
        }
    }
}

/* ---- event callbacks (provider thread, DISPATCH_LEVEL) ---- */
static NTSTATUS WSKAPI_AcceptEvent(PVOID SocketContext, ULONG Flags, PSOCKADDR LocalAddress,
    PSOCKADDR RemoteAddress, PWSK_SOCKET AcceptSocket, PVOID *AcceptSocketContext,
    CONST WSK_CLIENT_CONNECTION_DISPATCH **AcceptSocketDispatch)
{
    KIRQL Irql;
    UNREFERENCED_PARAMETER(SocketContext);
    UNREFERENCED_PARAMETER(Flags);
    UNREFERENCED_PARAMETER(LocalAddress);
    UNREFERENCED_PARAMETER(RemoteAddress);
    if (AcceptSocket == NULL)           /* the listener is going away */
        return STATUS_REQUEST_NOT_ACCEPTED;
    PCONNECTION Connection = ExAllocatePoolZero(NonPagedPoolNx, sizeof *Connection, ECHO_TAG);
    if (Connection == NULL) return STATUS_REQUEST_NOT_ACCEPTED;
    Connection->Irp = IoAllocateIrp(1, FALSE);
    if (Connection->Irp == NULL) {
        ExFreePoolWithTag(Connection, ECHO_TAG);
        return STATUS_REQUEST_NOT_ACCEPTED;
    }
    Connection->Socket = AcceptSocket;
    KeAcquireSpinLock(&Server.Lock, &Irql);
    InsertTailList(&Server.Connections, &Connection->Link);
    KeClearEvent(&Server.AllClosed);
    KeReleaseSpinLock(&Server.Lock, Irql);
    *AcceptSocketContext = Connection;
    *AcceptSocketDispatch = &ConnectionDispatch;
    return STATUS_SUCCESS;
}

static NTSTATUS WSKAPI_ReceiveEvent(PVOID SocketContext, ULONG Flags, PWSK_DATA_INDICATION DataIndication,
    SIZE_T BytesIndicated, SIZE_T *BytesAccepted)
{
    PCONNECTION Connection = SocketContext;
    UNREFERENCED_PARAMETER(Flags);
    UNREFERENCED_PARAMETER(BytesIndicated);
    UNREFERENCED_PARAMETER(BytesAccepted);
    if (DataIndication == NULL) {       /* the connection is no longer usable */
        Queue(WorkClose, Connection, NULL);
        return STATUS_SUCCESS;
    }
    InterlockedIncrement(&Connection->Retained);
    Queue(WorkEcho, Connection, DataIndication);
    return STATUS_PENDING;              /* retained: released after the echo */
}

static NTSTATUS WSKAPI_DisconnectEvent(PVOID SocketContext, ULONG Flags)
{
    UNREFERENCED_PARAMETER(Flags);
    Queue(WorkDisconnect, (PCONNECTION)SocketContext, NULL);
    return STATUS_SUCCESS;
}

/* ---- synchronous helpers for the PASSIVE_LEVEL paths ---- */
static IO_COMPLETION_ROUTINE SyncComplete;
static NTSTATUS SyncComplete(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    UNREFERENCED_PARAMETER(Irp);
    KeSetEvent((PKEVENT)Context, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static NTSTATUS SyncWait(NTSTATUS Status, PIRP Irp, PKEVENT Event, ULONG_PTR *Information)
{
    if (Status == STATUS_PENDING)
        KeWaitForSingleObject(Event, Executive, KernelMode, FALSE, NULL);
    Status = Irp->IoStatus.Status;
    if (Information) *Information = Irp->IoStatus.Information;
    IoReuseIrp(Irp, STATUS_UNSUCCESSFUL);
    IoSetCompletionRoutine(Irp, SyncComplete, Event, TRUE, TRUE, TRUE);
    KeResetEvent(Event);
    return Status;
}

NTSTATUS StartServer(USHORT Port, ADDRESS_FAMILY Family)
{
    KEVENT Event;
    ULONG_PTR Information = 0;
    SOCKADDR_IN6 Address6;
    SOCKADDR_IN Address4;
    PSOCKADDR Address = Family == AF_INET6 ? (PSOCKADDR)&Address6 : (PSOCKADDR)&Address4;
    PIRP Irp = IoAllocateIrp(1, FALSE);
    if (Irp == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    KeInitializeEvent(&Event, NotificationEvent, FALSE);
    IoSetCompletionRoutine(Irp, SyncComplete, &Event, TRUE, TRUE, TRUE);
    NTSTATUS Status = Server.ProviderNpi.Dispatch->WskSocket(Server.ProviderNpi.Client, Family, SOCK_STREAM,
        IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET, NULL, &ListenDispatch, NULL, NULL, NULL, Irp);
    Status = SyncWait(Status, Irp, &Event, &Information);
    if (NT_SUCCESS(Status)) {
        Server.Listener = (PWSK_SOCKET)Information;
        PWSK_PROVIDER_LISTEN_DISPATCH Listen = (PWSK_PROVIDER_LISTEN_DISPATCH)Server.Listener->Dispatch;
        if (Family == AF_INET6) {
            IN6ADDR_SETLOOPBACK(&Address6);
            Address6.sin6_port = RtlUshortByteSwap(Port);
        } else {
            IN4ADDR_SETLOOPBACK(&Address4);
            Address4.sin_port = RtlUshortByteSwap(Port);
        }
        Status = SyncWait(Listen->WskBind(Server.Listener, Address, 0, Irp), Irp, &Event, NULL);
        if (NT_SUCCESS(Status))
            Status = SyncWait(Listen->WskGetLocalAddress(Server.Listener, Address, Irp), Irp, &Event, NULL);
        if (NT_SUCCESS(Status))
            Server.Port = RtlUshortByteSwap(Family == AF_INET6 ? Address6.sin6_port : Address4.sin_port);
    }
    DbgPrint("echosrv: listening on port %u -> 0x%08X\n", Server.Port, (unsigned)Status);
    IoFreeIrp(Irp);
    return Status;
}

USHORT ServerPort(void) { return Server.Port; }

static DRIVER_UNLOAD Unload;
static VOID Unload(PDRIVER_OBJECT DriverObject)
{
    KEVENT Event;
    LARGE_INTEGER Timeout;
    UNREFERENCED_PARAMETER(DriverObject);
    KeInitializeEvent(&Event, NotificationEvent, FALSE);
    if (Server.Listener != NULL) {
        PIRP Irp = IoAllocateIrp(1, FALSE);
        if (Irp != NULL) {
            IoSetCompletionRoutine(Irp, SyncComplete, &Event, TRUE, TRUE, TRUE);
            SyncWait(((PWSK_PROVIDER_LISTEN_DISPATCH)Server.Listener->Dispatch)->WskCloseSocket(Server.Listener, Irp),
                     Irp, &Event, NULL);
            IoFreeIrp(Irp);
        }
    }
    Queue(WorkCloseAll, NULL, NULL);
    Timeout.QuadPart = -10LL * 10 * 1000 * 1000;
    KeWaitForSingleObject(&Server.AllClosed, Executive, KernelMode, FALSE, &Timeout);
    Queue(WorkStop, NULL, NULL);
    KeWaitForSingleObject(Server.Worker, Executive, KernelMode, FALSE, &Timeout);
    ObDereferenceObject(Server.Worker);
    WskReleaseProviderNPI(&Server.Registration);
    WskDeregister(&Server.Registration);
    DbgPrint("echosrv: unloaded\n");
}

DRIVER_INITIALIZE DriverEntry;
NTSTATUS DriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    WSK_CLIENT_NPI ClientNpi = { NULL, &ClientDispatch };
    WSK_EVENT_CALLBACK_CONTROL Callbacks = { (PNPIID)&NPI_WSK_INTERFACE_ID,
                                             WSK_EVENT_ACCEPT | WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT };
    HANDLE Thread;
    UNREFERENCED_PARAMETER(RegistryPath);
    KeInitializeSpinLock(&Server.Lock);
    InitializeListHead(&Server.Work);
    InitializeListHead(&Server.Connections);
    KeInitializeEvent(&Server.WorkReady, SynchronizationEvent, FALSE);
    KeInitializeEvent(&Server.AllClosed, NotificationEvent, TRUE);
    NTSTATUS Status = WskRegister(&ClientNpi, &Server.Registration);
    if (!NT_SUCCESS(Status)) return Status;
    Status = WskCaptureProviderNPI(&Server.Registration, WSK_INFINITE_WAIT, &Server.ProviderNpi);
    if (NT_SUCCESS(Status))
        Status = Server.ProviderNpi.Dispatch->WskControlClient(Server.ProviderNpi.Client, WSK_SET_STATIC_EVENT_CALLBACKS,
            sizeof Callbacks, &Callbacks, 0, NULL, NULL, NULL);
    if (NT_SUCCESS(Status))
        Status = PsCreateSystemThread(&Thread, THREAD_ALL_ACCESS, NULL, NULL, NULL, Worker, NULL);
    if (NT_SUCCESS(Status)) {
        Status = ObReferenceObjectByHandle(Thread, THREAD_ALL_ACCESS, *PsThreadType, KernelMode,
                                           (PVOID *)&Server.Worker, NULL);
        ZwClose(Thread);
    }
    if (!NT_SUCCESS(Status)) {
        WskReleaseProviderNPI(&Server.Registration);
        WskDeregister(&Server.Registration);
        return Status;
    }
    DriverObject->DriverUnload = Unload;
    return STATUS_SUCCESS;
}
