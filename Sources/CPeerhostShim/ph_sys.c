#define _GNU_SOURCE
#include "ph_sys.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int ph_memfd_create(const char *name) {
    return memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
}

int ph_memfd_seal(int fd) {
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
}

static int saved_argc;
static char **saved_argv;

/* glibc calls .init_array entries with (argc, argv, envp) before main. */
static void capture_args(int argc, char **argv, char **envp) {
    (void)envp;
    saved_argc = argc;
    saved_argv = argv;
}
__attribute__((section(".init_array"), used)) static void (*const capture_args_entry)(int, char **, char **) = capture_args;

int ph_saved_argc(void) { return saved_argc; }
char **ph_saved_argv(void) { return saved_argv; }

int ph_memfd_seal_immutable(int fd) {
    return fcntl(fd, F_ADD_SEALS, ph_seal_bits_immutable());
}

int ph_memfd_get_seals(int fd) {
    return fcntl(fd, F_GET_SEALS);
}

int ph_seal_bits_immutable(void) {
    return F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL;
}

int ph_eventfd(unsigned int initval, int nonblock) {
    return eventfd(initval, EFD_CLOEXEC | (nonblock ? EFD_NONBLOCK : 0));
}

int ph_eventfd_signal(int fd) {
    uint64_t one = 1;
    for (;;) {
        ssize_t n = write(fd, &one, sizeof one);
        if (n == (ssize_t)sizeof one) return 0;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return 0; /* counter saturated: already signalled */
        return -1;
    }
}

int ph_eventfd_drain(int fd, uint64_t *value) {
    uint64_t v = 0;
    for (;;) {
        ssize_t n = read(fd, &v, sizeof v);
        if (n == (ssize_t)sizeof v) { if (value) *value = v; return 0; }
        if (n < 0 && errno == EINTR) continue;
        if (value) *value = 0;
        return (n < 0 && errno == EAGAIN) ? 0 : -1;
    }
}

int ph_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int ph_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int ph_close_range(unsigned int first, unsigned int last, unsigned int flags) {
    return (int)syscall(SYS_close_range, first, last, flags);
}

int ph_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }
int ph_get_no_new_privs(void) { return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); }
int ph_set_pdeathsig(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }
int ph_set_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }

int ph_openat_beneath(int dirfd, const char *path, int flags, unsigned int mode) {
    struct open_how how = {0};
    how.flags = (uint64_t)(flags | O_CLOEXEC);
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

int ph_poll2(int fd0, int fd1, int64_t timeout_ns) {
    struct pollfd p[2] = {{.fd = fd0, .events = POLLIN}, {.fd = fd1, .events = POLLIN}};
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    int n = ppoll(p, fd1 >= 0 ? 2 : 1, tsp, NULL);
    if (n <= 0) return n;
    int mask = 0;
    if (p[0].revents & (POLLIN | POLLERR | POLLHUP)) mask |= 1;
    if (fd1 >= 0 && (p[1].revents & POLLIN)) mask |= 2;
    if (fd1 >= 0 && (p[1].revents & (POLLHUP | POLLERR))) mask |= 4;
    return mask;
}

uint64_t ph_peer_encode(const void *sa, uint8_t addr16[16]) {
    const struct sockaddr *s = sa;
    memset(addr16, 0, 16);
    if (s->sa_family == AF_INET) {
        const struct sockaddr_in *in = sa;
        addr16[10] = 0xff;
        addr16[11] = 0xff;
        memcpy(addr16 + 12, &in->sin_addr, 4);
        return (uint64_t)ntohs(in->sin_port) | (uint64_t)4 << 16;
    }
    if (s->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = sa;
        memcpy(addr16, &in6->sin6_addr, 16);
        return (uint64_t)ntohs(in6->sin6_port) | (uint64_t)6 << 16;
    }
    return 0;
}

size_t ph_peer_format(const uint8_t addr16[16], uint64_t arg2, const char *transport, char *out, size_t cap) {
    unsigned family = (unsigned)(arg2 >> 16) & 0xff, port = (unsigned)(arg2 & 0xffff);
    char ip[INET6_ADDRSTRLEN];
    int n;
    if (family == 4) {
        if (!inet_ntop(AF_INET, addr16 + 12, ip, sizeof ip)) return 0;
        n = snprintf(out, cap, "%s:%s:%u", transport, ip, port);
    } else if (family == 6) {
        if (!inet_ntop(AF_INET6, addr16, ip, sizeof ip)) return 0;
        n = snprintf(out, cap, "%s:[%s]:%u", transport, ip, port);
    } else {
        return 0;
    }
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}
