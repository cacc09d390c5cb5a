/* bridge.h - private: the Python side of the runtime (cffi "extern Python" functions that
 * pywsk.cdriver implements), the function numbers of WSK calls, and the runtime's own
 * entry points that Python calls.  Drivers never include it. */
#ifndef PYWSK_BRIDGE_H
#define PYWSK_BRIDGE_H
#include <stdint.h>
#include <stddef.h>

/* IRPs, MDLs, pool (the hottest calls pass addresses as integers: Python then needs no
 * conversion to find the object behind them) */
int pyb_IoAllocateIrp(void *Irp, int StackSize, int ChargeQuota, uintptr_t File, int Line, uintptr_t Func);
int pyb_IoInitializeIrp(void *Irp, int PacketSize, int StackSize, int Needed, uintptr_t File, int Line, uintptr_t Func);
void pyb_IoFreeIrp(void *Irp, uintptr_t File, int Line, uintptr_t Func);
int pyb_IoReuseIrp(uintptr_t Irp, int32_t Status, uintptr_t File, int Line, uintptr_t Func);
int pyb_IoSetCompletionRoutine(uintptr_t Irp, int HasRoutine, int OnSuccess, int OnError, int OnCancel, uintptr_t File, int Line, uintptr_t Func);
int pyb_IoCancelIrp(void *Irp, uintptr_t File, int Line, uintptr_t Func);
int pyb_IoAllocateMdl(void *Mdl, void *Va, uint32_t Length, int Secondary, int ChargeQuota, void *Irp, uintptr_t File, int Line, uintptr_t Func);
void pyb_IoFreeMdl(void *Mdl, uintptr_t File, int Line, uintptr_t Func);
int32_t pyb_MdlOp(int Op, void *Mdl, int Arg, uintptr_t File, int Line, uintptr_t Func);
void *pyb_ExAllocatePool(int Function, uint64_t TypeOrFlags, size_t Size, uint32_t Tag, uintptr_t File, int Line, uintptr_t Func);
void pyb_ExFreePool(void *P, uint32_t Tag, int HasTag, uintptr_t File, int Line, uintptr_t Func);
/* events, waits, time, IRQL, threads */
void pyb_KeInitializeEvent(void *Event, int Type, int State, uintptr_t File, int Line, uintptr_t Func);
int32_t pyb_KeEventOp(int Op, void *Event, uintptr_t File, int Line, uintptr_t Func);
int32_t pyb_KeWait(uint32_t Count, void **Objects, int WaitType, int Reason, int Mode, int Alertable,
                   int HasTimeout, int64_t Timeout, int HasWaitBlocks, uintptr_t File, int Line, uintptr_t Func);
int64_t pyb_Time(int Which);
int pyb_Irql(int Op, int Irql);
void pyb_ThreadEvent(int Op, void *Thread);
/* debug output and stops */
void pyb_DbgPrint(int Level, const char *Text);
void pyb_Stop(int Kind, int32_t Code, const char *Text, uintptr_t File, int Line, uintptr_t Func);
/* WSK */
int32_t pyb_WskRegister(void *Npi, void *Registration, uintptr_t File, int Line, uintptr_t Func);
int32_t pyb_WskCaptureProviderNPI(void *Registration, uint32_t WaitTimeout, void *Npi, uintptr_t File, int Line, uintptr_t Func);
void pyb_WskRegistrationOp(int Op, void *Registration, uintptr_t File, int Line, uintptr_t Func);
/* Caller: the return address into the driver (the dispatch call's site, symbolized lazily) */
int32_t pyb_WskCall(int Function, uintptr_t Target, const uintptr_t *Args, uintptr_t Irp, uintptr_t Caller);

/* the runtime's entry points for Python */
extern volatile int PywskRtStopped;
int PywskRtInvoke(void *Function, const uintptr_t *Args, intptr_t *Result);
void PywskRtRelease(void *Memory);
int PywskRtQuarantine(void *Start, size_t Size, const char *Report);
void PywskRtUnquarantine(void *Start);
void PywskRtCheck(void);
void *PywskRtNextLocation(void *Irp);
void *PywskRtNewSocket(int Kind);
void *PywskRtProviderDispatch(void);

/* WskCall function numbers (Args: the call's parameters after the socket or client, in order) */
enum {
    PYWSK_FN_SOCKET = 1, PYWSK_FN_SOCKET_CONNECT, PYWSK_FN_CONTROL_CLIENT, PYWSK_FN_GET_ADDRESS_INFO,
    PYWSK_FN_FREE_ADDRESS_INFO, PYWSK_FN_GET_NAME_INFO,
    PYWSK_FN_CONTROL_SOCKET, PYWSK_FN_CLOSE_SOCKET, PYWSK_FN_BIND, PYWSK_FN_CONNECT, PYWSK_FN_LISTEN,
    PYWSK_FN_ACCEPT, PYWSK_FN_INSPECT_COMPLETE, PYWSK_FN_GET_LOCAL_ADDRESS, PYWSK_FN_GET_REMOTE_ADDRESS,
    PYWSK_FN_SEND, PYWSK_FN_RECEIVE, PYWSK_FN_DISCONNECT, PYWSK_FN_RELEASE, PYWSK_FN_CONNECT_EX,
    PYWSK_FN_SEND_EX, PYWSK_FN_RECEIVE_EX, PYWSK_FN_SEND_TO, PYWSK_FN_RECEIVE_FROM, PYWSK_FN_SEND_MESSAGES,
    PYWSK_FN_RELEASE_DATAGRAMS,
};
/* PywskRtNewSocket kinds: the WSK_FLAG_*_SOCKET values */
#endif
