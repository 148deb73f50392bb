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
 *   execve  the runner
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
    PH_SPAWN_DUP_FDS,     /* child */
    PH_SPAWN_CLOSE_RANGE, /* child */
    PH_SPAWN_SYNC,        /* child: the parent went away before writing the maps */
    PH_SPAWN_SETGROUPS,   /* child */
    PH_SPAWN_SETRESGID,   /* child */
    PH_SPAWN_SETRESUID,   /* child */
    PH_SPAWN_SETSID,      /* child */
    PH_SPAWN_NO_NEW_PRIVS,/* child */
    PH_SPAWN_MOUNT_PRIVATE, /* child */
    PH_SPAWN_SIGMASK,     /* child */
    PH_SPAWN_EXECVE,      /* child */
    PH_SPAWN_STEP_COUNT
} ph_spawn_step;

typedef struct ph_spawn_args {
    const char *path;          /* absolute path of the executable */
    char *const *argv;         /* NULL-terminated, built by the caller before the call */
    char *const *envp;         /* NULL-terminated */
    const int *fds;            /* fds[i] becomes fd 3 + i in the child */
    int nfds;                  /* <= PH_SPAWN_MAX_FDS */
    uint32_t host_uid;         /* uid 0 inside maps to this uid outside */
    uint32_t host_gid;
    uint32_t namespaces;       /* PH_NS_* */
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
