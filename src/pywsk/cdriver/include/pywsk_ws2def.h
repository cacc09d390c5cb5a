/* pywsk_ws2def.h - the ws2def.h / ws2ipdef.h / mstcpip.h part WSK clients use (Windows
 * numbering: AF_INET6 is 23).  Included by wsk.h. */
#ifndef PYWSK_WS2DEF_H
#define PYWSK_WS2DEF_H
#include "wdm.h"

typedef USHORT ADDRESS_FAMILY;
#define AF_UNSPEC 0
#define AF_INET 2
#define AF_INET6 23
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define SOCK_RAW 3
#define IPPROTO_IP 0
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_IPV6 41
#define SOL_SOCKET 0xffff
#define SO_REUSEADDR 0x0004
#define SO_KEEPALIVE 0x0008
#define SO_BROADCAST 0x0020
#define SO_LINGER 0x0080
#define SO_SNDBUF 0x1001
#define SO_RCVBUF 0x1002
#define SO_CONDITIONAL_ACCEPT 0x3002
#define SO_EXCLUSIVEADDRUSE ((ULONG)(~SO_REUSEADDR))
#define TCP_NODELAY 0x0001
#define TCP_KEEPALIVE 3
#define TCP_KEEPIDLE TCP_KEEPALIVE
#define TCP_MAXRT 5
#define TCP_KEEPCNT 16
#define TCP_KEEPINTVL 17
#define IPV6_V6ONLY 27
#define INADDR_ANY ((ULONG)0x00000000)
#define INADDR_LOOPBACK 0x7f000001
#define NS_ALL 0
#define NS_DNS 12
#define AI_PASSIVE 0x01
#define AI_CANONNAME 0x02
#define AI_NUMERICHOST 0x04
#define AI_NUMERICSERV 0x08
#define NI_NOFQDN 0x01
#define NI_NUMERICHOST 0x02
#define NI_NAMEREQD 0x04
#define NI_NUMERICSERV 0x08
#define NI_DGRAM 0x10
#define NI_MAXHOST 1025
#define NI_MAXSERV 32

typedef struct in_addr {
    union {
        struct { UCHAR s_b1, s_b2, s_b3, s_b4; } S_un_b;
        struct { USHORT s_w1, s_w2; } S_un_w;
        ULONG S_addr;
    } S_un;
} IN_ADDR, *PIN_ADDR;
#define s_addr S_un.S_addr
typedef struct in6_addr { union { UCHAR Byte[16]; USHORT Word[8]; } u; } IN6_ADDR, *PIN6_ADDR;
typedef struct sockaddr { ADDRESS_FAMILY sa_family; CHAR sa_data[14]; } SOCKADDR, *PSOCKADDR;
typedef struct sockaddr_in {
    ADDRESS_FAMILY sin_family;
    USHORT sin_port;
    IN_ADDR sin_addr;
    CHAR sin_zero[8];
} SOCKADDR_IN, *PSOCKADDR_IN;
typedef struct { ULONG Value; } SCOPE_ID;
typedef struct sockaddr_in6 {
    ADDRESS_FAMILY sin6_family;
    USHORT sin6_port;
    ULONG sin6_flowinfo;
    IN6_ADDR sin6_addr;
    union { ULONG sin6_scope_id; SCOPE_ID sin6_scope_struct; };
} SOCKADDR_IN6, *PSOCKADDR_IN6;
typedef struct sockaddr_storage { ADDRESS_FAMILY ss_family; CHAR ss_pad1[6]; LONGLONG ss_align; CHAR ss_pad2[112]; } SOCKADDR_STORAGE, *PSOCKADDR_STORAGE;
typedef struct _WSACMSGHDR { SIZE_T cmsg_len; INT cmsg_level; INT cmsg_type; } CMSGHDR, *PCMSGHDR;
/* Control information as ws2def.h lays it out (x64: 8-byte alignment). */
#define MAX_NATURAL_ALIGNMENT sizeof(ULONGLONG)
#define WSA_CMSGHDR_ALIGN(length) (((length) + sizeof(ULONGLONG) - 1) & ~(sizeof(ULONGLONG) - 1))
#define WSA_CMSGDATA_ALIGN(length) (((length) + MAX_NATURAL_ALIGNMENT - 1) & ~(MAX_NATURAL_ALIGNMENT - 1))
#define WSA_CMSG_DATA(cmsg) ((PUCHAR)(cmsg) + WSA_CMSGDATA_ALIGN(sizeof(CMSGHDR)))
#define WSA_CMSG_LEN(length) (WSA_CMSGDATA_ALIGN(sizeof(CMSGHDR)) + (length))
#define WSA_CMSG_SPACE(length) (WSA_CMSGDATA_ALIGN(sizeof(CMSGHDR) + WSA_CMSGHDR_ALIGN(length)))
#define IP_PKTINFO 19
#define IPV6_PKTINFO 19
typedef struct in_pktinfo { IN_ADDR ipi_addr; ULONG ipi_ifindex; } IN_PKTINFO, *PIN_PKTINFO;
typedef struct in6_pktinfo { IN6_ADDR ipi6_addr; ULONG ipi6_ifindex; } IN6_PKTINFO, *PIN6_PKTINFO;
typedef struct addrinfoexW {
    int ai_flags;
    int ai_family;
    int ai_socktype;
    int ai_protocol;
    SIZE_T ai_addrlen;
    PWSTR ai_canonname;
    struct sockaddr *ai_addr;
    void *ai_blob;
    SIZE_T ai_bloblen;
    GUID *ai_provider;
    struct addrinfoexW *ai_next;
} ADDRINFOEXW, *PADDRINFOEXW;
typedef struct linger { USHORT l_onoff; USHORT l_linger; } LINGER;

static inline VOID IN4ADDR_SETANY(PSOCKADDR_IN a)
{ a->sin_family = AF_INET; a->sin_port = 0; a->sin_addr.s_addr = 0; memset(a->sin_zero, 0, 8); }
static inline VOID IN4ADDR_SETLOOPBACK(PSOCKADDR_IN a)
{ a->sin_family = AF_INET; a->sin_port = 0; a->sin_addr.s_addr = RtlUlongByteSwap(INADDR_LOOPBACK); memset(a->sin_zero, 0, 8); }
static inline VOID IN6ADDR_SETANY(PSOCKADDR_IN6 a) { memset(a, 0, sizeof *a); a->sin6_family = AF_INET6; }
static inline VOID IN6ADDR_SETLOOPBACK(PSOCKADDR_IN6 a)
{ memset(a, 0, sizeof *a); a->sin6_family = AF_INET6; a->sin6_addr.u.Byte[15] = 1; }
#define htons(x) RtlUshortByteSwap(x)
#define ntohs(x) RtlUshortByteSwap(x)
#define htonl(x) RtlUlongByteSwap(x)
#define ntohl(x) RtlUlongByteSwap(x)
#endif
