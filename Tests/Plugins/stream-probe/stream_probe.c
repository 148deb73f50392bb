/*
 * stream-probe: a test plugin for how the core ends a stream.
 *
 *   tcp:127.0.0.1:7003  on accept: send "ok\n" and close() at once (the reply must still arrive)
 *   tcp:127.0.0.1:7004  on accept: send flood_bytes (config, default 4 MiB) of the pattern below as
 *                       fast as the host takes it (PH_EAGAIN → wait for on_writable), then close()
 *   tcp:127.0.0.1:7005  on accept: send burst_bytes (config, default 448 KiB: under the core's
 *                       per-connection bound, so every send is taken at once), then close()
 *
 * Byte i of a flood or burst is pattern(i) = (i * 7 + (i >> 14)) & 0xff: a 16 KiB slot sent out
 * of place shows up as a wrong byte.
 *
 * Control: stats → JSON counters; reset_all → conn_reset on every flood connection still open
 * (returns how many); free_slots → how many buffers buffer_alloc can give right now (all are given
 * back at once), so a test sees slots come home after a reset or the linger.
 */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerhost.h"

#define MAX_CONNS 4096

static const ph_host *host;
static int64_t listen_reply, listen_flood, listen_burst;
static ph_conn reply_listener, flood_listener, burst_listener;
static uint64_t flood_bytes = 4u << 20, burst_bytes = 448u << 10;

/* Streams that still have bytes to hand over (or a reply waiting for a slot), by conn id. */
typedef struct stream {
    ph_conn conn;
    uint64_t total;     /* bytes to send; 0 for a reply */
    uint64_t handed;    /* bytes the host took */
    bool reply;
    bool closed;        /* close() (or reset) called, or the peer went away */
} stream;

static stream streams[MAX_CONNS];
static size_t stream_count;
static struct {
    uint64_t replies_accepted, replies_sent, floods_accepted, floods_closed, eagain, enomem, writable,
        peer_closed, resets;
} stats;

static bool retry_armed;   /* a 1 ms timer to retry after PH_ENOMEM (no callback says slots came back) */

static void retry_later(void) {
    if (!retry_armed && host->timer(host->ctx, 1000000, 0) > 0) retry_armed = true;
}

static uint8_t pattern(uint64_t i) { return (uint8_t)(i * 7 + (i >> 14)); }

static stream *add(ph_conn conn, uint64_t total, bool reply) {
    if (stream_count == MAX_CONNS) return NULL;
    stream *s = &streams[stream_count++];
    memset(s, 0, sizeof *s);
    s->conn = conn;
    s->total = total;
    s->reply = reply;
    return s;
}

static void drop(size_t i) { streams[i] = streams[--stream_count]; }

/* Hands over what the host takes now; closes once everything went. Returns false when it must wait. */
static bool pump(stream *s) {
    while (!s->closed) {
        if (!s->reply && s->handed == s->total) break;
        ph_buffer b;
        ph_status st = host->buffer_alloc(host->ctx, &b);
        if (st != PH_OK) { stats.enomem++; retry_later(); return false; }
        uint32_t n;
        if (s->reply) {
            memcpy(b.data, "ok\n", 3);
            n = 3;
        } else {
            uint64_t left = s->total - s->handed;
            n = left < b.capacity ? (uint32_t)left : b.capacity;
            for (uint32_t k = 0; k < n; k++) b.data[k] = pattern(s->handed + k);
        }
        b.offset = 0;
        b.length = n;
        st = host->send(host->ctx, s->conn, &b);
        if (st == PH_EAGAIN) { stats.eagain++; host->buffer_free(host->ctx, &b); return false; }
        if (st != PH_OK) { host->buffer_free(host->ctx, &b); s->closed = true; return true; }
        if (s->reply) { stats.replies_sent++; s->reply = false; s->total = s->handed = 0; break; }
        s->handed += n;
    }
    if (!s->closed) {
        if (host->close(host->ctx, s->conn) == PH_EAGAIN) { stats.eagain++; return false; }
        s->closed = true;
        if (s->total > 0) stats.floods_closed++;
    }
    return true;
}

static void pump_all(void) {
    for (size_t i = 0; i < stream_count;) {
        if (pump(&streams[i]) && streams[i].closed) drop(i); else i++;
    }
}

static uint64_t config_number(const char *config, size_t len, const char *key, uint64_t fallback) {
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\"", key);
    const char *p = config ? memmem(config, len, needle, strlen(needle)) : NULL;
    if (!p) return fallback;
    p += strlen(needle);
    while (p < config + len && (*p == ' ' || *p == ':')) p++;
    return p < config + len ? strtoull(p, NULL, 10) : fallback;
}

static ph_status probe_start(const ph_host *h, const char *config, size_t len, void **user) {
    host = h;
    *user = NULL;
    flood_bytes = config_number(config, len, "flood_bytes", flood_bytes);
    burst_bytes = config_number(config, len, "burst_bytes", burst_bytes);
    listen_reply = h->listen(h->ctx, "tcp:127.0.0.1:7003", 18);
    listen_flood = h->listen(h->ctx, "tcp:127.0.0.1:7004", 18);
    listen_burst = h->listen(h->ctx, "tcp:127.0.0.1:7005", 18);
    return listen_reply > 0 && listen_flood > 0 && listen_burst > 0 ? PH_OK : PH_EIO;
}

static void probe_on_complete(void *user, ph_request request, ph_status status, int64_t value, ph_buffer *buf) {
    (void)user;
    if (status == PH_OK) {
        if ((int64_t)request == listen_reply) reply_listener = (ph_conn)value;
        if ((int64_t)request == listen_flood) flood_listener = (ph_conn)value;
        if ((int64_t)request == listen_burst) burst_listener = (ph_conn)value;
    }
    if (buf) host->buffer_free(host->ctx, buf);
}

static void probe_on_accept(void *user, ph_conn listener, ph_conn conn, const char *peer, size_t len) {
    (void)user; (void)peer; (void)len;
    stream *s;
    if (listener == reply_listener) { stats.replies_accepted++; s = add(conn, 0, true); }
    else { stats.floods_accepted++; s = add(conn, listener == flood_listener ? flood_bytes : burst_bytes, false); }
    if (!s) { host->close(host->ctx, conn); return; }
    if (pump(s) && s->closed) drop((size_t)(s - streams));
}

static void probe_on_data(void *user, ph_conn conn, ph_buffer *buf) {
    (void)user; (void)conn;
    host->buffer_free(host->ctx, buf);   /* what clients send is not the point */
}

static void probe_on_writable(void *user, ph_conn conn) {
    (void)user; (void)conn;
    stats.writable++;
    pump_all();
}

static void probe_on_timer(void *user, int64_t id, uint64_t tag) {
    (void)user; (void)id; (void)tag;
    retry_armed = false;
    pump_all();
}

static void probe_on_closed(void *user, ph_conn conn, ph_status reason) {
    (void)user; (void)reason;
    stats.peer_closed++;
    for (size_t i = 0; i < stream_count; i++)
        if (streams[i].conn == conn) { drop(i); break; }
}

__attribute__((visibility("default"))) ph_bytes stream_probe_stats(void) {
    ph_bytes out = {0};
    char *json = malloc(512);
    if (!json) return out;
    int n = snprintf(json, 512,
                     "{\"replies_accepted\":%llu,\"replies_sent\":%llu,\"floods_accepted\":%llu,\"floods_closed\":%llu,"
                     "\"eagain\":%llu,\"enomem\":%llu,\"writable\":%llu,\"peer_closed\":%llu,\"resets\":%llu,\"pending\":%zu}",
                     (unsigned long long)stats.replies_accepted, (unsigned long long)stats.replies_sent,
                     (unsigned long long)stats.floods_accepted, (unsigned long long)stats.floods_closed,
                     (unsigned long long)stats.eagain, (unsigned long long)stats.enomem, (unsigned long long)stats.writable,
                     (unsigned long long)stats.peer_closed, (unsigned long long)stats.resets, stream_count);
    out.data = (uint8_t *)json;
    out.len = n > 0 ? (size_t)n : 0;
    return out;
}

__attribute__((visibility("default"))) int64_t stream_probe_reset_all(void) {
    int64_t n = 0;
    if (host->size < offsetof(ph_host, conn_reset) + sizeof host->conn_reset || !host->conn_reset) return -1;
    for (size_t i = 0; i < stream_count;) {
        if (host->conn_reset(host->ctx, streams[i].conn) == PH_OK) { n++; stats.resets++; drop(i); } else i++;
    }
    return n;
}

__attribute__((visibility("default"))) int64_t stream_probe_free_slots(void) {
    static ph_buffer taken[65536];
    int64_t n = 0;
    while (n < 65536 && host->buffer_alloc(host->ctx, &taken[n]) == PH_OK) n++;
    for (int64_t i = 0; i < n; i++) host->buffer_free(host->ctx, &taken[i]);
    return n;
}

static const ph_plugin plugin = {
    .size = sizeof(ph_plugin),
    .abi_version = PH_ABI_VERSION,
    .name = "stream-probe",
    .version = "1.0.0",
    .features = PH_FEAT_STREAMS | PH_FEAT_TIMERS | PH_FEAT_CONTROL,
    .start = probe_start,
    .on_accept = probe_on_accept,
    .on_data = probe_on_data,
    .on_writable = probe_on_writable,
    .on_closed = probe_on_closed,
    .on_timer = probe_on_timer,
    .on_complete = probe_on_complete,
};

__attribute__((visibility("default"))) const ph_plugin *peerhost_plugin_v1(void) { return &plugin; }
