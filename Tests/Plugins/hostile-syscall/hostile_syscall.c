/*
 * hostile-syscall: a test plugin that tries, on request, one thing the runner's seccomp allowlist
 * (sandbox/profiles/plugin-default.toml) must stop. Each attempt is a control call:
 *
 *   peerhost ctl hostile-syscall attempt NAME
 *
 * Every NAME but open_etc_passwd must end with the runner killed by SIGSYS (signal 31) before the
 * call returns; open_etc_passwd returns -EACCES (the filter stacked after dlopen answers openat
 * with EACCES) and the plugin keeps running. Raw syscall() is used so that glibc cannot answer
 * from a cache or pick another call. Between attempts it echoes like echo-c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "peerhost.h"

static const ph_host *host;
static char listen_addr[128] = "tcp:127.0.0.1:7004";

/* Returns what the call returned (-errno on failure) if the process survived; -1000 for an
 * unknown NAME. */
static int64_t attempt(const char *what) {
    long r;
    if (!strcmp(what, "socket")) {
        r = syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
    } else if (!strcmp(what, "execve")) {
        char *argv[] = {"/bin/true", NULL};
        r = syscall(SYS_execve, "/bin/true", argv, (char *[]){NULL});
    } else if (!strcmp(what, "fork")) {
        r = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);   /* what fork() does on x86_64 */
        if (r == 0) syscall(SYS_exit, 0);
    } else if (!strcmp(what, "ptrace")) {
        r = syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0);
    } else if (!strcmp(what, "mount")) {
        r = syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, 0);
    } else if (!strcmp(what, "unshare")) {
        r = syscall(SYS_unshare, CLONE_NEWNS);
    } else if (!strcmp(what, "bpf")) {
        r = syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, 0, 0);
    } else if (!strcmp(what, "io_uring_setup")) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        r = syscall(SYS_io_uring_setup, 8, &p);
    } else if (!strcmp(what, "keyctl")) {
        r = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session keyring */, 0);
    } else if (!strcmp(what, "open_etc_passwd")) {
        r = syscall(SYS_openat, AT_FDCWD, "/etc/passwd", O_RDONLY);
        if (r >= 0) close((int)r);
    } else if (!strcmp(what, "kill_parent")) {
        /* The runner's process group: the notes saw kill(0, SIGKILL) reach the launcher. If the
         * filter let it through, the runner would die of SIGKILL (9), not SIGSYS (31). */
        r = syscall(SYS_kill, 0, SIGKILL);
    } else {
        return -1000;
    }
    return r < 0 ? -(int64_t)errno : (int64_t)r;
}

int64_t hostile_syscall_attempt(const char *what) { return attempt(what); }

static ph_status on_start(const ph_host *h, const char *config, size_t len, void **user) {
    host = h;
    (void)user;
    const char *k = config ? memmem(config, len, "\"listen\"", 8) : NULL;
    if (k) {
        const char *q = memchr(k + 8, '"', len - (size_t)(k + 8 - config));
        const char *e = q ? memchr(q + 1, '"', len - (size_t)(q + 1 - config)) : NULL;
        if (q && e && (size_t)(e - q - 1) < sizeof listen_addr) {
            memcpy(listen_addr, q + 1, (size_t)(e - q - 1));
            listen_addr[e - q - 1] = 0;
        }
    }
    int64_t r = host->listen(host->ctx, listen_addr, strlen(listen_addr));
    return r > 0 ? PH_OK : (ph_status)r;
}

static void on_data(void *user, ph_conn conn, ph_buffer *buf) {
    (void)user;
    if (host->send(host->ctx, conn, buf) != PH_OK) host->buffer_free(host->ctx, buf);
}

static const ph_plugin plugin = {
    .size = sizeof(ph_plugin),
    .abi_version = PH_ABI_VERSION,
    .name = "hostile-syscall",
    .version = "1.0.0",
    .features = PH_FEAT_STREAMS | PH_FEAT_CONTROL,
    .start = on_start,
    .on_data = on_data,
};

const ph_plugin *peerhost_plugin_v1(void) { return &plugin; }
