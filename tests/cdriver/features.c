/* features.c - a test driver that uses the runtime's less common parts and checks what it
 * sees: each exported function returns STATUS_SUCCESS, or the status of the first check
 * that failed (with a DbgPrint naming it). */
#include <ntddk.h>
#include <wsk.h>

#define TAG 'taeF'
#define CHECK(c) do { if (!(c)) { DbgPrint("features: check failed: %s (line %d)\n", #c, __LINE__); return STATUS_UNSUCCESSFUL; } } while (0)

static WSK_REGISTRATION Registration;
static WSK_PROVIDER_NPI ProviderNpi;
static const WSK_CLIENT_DISPATCH ClientDispatch = { MAKE_WSK_VERSION(1, 0), 0, NULL };

static NTSTATUS Signal(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    UNREFERENCED_PARAMETER(Irp);
    KeSetEvent((PKEVENT)Context, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static NTSTATUS Wait(NTSTATUS Status, PIRP Irp, PKEVENT Event)
{
    if (Status == STATUS_PENDING) KeWaitForSingleObject(Event, Executive, KernelMode, FALSE, NULL);
    return Irp->IoStatus.Status;
}

/* Interlocked, lists, SLists, spin locks, KeWaitForMultipleObjects. */
NTSTATUS Primitives(void)
{
    LONG Count = 0;
    CHECK(InterlockedIncrement(&Count) == 1);
    CHECK(InterlockedCompareExchange(&Count, 5, 1) == 1 && Count == 5);
    CHECK(InterlockedExchangeAdd(&Count, 2) == 5 && Count == 7);

    LIST_ENTRY Head, A, B;
    InitializeListHead(&Head);
    InsertTailList(&Head, &A);
    InsertTailList(&Head, &B);
    CHECK(RemoveHeadList(&Head) == &A && !IsListEmpty(&Head));

    SLIST_HEADER SHead;
    SLIST_ENTRY S1, S2;
    InitializeSListHead(&SHead);
    InterlockedPushEntrySList(&SHead, &S1);
    InterlockedPushEntrySList(&SHead, &S2);
    CHECK(QueryDepthSList(&SHead) == 2 && InterlockedPopEntrySList(&SHead) == &S2);

    KSPIN_LOCK Lock;
    KIRQL Old;
    KeInitializeSpinLock(&Lock);
    KeAcquireSpinLock(&Lock, &Old);
    CHECK(KeGetCurrentIrql() == DISPATCH_LEVEL);
    KeReleaseSpinLock(&Lock, Old);
    CHECK(KeGetCurrentIrql() == PASSIVE_LEVEL);

    KEVENT E1, E2;
    PVOID Objects[2] = { &E1, &E2 };
    LARGE_INTEGER Zero;
    Zero.QuadPart = 0;
    KeInitializeEvent(&E1, NotificationEvent, FALSE);
    KeInitializeEvent(&E2, SynchronizationEvent, TRUE);
    CHECK(KeWaitForMultipleObjects(2, Objects, WaitAny, Executive, KernelMode, FALSE, &Zero, NULL) == STATUS_WAIT_0 + 1);
    CHECK(KeWaitForMultipleObjects(2, Objects, WaitAny, Executive, KernelMode, FALSE, &Zero, NULL) == STATUS_TIMEOUT);
    CHECK(KeReadStateEvent(&E2) == 0);

    UNICODE_STRING U1 = RTL_CONSTANT_STRING(u"Wsk"), U2;
    RtlInitUnicodeString(&U2, u"wsk");
    CHECK(U1.Length == 6 && RtlEqualUnicodeString(&U1, &U2, TRUE) && !RtlEqualUnicodeString(&U1, &U2, FALSE));
    return STATUS_SUCCESS;
}

/* An IRP in the driver's own pool memory (IoInitializeIrp), and an MDL chain of two MDLs
 * linked by Next, sent in one WskSend: the peer must get "hello world". */
NTSTATUS ChainSend(USHORT Port)
{
    WSK_CLIENT_NPI ClientNpi = { NULL, &ClientDispatch };
    SOCKADDR_IN Local, Remote;
    KEVENT Event;
    NTSTATUS Status = WskRegister(&ClientNpi, &Registration);
    CHECK(NT_SUCCESS(Status));
    CHECK(NT_SUCCESS(WskCaptureProviderNPI(&Registration, WSK_INFINITE_WAIT, &ProviderNpi)));
    KeInitializeEvent(&Event, NotificationEvent, FALSE);

    USHORT Size = IoSizeOfIrp(1);
    PIRP Irp = ExAllocatePoolWithTag(NonPagedPoolNx, Size, TAG);
    CHECK(Irp != NULL);
    IoInitializeIrp(Irp, Size, 1);
    IoSetCompletionRoutine(Irp, Signal, &Event, TRUE, TRUE, TRUE);
    IN4ADDR_SETLOOPBACK(&Local);
    IN4ADDR_SETLOOPBACK(&Remote);
    Remote.sin_port = RtlUshortByteSwap(Port);
    Status = Wait(ProviderNpi.Dispatch->WskSocketConnect(ProviderNpi.Client, SOCK_STREAM, IPPROTO_TCP,
        (PSOCKADDR)&Local, (PSOCKADDR)&Remote, 0, NULL, NULL, NULL, NULL, NULL, Irp), Irp, &Event);
    CHECK(NT_SUCCESS(Status));
    PWSK_SOCKET Socket = (PWSK_SOCKET)Irp->IoStatus.Information;
    PWSK_PROVIDER_CONNECTION_DISPATCH Dispatch = (PWSK_PROVIDER_CONNECTION_DISPATCH)Socket->Dispatch;

    static char First[] = "hello ", Second[] = "world";
    PMDL Mdl1 = IoAllocateMdl(First, 6, FALSE, FALSE, NULL);
    PMDL Mdl2 = IoAllocateMdl(Second, 5, FALSE, FALSE, NULL);
    MmBuildMdlForNonPagedPool(Mdl1);
    MmBuildMdlForNonPagedPool(Mdl2);
    Mdl1->Next = Mdl2;
    CHECK(MmGetMdlByteCount(Mdl1) == 6 && MmGetSystemAddressForMdlSafe(Mdl2, NormalPagePriority) == Second);
    WSK_BUF Buffer = { Mdl1, 0, 11 };
    KeResetEvent(&Event);
    IoReuseIrp(Irp, STATUS_UNSUCCESSFUL);
    IoSetCompletionRoutine(Irp, Signal, &Event, TRUE, TRUE, TRUE);
    Status = Wait(Dispatch->WskSend(Socket, &Buffer, 0, Irp), Irp, &Event);
    CHECK(NT_SUCCESS(Status) && Irp->IoStatus.Information == 11);

    KeResetEvent(&Event);                   /* graceful: the peer reads to its end */
    IoReuseIrp(Irp, STATUS_UNSUCCESSFUL);
    IoSetCompletionRoutine(Irp, Signal, &Event, TRUE, TRUE, TRUE);
    Status = Wait(Dispatch->WskDisconnect(Socket, NULL, 0, Irp), Irp, &Event);
    CHECK(NT_SUCCESS(Status));

    KeResetEvent(&Event);
    IoReuseIrp(Irp, STATUS_UNSUCCESSFUL);
    IoSetCompletionRoutine(Irp, Signal, &Event, TRUE, TRUE, TRUE);
    Status = Wait(Dispatch->WskCloseSocket(Socket, Irp), Irp, &Event);
    IoFreeMdl(Mdl1);
    IoFreeMdl(Mdl2);
    ExFreePoolWithTag(Irp, TAG);           /* frees the IRP made in it */
    WskReleaseProviderNPI(&Registration);
    WskDeregister(&Registration);
    return Status;
}

static NTSTATUS Register(void)
{
    WSK_CLIENT_NPI ClientNpi = { NULL, &ClientDispatch };
    NTSTATUS Status = WskRegister(&ClientNpi, &Registration);
    if (!NT_SUCCESS(Status)) return Status;
    Status = WskCaptureProviderNPI(&Registration, WSK_INFINITE_WAIT, &ProviderNpi);
    if (!NT_SUCCESS(Status)) WskDeregister(&Registration);
    return Status;
}

static VOID Deregister(void)
{
    WskReleaseProviderNPI(&Registration);
    WskDeregister(&Registration);
}

static PIRP Again(PIRP Irp, PKEVENT Event)
{
    KeResetEvent(Event);
    IoReuseIrp(Irp, STATUS_UNSUCCESSFUL);
    IoSetCompletionRoutine(Irp, Signal, Event, TRUE, TRUE, TRUE);
    return Irp;
}

/* A TCP socket of the kind Flags says, made with WskSocket on Irp and waited for. */
static NTSTATUS OpenSocket(ULONG Flags, CONST VOID *Events, PIRP Irp, PKEVENT Event, PWSK_SOCKET *Socket)
{
    NTSTATUS Status = Wait(ProviderNpi.Dispatch->WskSocket(ProviderNpi.Client, AF_INET, SOCK_STREAM, IPPROTO_TCP,
        Flags, NULL, Events, NULL, NULL, NULL, Again(Irp, Event)), Irp, Event);
    *Socket = NT_SUCCESS(Status) ? (PWSK_SOCKET)Irp->IoStatus.Information : NULL;
    return Status;
}

/* WskGetNameInfo: 127.0.0.1:8080, numeric, is "127.0.0.1" and "8080" in the caller's buffers. */
NTSTATUS NameInfo(void)
{
    KEVENT Event;
    SOCKADDR_IN Address;
    WCHAR Host[NI_MAXHOST], Service[NI_MAXSERV];
    UNICODE_STRING Node = { 0, sizeof Host, Host }, Serv = { 0, sizeof Service, Service };
    UNICODE_STRING WantHost = RTL_CONSTANT_STRING(u"127.0.0.1"), WantService = RTL_CONSTANT_STRING(u"8080");
    CHECK(NT_SUCCESS(Register()));
    KeInitializeEvent(&Event, NotificationEvent, FALSE);
    IN4ADDR_SETLOOPBACK(&Address);
    Address.sin_port = RtlUshortByteSwap(8080);
    PIRP Irp = IoAllocateIrp(1, FALSE);
    IoSetCompletionRoutine(Irp, Signal, &Event, TRUE, TRUE, TRUE);
    NTSTATUS Status = Wait(ProviderNpi.Dispatch->WskGetNameInfo(ProviderNpi.Client, (PSOCKADDR)&Address,
        sizeof Address, &Node, &Serv, NI_NUMERICHOST | NI_NUMERICSERV, NULL, NULL, Irp), Irp, &Event);
    IoFreeIrp(Irp);
    Deregister();
    CHECK(Status == STATUS_SUCCESS);
    CHECK(RtlEqualUnicodeString(&Node, &WantHost, FALSE) && Host[9] == 0);
    CHECK(RtlEqualUnicodeString(&Serv, &WantService, FALSE));
    return STATUS_SUCCESS;
}

/* WskConnectEx with data, WskSendEx, WskReceiveEx (its out-parameters), against a peer
 * that echoes: "hello" goes with the connect, " ex" after; "hello ex" comes back. */
NTSTATUS ExCalls(USHORT Port)
{
    KEVENT Event;
    SOCKADDR_IN Local, Remote;
    static char Hello[] = "hello", Ex[] = " ex";
    static char Echo[64];
    CHECK(NT_SUCCESS(Register()));
    KeInitializeEvent(&Event, NotificationEvent, FALSE);
    PIRP Irp = IoAllocateIrp(1, FALSE);
    PWSK_SOCKET Socket;
    NTSTATUS Status = OpenSocket(WSK_FLAG_CONNECTION_SOCKET, NULL, Irp, &Event, &Socket);
    CHECK(NT_SUCCESS(Status));
    PWSK_PROVIDER_CONNECTION_DISPATCH Dispatch = (PWSK_PROVIDER_CONNECTION_DISPATCH)Socket->Dispatch;
    IN4ADDR_SETLOOPBACK(&Local);
    IN4ADDR_SETLOOPBACK(&Remote);
    Remote.sin_port = RtlUshortByteSwap(Port);
    CHECK(NT_SUCCESS(Wait(Dispatch->WskBind(Socket, (PSOCKADDR)&Local, 0, Again(Irp, &Event)), Irp, &Event)));

    PMDL HelloMdl = IoAllocateMdl(Hello, 5, FALSE, FALSE, NULL), ExMdl = IoAllocateMdl(Ex, 3, FALSE, FALSE, NULL);
    PMDL EchoMdl = IoAllocateMdl(Echo, sizeof Echo, FALSE, FALSE, NULL);
    MmBuildMdlForNonPagedPool(HelloMdl);
    MmBuildMdlForNonPagedPool(ExMdl);
    MmBuildMdlForNonPagedPool(EchoMdl);
    WSK_BUF First = { HelloMdl, 0, 5 }, Second = { ExMdl, 0, 3 };
    Status = Wait(Dispatch->WskConnectEx(Socket, (PSOCKADDR)&Remote, &First, 0, Again(Irp, &Event)), Irp, &Event);
    CHECK(NT_SUCCESS(Status));
    Status = Wait(Dispatch->WskSendEx(Socket, &Second, 0, 0, NULL, Again(Irp, &Event)), Irp, &Event);
    CHECK(NT_SUCCESS(Status) && Irp->IoStatus.Information == 3);
    ULONG Got = 0;
    while (Got < 8) {
        ULONG InfoLength = 77, ControlFlags = 77;
        WSK_BUF In = { EchoMdl, Got, sizeof Echo - Got };
        Status = Wait(Dispatch->WskReceiveEx(Socket, &In, 0, &InfoLength, NULL, &ControlFlags, Again(Irp, &Event)),
                      Irp, &Event);
        CHECK(NT_SUCCESS(Status) && Irp->IoStatus.Information > 0);
        CHECK(InfoLength == 0 && ControlFlags == 0);   /* TCP data carries no control information */
        Got += (ULONG)Irp->IoStatus.Information;
    }
    CHECK(Got == 8 && RtlCompareMemory(Echo, "hello ex", 8) == 8);
    Status = Wait(Dispatch->WskDisconnect(Socket, NULL, 0, Again(Irp, &Event)), Irp, &Event);
    CHECK(NT_SUCCESS(Status));
    Status = Wait(Dispatch->WskCloseSocket(Socket, Again(Irp, &Event)), Irp, &Event);
    IoFreeMdl(HelloMdl);
    IoFreeMdl(ExMdl);
    IoFreeMdl(EchoMdl);
    IoFreeIrp(Irp);
    Deregister();
    return Status;
}

/* Conditional accept: WskInspectEvent pends each request; the test decides it with
 * WskInspectComplete; an accepted one reaches WskAcceptEvent. */
static struct {
    PWSK_SOCKET Listener, Accepted;
    WSK_INSPECT_ID Pended;
    SOCKADDR_IN Remote;
    WSK_INSPECT_ID Aborted;
    KEVENT Inspected, AcceptedEvent, AbortedEvent;
} Cond;

static WSK_INSPECT_ACTION WSKAPI CondInspect(PVOID Context, PSOCKADDR Local, PSOCKADDR Remote, PWSK_INSPECT_ID Id)
{
    UNREFERENCED_PARAMETER(Context);
    UNREFERENCED_PARAMETER(Local);
    if (Id == NULL) return WskInspectReject;           /* the listener is going away */
    Cond.Pended = *Id;
    RtlCopyMemory(&Cond.Remote, Remote, sizeof Cond.Remote);
    KeSetEvent(&Cond.Inspected, IO_NO_INCREMENT, FALSE);
    return WskInspectPend;
}

static NTSTATUS WSKAPI CondAccept(PVOID Context, ULONG Flags, PSOCKADDR Local, PSOCKADDR Remote,
    PWSK_SOCKET Socket, PVOID *SocketContext, CONST WSK_CLIENT_CONNECTION_DISPATCH **Dispatch)
{
    UNREFERENCED_PARAMETER(Context);
    UNREFERENCED_PARAMETER(Flags);
    UNREFERENCED_PARAMETER(Local);
    UNREFERENCED_PARAMETER(Remote);
    UNREFERENCED_PARAMETER(SocketContext);
    UNREFERENCED_PARAMETER(Dispatch);
    if (Socket == NULL) return STATUS_REQUEST_NOT_ACCEPTED;
    Cond.Accepted = Socket;
    KeSetEvent(&Cond.AcceptedEvent, IO_NO_INCREMENT, FALSE);
    return STATUS_SUCCESS;
}

static NTSTATUS WSKAPI CondAbort(PVOID Context, PWSK_INSPECT_ID Id)
{
    UNREFERENCED_PARAMETER(Context);
    Cond.Aborted = *Id;
    KeSetEvent(&Cond.AbortedEvent, IO_NO_INCREMENT, FALSE);
    return STATUS_SUCCESS;
}

static const WSK_CLIENT_LISTEN_DISPATCH CondDispatch = { CondAccept, CondInspect, CondAbort };

NTSTATUS ConditionalListen(USHORT *Port)
{
    KEVENT Event;
    SOCKADDR_IN Local;
    ULONG On = 1;
    WSK_EVENT_CALLBACK_CONTROL Control = { (PNPIID)&NPI_WSK_INTERFACE_ID, WSK_EVENT_ACCEPT };
    CHECK(NT_SUCCESS(Register()));
    RtlZeroMemory(&Cond, sizeof Cond);
    KeInitializeEvent(&Cond.Inspected, NotificationEvent, FALSE);
    KeInitializeEvent(&Cond.AcceptedEvent, NotificationEvent, FALSE);
    KeInitializeEvent(&Cond.AbortedEvent, NotificationEvent, FALSE);
    KeInitializeEvent(&Event, NotificationEvent, FALSE);
    PIRP Irp = IoAllocateIrp(1, FALSE);
    NTSTATUS Status = OpenSocket(WSK_FLAG_LISTEN_SOCKET, &CondDispatch, Irp, &Event, &Cond.Listener);
    CHECK(NT_SUCCESS(Status));
    PWSK_PROVIDER_LISTEN_DISPATCH Dispatch = (PWSK_PROVIDER_LISTEN_DISPATCH)Cond.Listener->Dispatch;
    Status = Wait(Dispatch->WskControlSocket(Cond.Listener, WskSetOption, SO_CONDITIONAL_ACCEPT, SOL_SOCKET,
        sizeof On, &On, 0, NULL, NULL, Again(Irp, &Event)), Irp, &Event);
    CHECK(NT_SUCCESS(Status));
    IN4ADDR_SETLOOPBACK(&Local);
    CHECK(NT_SUCCESS(Wait(Dispatch->WskBind(Cond.Listener, (PSOCKADDR)&Local, 0, Again(Irp, &Event)), Irp, &Event)));
    CHECK(NT_SUCCESS(Wait(Dispatch->WskGetLocalAddress(Cond.Listener, (PSOCKADDR)&Local, Again(Irp, &Event)),
                          Irp, &Event)));
    *Port = RtlUshortByteSwap(Local.sin_port);
    IoFreeIrp(Irp);
    return Dispatch->WskControlSocket(Cond.Listener, WskSetOption, SO_WSK_EVENT_CALLBACK, SOL_SOCKET,
        sizeof Control, &Control, 0, NULL, NULL, NULL);
}

/* Wait (bounded) for the inspect event, decide with WskInspectComplete; with Accept, wait
 * for the accept event too.  Returns the peer's port as seen by WskInspectEvent in *Peer. */
NTSTATUS ConditionalDecide(WSK_INSPECT_ACTION Action, USHORT *Peer)
{
    KEVENT Event;
    LARGE_INTEGER Timeout;
    Timeout.QuadPart = -10LL * 1000 * 1000 * 10;
    CHECK(KeWaitForSingleObject(&Cond.Inspected, Executive, KernelMode, FALSE, &Timeout) == STATUS_SUCCESS);
    *Peer = RtlUshortByteSwap(Cond.Remote.sin_port);
    KeInitializeEvent(&Event, NotificationEvent, FALSE);
    PIRP Irp = IoAllocateIrp(1, FALSE);
    PWSK_PROVIDER_LISTEN_DISPATCH Dispatch = (PWSK_PROVIDER_LISTEN_DISPATCH)Cond.Listener->Dispatch;
    NTSTATUS Status = Wait(Dispatch->WskInspectComplete(Cond.Listener, &Cond.Pended, Action, Again(Irp, &Event)),
                           Irp, &Event);
    IoFreeIrp(Irp);
    CHECK(Status == STATUS_SUCCESS);
    if (Action == WskInspectAccept)
        CHECK(KeWaitForSingleObject(&Cond.AcceptedEvent, Executive, KernelMode, FALSE, &Timeout) == STATUS_SUCCESS);
    return STATUS_SUCCESS;
}

/* Wait (bounded) for the inspect event, or for the abort event of the request it pended. */
NTSTATUS ConditionalWait(ULONG Abort)
{
    LARGE_INTEGER Timeout;
    Timeout.QuadPart = -10LL * 1000 * 1000 * 10;
    CHECK(KeWaitForSingleObject(Abort ? &Cond.AbortedEvent : &Cond.Inspected, Executive, KernelMode, FALSE,
                                &Timeout) == STATUS_SUCCESS);
    if (Abort)
        CHECK(Cond.Aborted.Key == Cond.Pended.Key && Cond.Aborted.SerialNumber == Cond.Pended.SerialNumber);
    return STATUS_SUCCESS;
}

NTSTATUS ConditionalClose(void)
{
    KEVENT Event;
    KeInitializeEvent(&Event, NotificationEvent, FALSE);
    PIRP Irp = IoAllocateIrp(1, FALSE);
    if (Cond.Accepted != NULL) {
        PWSK_PROVIDER_CONNECTION_DISPATCH D = (PWSK_PROVIDER_CONNECTION_DISPATCH)Cond.Accepted->Dispatch;
        Wait(D->WskCloseSocket(Cond.Accepted, Again(Irp, &Event)), Irp, &Event);
    }
    PWSK_PROVIDER_LISTEN_DISPATCH Dispatch = (PWSK_PROVIDER_LISTEN_DISPATCH)Cond.Listener->Dispatch;
    NTSTATUS Status = Wait(Dispatch->WskCloseSocket(Cond.Listener, Again(Irp, &Event)), Irp, &Event);
    IoFreeIrp(Irp);
    Deregister();
    return Status;
}

/* Datagram control information: IP_PKTINFO on two UDP sockets; one receives with
 * WskReceiveFrom (ControlLength / ControlInfo / ControlFlags), the other through
 * WskReceiveFromEvent (each element's ControlInfo).  The test sends one datagram to each. */
static struct {
    PWSK_SOCKET Polled, Evented;
    KEVENT Indicated;
    ULONG Length;
    CMSGHDR Header;
    IN_PKTINFO Info;
    SOCKADDR_IN From;
} Dg;

static NTSTATUS WSKAPI DgReceiveFromEvent(PVOID Context, ULONG Flags, PWSK_DATAGRAM_INDICATION List)
{
    UNREFERENCED_PARAMETER(Context);
    UNREFERENCED_PARAMETER(Flags);
    if (List == NULL || KeReadStateEvent(&Dg.Indicated)) return STATUS_SUCCESS;
    Dg.Length = List->ControlInfoLength;
    if (List->ControlInfo != NULL && Dg.Length >= WSA_CMSG_LEN(sizeof(IN_PKTINFO))) {
        Dg.Header = *List->ControlInfo;
        RtlCopyMemory(&Dg.Info, WSA_CMSG_DATA(List->ControlInfo), sizeof Dg.Info);
    }
    if (List->RemoteAddress != NULL) RtlCopyMemory(&Dg.From, List->RemoteAddress, sizeof Dg.From);
    KeSetEvent(&Dg.Indicated, IO_NO_INCREMENT, FALSE);
    return STATUS_SUCCESS;                      /* not retained */
}

static const WSK_CLIENT_DATAGRAM_DISPATCH DgEvents = { DgReceiveFromEvent };

static NTSTATUS DgOpen(CONST VOID *Events, PWSK_SOCKET *Out, USHORT *Port)
{
    KEVENT Event;
    SOCKADDR_IN Local;
    ULONG On = 1;
    KeInitializeEvent(&Event, NotificationEvent, FALSE);
    PIRP Irp = IoAllocateIrp(1, FALSE);
    NTSTATUS Status = Wait(ProviderNpi.Dispatch->WskSocket(ProviderNpi.Client, AF_INET, SOCK_DGRAM, IPPROTO_UDP,
        WSK_FLAG_DATAGRAM_SOCKET, NULL, Events, NULL, NULL, NULL, Again(Irp, &Event)), Irp, &Event);
    *Out = NT_SUCCESS(Status) ? (PWSK_SOCKET)Irp->IoStatus.Information : NULL;
    PWSK_PROVIDER_DATAGRAM_DISPATCH Dispatch = *Out ? (PWSK_PROVIDER_DATAGRAM_DISPATCH)(*Out)->Dispatch : NULL;
    if (NT_SUCCESS(Status))
        Status = Dispatch->WskControlSocket(*Out, WskSetOption, IP_PKTINFO, IPPROTO_IP, sizeof On, &On, 0, NULL,
                                            NULL, NULL);
    IN4ADDR_SETLOOPBACK(&Local);
    if (NT_SUCCESS(Status))
        Status = Wait(Dispatch->WskBind(*Out, (PSOCKADDR)&Local, 0, Again(Irp, &Event)), Irp, &Event);
    if (NT_SUCCESS(Status))
        Status = Wait(Dispatch->WskGetLocalAddress(*Out, (PSOCKADDR)&Local, Again(Irp, &Event)), Irp, &Event);
    *Port = RtlUshortByteSwap(Local.sin_port);
    IoFreeIrp(Irp);
    return Status;
}

NTSTATUS DatagramOpen(USHORT *Ports)
{
    WSK_EVENT_CALLBACK_CONTROL Control = { (PNPIID)&NPI_WSK_INTERFACE_ID, WSK_EVENT_RECEIVE_FROM };
    CHECK(NT_SUCCESS(Register()));
    RtlZeroMemory(&Dg, sizeof Dg);
    KeInitializeEvent(&Dg.Indicated, NotificationEvent, FALSE);
    CHECK(NT_SUCCESS(DgOpen(NULL, &Dg.Polled, &Ports[0])));
    CHECK(NT_SUCCESS(DgOpen(&DgEvents, &Dg.Evented, &Ports[1])));
    return ((PWSK_PROVIDER_DATAGRAM_DISPATCH)Dg.Evented->Dispatch)->WskControlSocket(Dg.Evented, WskSetOption,
        SO_WSK_EVENT_CALLBACK, SOL_SOCKET, sizeof Control, &Control, 0, NULL, NULL, NULL);
}

/* Both datagrams were sent: check what each way of receiving saw. */
NTSTATUS DatagramCheck(USHORT SenderPort)
{
    KEVENT Event;
    LARGE_INTEGER Timeout;
    static UCHAR Data[64];
    union { CMSGHDR Header; UCHAR Bytes[64]; } Control;
    SOCKADDR_IN From;
    ULONG Length = sizeof Control, Flags = 0xFFFF;
    PWSK_PROVIDER_DATAGRAM_DISPATCH Dispatch = (PWSK_PROVIDER_DATAGRAM_DISPATCH)Dg.Polled->Dispatch;
    Timeout.QuadPart = -10LL * 1000 * 1000 * 10;
    KeInitializeEvent(&Event, NotificationEvent, FALSE);
    PIRP Irp = IoAllocateIrp(1, FALSE);
    PMDL Mdl = IoAllocateMdl(Data, sizeof Data, FALSE, FALSE, NULL);
    MmBuildMdlForNonPagedPool(Mdl);
    WSK_BUF Buffer = { Mdl, 0, sizeof Data };
    NTSTATUS Status = Wait(Dispatch->WskReceiveFrom(Dg.Polled, &Buffer, 0, (PSOCKADDR)&From, &Length,
        &Control.Header, &Flags, Again(Irp, &Event)), Irp, &Event);
    ULONG_PTR Got = Irp->IoStatus.Information;
    IoFreeMdl(Mdl);
    IoFreeIrp(Irp);
    CHECK(Status == STATUS_SUCCESS && Got == 4 && RtlCompareMemory(Data, "poll", 4) == 4);
    CHECK(RtlUshortByteSwap(From.sin_port) == SenderPort);
    CHECK(Flags == 0);
    CHECK(Length == WSA_CMSG_SPACE(sizeof(IN_PKTINFO)));   /* written back: it was sizeof Control */
    CHECK(Control.Header.cmsg_len == WSA_CMSG_LEN(sizeof(IN_PKTINFO)) && Control.Header.cmsg_level == IPPROTO_IP
          && Control.Header.cmsg_type == IP_PKTINFO);
    CHECK(((PIN_PKTINFO)WSA_CMSG_DATA(&Control.Header))->ipi_addr.s_addr == RtlUlongByteSwap(INADDR_LOOPBACK));

    CHECK(KeWaitForSingleObject(&Dg.Indicated, Executive, KernelMode, FALSE, &Timeout) == STATUS_SUCCESS);
    CHECK(Dg.Length == WSA_CMSG_SPACE(sizeof(IN_PKTINFO)) && Dg.Header.cmsg_level == IPPROTO_IP
          && Dg.Header.cmsg_type == IP_PKTINFO);
    CHECK(Dg.Info.ipi_addr.s_addr == RtlUlongByteSwap(INADDR_LOOPBACK));
    CHECK(RtlUshortByteSwap(Dg.From.sin_port) == SenderPort);
    return STATUS_SUCCESS;
}

NTSTATUS DatagramClose(void)
{
    KEVENT Event;
    KeInitializeEvent(&Event, NotificationEvent, FALSE);
    PIRP Irp = IoAllocateIrp(1, FALSE);
    for (int i = 0; i < 2; i++) {
        PWSK_SOCKET S = i ? Dg.Evented : Dg.Polled;
        if (S != NULL)
            Wait(((PWSK_PROVIDER_DATAGRAM_DISPATCH)S->Dispatch)->WskCloseSocket(S, Again(Irp, &Event)), Irp, &Event);
    }
    IoFreeIrp(Irp);
    Deregister();
    return STATUS_SUCCESS;
}

/* WskInspectComplete on a listener without conditional accept: pywsk's status, and the
 * completion routine still ran. */
NTSTATUS InspectComplete(void)
{
    KEVENT Event;
    WSK_INSPECT_ID Id = { 0, 0 };
    CHECK(NT_SUCCESS(Register()));
    KeInitializeEvent(&Event, NotificationEvent, FALSE);
    PIRP Irp = IoAllocateIrp(1, FALSE);
    PWSK_SOCKET Listener;
    NTSTATUS Status = OpenSocket(WSK_FLAG_LISTEN_SOCKET, NULL, Irp, &Event, &Listener);
    CHECK(NT_SUCCESS(Status));
    PWSK_PROVIDER_LISTEN_DISPATCH Dispatch = (PWSK_PROVIDER_LISTEN_DISPATCH)Listener->Dispatch;
    NTSTATUS Returned = Dispatch->WskInspectComplete(Listener, &Id, WskInspectAccept, Again(Irp, &Event));
    Status = Wait(Returned, Irp, &Event);
    CHECK(KeReadStateEvent(&Event) != 0);  /* the completion routine ran */
    CHECK(Returned == Status);
    Wait(Dispatch->WskCloseSocket(Listener, Again(Irp, &Event)), Irp, &Event);
    IoFreeIrp(Irp);
    Deregister();
    return Status;
}
