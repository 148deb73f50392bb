/*
 * abi-probe: a test plugin for the ABI's refusals and wake-ups, built twice from this one file:
 * against today's header (plugin "abi-probe") and against the frozen ABI 1.0 header in
 * Tests/Plugins/abi-probe-v1-0 (plugin "abi-probe-v1-0"), so one host serves both (ABI 1.2's
 * compatibility promise). Used by Tests/IntegrationTests/ABICompatibilityTests.swift.
 *
 * It declares streams, shaping and control only: no timers, no key-value store. It echoes what
 * it receives on the config's first "listen" address, and serves control methods:
 *   refusals()  → JSON: what timer(), kv_get(), send/close/conn_set_rate on an unknown id return
 *   exhaust()   → JSON: metric_add until a call is refused (PH_ENOMEM once the pool is empty)
 *   flood()     → JSON: conn_set_weight on the newest connection until PH_EAGAIN (full TX ring)
 *   writable()  → JSON: on_writable calls so far, for conn 0 and for connections
 * and, built against 1.2, async methods (they get start()'s user pointer and answer by control_reply):
 *   whoami()    → answers at once: whether `user` is the pointer start() stored
 *   watch()     → a stream: "watching", then one answer per chunk the plugin receives, until unwatch()
 *   unwatch()   → ends watch's stream with "bye" (a sync method answering an async call)
 *   refuse()    → returns PH_EDENIED: the call fails at once
 *   replies()   → JSON: watch answers refused because the watcher went away (PH_ENOTCONN)
 *   say(text)   → writes text and a newline to fd 2: the host must log it labelled, never raw
 *   forge()     → writes a `fail` and a `hello` frame into the runner's control socket (fd 4), as
 *                 hostile code in the plugin could: the host must ignore both and audit them
 *   grow()      → bytes realloc() reached, growing one block from 64 KiB to 8 MiB and back: glibc
 *                 moves such blocks with mremap, which the default syscall profile must allow
 * It never sets a timer: a refused call is retried only when on_writable comes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peerhost.h"

#ifndef ABI_PROBE_NAME
#define ABI_PROBE_NAME "abi-probe"
#endif
#define EXPORT __attribute__((visibility("default")))

static const ph_host *host;
static ph_conn newest;               /* the last accepted connection (flood's target) */
static int64_t writable_zero, writable_conn;
static char json[2048];
/* What start() hands the host as `user`: async control methods get it back. */
static struct probe_state {
    int magic;
    uint64_t watcher;           /* watch()'s call while its stream is open */
    int64_t refused_replies;    /* control_reply answers PH_ENOTCONN: the watcher left */
} state = { 0x5eed, 0, 0 };

/* Control results point into `json`, a static buffer: nothing to free. */
static void keep_result(void *ptr) { (void)ptr; }

static ph_bytes answer(int n) {
    ph_bytes out = { (uint8_t *)json, n > 0 && (size_t)n < sizeof json ? (size_t)n : 0 };
    return out;
}

/* The first string of the config's "listen" array (the host always passes an array). */
static int listen_address(const char *cfg, size_t len, char *out, size_t cap) {
    const char *key = "\"listen\"";
    for (size_t i = 0; i + 8 <= len; i++) {
        if (memcmp(cfg + i, key, 8) != 0) continue;
        size_t j = i + 8;
        while (j < len && (cfg[j] == ' ' || cfg[j] == ':' || cfg[j] == '[')) j++;
        if (j >= len || cfg[j] != '"') return 0;
        size_t start = ++j;
        while (j < len && cfg[j] != '"') j++;
        if (j >= len || j - start >= cap) return 0;
        memcpy(out, cfg + start, j - start);
        out[j - start] = 0;
        return 1;
    }
    return 0;
}

static ph_status probe_start(const ph_host *h, const char *cfg, size_t len, void **user) {
    host = h;
    *user = &state;
    char addr[256];
    if (!listen_address(cfg, len, addr, sizeof addr)) return PH_EINVAL;
    int64_t r = host->listen(host->ctx, addr, strlen(addr));
    return r > 0 ? PH_OK : (ph_status)r;
}

static void probe_on_accept(void *user, ph_conn listener, ph_conn conn, const char *peer, size_t peer_len) {
    (void)user; (void)listener; (void)peer; (void)peer_len;
    newest = conn;
}

static void probe_on_data(void *user, ph_conn conn, ph_buffer *buf) {
    (void)user;
#if PH_ABI_MINOR >= 2
    if (state.watcher) {
        char line[64];
        int n = snprintf(line, sizeof line, "got %u", (unsigned)buf->length);
        ph_status s = host->control_reply(host->ctx, state.watcher, (const uint8_t *)line, (size_t)n, PH_REPLY_MORE);
        if (s == PH_ENOTCONN) { state.refused_replies++; state.watcher = 0; }
    }
#endif
    if (host->send(host->ctx, conn, buf) != PH_OK) host->buffer_free(host->ctx, buf);
}

static void probe_on_writable(void *user, ph_conn conn) {
    (void)user;
    if (conn == 0) writable_zero++; else writable_conn++;
}

static void probe_on_closed(void *user, ph_conn conn, ph_status reason) {
    (void)user; (void)reason;
    if (conn == newest) newest = 0;
}

static void probe_on_complete(void *user, ph_request request, ph_status status, int64_t value, ph_buffer *buf) {
    (void)user; (void)request; (void)status; (void)value;
    if (buf) host->buffer_free(host->ctx, buf);
}

EXPORT ph_bytes abi_probe_refusals(void) {
    const ph_conn unknown = 0x7fff0000ull;   /* never handed out by this host in a test */
    ph_buffer b;
    int64_t alloc = host->buffer_alloc(host->ctx, &b);
    int64_t send = alloc == PH_OK ? host->send(host->ctx, unknown, &b) : alloc;
    if (alloc == PH_OK && send != PH_OK) host->buffer_free(host->ctx, &b);   /* refused: still ours */
    int64_t timer = host->timer(host->ctx, 3600ull * 1000000000ull, 7);
    int64_t kv = host->kv_get(host->ctx, (const uint8_t *)"k", 1);
    int64_t close = host->close(host->ctx, unknown);
    int64_t rate = host->conn_set_rate(host->ctx, unknown, 1000, 1000);
#if PH_ABI_MINOR >= 2
    const char *name = ph_status_name(close);
#else
    const char *name = "";
#endif
    int n = snprintf(json, sizeof json,
                     "{\"abi\":%u,\"timer\":%lld,\"kv_get\":%lld,\"send\":%lld,\"close\":%lld,\"set_rate\":%lld,\"close_name\":\"%s\"}",
                     (unsigned)PH_ABI_VERSION, (long long)timer, (long long)kv, (long long)send, (long long)close,
                     (long long)rate, name);
    return answer(n);
}

EXPORT ph_bytes abi_probe_exhaust(void) {
    int64_t taken = 0, refusal = 0;
    while (taken < 1000000) {
        ph_status s = host->metric_add(host->ctx, "abi_probe_calls", 15, 1.0);
        if (s != PH_OK) { refusal = s; break; }
        taken++;
    }
    return answer(snprintf(json, sizeof json, "{\"taken\":%lld,\"refusal\":%lld}", (long long)taken, (long long)refusal));
}

EXPORT ph_bytes abi_probe_flood(void) {
    int64_t taken = 0, refusal = 0;
    while (newest != 0 && taken < 10000000) {
        ph_status s = host->conn_set_weight(host->ctx, newest, 100);
        if (s != PH_OK) { refusal = s; break; }
        taken++;
    }
    return answer(snprintf(json, sizeof json, "{\"conn\":%llu,\"taken\":%lld,\"refusal\":%lld}",
                           (unsigned long long)newest, (long long)taken, (long long)refusal));
}

EXPORT ph_bytes abi_probe_writable(void) {
    return answer(snprintf(json, sizeof json, "{\"zero\":%lld,\"conn\":%lld}", (long long)writable_zero, (long long)writable_conn));
}

#if PH_ABI_MINOR >= 2
static ph_status reply_text(ph_call call, const char *text, uint32_t flags) {
    return host->control_reply(host->ctx, call, (const uint8_t *)text, strlen(text), flags);
}

EXPORT ph_status abi_probe_whoami(void *user, ph_call call) {
    return reply_text(call, user == &state && state.magic == 0x5eed ? "{\"user\":\"start's\"}" : "{\"user\":\"other\"}", 0);
}

EXPORT ph_status abi_probe_watch(void *user, ph_call call) {
    struct probe_state *s = user;
    if (s->watcher) return PH_EAGAIN;   /* one watcher at a time */
    s->watcher = call;
    return reply_text(call, "watching", PH_REPLY_MORE);
}

EXPORT int64_t abi_probe_unwatch(void) {
    if (!state.watcher) return 0;
    ph_status s = reply_text(state.watcher, "bye", 0);
    state.watcher = 0;
    return s == PH_OK ? 1 : s;
}

EXPORT ph_status abi_probe_refuse(void *user, ph_call call) {
    (void)user; (void)call;
    return PH_EDENIED;
}

EXPORT ph_bytes abi_probe_replies(void) {
    return answer(snprintf(json, sizeof json, "{\"refused\":%lld,\"watching\":%d}",
                           (long long)state.refused_replies, state.watcher != 0));
}
#endif

EXPORT int64_t abi_probe_say(const char *text) {
    size_t n = strlen(text);
    ssize_t a = write(2, text, n);
    ssize_t b = write(2, "\n", 1);
    return a == (ssize_t)n && b == 1 ? (int64_t)n : -1;
}

static int write_frame(const char *json) {
    uint32_t n = (uint32_t)strlen(json);
    uint8_t len[4] = { (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24) };
    return write(4, len, 4) == 4 && write(4, json, n) == (ssize_t)n;
}

EXPORT int64_t abi_probe_forge(void) {
    int a = write_frame("{\"type\":\"fail\",\"step\":\"forged\",\"message\":\"attacker text\"}");
    int b = write_frame("{\"type\":\"hello\",\"name\":\"abi-probe\",\"version\":\"6.6.6\",\"abi\":\"1.2.0\",\"features\":0}");
    return a && b ? 2 : -1;
}

EXPORT int64_t abi_probe_grow(void) {
    size_t size = 64 << 10, reached = 0;
    char *block = malloc(size);
    for (; block && size <= (8u << 20); size *= 2) {
        char *bigger = realloc(block, size);
        if (!bigger) break;
        block = bigger;
        memset(block + size / 2, 0x5a, size / 2);   /* touch it: the pages are really there */
        reached = size;
    }
    char *smaller = block ? realloc(block, 200 << 10) : NULL;   /* shrinks in place: mremap again */
    free(smaller ? smaller : block);
    return (int64_t)reached;
}

static const ph_plugin plugin = {
    .size = sizeof(ph_plugin),
    .abi_version = PH_ABI_VERSION,
    .name = ABI_PROBE_NAME,
    .version = "1.0.0",
    .features = PH_FEAT_STREAMS | PH_FEAT_SHAPING | PH_FEAT_CONTROL,
    .start = probe_start,
    .on_accept = probe_on_accept,
    .on_data = probe_on_data,
    .on_writable = probe_on_writable,
    .on_closed = probe_on_closed,
    .on_complete = probe_on_complete,
    .free_result = keep_result,
};

EXPORT const ph_plugin *peerhost_plugin_v1(void) { return &plugin; }
