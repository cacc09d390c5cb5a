/* disconnect_socket.c - Microsoft's "Disconnecting a socket from a destination" sample,
 * compiled unchanged: the two functions between the markers are the guide's code, character
 * for character, except its two elided lines ("...", one in each branch of
 * DisconnectComplete), which here call DisconnectFinished.
 *
 * Around it, a small driver: DriverEntry registers with WSK; RunDisconnect(Port) connects
 * to 127.0.0.1:Port, sends "hello", calls the sample's DisconnectSocket, waits for its
 * completion, reads until the peer's FIN and closes the socket; DriverUnload deregisters.
 *
 *   pywsk driver build examples/c/disconnect_socket.c -o disconnect_socket.so
 *   pywsk driver run disconnect_socket.so --once --call RunDisconnect PORT
 */
#include <ntddk.h>
#include <wsk.h>

#define DEMO_TAG 'omed'                     /* "demo" in a pool dump */

static WSK_REGISTRATION Registration;
static WSK_PROVIDER_NPI ProviderNpi;
static const WSK_CLIENT_DISPATCH ClientDispatch = { MAKE_WSK_VERSION(1, 0), 0, NULL };

/* What DisconnectComplete saw, for the driver and its tests. */
static KEVENT DisconnectDone;
static NTSTATUS DisconnectStatus = STATUS_PENDING;
static KIRQL DisconnectIrql = 0xFF;
static PWSK_SOCKET DisconnectContext;

static VOID DisconnectFinished(PWSK_SOCKET Socket, NTSTATUS Status, KIRQL Irql)
{
    DisconnectContext = Socket;
    DisconnectStatus = Status;
    DisconnectIrql = Irql;
    KeSetEvent(&DisconnectDone, IO_NO_INCREMENT, FALSE);
}

/* ======== Microsoft's sample, verbatim from here ======== */
// Prototype for the disconnect IoCompletion routine
NTSTATUS
  DisconnectComplete(
    PDEVICE_OBJECT DeviceObject,
    PIRP Irp,
    PVOID Context
    );

// Function to disconnect a socket from a remote transport address
NTSTATUS
  DisconnectSocket(
    PWSK_SOCKET Socket
    )
{
  PWSK_PROVIDER_CONNECTION_DISPATCH Dispatch;
  PIRP Irp;
  NTSTATUS Status;
 
  // Get pointer to the socket's provider dispatch structure
  Dispatch =
    (PWSK_PROVIDER_CONNECTION_DISPATCH)(Socket->Dispatch);

  // Allocate an IRP
  Irp =
    IoAllocateIrp(
      1,
      FALSE
      );

  // Check result
  if (!Irp)
  {
    // Return error
    return STATUS_INSUFFICIENT_RESOURCES;
  }

  // Set the completion routine for the IRP
  IoSetCompletionRoutine(
    Irp,
    DisconnectComplete,
    Socket,  // Use the socket object for the context
    TRUE,
    TRUE,
    TRUE
    );

  // Initiate the disconnect operation on the socket
  Status =
    Dispatch->WskDisconnect(
      Socket,
      NULL,  // No final data to be transmitted
      0,     // No flags (graceful disconnect)
      Irp
      );

  // Return the status of the call to WskDisconnect()
  return Status;
}

// Disconnect IoCompletion routine
NTSTATUS
  DisconnectComplete(
    PDEVICE_OBJECT DeviceObject,
    PIRP Irp,
    PVOID Context
    )
{
  UNREFERENCED_PARAMETER(DeviceObject);

  PWSK_SOCKET Socket;

  // Check the result of the disconnect operation
  if (Irp->IoStatus.Status == STATUS_SUCCESS)
  {
    // Get the socket object from the context
    Socket = (PWSK_SOCKET)Context;

    // Perform the next operation on the socket
    DisconnectFinished(Socket, Irp->IoStatus.Status, KeGetCurrentIrql());
  }

  // Error status
  else
  {
    // Handle error
    DisconnectFinished(NULL, Irp->IoStatus.Status, KeGetCurrentIrql());
  }

  // Free the IRP
  IoFreeIrp(Irp);

  // Always return STATUS_MORE_PROCESSING_REQUIRED to
  // terminate the completion processing of the IRP.
  return STATUS_MORE_PROCESSING_REQUIRED;
}
/* ======== end of Microsoft's sample ======== */

/* One WSK call on its own IRP, waited for at PASSIVE_LEVEL (at most five seconds). */
static IO_COMPLETION_ROUTINE SignalEvent;
static NTSTATUS SignalEvent(PDEVICE_OBJECT DeviceObject, PIRP Irp, PVOID Context)
{
    UNREFERENCED_PARAMETER(DeviceObject);
    UNREFERENCED_PARAMETER(Irp);
    KeSetEvent((PKEVENT)Context, IO_NO_INCREMENT, FALSE);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

static PIRP BeginCall(PKEVENT Event)
{
    PIRP Irp = IoAllocateIrp(1, FALSE);
    if (Irp != NULL) {
        KeResetEvent(Event);
        IoSetCompletionRoutine(Irp, SignalEvent, Event, TRUE, TRUE, TRUE);
    }
    return Irp;
}

static NTSTATUS EndCall(NTSTATUS Status, PIRP Irp, PKEVENT Event, ULONG_PTR *Information)
{
    LARGE_INTEGER Timeout;
    Timeout.QuadPart = -5LL * 10 * 1000 * 1000;
    if (Status == STATUS_PENDING &&
        KeWaitForSingleObject(Event, Executive, KernelMode, FALSE, &Timeout) == STATUS_TIMEOUT) {
        IoCancelIrp(Irp);                   /* then wait for the completion it forces */
        KeWaitForSingleObject(Event, Executive, KernelMode, FALSE, NULL);
    }
    Status = Irp->IoStatus.Status;
    if (Information != NULL)
        *Information = Irp->IoStatus.Information;
    IoFreeIrp(Irp);
    return Status;
}

NTSTATUS RunDisconnect(USHORT PeerPort)
{
    SOCKADDR_IN Local, Remote;
    KEVENT Event;
    PIRP Irp;
    NTSTATUS Status;
    ULONG_PTR Information;
    PWSK_SOCKET Socket;
    LARGE_INTEGER Timeout;

    KeInitializeEvent(&Event, SynchronizationEvent, FALSE);
    IN4ADDR_SETLOOPBACK(&Local);
    IN4ADDR_SETLOOPBACK(&Remote);
    Remote.sin_port = RtlUshortByteSwap(PeerPort);
    Irp = BeginCall(&Event);
    if (Irp == NULL)
        return STATUS_INSUFFICIENT_RESOURCES;
    Status = ProviderNpi.Dispatch->WskSocketConnect(ProviderNpi.Client, SOCK_STREAM, IPPROTO_TCP,
        (PSOCKADDR)&Local, (PSOCKADDR)&Remote, 0, NULL, NULL, NULL, NULL, NULL, Irp);
    Status = EndCall(Status, Irp, &Event, &Information);
    DbgPrint("disconnect_socket: WskSocketConnect -> 0x%08X\n", (unsigned)Status);
    if (!NT_SUCCESS(Status))
        return Status;
    Socket = (PWSK_SOCKET)Information;
    PWSK_PROVIDER_CONNECTION_DISPATCH Dispatch = (PWSK_PROVIDER_CONNECTION_DISPATCH)Socket->Dispatch;

    PUCHAR Data = ExAllocatePoolWithTag(NonPagedPoolNx, 64, DEMO_TAG);
    PMDL Mdl = Data ? IoAllocateMdl(Data, 64, FALSE, FALSE, NULL) : NULL;
    if (Mdl == NULL) {
        Status = STATUS_INSUFFICIENT_RESOURCES;
        goto close;
    }
    MmBuildMdlForNonPagedPool(Mdl);
    RtlCopyMemory(Data, "hello", 5);
    WSK_BUF Buffer = { Mdl, 0, 5 };
    Irp = BeginCall(&Event);
    Status = Irp ? EndCall(Dispatch->WskSend(Socket, &Buffer, 0, Irp), Irp, &Event, &Information)
                 : STATUS_INSUFFICIENT_RESOURCES;
    DbgPrint("disconnect_socket: WskSend -> 0x%08X, %lu bytes\n", (unsigned)Status, (unsigned long)Information);

    /* The sample, called as written; its completion routine sets DisconnectDone. */
    KeInitializeEvent(&DisconnectDone, NotificationEvent, FALSE);
    Status = DisconnectSocket(Socket);
    DbgPrint("disconnect_socket: DisconnectSocket returned 0x%08X\n", (unsigned)Status);
    Timeout.QuadPart = -5LL * 10 * 1000 * 1000;
    if (KeWaitForSingleObject(&DisconnectDone, Executive, KernelMode, FALSE, &Timeout) == STATUS_TIMEOUT) {
        Status = STATUS_IO_TIMEOUT;
        goto free;
    }
    DbgPrint("disconnect_socket: DisconnectComplete saw 0x%08X at IRQL %u, context %s\n",
             (unsigned)DisconnectStatus, DisconnectIrql, DisconnectContext == Socket ? "== Socket" : "!= Socket");

    /* Read until the peer's FIN, so that closing sends no RST. */
    Buffer.Length = 64;
    do {
        Irp = BeginCall(&Event);
        if (Irp == NULL)
            break;
        Status = EndCall(Dispatch->WskReceive(Socket, &Buffer, 0, Irp), Irp, &Event, &Information);
    } while (NT_SUCCESS(Status) && Information != 0);
    Status = DisconnectStatus;
free:
    IoFreeMdl(Mdl);
close:
    if (Data != NULL)
        ExFreePoolWithTag(Data, DEMO_TAG);
    Irp = BeginCall(&Event);
    if (Irp != NULL)
        EndCall(Dispatch->WskCloseSocket(Socket, Irp), Irp, &Event, NULL);
    return Status;
}

/* For tests: what DisconnectComplete saw. */
NTSTATUS LastDisconnectStatus(void) { return DisconnectStatus; }
ULONG LastDisconnectIrql(void) { return DisconnectIrql; }
BOOLEAN LastDisconnectContextWasSocket(void) { return DisconnectContext != NULL; }

static DRIVER_UNLOAD DriverUnload;
static VOID DriverUnload(PDRIVER_OBJECT DriverObject)
{
    UNREFERENCED_PARAMETER(DriverObject);
    WskReleaseProviderNPI(&Registration);
    WskDeregister(&Registration);
}

DRIVER_INITIALIZE DriverEntry;
NTSTATUS DriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    WSK_CLIENT_NPI ClientNpi = { NULL, &ClientDispatch };
    NTSTATUS Status;

    UNREFERENCED_PARAMETER(RegistryPath);
    Status = WskRegister(&ClientNpi, &Registration);
    if (!NT_SUCCESS(Status))
        return Status;
    Status = WskCaptureProviderNPI(&Registration, WSK_INFINITE_WAIT, &ProviderNpi);
    if (!NT_SUCCESS(Status)) {
        WskDeregister(&Registration);
        return Status;
    }
    DriverObject->DriverUnload = DriverUnload;
    return STATUS_SUCCESS;
}
