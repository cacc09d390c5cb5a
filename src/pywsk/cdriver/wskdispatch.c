/* wskdispatch.c - the provider dispatch tables a C driver calls through (Socket->Dispatch,
 * ProviderNpi.Dispatch).  Each member forwards its parameters, as integers and pointers, to
 * pywsk's provider through pyb_WskCall; pywsk.cdriver.wsk converts the C structures.
 *
 * A call through a table has no __FILE__/__LINE__ (the headers' macros cannot reach
 * Dispatch->WskSend(...)), so each member passes its return address - the instruction
 * after the driver's call - and Python symbolizes it to the C file and line when it needs
 * them (the verifier's frames, a stop's report).  The members must therefore never be
 * inlined or tail-called: they are called through pointers only, and they do work after
 * the call (PywskRtCheck). */
#include <stdlib.h>
#include "wsk.h"
#include "bridge.h"

#define A(x) ((uintptr_t)(x))
#define CALLER ((uintptr_t)__builtin_return_address(0))
#define CALL(Function, Target, Irp, ...)                               \
    do {                                                               \
        uintptr_t Args_[10] = { __VA_ARGS__ };                         \
        NTSTATUS Status_ = pyb_WskCall((Function), A(Target), Args_, A(Irp), CALLER); \
        PywskRtCheck();        \
        return Status_;                                                \
    } while (0)

/* ---- client level ---- */
static NTSTATUS PSocket(PWSK_CLIENT Client, ADDRESS_FAMILY Family, USHORT Type, ULONG Protocol, ULONG Flags,
    PVOID Context, CONST VOID *Dispatch, PEPROCESS Process, PETHREAD Thread, PSECURITY_DESCRIPTOR Sd, PIRP Irp)
{ (void)Process; (void)Thread; CALL(PYWSK_FN_SOCKET, Client, Irp, Family, Type, Protocol, Flags, A(Context), A(Dispatch), A(Sd)); }
static NTSTATUS PSocketConnect(PWSK_CLIENT Client, USHORT Type, ULONG Protocol, PSOCKADDR Local, PSOCKADDR Remote,
    ULONG Flags, PVOID Context, CONST WSK_CLIENT_CONNECTION_DISPATCH *Dispatch, PEPROCESS Process, PETHREAD Thread,
    PSECURITY_DESCRIPTOR Sd, PIRP Irp)
{ (void)Process; (void)Thread; CALL(PYWSK_FN_SOCKET_CONNECT, Client, Irp, Type, Protocol, A(Local), A(Remote), Flags, A(Context), A(Dispatch), A(Sd)); }
static NTSTATUS PControlClient(PWSK_CLIENT Client, ULONG Code, SIZE_T InSize, PVOID In, SIZE_T OutSize, PVOID Out,
    SIZE_T *OutReturned, PIRP Irp)
{ CALL(PYWSK_FN_CONTROL_CLIENT, Client, Irp, Code, InSize, A(In), OutSize, A(Out), A(OutReturned)); }
static NTSTATUS PGetAddressInfo(PWSK_CLIENT Client, PUNICODE_STRING Node, PUNICODE_STRING Service, ULONG NameSpace,
    GUID *Provider, PADDRINFOEXW Hints, PADDRINFOEXW *Result, PEPROCESS Process, PETHREAD Thread, PIRP Irp)
{ (void)Process; (void)Thread; CALL(PYWSK_FN_GET_ADDRESS_INFO, Client, Irp, A(Node), A(Service), NameSpace, A(Provider), A(Hints), A(Result)); }
static VOID PFreeAddressInfo(PWSK_CLIENT Client, PADDRINFOEXW AddrInfo)
{
    uintptr_t Args[10] = { A(AddrInfo) };
    pyb_WskCall(PYWSK_FN_FREE_ADDRESS_INFO, A(Client), Args, 0, CALLER);
    PywskRtCheck();
}
static NTSTATUS PGetNameInfo(PWSK_CLIENT Client, PSOCKADDR Address, ULONG Length, PUNICODE_STRING Node,
    PUNICODE_STRING Service, ULONG Flags, PEPROCESS Process, PETHREAD Thread, PIRP Irp)
{ (void)Process; (void)Thread; CALL(PYWSK_FN_GET_NAME_INFO, Client, Irp, A(Address), Length, A(Node), A(Service), Flags); }

static const WSK_PROVIDER_DISPATCH ProviderDispatch = {
    MAKE_WSK_VERSION(1, 0), 0, PSocket, PSocketConnect, PControlClient, PGetAddressInfo, PFreeAddressInfo, PGetNameInfo,
};
void *PywskRtProviderDispatch(void) { return (void *)&ProviderDispatch; }

/* ---- socket level ---- */
static NTSTATUS PControlSocket(PWSK_SOCKET S, WSK_CONTROL_SOCKET_TYPE Type, ULONG Code, ULONG Level, SIZE_T InSize,
    PVOID In, SIZE_T OutSize, PVOID Out, SIZE_T *OutReturned, PIRP Irp)
{ CALL(PYWSK_FN_CONTROL_SOCKET, S, Irp, Type, Code, Level, InSize, A(In), OutSize, A(Out), A(OutReturned)); }
static NTSTATUS PCloseSocket(PWSK_SOCKET S, PIRP Irp) { CALL(PYWSK_FN_CLOSE_SOCKET, S, Irp, 0); }
static NTSTATUS PBind(PWSK_SOCKET S, PSOCKADDR Local, ULONG Flags, PIRP Irp) { CALL(PYWSK_FN_BIND, S, Irp, A(Local), Flags); }
static NTSTATUS PConnect(PWSK_SOCKET S, PSOCKADDR Remote, ULONG Flags, PIRP Irp) { CALL(PYWSK_FN_CONNECT, S, Irp, A(Remote), Flags); }
static NTSTATUS PListen(PWSK_SOCKET S, PIRP Irp) { CALL(PYWSK_FN_LISTEN, S, Irp, 0); }
static NTSTATUS PAccept(PWSK_SOCKET S, ULONG Flags, PVOID Context, CONST WSK_CLIENT_CONNECTION_DISPATCH *Dispatch,
    PSOCKADDR Local, PSOCKADDR Remote, PIRP Irp)
{ CALL(PYWSK_FN_ACCEPT, S, Irp, Flags, A(Context), A(Dispatch), A(Local), A(Remote)); }
static NTSTATUS PInspectComplete(PWSK_SOCKET S, PWSK_INSPECT_ID Id, WSK_INSPECT_ACTION Action, PIRP Irp)
{ CALL(PYWSK_FN_INSPECT_COMPLETE, S, Irp, A(Id), Action); }
static NTSTATUS PGetLocalAddress(PWSK_SOCKET S, PSOCKADDR Local, PIRP Irp) { CALL(PYWSK_FN_GET_LOCAL_ADDRESS, S, Irp, A(Local)); }
static NTSTATUS PGetRemoteAddress(PWSK_SOCKET S, PSOCKADDR Remote, PIRP Irp) { CALL(PYWSK_FN_GET_REMOTE_ADDRESS, S, Irp, A(Remote)); }
static NTSTATUS PSend(PWSK_SOCKET S, PWSK_BUF Buffer, ULONG Flags, PIRP Irp) { CALL(PYWSK_FN_SEND, S, Irp, A(Buffer), Flags); }
static NTSTATUS PReceive(PWSK_SOCKET S, PWSK_BUF Buffer, ULONG Flags, PIRP Irp) { CALL(PYWSK_FN_RECEIVE, S, Irp, A(Buffer), Flags); }
static NTSTATUS PDisconnect(PWSK_SOCKET S, PWSK_BUF Buffer, ULONG Flags, PIRP Irp) { CALL(PYWSK_FN_DISCONNECT, S, Irp, A(Buffer), Flags); }
static NTSTATUS PRelease(PWSK_SOCKET S, PWSK_DATA_INDICATION Indication) { CALL(PYWSK_FN_RELEASE, S, NULL, A(Indication)); }
static NTSTATUS PConnectEx(PWSK_SOCKET S, PSOCKADDR Remote, PWSK_BUF Buffer, ULONG Flags, PIRP Irp)
{ CALL(PYWSK_FN_CONNECT_EX, S, Irp, A(Remote), A(Buffer), Flags); }
static NTSTATUS PSendEx(PWSK_SOCKET S, PWSK_BUF Buffer, ULONG Flags, ULONG InfoLength, PCMSGHDR Info, PIRP Irp)
{ CALL(PYWSK_FN_SEND_EX, S, Irp, A(Buffer), Flags, InfoLength, A(Info)); }
static NTSTATUS PReceiveEx(PWSK_SOCKET S, PWSK_BUF Buffer, ULONG Flags, PULONG InfoLength, PCMSGHDR Info,
    PULONG ControlFlags, PIRP Irp)
{ CALL(PYWSK_FN_RECEIVE_EX, S, Irp, A(Buffer), Flags, A(InfoLength), A(Info), A(ControlFlags)); }

static NTSTATUS PSendTo(PWSK_SOCKET S, PWSK_BUF Buffer, ULONG Flags, PSOCKADDR Remote, ULONG InfoLength,
    PCMSGHDR Info, PIRP Irp)
{ CALL(PYWSK_FN_SEND_TO, S, Irp, A(Buffer), Flags, A(Remote), InfoLength, A(Info)); }
static NTSTATUS PReceiveFrom(PWSK_SOCKET S, PWSK_BUF Buffer, ULONG Flags, PSOCKADDR Remote, PULONG ControlLength,
    PCMSGHDR Info, PULONG ControlFlags, PIRP Irp)
{ CALL(PYWSK_FN_RECEIVE_FROM, S, Irp, A(Buffer), Flags, A(Remote), A(ControlLength), A(Info), A(ControlFlags)); }
static NTSTATUS PReleaseDatagrams(PWSK_SOCKET S, PWSK_DATAGRAM_INDICATION Indication)
{ CALL(PYWSK_FN_RELEASE_DATAGRAMS, S, NULL, A(Indication)); }
static NTSTATUS PSendMessages(PWSK_SOCKET S, PWSK_BUF_LIST List, ULONG Flags, PSOCKADDR Remote, ULONG InfoLength,
    PCMSGHDR Info, PIRP Irp)
{ CALL(PYWSK_FN_SEND_MESSAGES, S, Irp, A(List), Flags, A(Remote), InfoLength, A(Info)); }

static const WSK_PROVIDER_BASIC_DISPATCH BasicDispatch = { PControlSocket, PCloseSocket };
static const WSK_PROVIDER_DATAGRAM_DISPATCH DatagramDispatch = {
    { PControlSocket, PCloseSocket }, PBind, PSendTo, PReceiveFrom, PReleaseDatagrams, PGetLocalAddress,
    PSendMessages,
};
static const WSK_PROVIDER_LISTEN_DISPATCH ListenDispatch = {
    { PControlSocket, PCloseSocket }, PBind, PAccept, PInspectComplete, PGetLocalAddress,
};
static const WSK_PROVIDER_CONNECTION_DISPATCH ConnectionDispatch = {
    { PControlSocket, PCloseSocket }, PBind, PConnect, PGetLocalAddress, PGetRemoteAddress, PSend, PReceive,
    PDisconnect, PRelease, PConnectEx, PSendEx, PReceiveEx,
};
static const WSK_PROVIDER_STREAM_DISPATCH StreamDispatch = {
    { PControlSocket, PCloseSocket }, PBind, PAccept, PConnect, PListen, PSend, PReceive, PDisconnect, PRelease,
    PGetLocalAddress, PGetRemoteAddress, PConnectEx, PSendEx, PReceiveEx,
};

/* A socket object: the public part, then nothing the driver may touch. */
void *PywskRtNewSocket(int Kind)
{
    PWSK_SOCKET S = calloc(1, sizeof(WSK_SOCKET) + sizeof(void *));
    if (S == NULL) return NULL;
    switch (Kind) {
    case WSK_FLAG_LISTEN_SOCKET: S->Dispatch = &ListenDispatch; break;
    case WSK_FLAG_CONNECTION_SOCKET: S->Dispatch = &ConnectionDispatch; break;
    case WSK_FLAG_STREAM_SOCKET: S->Dispatch = &StreamDispatch; break;
    case WSK_FLAG_DATAGRAM_SOCKET: S->Dispatch = &DatagramDispatch; break;
    default: S->Dispatch = &BasicDispatch; break;
    }
    return S;
}
