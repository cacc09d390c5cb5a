/* The C reference for pywsk's benchmarks: single-threaded, non-blocking, level-triggered
 * epoll on both sides.  It is the practical limit a Python implementation is compared with.
 * The driver (benchmarks/run.py) compiles it with gcc -O2; the command line is the one every
 * implementation shares (benchmarks/common.py):
 *
 *   cnet churn-server N [IDLE]
 *   cnet churn-client PORT N CONC [IDLE IDLE_PORT]
 *   cnet bulk-recv
 *   cnet bulk-send PORT BYTES CC
 *   cnet dgram-server N SIZE BATCH
 *   cnet dgram-client PORT N SIZE BATCH
 *
 * The datagram workload uses one UDP socket per side with blocking recvmmsg (MSG_WAITFORONE)
 * and sendmmsg: a batch in one call each way, the kernel's own batching interface.
 *
 * Every process prints one JSON line last, with "cpu": CLOCK_PROCESS_CPUTIME_ID since main.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum { MSG = 1024, CHUNK = 256 * 1024, EVENTS = 256, TIMEOUT_MS = 30000 };

static double cpu_start;
static unsigned char payload[MSG];

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(const char *what) {
    perror(what);
    exit(2);
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static int listener(int backlog, int *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback(0);
    socklen_t len = sizeof a;
    if (fd < 0) fail("socket");
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) fail("bind");
    if (listen(fd, backlog) < 0) fail("listen");
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

static int announced_listener(int backlog) {
    int port, fd = listener(backlog, &port);
    printf("PORT %d\n", port);
    fflush(stdout);
    return fd;
}

static void watch(int ep, int op, int fd, unsigned events, void *ptr) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.ptr = ptr;
    if (epoll_ctl(ep, op, fd, &ev) < 0) fail("epoll_ctl");
}

static int wait_events(int ep, struct epoll_event *evs, int n, const char *who) {
    int k = epoll_wait(ep, evs, n, TIMEOUT_MS);
    if (k < 0 && errno == EINTR) return 0;
    if (k <= 0) {
        fprintf(stderr, "%s: no progress for %d ms\n", who, TIMEOUT_MS);
        exit(3);
    }
    return k;
}

/* ---------------------------------------------------------------- churn server --- */

struct served { int fd; int len; unsigned char buf[4 * MSG]; };

static int idle_tag; /* epoll data of the idle listener */

static int churn_server(long n, long idle) {
    int port, idle_port = 0, lfd = listener(4096, &port), ilfd = -1;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    long conns = 0, bytes = 0, bad = 0, idle_accepted = 0;
    struct epoll_event evs[EVENTS];
    if (idle > 0) { /* idle connections come to a port of their own */
        ilfd = listener(4096, &idle_port);
        watch(ep, EPOLL_CTL_ADD, ilfd, EPOLLIN, &idle_tag);
        printf("PORT %d %d\n", port, idle_port);
    } else {
        printf("PORT %d\n", port);
    }
    fflush(stdout);
    watch(ep, EPOLL_CTL_ADD, lfd, EPOLLIN, NULL);
    while (conns < n) {
        int k = wait_events(ep, evs, EVENTS, "churn-server");
        for (int i = 0; i < k; i++) {
            struct served *c = evs[i].data.ptr;
            if (c == NULL || (void *)c == &idle_tag) { /* a listener */
                int fd, from = c == NULL ? lfd : ilfd;
                static int first = 1;
                if (c == NULL && first) { /* CPU counts the churn from its first connection */
                    cpu_start = clock_s(CLOCK_PROCESS_CPUTIME_ID);
                    first = 0;
                }
                while ((fd = accept4(from, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (from == ilfd && ++idle_accepted == idle) {
                        printf("IDLE-READY\n"); /* the driver now lets the client start */
                        fflush(stdout);
                    }
                    c = malloc(sizeof *c);
                    c->fd = fd;
                    c->len = 0;
                    watch(ep, EPOLL_CTL_ADD, fd, EPOLLIN, c);
                }
                continue;
            }
            for (;;) {
                ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - (size_t)c->len, 0);
                if (r > 0) { c->len += (int)r; continue; }
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                if (r == 0 && c->len > 0) { /* EOF after the message: echo, FIN, close */
                    if (send(c->fd, c->buf, (size_t)c->len, MSG_NOSIGNAL) != c->len) bad++;
                    shutdown(c->fd, SHUT_WR);
                    if (c->len != MSG || memcmp(c->buf, payload, MSG) != 0) bad++;
                    bytes += c->len;
                    conns++;
                } else if (r < 0) {
                    bad++;
                } /* r == 0 with no data: an idle connection closed by the client */
                close(c->fd);
                free(c);
                break;
            }
        }
    }
    printf("{\"side\":\"server\",\"impl\":\"c-epoll\",\"conns\":%ld,\"bytes\":%ld,\"bad\":%ld,"
           "\"cpu\":%.6f}\n", conns, bytes, bad, clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu_start);
    return bad != 0 || conns != n;
}

/* ---------------------------------------------------------------- churn client --- */

struct conn { int fd; int connected; int got; unsigned char buf[2 * MSG]; };

static void start(int ep, const struct sockaddr_in *a) {
    struct conn *c = malloc(sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->connected = 0;
    c->got = 0;
    if (c->fd < 0) fail("socket");
    if (connect(c->fd, (const struct sockaddr *)a, sizeof *a) < 0 && errno != EINPROGRESS)
        fail("connect");
    watch(ep, EPOLL_CTL_ADD, c->fd, EPOLLOUT, c);
}

static int open_idle(const struct sockaddr_in *a, long idle, int *fds) {
    for (long i = 0; i < idle; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || connect(fds[i], (const struct sockaddr *)a, sizeof *a) < 0)
            fail("idle connect");
    }
    return 0;
}

static int churn_client(int port, long n, int conc, long idle, int idle_port) {
    struct sockaddr_in a = loopback(port), ia = loopback(idle_port);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int *idle_fds = calloc((size_t)(idle > 0 ? idle : 1), sizeof(int));
    long started = 0, conns = 0, bytes = 0, bad = 0;
    struct epoll_event evs[EVENTS];
    open_idle(&ia, idle, idle_fds);
    if (idle > 0) { /* wait for the driver's go: the server has accepted them all */
        char line[16];
        if (fgets(line, sizeof line, stdin) == NULL) fail("stdin");
    }
    cpu_start = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    double t0 = clock_s(CLOCK_MONOTONIC);
    for (; started < conc && started < n; started++) start(ep, &a);
    while (conns < n) {
        int k = wait_events(ep, evs, EVENTS, "churn-client");
        for (int i = 0; i < k; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c->connected) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err) { errno = err; fail("connect"); }
                if (send(c->fd, payload, MSG, MSG_NOSIGNAL) != MSG) bad++;
                shutdown(c->fd, SHUT_WR); /* graceful disconnect */
                c->connected = 1;
                watch(ep, EPOLL_CTL_MOD, c->fd, EPOLLIN, c);
                continue;
            }
            for (;;) {
                ssize_t r = recv(c->fd, c->buf + c->got, sizeof c->buf - (size_t)c->got, 0);
                if (r > 0) { c->got += (int)r; continue; }
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                if (r < 0 || c->got != MSG || memcmp(c->buf, payload, MSG) != 0) bad++;
                bytes += c->got;
                conns++;
                close(c->fd);
                free(c);
                if (started < n) { start(ep, &a); started++; }
                break;
            }
        }
    }
    double dt = clock_s(CLOCK_MONOTONIC) - t0;
    for (long i = 0; i < idle; i++) close(idle_fds[i]);
    printf("{\"side\":\"client\",\"impl\":\"c-epoll\",\"conns\":%ld,\"bytes\":%ld,\"bad\":%ld,"
           "\"seconds\":%.6f,\"rate\":%.1f,\"idle\":%ld,\"cpu\":%.6f}\n", conns, bytes, bad, dt,
           (double)conns / dt, idle, clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu_start);
    return bad != 0 || conns != n;
}

/* ------------------------------------------------------------------------ bulk --- */

static int bulk_recv(void) {
    int lfd = announced_listener(16), ep = epoll_create1(EPOLL_CLOEXEC), fd;
    struct epoll_event evs[4];
    unsigned char *buf = aligned_alloc(4096, CHUNK); /* page-aligned, see common.py */
    long total = 0;
    watch(ep, EPOLL_CTL_ADD, lfd, EPOLLIN, NULL);
    wait_events(ep, evs, 4, "bulk-recv accept");
    fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) fail("accept");
    double t0 = clock_s(CLOCK_MONOTONIC);
    watch(ep, EPOLL_CTL_ADD, fd, EPOLLIN, &fd);
    for (;;) {
        ssize_t r;
        wait_events(ep, evs, 4, "bulk-recv");
        while ((r = recv(fd, buf, CHUNK, 0)) > 0) total += r;
        if (r == 0) break;
        if (errno != EAGAIN && errno != EWOULDBLOCK) fail("recv");
    }
    double dt = clock_s(CLOCK_MONOTONIC) - t0;
    shutdown(fd, SHUT_WR);
    close(fd);
    printf("{\"side\":\"receiver\",\"impl\":\"c-epoll\",\"bytes\":%ld,\"seconds\":%.6f,"
           "\"cpu\":%.6f}\n", total, dt, clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu_start);
    return 0;
}

static int bulk_send(int port, long total, const char *cc) {
    struct sockaddr_in a = loopback(port);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    unsigned char *buf = aligned_alloc(4096, CHUNK);
    struct epoll_event evs[4];
    long sent = 0;
    char sink[64];
    memset(buf, 'b', CHUNK);
    double t0 = clock_s(CLOCK_MONOTONIC);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (strcmp(cc, "default") != 0 &&
        setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, cc, (socklen_t)strlen(cc)) < 0)
        fail("TCP_CONGESTION");
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) fail("connect");
    watch(ep, EPOLL_CTL_ADD, fd, EPOLLOUT, &fd);
    while (sent < total) {
        wait_events(ep, evs, 4, "bulk-send");
        while (sent < total) {
            size_t want = (size_t)(total - sent < CHUNK ? total - sent : CHUNK);
            ssize_t w = send(fd, buf, want, MSG_NOSIGNAL);
            if (w > 0) { sent += w; continue; }
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            fail("send");
        }
    }
    shutdown(fd, SHUT_WR); /* graceful disconnect after every byte */
    watch(ep, EPOLL_CTL_MOD, fd, EPOLLIN, &fd);
    for (;;) {
        wait_events(ep, evs, 4, "bulk-send EOF");
        ssize_t r = recv(fd, sink, sizeof sink, 0);
        if (r == 0) break;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        fail("unexpected data or error before EOF");
    }
    double dt = clock_s(CLOCK_MONOTONIC) - t0;
    close(fd);
    printf("{\"side\":\"sender\",\"impl\":\"c-epoll\",\"bytes\":%ld,\"seconds\":%.6f,"
           "\"MBps\":%.1f,\"cpu\":%.6f}\n", sent, dt, (double)sent / dt / 1e6,
           clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu_start);
    return sent != total;
}

/* -------------------------------------------------------------------- datagrams --- */

enum { DGRAM_MAX = 65536, BATCH_MAX = 1024 };

/* The i-th datagram of a batch: its position (4 bytes, little-endian), then the pattern. */
static void dgram_payload(unsigned char *p, int size, int i) {
    for (int k = 0; k < size; k++) p[k] = (unsigned char)((k * 7 + 3) & 0xFF);
    for (int k = 0; k < 4 && k < size; k++) p[k] = (unsigned char)(i >> (8 * k));
}

static int udp_socket(int port, int timeout_ms) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = loopback(port);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    if (fd < 0) fail("socket");
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) fail("bind");
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) fail("SO_RCVTIMEO");
    return fd;
}

static int dgram_server(long n, int size, int batch) {
    int fd = udp_socket(0, TIMEOUT_MS);
    struct sockaddr_in a, from[BATCH_MAX];
    socklen_t len = sizeof a;
    struct mmsghdr msgs[BATCH_MAX];
    struct iovec iov[BATCH_MAX];
    unsigned char *bufs = malloc((size_t)batch * DGRAM_MAX);
    long count = 0, bytes = 0, bad = 0;
    getsockname(fd, (struct sockaddr *)&a, &len);
    printf("PORT %d\n", ntohs(a.sin_port));
    fflush(stdout);
    while (count < n) {
        for (int i = 0; i < batch; i++) {
            iov[i].iov_base = bufs + (size_t)i * DGRAM_MAX;
            iov[i].iov_len = DGRAM_MAX;
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &from[i];
            msgs[i].msg_hdr.msg_namelen = sizeof from[i];
        }
        int k = recvmmsg(fd, msgs, (unsigned)batch, MSG_WAITFORONE, NULL);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) fail("dgram-server recvmmsg (no progress)");
        if (count == 0) cpu_start = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        for (int i = 0; i < k; i++) {
            bad += (int)msgs[i].msg_len != size;
            bytes += msgs[i].msg_len;
            iov[i].iov_len = msgs[i].msg_len; /* the echo: the same bytes back */
        }
        for (int sent = 0; sent < k;) {
            int w = sendmmsg(fd, msgs + sent, (unsigned)(k - sent), 0);
            if (w < 0) fail("dgram-server sendmmsg");
            sent += w;
        }
        count += k;
    }
    printf("{\"side\":\"server\",\"impl\":\"c-epoll\",\"datagrams\":%ld,\"bytes\":%ld,"
           "\"bad\":%ld,\"cpu\":%.6f}\n", count, bytes, bad,
           clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu_start);
    return bad != 0;
}

static int dgram_client(int port, long n, int size, int batch) {
    int fd = udp_socket(0, TIMEOUT_MS);
    struct sockaddr_in to = loopback(port);
    struct mmsghdr out[BATCH_MAX], in[BATCH_MAX];
    struct iovec oiov[BATCH_MAX], iiov[BATCH_MAX];
    unsigned char *payloads = malloc((size_t)batch * (size_t)size);
    unsigned char *bufs = malloc((size_t)batch * DGRAM_MAX);
    long count = 0, bytes = 0, bad = 0;
    for (int i = 0; i < batch; i++) {
        dgram_payload(payloads + (size_t)i * (size_t)size, size, i);
        oiov[i].iov_base = payloads + (size_t)i * (size_t)size;
        oiov[i].iov_len = (size_t)size;
        memset(&out[i].msg_hdr, 0, sizeof out[i].msg_hdr);
        out[i].msg_hdr.msg_iov = &oiov[i];
        out[i].msg_hdr.msg_iovlen = 1;
        out[i].msg_hdr.msg_name = &to;
        out[i].msg_hdr.msg_namelen = sizeof to;
    }
    cpu_start = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    double t0 = clock_s(CLOCK_MONOTONIC);
    while (count < n) {
        int want = n - count < batch ? (int)(n - count) : batch, got = 0;
        for (int sent = 0; sent < want;) {
            int w = sendmmsg(fd, out + sent, (unsigned)(want - sent), 0);
            if (w < 0) fail("dgram-client sendmmsg");
            sent += w;
        }
        while (got < want) {
            for (int i = 0; i < want - got; i++) {
                iiov[i].iov_base = bufs + (size_t)i * DGRAM_MAX;
                iiov[i].iov_len = DGRAM_MAX;
                memset(&in[i].msg_hdr, 0, sizeof in[i].msg_hdr);
                in[i].msg_hdr.msg_iov = &iiov[i];
                in[i].msg_hdr.msg_iovlen = 1;
            }
            int k = recvmmsg(fd, in, (unsigned)(want - got), MSG_WAITFORONE, NULL);
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) fail("dgram-client recvmmsg (an echo was lost)");
            for (int i = 0; i < k; i++, got++) { /* echoes come back in order on loopback */
                bad += (int)in[i].msg_len != size ||
                       memcmp(bufs + (size_t)i * DGRAM_MAX,
                              payloads + (size_t)got * (size_t)size, (size_t)size) != 0;
                bytes += in[i].msg_len;
            }
        }
        count += want;
    }
    double dt = clock_s(CLOCK_MONOTONIC) - t0;
    printf("{\"side\":\"client\",\"impl\":\"c-epoll\",\"datagrams\":%ld,\"bytes\":%ld,"
           "\"bad\":%ld,\"seconds\":%.6f,\"rate\":%.1f,\"cpu\":%.6f}\n", count, bytes, bad, dt,
           (double)count / dt, clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu_start);
    return bad != 0;
}

static int dgram_arg(const char *text, int least, int most) {
    int v = atoi(text);
    if (v < least || v > most) {
        fprintf(stderr, "%s: out of range %d..%d\n", text, least, most);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    cpu_start = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    for (int i = 0; i < MSG; i++) payload[i] = (unsigned char)((i * 7 + 3) & 0xFF);
    if (argc >= 3 && strcmp(argv[1], "churn-server") == 0)
        return churn_server(atol(argv[2]), argc >= 4 ? atol(argv[3]) : 0);
    if (argc >= 5 && strcmp(argv[1], "churn-client") == 0)
        return churn_client(atoi(argv[2]), atol(argv[3]), atoi(argv[4]),
                            argc >= 7 ? atol(argv[5]) : 0, argc >= 7 ? atoi(argv[6]) : 0);
    if (argc >= 2 && strcmp(argv[1], "bulk-recv") == 0) return bulk_recv();
    if (argc >= 5 && strcmp(argv[1], "bulk-send") == 0)
        return bulk_send(atoi(argv[2]), atol(argv[3]), argv[4]);
    if (argc >= 5 && strcmp(argv[1], "dgram-server") == 0)
        return dgram_server(atol(argv[2]), dgram_arg(argv[3], 4, DGRAM_MAX),
                            dgram_arg(argv[4], 1, BATCH_MAX));
    if (argc >= 6 && strcmp(argv[1], "dgram-client") == 0)
        return dgram_client(atoi(argv[2]), atol(argv[3]), dgram_arg(argv[4], 4, DGRAM_MAX),
                            dgram_arg(argv[5], 1, BATCH_MAX));
    fprintf(stderr, "usage: cnet churn-server N [IDLE] | churn-client PORT N CONC [IDLE IPORT] | "
                    "bulk-recv | bulk-send PORT BYTES CC | dgram-server N SIZE BATCH | "
                    "dgram-client PORT N SIZE BATCH\n");
    return 2;
}
