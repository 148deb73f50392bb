/*
 * ph_ring.h — layout of the shared-memory region between the core and one plugin runner, and the
 * single-producer/single-consumer ring operations on it.
 *
 *   [ph_region_header][RX ring ctl][RX descriptors][TX ring ctl][TX descriptors][buffer pool]
 *
 * RX carries core → plugin (events), TX plugin → core (requests). Each ring has one producer and one
 * consumer; indices are free-running uint32 counters (entries = power of two), so `tail - head` is
 * the fill level even across wrap-around. Producer: write descriptor, release-store tail. Consumer:
 * acquire-load tail, read descriptors, release-store head. The core never trusts what the plugin
 * wrote: it keeps private copies of geometry and of its own indices, checks `tail - head <=
 * entries`, and copies each descriptor out once before validating it (see PeerhostCore).
 *
 * Wake-ups: a consumer about to sleep sets need_wakeup, issues a full fence, and re-checks the ring;
 * a producer publishes, issues a full fence, and writes the eventfd only if need_wakeup is set. This
 * is the store→load (Dekker) pattern io_uring uses for SQ_NEED_WAKEUP; without the seq_cst fences a
 * wake-up can be lost.
 *
 * Space (ABI 1.2): the same pattern the other way round. A producer that found the ring full and is
 * about to sleep sets need_space, fences, and re-checks head; a consumer that released entries
 * fences and, if need_space is set, clears it and writes the producer's eventfd. The runner sleeps
 * on its RX eventfd, so the core writes that one: a full TX ring costs no polling.
 */
#ifndef PH_RING_H
#define PH_RING_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "peerhost.h"

#define PH_REGION_MAGIC 0x31524850u /* "PHR1" little-endian */
#define PH_NO_SLOT 0xffffffffu
#define PH_CACHELINE 64

/* One descriptor: 64 bytes, one cache line. The meaning of the fields depends on `type`
 * (see ph_msg_type below; protocols/abi/v1/README.md documents each). */
typedef struct ph_desc {
    uint16_t type;      /* ph_msg_type */
    int16_t status;     /* ph_status for completions, 0 otherwise */
    uint32_t slot;      /* buffer slot or PH_NO_SLOT */
    uint32_t offset;    /* payload offset inside the slot */
    uint32_t length;    /* payload length */
    uint64_t id;        /* connection, listener, socket, file or timer id */
    uint64_t request;   /* request id of the call this answers (or starts) */
    int64_t arg;        /* value, file offset, delay, flags, level, tag: per type */
    uint64_t arg2;      /* second argument, per type */
    uint8_t reserved[16];
} ph_desc;
_Static_assert(sizeof(ph_desc) == 64, "ph_desc is one cache line");

typedef enum ph_msg_type {
    PH_MSG_INVALID = 0,
    /* core → plugin (RX) */
    PH_MSG_START = 1,       /* slot: config JSON, then (ABI 1.2) `request - 1` bytes of the plugin's
                               udp connect grants, one per line, for the runner's udp_send check
                               (request 0: none sent); arg2: bytes the core queues per connection
                               before send answers PH_EAGAIN (0 = no bound; ABI 1.2); arg: pending
                               timers the plugin may hold (0 = no bound; ABI 1.2) */
    PH_MSG_STOP = 2,
    PH_MSG_HEARTBEAT = 3,   /* request: sequence number */
    PH_MSG_ACCEPT = 4,      /* id: conn, arg: listener, the peer in reserved (IPv6 or v4-mapped)
                               and arg2 (port | family << 16): ph_peer_encode, ph_sys.h */
    PH_MSG_DATA = 5,        /* id: conn, slot/offset/length: payload now owned by the plugin */
    PH_MSG_WRITABLE = 6,    /* id: conn */
    PH_MSG_CLOSED = 7,      /* id: conn, status: reason */
    PH_MSG_DATAGRAM = 8,    /* id: socket, slot: payload at offset/length (up to the whole slot); the
                               sender in reserved/arg2 as for ACCEPT (ABI 1.2; before, text at the slot's end) */
    PH_MSG_TIMER = 9,       /* id: timer */
    PH_MSG_COMPLETE = 10,   /* request, status, arg: value, slot: result buffer or the request's slot */
    PH_MSG_SEND_DONE = 11,  /* id: conn, slot: a plugin-home slot coming back after a send
                               (PH_NO_SLOT for a receive slot, which goes back to the core's pool),
                               length: the bytes that send handed over (ABI 1.2: every stream send) */
    PH_MSG_CONTROL = 12,    /* request: control call id (arguments arrive over the control socket) */

    /* plugin → core (TX) */
    PH_MSG_READY = 32,      /* arg: plugin features, status: start() result */
    PH_MSG_HEARTBEAT_ACK = 33, /* request: the sequence number */
    PH_MSG_LOG = 34,        /* slot: text, arg: level */
    PH_MSG_METRIC = 35,     /* slot: name, arg: value (double bits) */
    PH_MSG_FREE = 36,       /* slot: a receive slot the plugin gives back */
    PH_MSG_LISTEN = 37,     /* request, slot: address text */
    PH_MSG_CONNECT = 38,    /* request, slot: address text */
    PH_MSG_SEND = 39,       /* id: conn, slot/offset/length */
    PH_MSG_CLOSE = 40,      /* id: conn; graceful: queued bytes go first, then FIN. The runner
                               also sends it after on_closed returned (ABI 1.2) */
    PH_MSG_UDP_BIND = 41,   /* request, slot: address text */
    PH_MSG_UDP_SEND = 42,   /* id: socket, slot/offset/length, arg: to-address length at slot end */
    PH_MSG_RESOLVE = 43,    /* request, slot: host name */
    PH_MSG_TIMER_SET = 44,  /* id: timer, arg: delay in ns */
    PH_MSG_TIMER_CANCEL = 45, /* id: timer */
    PH_MSG_FILE_OPEN = 46,  /* request, slot: path, arg: PH_FILE_* flags */
    PH_MSG_FILE_READ = 47,  /* request, id: file, slot: filled from offset up to capacity, arg: file offset */
    PH_MSG_FILE_WRITE = 48, /* request, id: file, slot/offset/length, arg: file offset */
    PH_MSG_FILE_SYNC = 49,  /* request, id: file */
    PH_MSG_FILE_CLOSE = 50, /* id: file */
    PH_MSG_KV_GET = 51,     /* request, slot: key */
    PH_MSG_KV_PUT = 52,     /* request, slot: key then value, arg: key length */
    PH_MSG_KV_DELETE = 53,  /* request, slot: key */
    PH_MSG_KV_SCAN = 54,    /* request, slot: prefix, arg: limit */
    PH_MSG_CONN_RATE = 55,  /* id: conn, arg: up bytes/s, arg2: down bytes/s */
    PH_MSG_CONN_WEIGHT = 56,/* id: conn, arg: weight */
    PH_MSG_CONTROL_DONE = 57,/* request: control call id (the result goes over the control socket) */
    /* ABI 1.1 */
    PH_MSG_CONN_PEER = 58,  /* id: conn, length: id bytes (1..PH_PEER_ID_MAX), the id bytes in the
                               descriptor itself from `request` on (request, arg, arg2, reserved) */
    /* ABI 1.2 */
    PH_MSG_RESET = 59,      /* id: conn; abortive close (RST), queued bytes dropped */
    PH_MSG_UDP_REFUSED = 60 /* id: socket, the destination in reserved/arg2 (ph_peer_encode): a udp_send
                               the runner answered PH_EDENIED (no slot; the core audits it) */
} ph_msg_type;

/* Ring control block: each index on its own cache line so producer and consumer never share one. */
typedef struct ph_ring_ctl {
    _Alignas(PH_CACHELINE) _Atomic uint32_t tail;        /* written by the producer */
    _Alignas(PH_CACHELINE) _Atomic uint32_t head;        /* written by the consumer */
    _Alignas(PH_CACHELINE) _Atomic uint32_t need_wakeup; /* set by the consumer before it sleeps */
    _Alignas(PH_CACHELINE) _Atomic uint32_t need_space;  /* ABI 1.2: set by a producer that waits for room */
    uint8_t pad[PH_CACHELINE - sizeof(uint32_t)];
} ph_ring_ctl;
_Static_assert(sizeof(ph_ring_ctl) == 4 * PH_CACHELINE, "the ring control block is four cache lines in every 1.x");

/* The region header. Written by the core once before the runner starts; the runner reads its
 * geometry from here, the core keeps its own private copy and never reads this back. */
typedef struct ph_region_header {
    uint32_t magic;
    uint32_t abi_version;
    uint32_t header_size;
    uint32_t ring_entries;   /* power of two, both rings */
    uint32_t desc_size;      /* sizeof(ph_desc) */
    uint32_t slot_size;
    uint32_t slot_count;
    uint32_t recv_slots;     /* slots [0, recv_slots) belong to the core's receive pool;
                                [recv_slots, slot_count) start out owned by the plugin */
    uint64_t rx_ctl_offset, rx_desc_offset;
    uint64_t tx_ctl_offset, tx_desc_offset;
    uint64_t pool_offset;
    uint64_t total_size;
} ph_region_header;

/* One side's private view of a ring: the mapped control block and descriptors, plus its own copy of
 * its index and a cache of the other side's. Never shared. */
typedef struct ph_ring_view {
    ph_ring_ctl *ctl;
    ph_desc *descs;
    uint32_t mask;        /* entries - 1 */
    uint32_t entries;
    uint32_t local;       /* producer: next tail; consumer: next head */
    uint32_t cached;      /* producer: last head seen; consumer: last tail seen */
} ph_ring_view;

static inline void ph_ring_view_init(ph_ring_view *v, void *ctl, void *descs, uint32_t entries, int producer) {
    v->ctl = (ph_ring_ctl *)ctl;
    v->descs = (ph_desc *)descs;
    v->entries = entries;
    v->mask = entries - 1;
    if (producer) {
        v->local = atomic_load_explicit(&v->ctl->tail, memory_order_relaxed);
        v->cached = atomic_load_explicit(&v->ctl->head, memory_order_acquire);
    } else {
        v->local = atomic_load_explicit(&v->ctl->head, memory_order_relaxed);
        v->cached = atomic_load_explicit(&v->ctl->tail, memory_order_acquire);
    }
}

/* ---- producer side ---------------------------------------------------------------------- */

/* Free entries, refreshing the cached head only when the cache says full. A hostile consumer can
 * move head anywhere; the result is clamped so the producer never overwrites unconsumed entries it
 * believes are unconsumed (worst case it sees the ring as full). */
static inline uint32_t ph_ring_space(ph_ring_view *v) {
    uint32_t used = v->local - v->cached;
    if (used >= v->entries) {
        v->cached = atomic_load_explicit(&v->ctl->head, memory_order_acquire);
        used = v->local - v->cached;
        if (used > v->entries) return 0; /* head moved ahead of tail: treat as full */
    }
    return v->entries - used;
}

/* Writes one descriptor without publishing it. Returns 0 when the ring is full. */
static inline int ph_ring_put(ph_ring_view *v, const ph_desc *d) {
    if (ph_ring_space(v) == 0) return 0;
    memcpy(&v->descs[v->local & v->mask], d, sizeof *d);
    v->local++;
    return 1;
}

/* Makes every descriptor written so far visible to the consumer. */
static inline void ph_ring_publish(ph_ring_view *v) {
    atomic_store_explicit(&v->ctl->tail, v->local, memory_order_release);
}

/* After publishing: does the consumer want an eventfd write? (full fence, then load the flag) */
static inline int ph_ring_consumer_wants_wakeup(ph_ring_view *v) {
    atomic_thread_fence(memory_order_seq_cst);
    return atomic_load_explicit(&v->ctl->need_wakeup, memory_order_relaxed) != 0;
}

/* Before sleeping on a full ring: announce it, fence, and re-check head. Returns the free entries
 * (0 → it is safe to sleep; the consumer will write the eventfd once it released some). */
static inline uint32_t ph_ring_prepare_wait_space(ph_ring_view *v) {
    atomic_store_explicit(&v->ctl->need_space, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    v->cached = atomic_load_explicit(&v->ctl->head, memory_order_acquire);
    uint32_t used = v->local - v->cached;
    if (used > v->entries) return 0;
    return v->entries - used;
}

static inline void ph_ring_space_awake(ph_ring_view *v) {
    atomic_store_explicit(&v->ctl->need_space, 0, memory_order_relaxed);
}

/* ---- consumer side ---------------------------------------------------------------------- */

/* Entries ready to read. Returns UINT32_MAX when the producer published an index more than
 * `entries` ahead (a corrupt or hostile producer): the caller treats that as a violation. */
static inline uint32_t ph_ring_ready(ph_ring_view *v) {
    uint32_t avail = v->cached - v->local;
    if (avail == 0) {
        v->cached = atomic_load_explicit(&v->ctl->tail, memory_order_acquire);
        avail = v->cached - v->local;
    }
    if (avail > v->entries) return UINT32_MAX;
    return avail;
}

/* Copies the next descriptor out into private memory (read once; validate the copy). */
static inline void ph_ring_peek_copy(ph_ring_view *v, uint32_t i, ph_desc *out) {
    memcpy(out, &v->descs[(v->local + i) & v->mask], sizeof *out);
}

/* Releases n consumed entries back to the producer. */
static inline void ph_ring_consume(ph_ring_view *v, uint32_t n) {
    v->local += n;
    atomic_store_explicit(&v->ctl->head, v->local, memory_order_release);
}

/* After consuming: does the producer wait for room? (full fence, then the flag, cleared when set:
 * one eventfd write per wait.) */
static inline int ph_ring_producer_wants_space(ph_ring_view *v) {
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&v->ctl->need_space, memory_order_relaxed) == 0) return 0;
    return atomic_exchange_explicit(&v->ctl->need_space, 0, memory_order_relaxed) != 0;
}

/* Before sleeping: announce it, fence, and re-check. Returns the entries that arrived meanwhile
 * (0 → it is safe to sleep on the eventfd; the producer will write it). */
static inline uint32_t ph_ring_prepare_sleep(ph_ring_view *v) {
    atomic_store_explicit(&v->ctl->need_wakeup, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    v->cached = atomic_load_explicit(&v->ctl->tail, memory_order_acquire);
    uint32_t avail = v->cached - v->local;
    if (avail > v->entries) return UINT32_MAX;
    return avail;
}

static inline void ph_ring_awake(ph_ring_view *v) {
    atomic_store_explicit(&v->ctl->need_wakeup, 0, memory_order_relaxed);
}

/* Diagnostics and tests: the raw shared indices and flag of a ring control block. */
static inline uint32_t ph_ring_ctl_tail(const void *ctl) { return atomic_load_explicit(&((ph_ring_ctl *)ctl)->tail, memory_order_acquire); }
static inline uint32_t ph_ring_ctl_head(const void *ctl) { return atomic_load_explicit(&((ph_ring_ctl *)ctl)->head, memory_order_acquire); }
static inline uint32_t ph_ring_ctl_need_wakeup(const void *ctl) { return atomic_load_explicit(&((ph_ring_ctl *)ctl)->need_wakeup, memory_order_acquire); }
static inline void ph_ring_ctl_force(void *ctl, uint32_t tail, uint32_t head) {
    atomic_store_explicit(&((ph_ring_ctl *)ctl)->tail, tail, memory_order_release);
    atomic_store_explicit(&((ph_ring_ctl *)ctl)->head, head, memory_order_release);
}

/* For Swift, which imports neither _Atomic members nor expression macros. */
static inline uint32_t ph_ring_ctl_size(void) { return (uint32_t)sizeof(ph_ring_ctl); }
static inline uint32_t ph_abi_version(void) { return PH_ABI_VERSION; }

static inline void ph_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

#endif /* PH_RING_H */
