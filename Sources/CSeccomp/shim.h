#include <signal.h>
#include <seccomp.h>
/* SCMP_ACT_ERRNO/SCMP_ACT_TRACE are macros with arguments: not importable. */
static inline uint32_t ph_scmp_act_errno(uint16_t e) { return SCMP_ACT_ERRNO(e); }
/* AUDIT_ARCH_X86_64 is built from other macros: not importable. */
static inline uint32_t ph_scmp_arch_x86_64(void) { return SCMP_ARCH_X86_64; }
/* pidfd_getfd(2) has no glibc wrapper in Debian 12 and syscall() is variadic (not importable):
 * the core copies a learn-mode runner's seccomp listener fd with it. */
#include <unistd.h>
#include <sys/syscall.h>
static inline int ph_pidfd_getfd(int pidfd, int fd) { return (int)syscall(438 /* SYS_pidfd_getfd */, pidfd, fd, 0); }
/* SECCOMP_USER_NOTIF_FLAG_CONTINUE: let the notified syscall run as if no filter had stopped it. */
static inline void ph_notif_continue(struct seccomp_notif *req, struct seccomp_notif_resp *resp) {
    resp->id = req->id; resp->val = 0; resp->error = 0; resp->flags = 1;
}
