/* misuse.c - a test driver whose functions break WSK and kernel rules on purpose, one
 * each, so the tests can check that pywsk stops the driver and names these lines.  Lines
 * the tests look for carry a marker comment. */
#include <ntddk.h>
#include <wsk.h>

static WSK_REGISTRATION Registration;
static WSK_PROVIDER_NPI ProviderNpi;
static const WSK_CLIENT_DISPATCH ClientDispatch = { MAKE_WSK_VERSION(1, 0), 0, NULL };
static KEVENT Event;
static PWSK_SOCKET Socket;

static NTSTATUS Signal(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    UNREFERENCED_PARAMETER(Irp);
    KeSetEvent((PKEVENT)Context, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

VOID DoubleFree(void)
{
    PIRP Irp = IoAllocateIrp(1, FALSE);
    IoFreeIrp(Irp);
    IoFreeIrp(Irp);  /* MARK: second free */
    DbgPrint("misuse: not reached\n");
}

NTSTATUS LeakIrp(void)
{
    PIRP Irp = IoAllocateIrp(1, FALSE);  /* MARK: leaked IRP */
    return Irp != NULL ? STATUS_SUCCESS : STATUS_INSUFFICIENT_RESOURCES;
}

NTSTATUS LeakPool(void)
{
    PVOID P = ExAllocatePoolWithTag(NonPagedPoolNx, 100, 'kaeL');  /* MARK: leaked pool */
    return P != NULL ? STATUS_SUCCESS : STATUS_INSUFFICIENT_RESOURCES;
}

VOID WaitAtDispatch(void)
{
    KIRQL Old;
    LARGE_INTEGER Timeout;
    KeInitializeEvent(&Event, NotificationEvent, FALSE);
    Timeout.QuadPart = -10 * 1000 * 10;  /* 10 ms */
    KeRaiseIrql(DISPATCH_LEVEL, &Old);
    KeWaitForSingleObject(&Event, Executive, KernelMode, FALSE, &Timeout);  /* MARK: wait at DISPATCH_LEVEL */
    KeLowerIrql(Old);
}

/* Connect to 127.0.0.1:Port; then FreePendingIrp frees the IRP of a receive still pending. */
NTSTATUS Connect(USHORT Port)
{
    SOCKADDR_IN Local, Remote;
    WSK_CLIENT_NPI ClientNpi = { NULL, &ClientDispatch };
    NTSTATUS Status = WskRegister(&ClientNpi, &Registration);
    if (!NT_SUCCESS(Status)) return Status;
    Status = WskCaptureProviderNPI(&Registration, WSK_INFINITE_WAIT, &ProviderNpi);
    if (!NT_SUCCESS(Status)) return Status;
    IN4ADDR_SETLOOPBACK(&Local);
    IN4ADDR_SETLOOPBACK(&Remote);
    Remote.sin_port = RtlUshortByteSwap(Port);
    KeInitializeEvent(&Event, SynchronizationEvent, FALSE);
    PIRP Irp = IoAllocateIrp(1, FALSE);
    IoSetCompletionRoutine(Irp, Signal, &Event, TRUE, TRUE, TRUE);
    Status = ProviderNpi.Dispatch->WskSocketConnect(ProviderNpi.Client, SOCK_STREAM, IPPROTO_TCP,
        (PSOCKADDR)&Local, (PSOCKADDR)&Remote, 0, NULL, NULL, NULL, NULL, NULL, Irp);
    if (Status == STATUS_PENDING)
        KeWaitForSingleObject(&Event, Executive, KernelMode, FALSE, NULL);
    Status = Irp->IoStatus.Status;
    Socket = (PWSK_SOCKET)Irp->IoStatus.Information;
    IoFreeIrp(Irp);
    return Status;
}

static UCHAR Data[64];

VOID FreePendingIrp(void)
{
    PWSK_PROVIDER_CONNECTION_DISPATCH Dispatch = (PWSK_PROVIDER_CONNECTION_DISPATCH)Socket->Dispatch;
    PMDL Mdl = IoAllocateMdl(Data, sizeof Data, FALSE, FALSE, NULL);
    MmBuildMdlForNonPagedPool(Mdl);
    WSK_BUF Buffer = { Mdl, 0, sizeof Data };
    PIRP Irp = IoAllocateIrp(1, FALSE);  /* MARK: pending IRP allocated */
    IoSetCompletionRoutine(Irp, Signal, &Event, TRUE, TRUE, TRUE);
    if (Dispatch->WskReceive(Socket, &Buffer, 0, Irp) == STATUS_PENDING)
        IoFreeIrp(Irp);  /* MARK: free while pending */
}

/* The completion routine waits with a timeout: at DISPATCH_LEVEL, a bug check. */
static NTSTATUS WaitInRoutine(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    LARGE_INTEGER Timeout;
    UNREFERENCED_PARAMETER(DeviceObject);
    UNREFERENCED_PARAMETER(Irp);
    Timeout.QuadPart = -10 * 1000 * 10;
    KeWaitForSingleObject((PKEVENT)Context, Executive, KernelMode, FALSE, &Timeout);  /* MARK: wait in routine */
    return STATUS_MORE_PROCESSING_REQUIRED;
}

VOID WaitInCompletion(void)
{
    PWSK_PROVIDER_CONNECTION_DISPATCH Dispatch = (PWSK_PROVIDER_CONNECTION_DISPATCH)Socket->Dispatch;
    KEVENT Never;
    SOCKADDR_IN Address;
    KeInitializeEvent(&Never, NotificationEvent, FALSE);
    PIRP Irp = IoAllocateIrp(1, FALSE);
    IoSetCompletionRoutine(Irp, WaitInRoutine, &Never, TRUE, TRUE, TRUE);
    Dispatch->WskGetLocalAddress(Socket, (PSOCKADDR)&Address, Irp);
    DbgPrint("misuse: not reached either\n");
}

/* __try/__except: an exception raised inside the block reaches the handler. */
NTSTATUS RaiseAndCatch(void)
{
    NTSTATUS Status = STATUS_SUCCESS;
    int Handled = 0;
    __try {
        ExRaiseStatus(STATUS_ACCESS_VIOLATION);
        Status = STATUS_UNSUCCESSFUL;       /* not reached */
    } __except (EXCEPTION_EXECUTE_HANDLER) {
        Status = GetExceptionCode();
        Handled++;
    }
    return Handled == 1 ? Status : STATUS_UNSUCCESSFUL;
}

/* A raise with no __try around it stops the driver. */
VOID RaiseUnhandled(void)
{
    ExRaiseStatus(STATUS_ACCESS_VIOLATION);  /* MARK: unhandled raise */
}

/* A call through the dispatch table (no __FILE__ reaches it) on the IRP of a receive still
 * pending: the report names this line all the same. */
VOID SendOnPendingIrp(void)
{
    PWSK_PROVIDER_CONNECTION_DISPATCH Dispatch = (PWSK_PROVIDER_CONNECTION_DISPATCH)Socket->Dispatch;
    PMDL Mdl = IoAllocateMdl(Data, sizeof Data, FALSE, FALSE, NULL);
    MmBuildMdlForNonPagedPool(Mdl);
    WSK_BUF Buffer = { Mdl, 0, sizeof Data };
    PIRP Irp = IoAllocateIrp(1, FALSE);
    IoSetCompletionRoutine(Irp, Signal, &Event, TRUE, TRUE, TRUE);
    if (Dispatch->WskReceive(Socket, &Buffer, 0, Irp) == STATUS_PENDING)
        Dispatch->WskSend(Socket, &Buffer, 0, Irp);  /* MARK: send on a pending IRP */
    DbgPrint("misuse: not reached after the send\n");
}

/* Freed pool stays quarantined: a second free, an MDL over it, a touch. */
VOID DoubleFreePool(void)
{
    PVOID P = ExAllocatePoolWithTag(NonPagedPoolNx, 64, 'looP');  /* MARK: twice-freed pool allocated */
    ExFreePoolWithTag(P, 'looP');  /* MARK: pool freed once */
    ExFreePoolWithTag(P, 'looP');  /* MARK: pool freed twice */
}

VOID MdlOverFreedPool(void)
{
    PVOID P = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, 'looP');
    ExFreePool(P);
    IoAllocateMdl(P, 64, FALSE, FALSE, NULL);  /* MARK: MDL over freed pool */
}

VOID TouchFreedPool(void)
{
    PUCHAR P = ExAllocatePool2(POOL_FLAG_NON_PAGED, 64, 'looP');  /* MARK: touched pool allocated */
    ExFreePool(P);  /* MARK: touched pool freed */
    P[10] = 1;
    DbgPrint("misuse: the touch went through\n");
}
