/*
 * ph_spawn.h — start a plugin runner in fresh namespaces from a multithreaded process.
 *
 * Why C: the core has many threads (NIO, Dispatch), so it cannot unshare(CLONE_NEWUSER) itself
 * (EINVAL), and a forked child of a multithreaded process may only make async-signal-safe calls.
 * ph_spawn() therefore prepares everything (argv, envp, fd list, map texts) before clone3(), and the
 * child makes only raw system calls until execve(). See DESIGN.md "The runner's start-up sequence".
 *
 * Child order (each step reports (step, errno) to the parent through a CLOEXEC pipe on failure):
 *   fds     move the given fds to 3, 4, 5, … (overlap-safe: first lifted above the target range)
 *   close   close_range(first free fd, ~0U): nothing else of the core leaks into the plugin
 *   sync    wait until the parent has written setgroups/uid_map/gid_map
 *   setgroups (only when the parent is privileged and left setgroups "allow": drops the core's
 *           supplementary groups; an unprivileged parent must write "deny" and the child keeps none
 *           it could use anyway because they map to nobody)
 *   setresgid(0,0,0), setresuid(0,0,0)   root inside = the plugin's unprivileged host uid/gid outside
 *   setsid  a new pid namespace does not stop kill(0, …) reaching the core's process group
 *   no_new_privs, mount / MS_REC|MS_PRIVATE (nothing the child mounts propagates to the host)
 *   With a private root (ph_spawn_args.root, mount namespace only):
 *   root_tmpfs   a size-limited tmpfs (mode 0755, nosuid, nodev) on root->dir
 *   mkdir        the directories the binds and the library need, on that tmpfs
 *   bind         each ph_spawn_bind: an empty target file, MS_BIND, then MS_REMOUNT|MS_BIND|MS_RDONLY
 *                with the source mount's nosuid/nodev/noexec (read by the parent: inside a user
 *                namespace those flags are locked, and a remount that dropped one fails with EPERM)
 *   copy_library the sealed, verified memfd → root->library_target on the tmpfs (read/write loop,
 *                stack buffer: no malloc in the child)
 *   remount_root_ro  the tmpfs becomes read-only (its superblock: no mount of it can write)
 *   pivot_root   chdir(root->dir); pivot_root(".", ".") stacks the old root on the new one
 *   detach_old_root  umount2(".", MNT_DETACH) takes the old root away; chdir("/")
 *   sigmask, execve  the runner (its path is bound at the same absolute path inside)
 * The parent writes the child's pid into every cgroup_procs fd (cgroup "cgroup.procs" files opened
 * by the caller) before it releases the child, so no instruction of the child runs unlimited.
 */
#ifndef PH_SPAWN_H
#define PH_SPAWN_H

#include <signal.h>   /* before anything that defines _XOPEN_SOURCE (see NOTES-swift-linux.md) */
#include <stdint.h>
#include <sys/types.h>

/* Namespace bits for ph_spawn_args.namespaces (our own numbering, mapped to CLONE_NEW* inside). */
#define PH_NS_USER (1u << 0)
#define PH_NS_PID  (1u << 1)
#define PH_NS_NET  (1u << 2)
#define PH_NS_MNT  (1u << 3)
#define PH_NS_IPC  (1u << 4)
#define PH_NS_UTS  (1u << 5)
#define PH_NS_ALL  ((1u << 6) - 1)

#define PH_SPAWN_MAX_FDS 16

/* The step that failed; ph_spawn_step_name() gives its short name ("uid_map"). */
typedef enum ph_spawn_step {
    PH_SPAWN_OK = 0,
    PH_SPAWN_ARGS,        /* parent: bad arguments (too many fds, NULL path) */
    PH_SPAWN_PIPE,        /* parent: pipe2 for sync/error */
    PH_SPAWN_CLONE,       /* parent: clone3 */
    PH_SPAWN_SETGROUPS_FILE, /* parent: /proc/PID/setgroups */
    PH_SPAWN_UID_MAP,     /* parent: /proc/PID/uid_map */
    PH_SPAWN_GID_MAP,     /* parent: /proc/PID/gid_map */
    PH_SPAWN_SIGNAL,      /* parent: releasing the child through the sync pipe */
    PH_SPAWN_CGROUP,      /* parent: writing the child's pid into a cgroup.procs file */
    PH_SPAWN_DUP_FDS,     /* child */
    PH_SPAWN_CLOSE_RANGE, /* child */
    PH_SPAWN_SYNC,        /* child: the parent went away before writing the maps */
    PH_SPAWN_SETGROUPS,   /* child */
    PH_SPAWN_SETRESGID,   /* child */
    PH_SPAWN_SETRESUID,   /* child */
    PH_SPAWN_SETSID,      /* child */
    PH_SPAWN_NO_NEW_PRIVS,/* child */
    PH_SPAWN_MOUNT_PRIVATE, /* child */
    PH_SPAWN_ROOT_TMPFS,  /* child: tmpfs on root->dir */
    PH_SPAWN_MKDIR,       /* child: directories on the tmpfs */
    PH_SPAWN_BIND,        /* child: a read-only bind (target file, bind, read-only remount) */
    PH_SPAWN_COPY_LIBRARY,/* child: memfd → tmpfs file (EIO: short copy) */
    PH_SPAWN_REMOUNT_ROOT_RO, /* child: the tmpfs read-only */
    PH_SPAWN_PIVOT_ROOT,  /* child: chdir to the new root and pivot_root(".", ".") */
    PH_SPAWN_DETACH_OLD_ROOT, /* child: umount2(".", MNT_DETACH) and chdir("/") */
    PH_SPAWN_SIGMASK,     /* child */
    PH_SPAWN_EXECVE,      /* child */
    PH_SPAWN_STEP_COUNT
} ph_spawn_step;

/* One read-only bind into the private root. Both paths are complete: target already carries the
 * root->dir prefix ("/run/peerhost/root/lib/x86_64-linux-gnu/libc.so.6"). */
typedef struct ph_spawn_bind {
    const char *source;        /* host path (a regular file; the mount follows symlinks) */
    const char *target;        /* created as an empty file on the tmpfs, then mounted over */
    unsigned long flags;       /* MS_NOSUID | MS_NODEV | MS_NOEXEC bits of the source's mount */
} ph_spawn_bind;

/* The runner's private file system (DESIGN.md "The runner's start-up sequence"). */
typedef struct ph_spawn_root {
    const char *dir;           /* an existing directory on the host, searchable by the plugin's
                                  uid; the tmpfs is mounted on it inside the child's namespace only */
    const char *tmpfs_options; /* mount data, e.g. "size=4194304,nr_inodes=256,mode=0755" */
    const char *const *dirs;   /* complete paths to mkdir (0755) in order, parents first */
    int ndirs;
    const ph_spawn_bind *binds;
    int nbinds;
    int library_fd;            /* sealed memfd with the verified plugin bytes; -1 = none */
    uint64_t library_size;     /* bytes to copy (the memfd's size) */
    const char *library_target;/* complete path of the copy, e.g. "<dir>/plugin/libecho-c.so" */
} ph_spawn_root;

typedef struct ph_spawn_args {
    const char *path;          /* absolute path of the executable */
    char *const *argv;         /* NULL-terminated, built by the caller before the call */
    char *const *envp;         /* NULL-terminated */
    const int *fds;            /* fds[i] becomes fd 3 + i in the child */
    int nfds;                  /* <= PH_SPAWN_MAX_FDS */
    uint32_t host_uid;         /* uid 0 inside maps to this uid outside */
    uint32_t host_gid;
    uint32_t namespaces;       /* PH_NS_* */
    const ph_spawn_root *root; /* NULL: the child keeps the host's file system (needs PH_NS_MNT) */
    const int *cgroup_procs;   /* open "cgroup.procs" fds; the parent writes the child's pid to each */
    int ncgroup_procs;         /* <= PH_SPAWN_MAX_FDS */
    int stdio_fd;              /* becomes fds 0, 1 and 2 in the child (the write end of a pipe the core
                                  reads and labels); -1 keeps the caller's 0–2 (tests only) */
} ph_spawn_args;

typedef struct ph_spawn_result {
    pid_t pid;                 /* as seen by the caller */
    int pidfd;                 /* O_CLOEXEC pidfd from CLONE_PIDFD */
    int failed_step;           /* ph_spawn_step, PH_SPAWN_OK on success */
    int error;                 /* errno of the failed step */
} ph_spawn_result;

/* Returns 0 and fills pid/pidfd, or -1 with failed_step/error set. On a child-side failure the child
 * has been reaped already; nothing leaks. */
int ph_spawn(const ph_spawn_args *args, ph_spawn_result *out);

const char *ph_spawn_step_name(int step);

/* Waits (blocking) for the process behind pidfd and reaps it. Returns 0 and fills *code and *exited
 * (1: exit status, 0: killed by signal *code), or -1 with errno. timeout_ms < 0 waits forever;
 * on timeout returns -1 with errno = ETIMEDOUT and the process is not reaped. */
int ph_pidfd_wait(int pidfd, int timeout_ms, int *exited, int *code);

#endif
