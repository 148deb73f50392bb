/*
 * echo-c — the reference plugin in plain C, using nothing but peerhost.h and libc.
 *
 * It listens on the address in its config ("listen", default tcp:127.0.0.1:7001), echoes every
 * buffer back on the same connection without copying (the very buffer on_data handed over goes back
 * with send), keeps per-plugin counters, and greets new connections when a greeting is set. A send
 * that returns PH_EAGAIN keeps the buffer: it waits in a FIFO and is retried on on_writable, so bytes
 * are never lost or reordered. Control methods (manifest.toml) are plain exported functions the
 * runner calls through libffi between callbacks, on the same thread, so they share state unlocked.
 */
#include "peerhost.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ECHO_DEFAULT_LISTEN "tcp:127.0.0.1:7001"

typedef struct queued_send {
    ph_conn conn;
    ph_buffer buf;
} queued_send;

/* One plugin instance per process (the runner loads one plugin), so plain statics are the state;
 * control methods reach it without a user pointer. */
static const ph_host *g_host;
static int64_t g_listen_request;
static uint64_t g_connections;   /* accepted since start */
static uint64_t g_open;          /* currently open */
static uint64_t g_bytes;         /* bytes received (and echoed) */
static char g_listen_addr[256];      /* the address start() asked for, for the log */
static char *g_greeting;         /* malloc'd, NUL-terminated; NULL = none */
static queued_send *g_queue;     /* sends that met PH_EAGAIN, oldest first */
static size_t g_queue_len, g_queue_cap;

static void echo_log(ph_log_level level, const char *msg) {
    if (g_host && g_host->log) g_host->log(g_host->ctx, level, msg, strlen(msg));
}

static bool queue_push(ph_conn conn, const ph_buffer *buf) {
    if (g_queue_len == g_queue_cap) {
        size_t cap = g_queue_cap ? g_queue_cap * 2 : 64;
        queued_send *q = realloc(g_queue, cap * sizeof *q);
        if (!q) return false;
        g_queue = q;
        g_queue_cap = cap;
    }
    g_queue[g_queue_len].conn = conn;
    g_queue[g_queue_len].buf = *buf;
    g_queue_len++;
    return true;
}

static bool conn_has_queued(ph_conn conn) {
    for (size_t i = 0; i < g_queue_len; i++)
        if (g_queue[i].conn == conn) return true;
    return false;
}

/* Sends buf on conn keeping order: if earlier sends on this connection still wait, queue behind. */
static void send_or_queue(ph_conn conn, ph_buffer *buf) {
    if (!conn_has_queued(conn)) {
        ph_status s = g_host->send(g_host->ctx, conn, buf);
        if (s == PH_OK) return;
        if (s != PH_EAGAIN) {  /* the connection is gone or the buffer is bad: drop it */
            g_host->buffer_free(g_host->ctx, buf);
            return;
        }
    }
    if (!queue_push(conn, buf)) {
        echo_log(PH_LOG_ERROR, "echo-c: out of memory queueing a send; closing the connection");
        g_host->buffer_free(g_host->ctx, buf);
        g_host->close(g_host->ctx, conn);
    }
}

/* Retries queued sends in order; a connection that meets PH_EAGAIN again keeps its remaining
 * buffers (order per connection), others may still go. */
static void retry_queue(void) {
    size_t keep = 0;
    for (size_t i = 0; i < g_queue_len; i++) {
        queued_send q = g_queue[i];
        bool blocked = false;
        for (size_t j = 0; j < keep; j++)
            if (g_queue[j].conn == q.conn) { blocked = true; break; }
        if (!blocked) {
            ph_status s = g_host->send(g_host->ctx, q.conn, &q.buf);
            if (s == PH_OK) continue;
            if (s != PH_EAGAIN) { g_host->buffer_free(g_host->ctx, &q.buf); continue; }
        }
        g_queue[keep++] = q;
    }
    g_queue_len = keep;
}

static void drop_queued(ph_conn conn) {
    size_t keep = 0;
    for (size_t i = 0; i < g_queue_len; i++) {
        if (g_queue[i].conn == conn || conn == 0) g_host->buffer_free(g_host->ctx, &g_queue[i].buf);
        else g_queue[keep++] = g_queue[i];
    }
    g_queue_len = keep;
}

/* Finds "key": "value" (or the first string of "key": ["value", …]) in a flat JSON object; enough
 * for our one string key. No escapes. */
static bool json_string(const char *json, size_t len, const char *key, char *out, size_t cap) {
    size_t klen = strlen(key);
    for (size_t i = 0; i + klen + 2 <= len; i++) {
        if (json[i] != '"' || memcmp(json + i + 1, key, klen) != 0 || json[i + 1 + klen] != '"') continue;
        size_t j = i + klen + 2;
        while (j < len && (json[j] == ' ' || json[j] == '\t' || json[j] == '\n' || json[j] == '\r')) j++;
        if (j >= len || json[j] != ':') continue;
        j++;
        while (j < len && (json[j] == ' ' || json[j] == '\t' || json[j] == '\n' || json[j] == '\r')) j++;
        /* An array (the host passes "listen" as one): its first element. */
        if (j < len && json[j] == '[') {
            j++;
            while (j < len && (json[j] == ' ' || json[j] == '\t' || json[j] == '\n' || json[j] == '\r')) j++;
        }
        if (j >= len || json[j] != '"') return false;
        size_t start = ++j;
        while (j < len && json[j] != '"') j++;
        if (j >= len || j - start + 1 > cap) return false;
        memcpy(out, json + start, j - start);
        out[j - start] = 0;
        return true;
    }
    return false;
}

static ph_status echo_start(const ph_host *host, const char *config, size_t config_len, void **user) {
    g_host = host;
    g_connections = g_open = g_bytes = 0;
    *user = NULL;
    char addr[256];
    if (!config || !json_string(config, config_len, "listen", addr, sizeof addr))
        strcpy(addr, ECHO_DEFAULT_LISTEN);
    int64_t r = host->listen(host->ctx, addr, strlen(addr));
    if (r < 0) return (ph_status)r;
    g_listen_request = r;
    snprintf(g_listen_addr, sizeof g_listen_addr, "%s", addr);  /* logged once the core answers */
    return PH_OK;
}

static void echo_stop(void *user) {
    (void)user;
    drop_queued(0);
    free(g_queue);
    g_queue = NULL;
    g_queue_len = g_queue_cap = 0;
}

static void echo_on_accept(void *user, ph_conn listener, ph_conn conn, const char *peer, size_t peer_len) {
    (void)user; (void)listener; (void)peer; (void)peer_len;
    g_connections++;
    g_open++;
    if (!g_greeting || !*g_greeting) return;
    ph_buffer b;
    if (g_host->buffer_alloc(g_host->ctx, &b) != PH_OK) return;  /* no slot: skip the greeting */
    size_t n = strlen(g_greeting);
    if (n > b.capacity) n = b.capacity;
    memcpy(b.data, g_greeting, n);
    b.offset = 0;
    b.length = (uint32_t)n;
    send_or_queue(conn, &b);
}

static void echo_on_data(void *user, ph_conn conn, ph_buffer *buf) {
    (void)user;
    g_bytes += buf->length;
    send_or_queue(conn, buf);   /* zero-copy: the received slot goes straight back out */
}

static void echo_on_writable(void *user, ph_conn conn) {
    (void)user; (void)conn;
    retry_queue();
}

static void echo_on_closed(void *user, ph_conn conn, ph_status reason) {
    (void)user; (void)reason;
    if (g_open > 0) g_open--;
    drop_queued(conn);
}

static void echo_on_complete(void *user, ph_request request, ph_status status, int64_t value, ph_buffer *buf) {
    (void)user; (void)value;
    if ((int64_t)request == g_listen_request) {
        char msg[352];
        if (status == PH_OK) snprintf(msg, sizeof msg, "echo-c: listening on %s", g_listen_addr);
        else snprintf(msg, sizeof msg, "echo-c: listen on %s failed with status %d", g_listen_addr, (int)status);
        echo_log(status == PH_OK ? PH_LOG_INFO : PH_LOG_ERROR, msg);
    }
    if (buf) g_host->buffer_free(g_host->ctx, buf);
}

static void echo_free_result(void *p) { free(p); }

static const ph_plugin g_plugin = {
    .size = sizeof(ph_plugin),
    .abi_version = PH_ABI_VERSION,
    .name = "echo-c",
    .version = "1.0.0",
    .features = PH_FEAT_STREAMS | PH_FEAT_CONTROL,
    .start = echo_start,
    .stop = echo_stop,
    .on_accept = echo_on_accept,
    .on_data = echo_on_data,
    .on_writable = echo_on_writable,
    .on_closed = echo_on_closed,
    .on_complete = echo_on_complete,
    .free_result = echo_free_result,
};

const ph_plugin *peerhost_plugin_v1(void) { return &g_plugin; }

/* ---- control methods (see manifest.toml) ----------------------------------------------------- */

/* () -> bytes: {"connections":N,"open":N,"bytes":N,"greeting":"…"} */
ph_bytes echo_c_stats(void) {
    const char *g = g_greeting ? g_greeting : "";
    size_t glen = strlen(g);
    size_t cap = 128 + glen * 6;
    char *out = malloc(cap);
    ph_bytes r = {NULL, 0};
    if (!out) return r;
    int n = snprintf(out, cap, "{\"connections\":%llu,\"open\":%llu,\"bytes\":%llu,\"greeting\":\"",
                     (unsigned long long)g_connections, (unsigned long long)g_open,
                     (unsigned long long)g_bytes);
    size_t len = (size_t)n;
    for (size_t i = 0; i < glen; i++) {   /* JSON string escaping */
        unsigned char c = (unsigned char)g[i];
        if (c == '"' || c == '\\') { out[len++] = '\\'; out[len++] = (char)c; }
        else if (c < 0x20) len += (size_t)snprintf(out + len, cap - len, "\\u%04x", c);
        else out[len++] = (char)c;
    }
    out[len++] = '"';
    out[len++] = '}';
    r.data = (uint8_t *)out;
    r.len = len;
    return r;
}

/* (string) -> i64: sets the greeting sent to each new connection; returns its length. */
int64_t echo_c_set_greeting(const char *greeting) {
    char *copy = strdup(greeting ? greeting : "");
    if (!copy) return -1;
    free(g_greeting);
    g_greeting = copy;
    return (int64_t)strlen(copy);
}

int64_t echo_c_add(int64_t a, int64_t b) { return a + b; }

double echo_c_scale(double x, double factor) { return x * factor; }

int64_t echo_c_toggle(bool on) { return on ? 1 : 0; }

/* (bytes) -> i64: sum of the bytes (NUL bytes included: bytes arrive as pointer + length). */
int64_t echo_c_checksum(const uint8_t *data, size_t len) {
    int64_t sum = 0;
    for (size_t i = 0; i < len; i++) sum += data[i];
    return sum;
}

/* (bytes, string) -> bytes: the bytes followed by the string. */
ph_bytes echo_c_echo_bytes(const uint8_t *data, size_t len, const char *suffix) {
    size_t slen = suffix ? strlen(suffix) : 0;
    ph_bytes r = {malloc(len + slen + 1), 0};
    if (!r.data) return r;
    if (len) memcpy(r.data, data, len);
    if (slen) memcpy(r.data + len, suffix, slen);
    r.len = len + slen;
    return r;
}
