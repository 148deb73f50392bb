#define _GNU_SOURCE
#include "ph_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>     /* struct clone_args, CLONE_PIDFD */
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static const char *const step_names[PH_SPAWN_STEP_COUNT] = {
    [PH_SPAWN_OK] = "ok",
    [PH_SPAWN_ARGS] = "args",
    [PH_SPAWN_PIPE] = "pipe",
    [PH_SPAWN_CLONE] = "clone",
    [PH_SPAWN_SETGROUPS_FILE] = "setgroups_file",
    [PH_SPAWN_UID_MAP] = "uid_map",
    [PH_SPAWN_GID_MAP] = "gid_map",
    [PH_SPAWN_SIGNAL] = "signal_child",
    [PH_SPAWN_CGROUP] = "cgroup",
    [PH_SPAWN_DUP_FDS] = "dup_fds",
    [PH_SPAWN_CLOSE_RANGE] = "close_range",
    [PH_SPAWN_SYNC] = "sync",
    [PH_SPAWN_SETGROUPS] = "setgroups",
    [PH_SPAWN_SETRESGID] = "setresgid",
    [PH_SPAWN_SETRESUID] = "setresuid",
    [PH_SPAWN_SETSID] = "setsid",
    [PH_SPAWN_NO_NEW_PRIVS] = "no_new_privs",
    [PH_SPAWN_MOUNT_PRIVATE] = "mount_private",
    [PH_SPAWN_ROOT_TMPFS] = "root_tmpfs",
    [PH_SPAWN_MKDIR] = "mkdir",
    [PH_SPAWN_BIND] = "bind",
    [PH_SPAWN_COPY_LIBRARY] = "copy_library",
    [PH_SPAWN_REMOUNT_ROOT_RO] = "remount_root_ro",
    [PH_SPAWN_PIVOT_ROOT] = "pivot_root",
    [PH_SPAWN_DETACH_OLD_ROOT] = "detach_old_root",
    [PH_SPAWN_SIGMASK] = "sigmask",
    [PH_SPAWN_EXECVE] = "execve",
};

const char *ph_spawn_step_name(int step) {
    if (step < 0 || step >= PH_SPAWN_STEP_COUNT) return "unknown";
    return step_names[step];
}

/* ---- child side: raw system calls only -------------------------------------------------------
 * The child is a copy of one thread of a multithreaded process: another thread may have held the
 * malloc or stdio lock at clone time, so nothing here may allocate, lock or touch stdio. Only
 * syscall(2) is called (its PLT slot was resolved by the parent's own clone3 call), and errno is the
 * copied thread's TLS. Everything the child needs was prepared by the parent in `struct child_plan`.
 */
struct child_plan {
    const ph_spawn_args *args;
    int sync_r;      /* parent writes one byte after the maps */
    int err_w;       /* CLOEXEC: EOF at execve = success */
    int drop_groups; /* parent is privileged and left setgroups "allow" */
};

static void child_report(int fd, int step, int err) {
    int32_t msg[2] = {step, err};
    (void)syscall(SYS_write, fd, msg, sizeof msg);
    syscall(SYS_exit_group, 127);
    for (;;) {}
}

/* dup3 to a fixed number; a lifted CLOEXEC copy that already sits there stays (dup3 of an fd onto
 * itself is EINVAL). Only used for the CLOEXEC placements, where the copy's flags are right. */
static long place_cloexec(int from, int to) {
    return from == to ? to : syscall(SYS_dup3, from, to, O_CLOEXEC);
}

#define CHILD_CHECK(expr, step) do { if ((long)(expr) < 0) child_report(err_w, (step), errno); } while (0)

/* Step 8 of child_main: the runner's private file system, one ordered sequence. Everything it
 * touches was prepared by the parent (complete paths, mount options, source flags); after it the
 * child's "/" is a read-only tmpfs holding only the runner, its loader and libraries, and the
 * verified plugin bytes, and the host's file system is gone from this mount namespace. */
static void child_private_root(const ph_spawn_root *root, int library_fd, int err_w) {
    /* 8a. root_tmpfs: a fresh tmpfs over root->dir. Size-limited (the library copy plus the mount
     *     point files), 0755, nosuid (no set-uid file can gain anything), nodev (no device node
     *     opens a device); exec stays allowed because the loader maps the plugin copy PROT_EXEC. */
    CHILD_CHECK(syscall(SYS_mount, "peerhost-root", root->dir, "tmpfs", MS_NOSUID | MS_NODEV,
                        root->tmpfs_options), PH_SPAWN_ROOT_TMPFS);

    /* 8b. mkdir: the directories of every bind target and of the library, parents first. */
    for (int i = 0; i < root->ndirs; i++) {
        long r = syscall(SYS_mkdirat, AT_FDCWD, root->dirs[i], 0755);
        if (r < 0 && errno != EEXIST) child_report(err_w, PH_SPAWN_MKDIR, errno);
    }

    /* 8c. bind: an empty file as the mount point, MS_BIND of the host file onto it, then the
     *     read-only remount. A bind cannot be made read-only in the same call (the kernel ignores
     *     MS_RDONLY without MS_REMOUNT). The remount keeps nosuid/nodev/noexec of the source's mount
     *     (locked in a user namespace: dropping one is EPERM) and names no atime flag, which the
     *     kernel then preserves (the atime mode is locked too). */
    for (int i = 0; i < root->nbinds; i++) {
        const ph_spawn_bind *b = &root->binds[i];
        long fd = syscall(SYS_openat, AT_FDCWD, b->target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
        if (fd < 0) child_report(err_w, PH_SPAWN_BIND, errno);
        syscall(SYS_close, fd);
        CHILD_CHECK(syscall(SYS_mount, b->source, b->target, NULL, MS_BIND, NULL), PH_SPAWN_BIND);
        CHILD_CHECK(syscall(SYS_mount, NULL, b->target, NULL,
                            MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | (b->flags & MS_NOEXEC), NULL),
                    PH_SPAWN_BIND);
    }

    /* 8d. copy_library: the verified bytes. The memfd is sealed (no write, grow or shrink), so what
     *     the core hashed is what lands here; pread leaves the shared file offset alone. A 16 KiB
     *     stack buffer: the child runs on a copy of a core thread's stack, and malloc is off limits. */
    if (library_fd >= 0) {
        long out = syscall(SYS_openat, AT_FDCWD, root->library_target,
                           O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0555);
        if (out < 0) child_report(err_w, PH_SPAWN_COPY_LIBRARY, errno);
        char buf[16384];
        uint64_t done = 0;
        while (done < root->library_size) {
            uint64_t want = root->library_size - done;
            if (want > sizeof buf) want = sizeof buf;
            long n = syscall(SYS_pread64, library_fd, buf, (size_t)want, (off_t)done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) child_report(err_w, PH_SPAWN_COPY_LIBRARY, errno);
            if (n == 0) child_report(err_w, PH_SPAWN_COPY_LIBRARY, EIO);   /* shorter than its size */
            for (long off = 0; off < n;) {
                long w = syscall(SYS_write, out, buf + off, (size_t)(n - off));
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) child_report(err_w, PH_SPAWN_COPY_LIBRARY, w < 0 ? errno : EIO);
                off += w;
            }
            done += (uint64_t)n;
        }
        syscall(SYS_close, out);
        syscall(SYS_close, library_fd);
    }

    /* 8e. remount_root_ro: the tmpfs's superblock read-only, so no mount of it is writable; the
     *     plugin can neither change its own library nor plant files. */
    CHILD_CHECK(syscall(SYS_mount, NULL, root->dir, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL),
                PH_SPAWN_REMOUNT_ROOT_RO);

    /* 8f. pivot_root: with new_root and put_old both ".", the old root is stacked on top of the
     *     new one (put_old inside new_root, as pivot_root requires) and needs no directory of its
     *     own on the read-only tmpfs (pivot_root(2), "NOTES"). */
    CHILD_CHECK(syscall(SYS_chdir, root->dir), PH_SPAWN_PIVOT_ROOT);
    CHILD_CHECK(syscall(SYS_pivot_root, ".", "."), PH_SPAWN_PIVOT_ROOT);

    /* 8g. detach_old_root: lazily unmount the stacked old root (and every mount below it); what
     *     remains at "/" is the tmpfs. */
    CHILD_CHECK(syscall(SYS_umount2, ".", MNT_DETACH), PH_SPAWN_DETACH_OLD_ROOT);
    CHILD_CHECK(syscall(SYS_chdir, "/"), PH_SPAWN_DETACH_OLD_ROOT);
}

static void __attribute__((noreturn)) child_main(const struct child_plan *p) {
    const ph_spawn_args *a = p->args;
    int n = a->nfds;
    const ph_spawn_root *root = a->root;
    int err_w = p->err_w, sync_r = p->sync_r;
    int library_fd = root ? root->library_fd : -1;
    int lifted[PH_SPAWN_MAX_FDS + 2];

    /* 1. fds → 3, 4, 5, …  A source may already sit on another source's target (fds {4, 3}), so
     *    lift every fd we keep (sources, sync, error) above the target range first, then dup3 each
     *    down; dup3 with flags 0 clears CLOEXEC on the placed copies. */
    int floor_fd = 3 + n;
    for (int i = 0; i < n; i++) {
        long r = syscall(SYS_fcntl, a->fds[i], F_DUPFD_CLOEXEC, floor_fd);
        if (r < 0) child_report(err_w, PH_SPAWN_DUP_FDS, errno);
        lifted[i] = (int)r;
    }
    long r = syscall(SYS_fcntl, err_w, F_DUPFD_CLOEXEC, floor_fd);
    if (r < 0) child_report(err_w, PH_SPAWN_DUP_FDS, errno);
    err_w = (int)r;
    r = syscall(SYS_fcntl, sync_r, F_DUPFD_CLOEXEC, floor_fd);
    if (r < 0) child_report(err_w, PH_SPAWN_DUP_FDS, errno);
    sync_r = (int)r;
    int stdio = -1;
    if (a->stdio_fd >= 0) {
        r = syscall(SYS_fcntl, a->stdio_fd, F_DUPFD_CLOEXEC, floor_fd);
        if (r < 0) child_report(err_w, PH_SPAWN_DUP_FDS, errno);
        stdio = (int)r;
    }
    for (int i = 0; i < n; i++) CHILD_CHECK(syscall(SYS_dup3, lifted[i], 3 + i, 0), PH_SPAWN_DUP_FDS);
    /* 0, 1, 2: the core's pipe, never the core's own terminal or journal (a plugin's writes there
     * would read as the host's lines). Reads from fd 0 fail: there is no stdin. */
    if (stdio >= 0)
        for (int fd = 0; fd <= 2; fd++) CHILD_CHECK(syscall(SYS_dup3, stdio, fd, 0), PH_SPAWN_DUP_FDS);
    /* Park the two pipes right above the placed fds so one close_range drops everything else. */
    CHILD_CHECK(place_cloexec(err_w, floor_fd), PH_SPAWN_DUP_FDS);
    err_w = floor_fd;
    CHILD_CHECK(place_cloexec(sync_r, floor_fd + 1), PH_SPAWN_DUP_FDS);
    sync_r = floor_fd + 1;
    /* The library memfd (if any) sits above them until it is copied; CLOEXEC, closed before execve. */
    int keep_above = floor_fd + 2;
    if (library_fd >= 0) {
        r = syscall(SYS_fcntl, library_fd, F_DUPFD_CLOEXEC, floor_fd + 2);
        if (r < 0) child_report(err_w, PH_SPAWN_DUP_FDS, errno);
        CHILD_CHECK(place_cloexec((int)r, floor_fd + 2), PH_SPAWN_DUP_FDS);
        library_fd = floor_fd + 2;
        keep_above = floor_fd + 3;
    }

    /* 2. Nothing else of the core (sockets, other plugins' regions, io_uring fds) survives. */
    CHILD_CHECK(syscall(SYS_close_range, (unsigned)keep_above, ~0U, 0), PH_SPAWN_CLOSE_RANGE);

    /* 3. Wait for the parent's uid/gid maps; EOF without a byte means the parent gave up. */
    char c;
    for (;;) {
        r = syscall(SYS_read, sync_r, &c, 1);
        if (r == 1) break;
        if (r < 0 && errno == EINTR) continue;
        child_report(err_w, PH_SPAWN_SYNC, r == 0 ? EPIPE : errno);
    }
    syscall(SYS_close, sync_r);

    /* 4. Become root of the new user namespace = the plugin's host uid/gid outside. */
    if (p->drop_groups) CHILD_CHECK(syscall(SYS_setgroups, 0, NULL), PH_SPAWN_SETGROUPS);
    if (a->namespaces & PH_NS_USER) {
        CHILD_CHECK(syscall(SYS_setresgid, 0, 0, 0), PH_SPAWN_SETRESGID);
        CHILD_CHECK(syscall(SYS_setresuid, 0, 0, 0), PH_SPAWN_SETRESUID);
    }

    /* 5. Own session: kill(0, …) from the plugin can no longer reach the core's process group. */
    CHILD_CHECK(syscall(SYS_setsid), PH_SPAWN_SETSID);

    /* 6. No setuid/file-capability gains across execve, ever again. */
    CHILD_CHECK(syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), PH_SPAWN_NO_NEW_PRIVS);

    /* 7. Mounts made later in this namespace (tmpfs root, pivot_root) must not propagate out. */
    if (a->namespaces & PH_NS_MNT)
        CHILD_CHECK(syscall(SYS_mount, "none", "/", NULL, MS_REC | MS_PRIVATE, NULL), PH_SPAWN_MOUNT_PRIVATE);

    /* 8. The private root (mount namespace only; the parent refused a root without one). */
    if (root) child_private_root(root, library_fd, err_w);

    /* 9. The clone copied the calling thread's signal mask (Swift/NIO threads block some); the
     *    runner starts with none blocked. Dispositions are reset by execve except SIG_IGN, which the
     *    runner handles itself (it writes with MSG_NOSIGNAL). */
    uint64_t empty = 0;
    CHILD_CHECK(syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty, NULL, sizeof empty), PH_SPAWN_SIGMASK);

    syscall(SYS_execve, a->path, a->argv, a->envp);
    child_report(err_w, PH_SPAWN_EXECVE, errno);
    __builtin_unreachable();
}

/* ---- parent side --------------------------------------------------------------------------- */

static int write_proc_file(pid_t pid, const char *name, const char *text) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int saved = errno;
    close(fd);
    if (n != (ssize_t)len) { errno = n < 0 ? saved : EIO; return -1; }
    return 0;
}

static void kill_and_reap(int pidfd, pid_t pid) {
    (void)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR) {}
}

static int fail(ph_spawn_result *out, int step, int err) {
    out->failed_step = step;
    out->error = err;
    return -1;
}

int ph_spawn(const ph_spawn_args *a, ph_spawn_result *out) {
    memset(out, 0, sizeof *out);
    out->pid = -1;
    out->pidfd = -1;
    if (!a || !a->path || !a->argv || !a->envp || a->nfds < 0 || a->nfds > PH_SPAWN_MAX_FDS ||
        (a->nfds > 0 && !a->fds) || a->ncgroup_procs < 0 || a->ncgroup_procs > PH_SPAWN_MAX_FDS ||
        (a->ncgroup_procs > 0 && !a->cgroup_procs))
        return fail(out, PH_SPAWN_ARGS, EINVAL);
    /* A private root needs its own mount namespace: without one the tmpfs and pivot_root would
     * change the core's own file system. */
    if (a->root && (!(a->namespaces & PH_NS_MNT) || !a->root->dir || !a->root->tmpfs_options ||
                    a->root->ndirs < 0 || a->root->nbinds < 0 || (a->root->ndirs > 0 && !a->root->dirs) ||
                    (a->root->nbinds > 0 && !a->root->binds) ||
                    (a->root->library_fd >= 0 && !a->root->library_target)))
        return fail(out, PH_SPAWN_ARGS, EINVAL);

    int sync_pipe[2], err_pipe[2];
    if (pipe2(sync_pipe, O_CLOEXEC) < 0) return fail(out, PH_SPAWN_PIPE, errno);
    if (pipe2(err_pipe, O_CLOEXEC) < 0) {
        int e = errno;
        close(sync_pipe[0]); close(sync_pipe[1]);
        return fail(out, PH_SPAWN_PIPE, e);
    }

    /* A privileged parent (CAP_SETGID in its namespace, i.e. root here) may write gid_map without
     * setgroups=deny, which lets the child drop the core's supplementary groups with setgroups(0).
     * An unprivileged parent must write "deny" first, and setgroups then stays forbidden. */
    int privileged = geteuid() == 0;
    struct child_plan plan = {
        .args = a, .sync_r = sync_pipe[0], .err_w = err_pipe[1],
        .drop_groups = privileged && (a->namespaces & PH_NS_USER),
    };

    uint64_t flags = CLONE_PIDFD;
    if (a->namespaces & PH_NS_USER) flags |= CLONE_NEWUSER;
    if (a->namespaces & PH_NS_PID) flags |= CLONE_NEWPID;
    if (a->namespaces & PH_NS_NET) flags |= CLONE_NEWNET;
    if (a->namespaces & PH_NS_MNT) flags |= CLONE_NEWNS;
    if (a->namespaces & PH_NS_IPC) flags |= CLONE_NEWIPC;
    if (a->namespaces & PH_NS_UTS) flags |= CLONE_NEWUTS;

    int pidfd = -1;
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = flags;
    ca.pidfd = (uint64_t)(uintptr_t)&pidfd;
    ca.exit_signal = SIGCHLD;
    /* clone3 without CLONE_VM and with stack 0: the child runs on a copy of this stack, like fork,
     * but without glibc's fork handlers (which would take locks other threads may hold). */
    long pid = syscall(SYS_clone3, &ca, sizeof ca);
    if (pid == 0) child_main(&plan);
    int clone_errno = errno;
    close(sync_pipe[0]);
    close(err_pipe[1]);
    if (pid < 0) {
        close(sync_pipe[1]); close(err_pipe[0]);
        return fail(out, PH_SPAWN_CLONE, clone_errno);
    }

    int step = PH_SPAWN_OK, err = 0;
    if (a->namespaces & PH_NS_USER) {
        char map[64];
        if (write_proc_file((pid_t)pid, "setgroups", privileged ? "allow" : "deny") < 0) {
            step = PH_SPAWN_SETGROUPS_FILE; err = errno;
        }
        if (!step) {
            snprintf(map, sizeof map, "0 %u 1\n", a->host_uid);
            if (write_proc_file((pid_t)pid, "uid_map", map) < 0) { step = PH_SPAWN_UID_MAP; err = errno; }
        }
        if (!step) {
            snprintf(map, sizeof map, "0 %u 1\n", a->host_gid);
            if (write_proc_file((pid_t)pid, "gid_map", map) < 0) { step = PH_SPAWN_GID_MAP; err = errno; }
        }
    }
    /* The cgroups (memory, pids, cpu) take the child before it runs a single instruction of its
     * own: it is still blocked on the sync pipe. */
    for (int i = 0; !step && i < a->ncgroup_procs; i++) {
        char text[24];
        int len = snprintf(text, sizeof text, "%ld\n", pid);
        ssize_t n;
        while ((n = write(a->cgroup_procs[i], text, (size_t)len)) < 0 && errno == EINTR) {}
        if (n != len) { step = PH_SPAWN_CGROUP; err = n < 0 ? errno : EIO; }
    }
    if (!step) {
        char go = 1;
        ssize_t n;
        while ((n = write(sync_pipe[1], &go, 1)) < 0 && errno == EINTR) {}
        if (n != 1) { step = PH_SPAWN_SIGNAL; err = errno; }
    }
    close(sync_pipe[1]);
    if (step) {
        kill_and_reap(pidfd, (pid_t)pid);
        /* If the child had already failed on its own (dup_fds, close_range), its report names the
         * real cause; the parent's uid_map ESRCH would only be the consequence. */
        int32_t early[2];
        ssize_t n;
        while ((n = read(err_pipe[0], early, sizeof early)) < 0 && errno == EINTR) {}
        close(err_pipe[0]);
        close(pidfd);
        if (n == (ssize_t)sizeof early) return fail(out, early[0], early[1]);
        return fail(out, step, err);
    }

    /* EOF = execve succeeded (the error pipe was CLOEXEC); 8 bytes = (step, errno) from the child. */
    int32_t msg[2];
    size_t got = 0;
    while (got < sizeof msg) {
        ssize_t n = read(err_pipe[0], (char *)msg + got, sizeof msg - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(err_pipe[0]);
    if (got == sizeof msg) {
        while (waitpid((pid_t)pid, NULL, __WALL) < 0 && errno == EINTR) {}
        close(pidfd);
        return fail(out, msg[0], msg[1]);
    }
    if (got != 0) { /* a torn report: treat as an unknown child failure */
        kill_and_reap(pidfd, (pid_t)pid);
        close(pidfd);
        return fail(out, PH_SPAWN_EXECVE, EIO);
    }
    out->pid = (pid_t)pid;
    out->pidfd = pidfd;
    return 0;
}

int ph_pidfd_wait(int pidfd, int timeout_ms, int *exited, int *code) {
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    for (;;) {
        int n = poll(&p, 1, timeout_ms);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) { errno = ETIMEDOUT; return -1; }
        break;
    }
    siginfo_t info;
    memset(&info, 0, sizeof info);
    for (;;) {
        long r = syscall(SYS_waitid, P_PIDFD, pidfd, &info, WEXITED | __WALL, NULL);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        break;
    }
    if (exited) *exited = info.si_code == CLD_EXITED;
    if (code) *code = info.si_status;
    return 0;
}
