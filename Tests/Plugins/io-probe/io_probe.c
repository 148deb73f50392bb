/*
 * io-probe: a test plugin that exercises the host calls the core serves on the plugin's behalf:
 * connect, udp_bind/udp_send, resolve and file_open/read/write/sync/close. Each scenario is started
 * with a control call and reports what the plugin saw as JSON:
 *
 *   peerhost ctl io-probe run "tcp_echo tcp:127.0.0.1:7101 hello"
 *   peerhost ctl io-probe report      → {"scenario":"tcp_echo","done":true,"connect_status":0,…}
 *
 * Scenarios (arguments separated by single spaces; payloads contain no spaces):
 *   tcp_echo ADDR PAYLOAD     connect, send PAYLOAD, read it back, close
 *   connect ADDR              connect only; reports the status (then closes)
 *   udp BIND DEST PAYLOAD     udp_bind BIND, udp_send PAYLOAD to DEST, wait for one datagram
 *   resolve NAME              resolve; reports status, count and the address text
 *   file_rw PATH DATA         open (read|write|create|trunc), write DATA at 0, fsync, read back, close
 *   file_open PATH FLAGS      open with PH_FILE_* FLAGS (decimal); reports the status (then closes)
 *   hold_file PATH            open (read|write|create) and keep the file open
 *   hold_udp BIND             udp_bind and keep the socket (tests kill the runner and check the core
 *                             closed both)
 *   udp_burst BIND DEST N     udp_bind BIND, then udp_send N datagrams "burst-<i>" to DEST at once
 *                             and keep the socket (the multicast rate limit test counts what arrives)
 *   file_runs PATH N          open (write|create|trunc), then N writes back to back from offset 0 in
 *                             one callback (write i: 10000 + 7i bytes of 'A' + i % 26); reports
 *                             "i:status:value" per write in completion order, then closes
 *   file_runs_sync PATH N     the same, with a file_sync right after the writes in the same callback;
 *                             its answer is "N:status:0" in the same completion-order list
 *
 *   timers N MS               set N timers of MS milliseconds at once; reports how many the host
 *                             took ("set") and the status of the first refusal ("refused", 0: none)
 *   timer_count X             reports how many timers fired since start ("fired")
 *
 * A new run() discards the previous report. Statuses are ph_status numbers (PH_EDENIED = -2).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerhost.h"

static const ph_host *host;

/* ---- the report: a JSON object built as the scenario goes ------------------------------------ */

static char report_fields[16384];
static size_t report_len;
static char scenario_name[32];
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
    char esc[4096];
    size_t o = 0;
    esc[o++] = '"';
    for (size_t i = 0; i < len && o < sizeof esc - 8; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { esc[o++] = '\\'; esc[o++] = (char)c; }
        else if (c == '\n') { esc[o++] = '\\'; esc[o++] = 'n'; }
        else if (c < 0x20 || c >= 0x7f) { o += (size_t)snprintf(esc + o, 8, "\\u%04x", c); }
        else esc[o++] = (char)c;
    }
    esc[o++] = '"';
    esc[o] = 0;
    add_raw(key, esc);
}

/* ---- scenario state ------------------------------------------------------------------------- */

enum step { IDLE, CONNECTING, ECHOING, BINDING, WAIT_DATAGRAM, RESOLVING, OPENING, WRITING, SYNCING, READING, OPEN_ONLY,
            HOLDING, BURSTING, RUN_OPENING, RUN_WRITING };

static enum step step;
static int64_t pending;             /* request id we wait for */
static ph_conn conn, sock;
static ph_file file;
static char arg1[512], arg2[512], arg3[2048];
static char echoed[4096];
static int64_t timers_fired;
static size_t echoed_len;
static int connect_only;
/* file_runs: COUNT writes that continue each other, issued in one callback (so the core sees
 * them in one TX drain and may gather them into one pwritev); each answer is kept by position. */
#define MAX_RUN 64
static int64_t run_requests[MAX_RUN + 1];   /* + the sync of file_runs_sync */
static char run_results[MAX_RUN * 24];
static int run_count, run_left, run_sync;

static uint32_t run_length(int i) { return 10000u + (uint32_t)i * 7u; }   /* unequal, so offsets are not multiples */

static void finish(void) { done = 1; step = IDLE; }

static int send_text(ph_conn c, const char *to, const char *text) {
    ph_buffer b;
    if (host->buffer_alloc(host->ctx, &b) != PH_OK) return -1;
    size_t n = strlen(text);
    if (n > b.capacity) n = b.capacity;
    memcpy(b.data, text, n);
    b.offset = 0;
    b.length = (uint32_t)n;
    int rc = to ? host->udp_send(host->ctx, c, to, strlen(to), &b) : host->send(host->ctx, c, &b);
    if (rc != PH_OK) host->buffer_free(host->ctx, &b);   /* a refused call took nothing */
    return rc;
}

int64_t io_probe_run(const char *text) {
    if (!host || !text) return -1;
    report_len = 0;
    report_fields[0] = 0;
    done = 0;
    echoed_len = 0;
    connect_only = 0;
    arg1[0] = arg2[0] = arg3[0] = 0;
    char name[32] = {0};
    int n = sscanf(text, "%31s %511s %511s %2047s", name, arg1, arg2, arg3);
    if (n < 2) return -1;
    snprintf(scenario_name, sizeof scenario_name, "%s", name);
    int64_t r;
    if (strcmp(name, "tcp_echo") == 0 || strcmp(name, "connect") == 0) {
        connect_only = strcmp(name, "connect") == 0;
        step = CONNECTING;
        r = host->connect(host->ctx, arg1, strlen(arg1));
    } else if (strcmp(name, "udp") == 0) {
        step = BINDING;
        r = host->udp_bind(host->ctx, arg1, strlen(arg1));
    } else if (strcmp(name, "resolve") == 0) {
        step = RESOLVING;
        r = host->resolve(host->ctx, arg1, strlen(arg1));
    } else if (strcmp(name, "file_rw") == 0) {
        step = OPENING;
        r = host->file_open(host->ctx, arg1, strlen(arg1), PH_FILE_READ | PH_FILE_WRITE | PH_FILE_CREATE | PH_FILE_TRUNC);
    } else if (strcmp(name, "hold_file") == 0) {
        step = HOLDING;
        r = host->file_open(host->ctx, arg1, strlen(arg1), PH_FILE_READ | PH_FILE_WRITE | PH_FILE_CREATE);
    } else if (strcmp(name, "hold_udp") == 0) {
        step = HOLDING;
        r = host->udp_bind(host->ctx, arg1, strlen(arg1));
    } else if (strcmp(name, "udp_burst") == 0) {
        step = BURSTING;
        r = host->udp_bind(host->ctx, arg1, strlen(arg1));
    } else if (strcmp(name, "timers") == 0) {
        long count = atol(arg1), ms = atol(arg2);
        int64_t set = 0, refused = 0;
        for (long i = 0; i < count; i++) {
            int64_t id = host->timer(host->ctx, (uint64_t)ms * 1000000u, (uint64_t)i);
            if (id > 0) { set++; continue; }
            refused = id;
            break;
        }
        add_int("set", set);
        add_int("refused", refused);
        finish();
        return 0;
    } else if (strcmp(name, "timer_count") == 0) {
        add_int("fired", timers_fired);
        finish();
        return 0;
    } else if (strcmp(name, "file_runs") == 0 || strcmp(name, "file_runs_sync") == 0) {
        run_sync = strcmp(name, "file_runs_sync") == 0;
        run_count = atoi(arg2);
        if (run_count < 1 || run_count > MAX_RUN) return -1;
        step = RUN_OPENING;
        r = host->file_open(host->ctx, arg1, strlen(arg1), PH_FILE_WRITE | PH_FILE_CREATE | PH_FILE_TRUNC);
    } else if (strcmp(name, "file_open") == 0) {
        step = OPEN_ONLY;
        r = host->file_open(host->ctx, arg1, strlen(arg1), (uint32_t)strtoul(arg2, NULL, 10));
    } else {
        return -1;
    }
    if (r <= 0) { add_int("call_status", r); finish(); return r; }
    pending = r;
    return 0;
}

ph_bytes io_probe_report(void) {
    size_t cap = report_len + 128;
    char *out = malloc(cap);
    int n = snprintf(out, cap, "{\"scenario\":\"%s\",\"done\":%s%s}", scenario_name, done ? "true" : "false", report_fields);
    ph_bytes b = { (uint8_t *)out, n > 0 ? (size_t)n : 0 };
    return b;
}

/* ---- callbacks ------------------------------------------------------------------------------ */

static ph_status probe_start(const ph_host *h, const char *config, size_t len, void **user) {
    (void)config; (void)len;
    host = h;
    *user = NULL;
    return PH_OK;
}

static void probe_stop(void *user) { (void)user; }

/* Writes run_count buffers back to back from offset 0; buffer i is run_length(i) bytes of
 * 'A' + i % 26. */
static void start_runs(void) {
    uint64_t offset = 0;
    run_left = 0;
    run_results[0] = 0;
    for (int i = 0; i < run_count; i++) {
        ph_buffer b;
        if (host->buffer_alloc(host->ctx, &b) != PH_OK) { add_int("alloc_failed_at", i); break; }
        uint32_t n = run_length(i);
        memset(b.data, 'A' + i % 26, n);
        b.offset = 0;
        b.length = n;
        int64_t r = host->file_write(host->ctx, file, offset, &b);
        run_requests[i] = r;
        if (r <= 0) { add_int("write_call", r); break; }
        run_left++;
        offset += n;
    }
    run_requests[run_count] = 0;
    if (run_sync && run_left > 0) {
        int64_t r = host->file_sync(host->ctx, file);
        if (r > 0) { run_requests[run_count] = r; run_left++; } else add_int("sync_call", r);
    }
    if (run_left == 0) { host->file_close(host->ctx, file); finish(); }
}

/* One answer of file_runs: "status:value" at its request's position. */
static int run_answer(ph_request request, ph_status status, int64_t value) {
    for (int i = 0; i <= run_count; i++) {
        if (run_requests[i] != (int64_t)request || request == 0) continue;
        run_requests[i] = 0;
        char part[24];
        snprintf(part, sizeof part, "%s%d:%d:%lld", run_results[0] ? " " : "", i, status, (long long)value);
        strncat(run_results, part, sizeof run_results - strlen(run_results) - 1);
        if (--run_left == 0) {
            add_str("results", run_results, strlen(run_results));
            add_int("close_status", host->file_close(host->ctx, file));
            finish();
        }
        return 1;
    }
    return 0;
}

/* A file_open's answer, reported; 1 with `file` set when it opened, else the scenario is over. */
static int opened(ph_status status, int64_t value) {
    add_int("open_status", status);
    if (status != PH_OK) { finish(); return 0; }
    file = (ph_file)value;
    return 1;
}

static void probe_complete(void *user, ph_request request, ph_status status, int64_t value, ph_buffer *buf) {
    (void)user;
    if (step == RUN_WRITING && run_answer(request, status, value)) {
        if (buf) host->buffer_free(host->ctx, buf);
        return;
    }
    if ((int64_t)request != pending) {
        if (buf) host->buffer_free(host->ctx, buf);
        return;
    }
    pending = 0;
    int64_t r;
    switch (step) {
    case CONNECTING:
        add_int("connect_status", status);
        if (status != PH_OK) { finish(); break; }
        conn = (ph_conn)value;
        if (connect_only) { host->close(host->ctx, conn); finish(); break; }
        step = ECHOING;
        if (send_text(conn, NULL, arg2) != PH_OK) { add_str("error", "send", 4); finish(); }
        break;
    case BINDING:
        add_int("bind_status", status);
        if (status != PH_OK) { finish(); break; }
        sock = (ph_conn)value;
        step = WAIT_DATAGRAM;
        {
            int rc = send_text(sock, arg2, arg3);
            if (rc != PH_OK) {
                add_int("send_status", rc);
                add_str("error", "udp_send", 8);
                host->close(host->ctx, sock);   /* nothing will arrive: free the port for the next run */
                finish();
            }
        }
        break;
    case RESOLVING:
        add_int("resolve_status", status);
        add_int("count", value);
        if (buf) {
            add_str("addresses", (const char *)buf->data + buf->offset, buf->length);
            host->buffer_free(host->ctx, buf);
            buf = NULL;
        }
        finish();
        break;
    case HOLDING:
        add_int("status", status);
        add_int("id", value);
        finish();
        break;
    case BURSTING:
        add_int("bind_status", status);
        if (status == PH_OK) {
            int sent = 0, count = atoi(arg3);
            char text[32];
            for (int i = 0; i < count; i++) {
                snprintf(text, sizeof text, "burst-%d", i);
                if (send_text((ph_conn)value, arg2, text) == PH_OK) sent++;
            }
            add_int("sent", sent);
        }
        finish();
        break;
    case RUN_OPENING:
        if (!opened(status, value)) break;
        step = RUN_WRITING;
        start_runs();
        break;
    case OPEN_ONLY:
        add_int("open_status", status);
        if (status == PH_OK) host->file_close(host->ctx, (ph_file)value);
        finish();
        break;
    case OPENING:
        if (!opened(status, value)) break;
        {
            ph_buffer b;
            if (host->buffer_alloc(host->ctx, &b) != PH_OK) { finish(); break; }
            size_t n = strlen(arg2);
            memcpy(b.data, arg2, n);
            b.length = (uint32_t)n;
            step = WRITING;
            r = host->file_write(host->ctx, file, 0, &b);
            if (r <= 0) { add_int("write_call", r); finish(); } else pending = r;
        }
        break;
    case WRITING:
        add_int("write_status", status);
        add_int("written", value);
        step = SYNCING;
        r = host->file_sync(host->ctx, file);
        if (r <= 0) { add_int("sync_call", r); finish(); } else pending = r;
        break;
    case SYNCING:
        add_int("sync_status", status);
        {
            ph_buffer b;
            if (host->buffer_alloc(host->ctx, &b) != PH_OK) { finish(); break; }
            step = READING;
            r = host->file_read(host->ctx, file, 0, &b);
            if (r <= 0) { add_int("read_call", r); finish(); } else pending = r;
        }
        break;
    case READING:
        add_int("read_status", status);
        add_int("read", value);
        if (buf) {
            add_str("data", (const char *)buf->data + buf->offset, buf->length);
            host->buffer_free(host->ctx, buf);
            buf = NULL;
        }
        add_int("close_status", host->file_close(host->ctx, file));
        finish();
        break;
    default:
        break;
    }
    if (buf) host->buffer_free(host->ctx, buf);
}

static void probe_data(void *user, ph_conn c, ph_buffer *buf) {
    (void)user;
    if (step == ECHOING && c == conn) {
        size_t n = buf->length;
        if (echoed_len + n > sizeof echoed) n = sizeof echoed - echoed_len;
        memcpy(echoed + echoed_len, buf->data + buf->offset, n);
        echoed_len += n;
    }
    host->buffer_free(host->ctx, buf);
    if (step == ECHOING && echoed_len >= strlen(arg2)) {
        add_str("echoed", echoed, echoed_len);
        host->close(host->ctx, conn);
        finish();
    }
}

static void probe_closed(void *user, ph_conn c, ph_status reason) {
    (void)user;
    if (step == ECHOING && c == conn) {
        add_int("closed", reason);
        add_str("echoed", echoed, echoed_len);
        finish();
    }
}

static void probe_datagram(void *user, ph_conn s, const char *from, size_t from_len, ph_buffer *buf) {
    (void)user;
    if (step == WAIT_DATAGRAM && s == sock) {
        add_str("from", from, from_len);
        add_str("datagram", (const char *)buf->data + buf->offset, buf->length);
        host->close(host->ctx, sock);
        finish();
    }
    host->buffer_free(host->ctx, buf);
}

static void probe_writable(void *user, ph_conn c) { (void)user; (void)c; }

static void probe_timer(void *user, int64_t id, uint64_t tag) {
    (void)user; (void)id; (void)tag;
    timers_fired++;
}

static const ph_plugin plugin = {
    .size = sizeof(ph_plugin),
    .abi_version = PH_ABI_VERSION,
    .name = "io-probe",
    .version = "1.0.0",
    .features = PH_FEAT_STREAMS | PH_FEAT_DATAGRAMS | PH_FEAT_TIMERS | PH_FEAT_FILES | PH_FEAT_RESOLVE | PH_FEAT_CONTROL,
    .start = probe_start,
    .stop = probe_stop,
    .on_data = probe_data,
    .on_writable = probe_writable,
    .on_closed = probe_closed,
    .on_datagram = probe_datagram,
    .on_complete = probe_complete,
    .on_timer = probe_timer,
};

const ph_plugin *peerhost_plugin_v1(void) { return &plugin; }
