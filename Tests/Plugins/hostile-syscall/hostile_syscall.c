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
 *
 * File-system probes (the runner's private root, not the filter, must answer these):
 *   stat:PATH      newfstatat(PATH) from a callback (stat stays allowed after load): 0 or -errno
 *   open:PATH      openat(PATH) from a callback: -EACCES from the after-load filter at the latest
 *   ctor:NAME      what openat of a fixed path returned in the library's CONSTRUCTOR, where openat is
 *                  still allowed (the loader's): NAME is etc_passwd, proc_1_status, dotdot or root_rw;
 *                  0 would mean the file was there.
 *
 * Constructor variants: a plugin NAMED "ctor-ATTACK" (a manifest the tests generate, pointing at
 * this same library) runs attempt(ATTACK) inside its constructor, i.e. inside dlopen, before the
 * runner has checked anything about it. glibc passes the runner's argv to constructors of dlopened
 * libraries, and the runner is started with `--plugin NAME`. The descriptor then declares that
 * name, so a constructor attack that is refused without a kill still loads and runs, and
 * `ctor_result` reports what the constructor got.
 *
 * Attacks besides the syscalls above (tests: Tests/IntegrationTests/HostileSuiteTests.swift):
 *   connect_loopback   socket + connect to 127.0.0.1:7999, where the test listens
 *   setns              setns(0, 0)
 *   fork_bomb          fork in a loop
 *   spin               loop forever (the heartbeat must notice)
 *   alloc              allocate and touch 512 MiB in 1 MiB steps (past any test memory limit)
 *   mark               create a file in /tmp/peerhost-hostile-mark, a 1777 directory on the host
 *   read_host_proc     open /proc/1/cmdline (the host's init, if /proc were there)
 *   listen_ungranted   ask the core to listen on tcp:127.0.0.1:7999 (callbacks only: the host
 *                      API does not exist yet in a constructor)
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
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "peerhost.h"

static const ph_host *host;

/* Results (-errno, or 0 when the file opened) of opens made at load time, before the filter stacked
 * after dlopen takes openat away: only the private root stands between these and the host. */
static int64_t ctor_etc_passwd = 1, ctor_proc_1_status = 1, ctor_dotdot = 1, ctor_root_rw = 1;

static int64_t attempt(const char *what);

/* The constructor variant's name and result (see the header comment). */
static char plugin_name[72] = "hostile-syscall";
static int64_t ctor_result = -1000;

static int64_t try_open(const char *path, int flags) {
    long r = syscall(SYS_openat, AT_FDCWD, path, flags, 0644);
    if (r < 0) return -(int64_t)errno;
    close((int)r);
    return 0;
}

__attribute__((constructor)) static void probe_at_load(int argc, char **argv, char **envp) {
    (void)envp;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--plugin") || strncmp(argv[i + 1], "ctor-", 5)) continue;
        if (strlen(argv[i + 1]) >= sizeof plugin_name) break;
        strcpy(plugin_name, argv[i + 1]);
        ctor_result = attempt(plugin_name + 5);   /* may never return: that is the point */
    }
    ctor_etc_passwd = try_open("/etc/passwd", O_RDONLY);
    ctor_proc_1_status = try_open("/proc/1/status", O_RDONLY);
    ctor_dotdot = try_open("/plugin/../../etc/passwd", O_RDONLY);
    ctor_root_rw = try_open("/planted-by-hostile-syscall", O_WRONLY | O_CREAT);
}
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
    } else if (!strncmp(what, "stat:", 5)) {
        struct stat st;
        r = syscall(SYS_newfstatat, AT_FDCWD, what + 5, &st, 0);
    } else if (!strncmp(what, "open:", 5)) {
        r = syscall(SYS_openat, AT_FDCWD, what + 5, O_RDONLY);
        if (r >= 0) close((int)r);
    } else if (!strcmp(what, "ctor:etc_passwd")) {
        return ctor_etc_passwd;
    } else if (!strcmp(what, "ctor:proc_1_status")) {
        return ctor_proc_1_status;
    } else if (!strcmp(what, "ctor:dotdot")) {
        return ctor_dotdot;
    } else if (!strcmp(what, "ctor:root_rw")) {
        return ctor_root_rw;
    } else if (!strcmp(what, "connect_loopback")) {
        r = syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
        if (r >= 0) {
            struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(7999), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            r = syscall(SYS_connect, (int)r, &to, sizeof to);
        }
    } else if (!strcmp(what, "setns")) {
        r = syscall(SYS_setns, 0, 0);
    } else if (!strcmp(what, "fork_bomb")) {
        for (int i = 0; i < 1000; i++) {
            r = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
            if (r == 0) for (;;) syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
        }
    } else if (!strcmp(what, "spin")) {
        for (volatile uint64_t n = 0;; n++) {}
    } else if (!strcmp(what, "alloc")) {
        for (r = 0; r < 512; r++) {
            char *p = malloc(1 << 20);
            if (!p) return -ENOMEM;
            memset(p, (int)r, 1 << 20);   /* touched, so it is resident, not just reserved */
        }
    } else if (!strcmp(what, "mark")) {
        r = syscall(SYS_openat, AT_FDCWD, "/tmp/peerhost-hostile-mark/pwned", O_WRONLY | O_CREAT, 0644);
        if (r >= 0) close((int)r);
    } else if (!strcmp(what, "read_host_proc")) {
        r = syscall(SYS_openat, AT_FDCWD, "/proc/1/cmdline", O_RDONLY);
        if (r >= 0) close((int)r);
    } else if (!strcmp(what, "listen_ungranted")) {
        if (!host) return -1001;
        return host->listen(host->ctx, "tcp:127.0.0.1:7999", strlen("tcp:127.0.0.1:7999"));
    } else if (!strcmp(what, "ctor_result")) {
        return ctor_result;
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
    if (!strncmp(plugin_name, "ctor-", 5)) return PH_OK;   /* a constructor variant serves nothing */
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

static ph_plugin plugin = {
    .size = sizeof(ph_plugin),
    .abi_version = PH_ABI_VERSION,
    .name = plugin_name,
    .version = "1.0.0",
    .features = PH_FEAT_STREAMS | PH_FEAT_CONTROL,
    .start = on_start,
    .on_data = on_data,
};

const ph_plugin *peerhost_plugin_v1(void) { return &plugin; }
