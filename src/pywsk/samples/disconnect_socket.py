"""Microsoft's "Disconnecting a socket from a destination" sample, translated line for line.

``DisconnectSocket`` and ``DisconnectComplete`` are the guide's two C functions, one
statement at a time; the C comments are kept.  The only additions are the two module-level
objects through which the completion routine tells its caller how the disconnect ended
(driver code would "perform the next operation on the socket" there).

``examples/disconnect_socket.py`` runs it against a loopback peer; ``pywsk demo`` runs it as
its first scenario.
"""

from __future__ import annotations

from typing import Any, cast

from ..nt import *
from ..wsk import *

__all__ = ["DisconnectComplete", "DisconnectDone", "DisconnectSocket", "DisconnectStatus"]

# The completion routine tells main() how the disconnect ended (driver code would go on
# with "the next operation on the socket" here).
DisconnectDone = KEVENT()
DisconnectStatus: list[int] = []


# Function to disconnect a socket from a remote transport address
def DisconnectSocket(Socket: PWSK_SOCKET) -> int:
    # Get pointer to the socket's provider dispatch structure
    Dispatch = cast(PWSK_PROVIDER_CONNECTION_DISPATCH, Socket.Dispatch)

    # Allocate an IRP
    Irp = IoAllocateIrp(1, False)

    # Check result
    if not Irp:
        # Return error
        return STATUS_INSUFFICIENT_RESOURCES

    # Set the completion routine for the IRP
    IoSetCompletionRoutine(
        Irp,
        DisconnectComplete,
        Socket,  # Use the socket object for the context
        True,
        True,
        True,
    )

    # Initiate the disconnect operation on the socket
    Status = Dispatch.WskDisconnect(
        Socket,
        None,  # No final data to be transmitted
        0,  # No flags (graceful disconnect)
        Irp,
    )

    # Return the status of the call to WskDisconnect()
    return Status


# Disconnect IoCompletion routine
def DisconnectComplete(DeviceObject: PDEVICE_OBJECT, Irp: PIRP, Context: Any) -> int:
    # UNREFERENCED_PARAMETER(DeviceObject)

    # Check the result of the disconnect operation
    if Irp.IoStatus.Status == STATUS_SUCCESS:
        # Get the socket object from the context
        Socket = cast(PWSK_SOCKET, Context)

        # Perform the next operation on the socket
        DisconnectStatus.append(Irp.IoStatus.Status)
        del Socket
    # Error status
    else:
        # Handle error
        DisconnectStatus.append(Irp.IoStatus.Status)

    # Free the IRP
    IoFreeIrp(Irp)

    # (not in the sample: let main() know)
    KeSetEvent(DisconnectDone, IO_NO_INCREMENT, False)

    # Always return STATUS_MORE_PROCESSING_REQUIRED to
    # terminate the completion processing of the IRP.
    return STATUS_MORE_PROCESSING_REQUIRED
