/*
 * kv-probe: a test plugin for the key-value store (kv_get/kv_put/kv_delete/kv_scan). Each command is
 * started with a control call and reports what the plugin saw as JSON once it is done:
 *
 *   peerhost ctl kv-probe run "put KEY VALUE"
 *   peerhost ctl kv-probe report      → {"cmd":"put","done":true,"status":0,"value":0}
 *
 * Commands (arguments separated by single spaces):
 *   put KEY VALUE       one put; reports status and value (1: the key existed)
 *   putn KEY SIZE       one put of SIZE bytes of 'x'
 *   get KEY             reports status, value (the length) and data
 *   delete KEY          reports status and value (1: the key existed)
 *   scan PREFIX LIMIT   PREFIX "-" means the empty prefix; reports status, count and "keys"
 *                       (the keys, comma-separated) after checking the record encoding
 *   scan_from PREFIX START/LIMIT   kv_scan_from (ABI 1.2); "-" is empty for both; also reports
 *                       "count" and "more" (PH_KV_MORE) from the value
 *   stream WINDOW       durability mode: puts "seq/%08d" → "v%d" for 0, 1, 2, … with WINDOW puts in
 *                       flight, forever; after each PH_OK it writes "ack N\n" to the last accepted
 *                       connection (the test's), so the test knows exactly what was acknowledged
 *   verify N            gets seq/0 … seq/N one by one; reports "checked", "missing", "first_missing",
 *                       "wrong" (present with another value)
 *
 * Statuses are ph_status numbers (PH_EQUOTA = -3, PH_ENOENT = -10, PH_EIO = -9, PH_EDENIED = -2).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerhost.h"

static const ph_host *host;

static char report_fields[16384];
static size_t report_len;
static char cmd_name[32];
static int done;

static void add_raw(const char *key, const char *value) {
    int n = snprintf(report_fields + report_len, sizeof report_fields - report_len, ",\"%s\":%s", key, value);
    if (n > 0 && (size_t)n < sizeof report_fields - report_len) report_len += (size_t)n;
}

static void add_int(const char *key, int64_t value) {
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long)value);
    add_raw(key, num);
}

static void add_str(const char *key, const char *s, size_t len) {
    char esc[8192];
    size_t o = 0;
    esc[o++] = '"';
    for (size_t i = 0; i < len && o < sizeof esc - 8; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { esc[o++] = '\\'; esc[o++] = (char)c; }
        else if (c < 0x20 || c >= 0x7f) { o += (size_t)snprintf(esc + o, 8, "\\u%04x", c); }
        else esc[o++] = (char)c;
    }
    esc[o++] = '"';
    esc[o] = 0;
    add_raw(key, esc);
}

enum mode { IDLE, SINGLE, STREAM, VERIFY };
static enum mode mode;
static int64_t pending;
static char arg1[1024], arg2[8192];

/* stream / verify state */
static ph_conn client;             /* the last accepted connection */
static uint64_t next_seq;          /* stream: next seq to put; verify: next seq to get */
static uint64_t verify_last, verify_missing, verify_wrong, verify_first_missing = UINT64_MAX;
static int in_flight, window;
#define MAX_WINDOW 64
static int64_t flight_req[MAX_WINDOW];
static uint64_t flight_seq[MAX_WINDOW];

static void finish(void) { done = 1; mode = IDLE; }

static int stream_put(void) {
    char key[32], value[32];
    int kl = snprintf(key, sizeof key, "seq/%08llu", (unsigned long long)next_seq);
    int vl = snprintf(value, sizeof value, "v%llu", (unsigned long long)next_seq);
    int64_t r = host->kv_put(host->ctx, (const uint8_t *)key, (size_t)kl, (const uint8_t *)value, (size_t)vl);
    if (r <= 0) return 0;   /* PH_EAGAIN: retried after the next completion */
    for (int i = 0; i < MAX_WINDOW; i++) if (flight_req[i] == 0) { flight_req[i] = r; flight_seq[i] = next_seq; break; }
    next_seq++;
    in_flight++;
    return 1;
}

static void send_ack(uint64_t seq) {
    if (!client) return;
    ph_buffer b;
    if (host->buffer_alloc(host->ctx, &b) != PH_OK) return;
    int n = snprintf((char *)b.data, b.capacity, "ack %llu\n", (unsigned long long)seq);
    b.offset = 0;
    b.length = (uint32_t)n;
    host->send(host->ctx, client, &b);
}

static int verify_get(void) {
    char key[32];
    int kl = snprintf(key, sizeof key, "seq/%08llu", (unsigned long long)next_seq);
    int64_t r = host->kv_get(host->ctx, (const uint8_t *)key, (size_t)kl);
    if (r <= 0) { add_int("call_status", r); return 0; }
    pending = r;
    return 1;
}

int64_t kv_probe_run(const char *text) {
    if (!host || !text) return -1;
    report_len = 0;
    report_fields[0] = 0;
    done = 0;
    arg1[0] = arg2[0] = 0;
    char name[32] = {0};
    int n = sscanf(text, "%31s %1023s %8191s", name, arg1, arg2);
    if (n < 2) return -1;
    snprintf(cmd_name, sizeof cmd_name, "%s", name);
    int64_t r;
    mode = SINGLE;
    if (strcmp(name, "put") == 0) {
        r = host->kv_put(host->ctx, (const uint8_t *)arg1, strlen(arg1), (const uint8_t *)arg2, strlen(arg2));
    } else if (strcmp(name, "putn") == 0) {
        size_t size = strtoul(arg2, NULL, 10);
        char *v = malloc(size + 1);
        memset(v, 'x', size);
        r = host->kv_put(host->ctx, (const uint8_t *)arg1, strlen(arg1), (const uint8_t *)v, size);
        free(v);
    } else if (strcmp(name, "get") == 0) {
        r = host->kv_get(host->ctx, (const uint8_t *)arg1, strlen(arg1));
    } else if (strcmp(name, "delete") == 0) {
        r = host->kv_delete(host->ctx, (const uint8_t *)arg1, strlen(arg1));
    } else if (strcmp(name, "scan") == 0) {
        const char *prefix = strcmp(arg1, "-") == 0 ? "" : arg1;
        r = host->kv_scan(host->ctx, (const uint8_t *)prefix, strlen(prefix), (uint32_t)strtoul(arg2, NULL, 10));
    } else if (strcmp(name, "scan_from") == 0) {
        const char *prefix = strcmp(arg1, "-") == 0 ? "" : arg1;
        char *slash = strrchr(arg2, '/');
        if (!slash) return -1;
        *slash = 0;
        const char *start = strcmp(arg2, "-") == 0 ? "" : arg2;
        r = host->kv_scan_from(host->ctx, (const uint8_t *)prefix, strlen(prefix), (const uint8_t *)start, strlen(start),
                               (uint32_t)strtoul(slash + 1, NULL, 10));
    } else if (strcmp(name, "stream") == 0) {
        window = atoi(arg1);
        if (window < 1 || window > MAX_WINDOW) return -1;
        mode = STREAM;
        next_seq = 0;
        in_flight = 0;
        memset(flight_req, 0, sizeof flight_req);
        while (in_flight < window && stream_put()) {}
        return in_flight > 0 ? 0 : -1;
    } else if (strcmp(name, "verify") == 0) {
        mode = VERIFY;
        next_seq = 0;
        verify_last = strtoull(arg1, NULL, 10);
        verify_missing = verify_wrong = 0;
        verify_first_missing = UINT64_MAX;
        if (!verify_get()) { finish(); return -1; }
        return 0;
    } else {
        mode = IDLE;
        return -1;
    }
    if (r <= 0) { add_int("call_status", r); finish(); return r; }
    pending = r;
    return 0;
}

ph_bytes kv_probe_report(void) {
    size_t cap = report_len + 128;
    char *out = malloc(cap);
    int n = snprintf(out, cap, "{\"cmd\":\"%s\",\"done\":%s%s}", cmd_name, done ? "true" : "false", report_fields);
    ph_bytes b = { (uint8_t *)out, n > 0 ? (size_t)n : 0 };
    return b;
}

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static void single_done(ph_status status, int64_t value, ph_buffer *buf) {
    add_int("status", status);
    add_int("value", value);
    if (buf && strcmp(cmd_name, "get") == 0) add_str("data", (const char *)buf->data + buf->offset, buf->length);
    int from = strcmp(cmd_name, "scan_from") == 0;
    if (from) { add_int("count", PH_KV_COUNT(value)); add_int("more", (value & PH_KV_MORE) != 0); value = PH_KV_COUNT(value); }
    if (buf && (from || strcmp(cmd_name, "scan") == 0)) {
        /* Walk the records: their count must equal value, and they must fill the buffer exactly. */
        char keys[8192];
        size_t kl = 0, off = 0, count = 0;
        const uint8_t *p = buf->data + buf->offset;
        int ok = 1;
        while (off < buf->length) {
            if (off + 4 > buf->length) { ok = 0; break; }
            uint32_t klen = le32(p + off); off += 4;
            if (off + klen + 4 > buf->length) { ok = 0; break; }
            if (count && kl < sizeof keys - 1) keys[kl++] = ',';
            for (uint32_t i = 0; i < klen && kl < sizeof keys - 1; i++) keys[kl++] = (char)p[off + i];
            off += klen;
            uint32_t vlen = le32(p + off); off += 4;
            if (off + vlen > buf->length) { ok = 0; break; }
            off += vlen;
            count++;
        }
        add_int("records_ok", ok && (int64_t)count == value);
        add_str("keys", keys, kl);
    }
    finish();
}

static void probe_complete(void *user, ph_request request, ph_status status, int64_t value, ph_buffer *buf) {
    (void)user;
    if (mode == STREAM) {
        for (int i = 0; i < MAX_WINDOW; i++) {
            if (flight_req[i] != (int64_t)request) continue;
            flight_req[i] = 0;
            in_flight--;
            if (status == PH_OK) send_ack(flight_seq[i]);
            else { add_int("stream_error", status); add_int("seq", (int64_t)flight_seq[i]); mode = IDLE; done = 1; }
            break;
        }
        while (mode == STREAM && in_flight < window && stream_put()) {}
    } else if ((int64_t)request == pending) {
        pending = 0;
        if (mode == SINGLE) {
            single_done(status, value, buf);
        } else if (mode == VERIFY) {
            char want[32];
            int wl = snprintf(want, sizeof want, "v%llu", (unsigned long long)next_seq);
            if (status != PH_OK) {
                verify_missing++;
                if (verify_first_missing == UINT64_MAX) verify_first_missing = next_seq;
            } else if (!buf || buf->length != (uint32_t)wl || memcmp(buf->data + buf->offset, want, (size_t)wl) != 0) {
                verify_wrong++;
            }
            if (next_seq >= verify_last || !(next_seq++, verify_get())) {
                add_int("checked", (int64_t)next_seq + 1);
                add_int("missing", (int64_t)verify_missing);
                add_int("wrong", (int64_t)verify_wrong);
                add_int("first_missing", verify_first_missing == UINT64_MAX ? -1 : (int64_t)verify_first_missing);
                finish();
            }
        }
    }
    if (buf) host->buffer_free(host->ctx, buf);
}

static ph_status probe_start(const ph_host *h, const char *config, size_t len, void **user) {
    (void)config; (void)len;
    host = h;
    *user = NULL;
    int64_t r = host->listen(host->ctx, "tcp:127.0.0.1:7110", strlen("tcp:127.0.0.1:7110"));
    (void)r;
    return PH_OK;
}

static void probe_stop(void *user) { (void)user; }

static void probe_accept(void *user, ph_conn listener, ph_conn c, const char *peer, size_t peer_len) {
    (void)user; (void)listener; (void)peer; (void)peer_len;
    client = c;
}

static void probe_data(void *user, ph_conn c, ph_buffer *buf) { (void)user; (void)c; host->buffer_free(host->ctx, buf); }
static void probe_closed(void *user, ph_conn c, ph_status reason) { (void)user; (void)reason; if (c == client) client = 0; }
static void probe_writable(void *user, ph_conn c) {
    (void)user; (void)c;
    while (mode == STREAM && in_flight < window && stream_put()) {}
}

static const ph_plugin plugin = {
    .size = sizeof(ph_plugin),
    .abi_version = PH_ABI_VERSION,
    .name = "kv-probe",
    .version = "1.0.0",
    .features = PH_FEAT_STREAMS | PH_FEAT_KV | PH_FEAT_CONTROL,
    .start = probe_start,
    .stop = probe_stop,
    .on_accept = probe_accept,
    .on_data = probe_data,
    .on_writable = probe_writable,
    .on_closed = probe_closed,
    .on_complete = probe_complete,
};

const ph_plugin *peerhost_plugin_v1(void) { return &plugin; }
