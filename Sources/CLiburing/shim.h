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
