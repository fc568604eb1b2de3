/* loadgen: a ping-pong load generator for echo servers (coserve's benchmark suite).
 *
 * usage: loadgen HOST PORT CONNS SIZE SECONDS [IDLE]
 *   CONNS connections each send SIZE bytes, read the whole echo back, check it,
 *   and send again, for SECONDS. IDLE more connections are opened first and
 *   held open without traffic; once they are, "idle-ready" is printed and one
 *   line is read from stdin (the driver measures the server's memory then).
 * Prints one JSON object: messages, messages per second, p50/p99 latency (us),
 * and the number of echoes that did not match.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct peer {
    int fd;
    size_t out;      /* bytes of the current message sent */
    size_t in;       /* bytes of its echo received */
    double started;  /* when the current message was first sent */
    int want_out;    /* registered for EPOLLOUT */
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int open_conn(const struct sockaddr_in *addr) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0) {
        perror("loadgen: connect");
        exit(2);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void interest(int ep, struct peer *p, int idx, int out) {
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.u32 = (unsigned)idx};
    epoll_ctl(ep, EPOLL_CTL_MOD, p->fd, &ev);
    p->want_out = out;
}

/* Send what is left of the current message; ask for EPOLLOUT only while some is left. */
static void push(int ep, struct peer *p, int idx, const unsigned char *msg, size_t size) {
    while (p->out < size) {
        ssize_t n = send(p->fd, msg + p->out, size - p->out, MSG_NOSIGNAL);
        if (n > 0) { p->out += (size_t)n; continue; }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        perror("loadgen: send");
        exit(2);
    }
    int out = p->out < size;
    if (out != p->want_out) interest(ep, p, idx, out);
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: loadgen HOST PORT CONNS SIZE SECONDS [IDLE]\n");
        return 2;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) { fprintf(stderr, "loadgen: bad host\n"); return 2; }
    int nconn = atoi(argv[3]);
    size_t size = strtoul(argv[4], NULL, 10);
    double seconds = atof(argv[5]);
    int nidle = argc > 6 ? atoi(argv[6]) : 0;

    unsigned char *msg = malloc(size), *scratch = malloc(size);
    for (size_t i = 0; i < size; i++) msg[i] = (unsigned char)(i * 7 + 3);

    int *idle = calloc((size_t)nidle + 1, sizeof(int));
    for (int i = 0; i < nidle; i++) idle[i] = open_conn(&addr);
    if (nidle) {
        printf("idle-ready\n");
        fflush(stdout);
        char line[16];
        if (!fgets(line, sizeof line, stdin)) { /* no driver: go on */ }
    }

    int ep = epoll_create1(0);
    struct peer *peers = calloc((size_t)nconn, sizeof *peers);
    size_t cap = 1u << 22, nlat = 0;
    double *lat = malloc(cap * sizeof *lat);
    for (int i = 0; i < nconn; i++) {
        peers[i].fd = open_conn(&addr);
        fcntl(peers[i].fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, peers[i].fd, &ev);
    }
    double start = now_s(), deadline = start + seconds;
    for (int i = 0; i < nconn; i++) {
        peers[i].started = now_s();
        push(ep, &peers[i], i, msg, size);
    }
    long long messages = 0, mismatched = 0;
    struct epoll_event events[512];
    for (;;) {
        int n = epoll_wait(ep, events, 512, 50);
        double t = now_s();
        if (t >= deadline) break;
        for (int k = 0; k < n; k++) {
            int idx = (int)events[k].data.u32;
            struct peer *p = &peers[idx];
            if (events[k].events & EPOLLOUT) push(ep, p, idx, msg, size);
            if (!(events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            ssize_t r = recv(p->fd, scratch + p->in, size - p->in, 0);
            if (r == 0) { fprintf(stderr, "loadgen: the server closed a connection\n"); return 2; }
            if (r < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) continue;
                perror("loadgen: recv");
                return 2;
            }
            p->in += (size_t)r;
            if (p->in < size) continue;
            if (memcmp(scratch, msg, size) != 0) mismatched++;
            double done = now_s();
            if (nlat < cap) lat[nlat++] = done - p->started;
            messages++;
            p->in = 0;
            p->out = 0;
            p->started = done;
            push(ep, p, idx, msg, size);
        }
    }
    double elapsed = now_s() - start;
    qsort(lat, nlat, sizeof *lat, by_value);
    double p50 = nlat ? lat[nlat / 2] * 1e6 : 0, p99 = nlat ? lat[(size_t)((double)nlat * 0.99)] * 1e6 : 0;
    printf("{\"conns\": %d, \"idle\": %d, \"size\": %zu, \"seconds\": %.3f, \"messages\": %lld, "
           "\"msgs_per_s\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"mismatched\": %lld}\n",
           nconn, nidle, size, elapsed, messages, messages / elapsed, p50, p99, mismatched);
    return mismatched ? 1 : 0;
}
