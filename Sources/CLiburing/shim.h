/* liburing for Swift. <signal.h> first: liburing.h defines _XOPEN_SOURCE, which on a clean build
 * makes Clang's Glibc module conflict on fd_set (see NOTES-swift-linux.md). */
#include <signal.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <liburing.h>

/* Function-like macros and helpers that do not import into Swift. */
static inline unsigned ph_uring_peek_batch(struct io_uring *ring, struct io_uring_cqe **cqes, unsigned count) {
    return io_uring_peek_batch_cqe(ring, cqes, count);
}
static inline int ph_uring_buf_ring_mask(unsigned entries) { return io_uring_buf_ring_mask(entries); }
static inline unsigned ph_cqe_buffer_id(const struct io_uring_cqe *cqe) { return cqe->flags >> IORING_CQE_BUFFER_SHIFT; }
static inline int ph_cqe_has_buffer(const struct io_uring_cqe *cqe) { return (cqe->flags & IORING_CQE_F_BUFFER) != 0; }
static inline int ph_cqe_has_more(const struct io_uring_cqe *cqe) { return (cqe->flags & IORING_CQE_F_MORE) != 0; }
static inline int ph_cqe_is_notif(const struct io_uring_cqe *cqe) { return (cqe->flags & IORING_CQE_F_NOTIF) != 0; }

/* ---- Helpers for PeerhostCore/EventLoop ------------------------------------------------------
 * The buffer ring is handled through void* so Swift never has to model the flexible union of
 * struct io_uring_buf_ring; the kernel-visible ring itself is core-private memory (DESIGN.md). */
#include <string.h>
#include <linux/openat2.h>
#include <linux/time_types.h>
/* O_TMPFILE needs _GNU_SOURCE, which this header must not define; its value is ABI. */
#define PH_O_TMPFILE (020000000 | O_DIRECTORY)

static inline void ph_buf_ring_init(void *br) { io_uring_buf_ring_init((struct io_uring_buf_ring *)br); }
static inline void ph_buf_ring_add(void *br, void *addr, unsigned len, unsigned short bid, int mask, int offset) {
    io_uring_buf_ring_add((struct io_uring_buf_ring *)br, addr, len, bid, mask, offset);
}
static inline void ph_buf_ring_advance(void *br, int count) {
    io_uring_buf_ring_advance((struct io_uring_buf_ring *)br, count);
}
static inline int ph_register_buf_ring(struct io_uring *ring, void *br, unsigned entries, unsigned short bgid) {
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (unsigned long)(uintptr_t)br;
    reg.ring_entries = entries;
    reg.bgid = bgid;
    return io_uring_register_buf_ring(ring, &reg, 0);
}
static inline size_t ph_buf_ring_bytes(unsigned entries) { return (size_t)entries * sizeof(struct io_uring_buf); }

/* Multishot recv that picks its buffers from group `bgid`. */
static inline void ph_prep_recv_multishot_group(struct io_uring_sqe *sqe, int fd, unsigned short bgid) {
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = bgid;
}
/* One receive into one buffer of group `bgid` (no multishot): a shaped connection takes exactly one
 * slot per admission. */
static inline void ph_prep_recv_group(struct io_uring_sqe *sqe, int fd, unsigned short bgid) {
    io_uring_prep_recv(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = bgid;
}
/* openat2 beneath `dfd`: no "..", no absolute path, no symlink leaving dfd, no magic links.
 * `how` and `path` only need to live until submission (IORING_FEAT_SUBMIT_STABLE). */
static inline void ph_prep_openat2_beneath(struct io_uring_sqe *sqe, int dfd, const char *path,
                                           struct open_how *how, int flags, unsigned mode) {
    memset(how, 0, sizeof *how);
    how->flags = (unsigned long long)(flags | O_CLOEXEC);
    how->mode = (flags & (O_CREAT | PH_O_TMPFILE)) ? mode : 0;
    how->resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    io_uring_prep_openat2(sqe, dfd, path, how);
}
static inline void ph_prep_cancel_fd_all(struct io_uring_sqe *sqe, int fd) {
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
}
static inline void ph_prep_cancel_data_all(struct io_uring_sqe *sqe, uint64_t user_data) {
    io_uring_prep_cancel64(sqe, user_data, IORING_ASYNC_CANCEL_ALL);
}
static inline void ph_prep_timeout_rel(struct io_uring_sqe *sqe, struct __kernel_timespec *ts, uint64_t ns) {
    ts->tv_sec = (long long)(ns / 1000000000ull);
    ts->tv_nsec = (long long)(ns % 1000000000ull);
    io_uring_prep_timeout(sqe, ts, 0, 0);
}
static inline void ph_prep_timeout_remove(struct io_uring_sqe *sqe, uint64_t user_data) {
    io_uring_prep_timeout_remove(sqe, user_data, 0);
}
static inline unsigned ph_uring_setup_flags_preferred(void) {
    return IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN |
           IORING_SETUP_R_DISABLED | IORING_SETUP_CQSIZE;
}
static inline unsigned ph_uring_setup_flags_coop(void) { return IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE; }
static inline unsigned ph_uring_setup_flags_plain(void) { return IORING_SETUP_CQSIZE; }
static inline int ph_uring_is_disabled_setup(unsigned flags) { return (flags & IORING_SETUP_R_DISABLED) != 0; }
static inline int ph_uring_feat_submit_stable(unsigned features) { return (features & IORING_FEAT_SUBMIT_STABLE) != 0; }
static inline int ph_wait_timeout(struct io_uring *ring, uint64_t ns) {
    struct io_uring_cqe *cqe = NULL;
    struct __kernel_timespec ts = { .tv_sec = (long long)(ns / 1000000000ull), .tv_nsec = (long long)(ns % 1000000000ull) };
    return io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
}
/* liburing 2.3 declares io_uring_enable_rings but does not export it: use the syscall. The enabling
 * thread becomes the SINGLE_ISSUER submitter of a ring created with IORING_SETUP_R_DISABLED. */
#include <sys/syscall.h>
extern long syscall(long number, ...);
static inline int ph_enable_rings(struct io_uring *ring) {
    long r = syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    return r < 0 ? -errno : 0;
}
