/*
 * hostile-ring: a test plugin that attacks the core through the shared region, as a plugin that
 * went rogue would. It maps the region itself (fd 3 in the runner) and writes descriptors and
 * indices behind the runner's back. Each attack is a control method call:
 *
 *   peerhost ctl hostile-ring attack NAME
 *
 * The core must refuse every one (a counted, logged violation, then kill and restart), stay alive,
 * and keep serving the other plugins. Between attacks it echoes like echo-c, so tests can see it
 * came back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "peerhost.h"
#include "ph_ring.h"

#define REGION_FD 3
#define RX_EVENTFD 5
#define TX_EVENTFD 6

static const ph_host *host;
static char listen_addr[128] = "tcp:127.0.0.1:7003";

typedef struct region_map {
    uint8_t *base;
    ph_region_header hdr;
    ph_ring_ctl *tx_ctl;
    ph_desc *tx;
} region_map;

static int map_region(region_map *m) {
    struct stat st;
    if (fstat(REGION_FD, &st) != 0) return -1;
    m->base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, REGION_FD, 0);
    if (m->base == MAP_FAILED) return -1;
    memcpy(&m->hdr, m->base, sizeof m->hdr);
    m->tx_ctl = (ph_ring_ctl *)(m->base + m->hdr.tx_ctl_offset);
    m->tx = (ph_desc *)(m->base + m->hdr.tx_desc_offset);
    return 0;
}

/* Publishes one descriptor on TX directly and rings the core's doorbell. */
static void inject(region_map *m, const ph_desc *d) {
    uint32_t tail = atomic_load_explicit(&m->tx_ctl->tail, memory_order_acquire);
    memcpy(&m->tx[tail & (m->hdr.ring_entries - 1)], d, sizeof *d);
    atomic_store_explicit(&m->tx_ctl->tail, tail + 1, memory_order_release);
    uint64_t one = 1;
    (void)!write(TX_EVENTFD, &one, sizeof one);
}

/* Holds the runner (single-threaded: it is inside this call) until the core has consumed TX up to
 * `target` or killed us, for at most a second. Without this the runner's next TX publish — from its
 * own cached tail, e.g. a heartbeat ack — could overwrite the injected entry or index before the
 * core looked, and the attack would silently not happen. Spins on the vDSO clock: no syscalls. */
static void wait_for_core(region_map *m, uint32_t target) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if ((int32_t)(atomic_load_explicit(&m->tx_ctl->head, memory_order_acquire) - target) >= 0) return;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) > 1000000000L) return;
    }
}

/* inject, then wait until the core has read it (it kills us then). */
static void inject_and_wait(region_map *m, const ph_desc *d) {
    uint32_t tail = atomic_load_explicit(&m->tx_ctl->tail, memory_order_acquire);
    inject(m, d);
    wait_for_core(m, tail + 1);
}

/* Runs one named attack; returns 0 if it was carried out (the core should kill us shortly). */
static int64_t attack(const char *name) {
    region_map m;
    if (map_region(&m) != 0) return -1;
    uint32_t plugin_slot = m.hdr.recv_slots + 1;  /* a slot the plugin owns at start */
    ph_desc d;
    memset(&d, 0, sizeof d);
    d.type = PH_MSG_SEND;
    d.id = 1;
    d.length = 1;
    if (!strcmp(name, "slot_out_of_range")) {
        d.type = PH_MSG_LOG;      /* LOG checks the slot first (SEND checks the connection first) */
        d.slot = m.hdr.slot_count + 7;
    } else if (!strcmp(name, "range_past_pool")) {
        d.type = PH_MSG_LOG;
        d.slot = m.hdr.slot_count - 1;
        d.offset = m.hdr.slot_size - 8;
        d.length = 4096;
    } else if (!strcmp(name, "slot_not_owned")) {
        d.type = PH_MSG_LOG;
        d.slot = 0;               /* a receive slot: the kernel's, not ours */
        d.length = 4;
    } else if (!strcmp(name, "connection_not_owned")) {
        d.slot = plugin_slot;
        d.id = 0xdeadbeefcafeull; /* nobody's connection, certainly not ours */
    } else if (!strcmp(name, "garbage_type")) {
        d.type = 999;
    } else if (!strcmp(name, "index_past_capacity")) {
        uint32_t head = atomic_load_explicit(&m.tx_ctl->head, memory_order_acquire);
        atomic_store_explicit(&m.tx_ctl->tail, head + m.hdr.ring_entries * 4 + 3, memory_order_release);
        uint64_t one = 1;
        (void)!write(TX_EVENTFD, &one, sizeof one);
        wait_for_core(&m, head + 1);   /* never consumed: the core kills us first (or 1 s passes) */
        return 0;
    } else if (!strcmp(name, "spin")) {
        /* Never return: heartbeats go unanswered and the supervisor must kill us (cause hang). */
        for (volatile uint64_t i = 0;; i++) { }
    } else if (!strcmp(name, "truncate_region")) {
        /* Sealed: must fail with EPERM, and the core keeps its mapping. Report what happened. */
        if (ftruncate(REGION_FD, 0) == 0) return 1;   /* 1 = the seal did not hold */
        return errno == EPERM ? 0 : 2;
    } else if (!strcmp(name, "saturate_eventfd")) {
        /* Fill the counter of the eventfd the core writes to wake us: its writes now hit EAGAIN. */
        uint64_t big = 0xfffffffffffffffeull;
        (void)!write(RX_EVENTFD, &big, sizeof big);
        (void)!write(TX_EVENTFD, &big, sizeof big);
        return 0;
    } else if (!strcmp(name, "rewrite_after_send")) {
        /* A valid log line, then the same entry rewritten to point outside the pool. */
        memcpy(m.base + m.hdr.pool_offset + (uint64_t)plugin_slot * m.hdr.slot_size, "hi", 2);
        d.type = PH_MSG_LOG;
        d.slot = plugin_slot;
        d.length = 2;
        uint32_t tail = atomic_load_explicit(&m.tx_ctl->tail, memory_order_acquire);
        inject(&m, &d);
        ph_desc *entry = &m.tx[tail & (m.hdr.ring_entries - 1)];
        for (int i = 0; i < 100000; i++) { entry->slot = 0xffffff00u; entry->slot = plugin_slot; }
        entry->slot = 0xffffff00u;
        /* Whatever the core read, it used its own copy. Finish with a descriptor it must refuse,
         * so the test can tell the core noticed this plugin at all. */
        d.type = 999;
        inject_and_wait(&m, &d);
        return 0;
    } else {
        return -2;
    }
    inject_and_wait(&m, &d);
    return 0;
}

/* ---- control methods ------------------------------------------------------------------- */

int64_t hostile_attack(const char *name) { return attack(name); }

/* ---- a plain echo between attacks ---------------------------------------------------------- */

static ph_status on_start(const ph_host *h, const char *config, size_t len, void **user) {
    host = h;
    (void)user;
    /* {"listen":"tcp:127.0.0.1:7003"} — enough parsing for one key. */
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
    .name = "hostile-ring",
    .version = "1.0.0",
    .features = PH_FEAT_STREAMS | PH_FEAT_CONTROL,
    .start = on_start,
    .on_data = on_data,
};

const ph_plugin *peerhost_plugin_v1(void) { return &plugin; }
