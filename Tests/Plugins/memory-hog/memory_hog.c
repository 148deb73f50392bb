/*
 * memory-hog: a test plugin that, on request, allocates memory 1 MiB at a time and writes to every
 * page (so it is really resident, not just reserved) until it has MIB mebibytes:
 *
 *   peerhost ctl memory-hog hog MIB
 *
 * With its manifest's memory = "64MiB" it must die before the call returns: killed by the cgroup's
 * OOM killer (SIGKILL) where the core could make a memory cgroup, or by abort() (SIGABRT) when
 * malloc fails under the RLIMIT_AS fallback. Returning a number means the limit did not hold.
 * The blocks are never freed. `ping` answers 1 (the plugin is alive).
 *
 * For the accounting tests (Tests/IntegrationTests/AccountingTests.swift) it also:
 *   peerhost ctl memory-hog burn MS    spins the CPU for MS milliseconds of its own CPU time
 *   peerhost ctl memory-hog crash      abort()s (a crash, not a limit)
 * and, when its config has "listen" (e.g. listen = ["tcp:127.0.0.1:7090"]), echoes every TCP byte
 * and tags each accepted connection with the peer address text it got from on_accept
 * ("tcp:127.0.0.1:PORT") through ABI 1.1's conn_set_peer, so the host accounts per peer.
 */
#define _GNU_SOURCE  /* memmem */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peerhost.h"

int64_t memory_hog_hog(int64_t mib) {
    for (int64_t i = 0; i < mib; i++) {
        char *block = malloc(1 << 20);
        if (!block) abort();            /* RLIMIT_AS: the allocation itself fails */
        memset(block, (int)(i & 0xff) | 1, 1 << 20);   /* every page touched: resident */
    }
    return mib;
}

int64_t memory_hog_ping(void) { return 1; }

/* Busy until the process has used `ms` more milliseconds of CPU (clock_gettime on the process
 * CPU clock is a vDSO call the default profile allows). Returns the milliseconds burnt. */
int64_t memory_hog_burn(int64_t ms) {
    struct timespec a, b;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    volatile uint64_t x = 0;
    for (;;) {
        for (int i = 0; i < 100000; i++) x += (uint64_t)i * 2654435761u;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
        int64_t used = (int64_t)(b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
        if (used >= ms) return used;
    }
}

int64_t memory_hog_crash(void) {
    abort();
}

static const ph_host *g_host;

/* The echo side: every received buffer goes straight back (dropped if the ring is full; the
 * tests send little and read everything back). */
static void on_accept(void *user, ph_conn listener, ph_conn conn, const char *peer, size_t peer_len) {
    (void)user; (void)listener;
    /* ABI 1.1: only on a host whose table has the call and serves the feature. */
    if (g_host->size >= offsetof(ph_host, conn_set_peer) + sizeof g_host->conn_set_peer &&
        (g_host->features & PH_FEAT_PEER_TAGS) && g_host->conn_set_peer && peer && peer_len > 0) {
        g_host->conn_set_peer(g_host->ctx, conn, (const uint8_t *)peer, peer_len > PH_PEER_ID_MAX ? PH_PEER_ID_MAX : peer_len);
    }
}

static void on_data(void *user, ph_conn conn, ph_buffer *buf) {
    (void)user;
    if (g_host->send(g_host->ctx, conn, buf) != PH_OK) g_host->buffer_free(g_host->ctx, buf);
}

static void on_closed(void *user, ph_conn conn, ph_status reason) { (void)user; (void)conn; (void)reason; }
static void on_writable(void *user, ph_conn conn) { (void)user; (void)conn; }
static void on_complete(void *user, ph_request request, ph_status status, int64_t value, ph_buffer *buf) {
    (void)user; (void)request; (void)status; (void)value;
    if (buf) g_host->buffer_free(g_host->ctx, buf);
}

static ph_status on_start(const ph_host *h, const char *config, size_t len, void **user) {
    (void)user;
    g_host = h;
    /* The host's config JSON has "listen":["tcp:...", ...]: listen on the first one, if any. */
    const char *key = "\"listen\":[\"";
    const char *at = config && len ? memmem(config, len, key, strlen(key)) : NULL;
    if (!at) return PH_OK;
    const char *start = at + strlen(key);
    const char *end = memchr(start, '"', len - (size_t)(start - config));
    if (!end) return PH_EINVAL;
    int64_t r = h->listen(h->ctx, start, (size_t)(end - start));
    return r < 0 ? (ph_status)r : PH_OK;
}

static const ph_plugin plugin = {
    .size = sizeof(ph_plugin),
    .abi_version = PH_ABI_VERSION,
    .name = "memory-hog",
    .version = "1.0.0",
    .features = PH_FEAT_CONTROL | PH_FEAT_STREAMS | PH_FEAT_PEER_TAGS,
    .start = on_start,
    .on_accept = on_accept,
    .on_data = on_data,
    .on_writable = on_writable,
    .on_closed = on_closed,
    .on_complete = on_complete,
};

const ph_plugin *peerhost_plugin_v1(void) { return &plugin; }
