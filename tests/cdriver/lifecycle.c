/* lifecycle.c - a test driver for `pywsk driver run`: what DriverEntry does depends on the
 * RegistryPath it gets ("fail", "leak", "stop", anything else: succeed). */
#include <ntddk.h>

static UNICODE_STRING Fail = RTL_CONSTANT_STRING(u"fail");
static UNICODE_STRING Leak = RTL_CONSTANT_STRING(u"leak");
static UNICODE_STRING Stop = RTL_CONSTANT_STRING(u"stop");
static PVOID Leaked;

static DRIVER_UNLOAD Unload;
static VOID Unload(PDRIVER_OBJECT DriverObject)
{
    UNREFERENCED_PARAMETER(DriverObject);
    DbgPrint("lifecycle: unload\n");
}

DRIVER_INITIALIZE DriverEntry;
NTSTATUS DriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    DbgPrint("lifecycle: entry at IRQL %u\n", KeGetCurrentIrql());
    if (RtlEqualUnicodeString(RegistryPath, &Fail, TRUE))
        return STATUS_UNSUCCESSFUL;
    DriverObject->DriverUnload = Unload;
    if (RtlEqualUnicodeString(RegistryPath, &Leak, TRUE))
        Leaked = ExAllocatePoolWithTag(NonPagedPoolNx, 32, 'kaeL');  /* MARK: leak */
    if (RtlEqualUnicodeString(RegistryPath, &Stop, TRUE))
        KeBugCheckEx(0xE2, 1, 2, 3, 4);  /* MARK: bug check */
    return STATUS_SUCCESS;
}
