/*
 * hoard-probe: holds received buffers to exhaust the core's receive slots, and answers the
 * host's periodic status call (manifest [status]).
 *
 *   peerhost ctl hoard-probe hold 1        keep every received buffer (the default at start)
 *   peerhost ctl hoard-probe hold 0        free every held buffer now, and each new one at once
 *   peerhost ctl hoard-probe report        {"bytes":N,"held":H,"max_held":M,"fnv":"hex","accepted":A,"closed":C}
 *   peerhost ctl hoard-probe status_mode K 0 good JSON, 1 not JSON, 2 600 series, 3 a metric
 *                                          outside the declared prefix and a label not allowed
 *
 * "fnv" is FNV-1a 64 over every byte received on every connection in order (the test sends on one
 * connection), so lost or reordered bytes show.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerhost.h"

#define MAX_HELD 65536

static const ph_host *host;
static ph_buffer held[MAX_HELD];
static int nheld, max_held;
static int holding = 1;
static uint64_t bytes, fnv = 1469598103934665603ull, accepted, closed_count;
static int64_t mode;

int64_t hoard_hold(int64_t on) {
    holding = on != 0;
    if (!holding) {
        for (int i = 0; i < nheld; i++) host->buffer_free(host->ctx, &held[i]);
        nheld = 0;
    }
    return holding;
}

int64_t hoard_status_mode(int64_t m) { mode = m; return mode; }

ph_bytes hoard_report(void) {
    char *out = malloc(256);
    int n = snprintf(out, 256, "{\"bytes\":%llu,\"held\":%d,\"max_held\":%d,\"fnv\":\"%016llx\",\"accepted\":%llu,\"closed\":%llu}",
                     (unsigned long long)bytes, nheld, max_held, (unsigned long long)fnv,
                     (unsigned long long)accepted, (unsigned long long)closed_count);
    ph_bytes b = { (uint8_t *)out, n > 0 ? (size_t)n : 0 };
    return b;
}

ph_bytes hoard_status(void) {
    size_t cap = 1 << 16;
    char *out = malloc(cap);
    int n = 0;
    if (mode == 1) {
        n = snprintf(out, cap, "{\"details\": {\"broken\": ");   /* not JSON */
    } else if (mode == 2) {
        n = snprintf(out, cap, "{\"details\":{\"many\":true},\"metrics\":[");
        for (int i = 0; i < 600 && (size_t)n + 128 < cap; i++)
            n += snprintf(out + n, cap - n, "%s{\"name\":\"peerhost_hoard_series\",\"type\":\"gauge\",\"labels\":{\"infohash\":\"%04d\"},\"value\":%d}",
                          i ? "," : "", i, i);
        n += snprintf(out + n, cap - n, "]}");
    } else {
        n = snprintf(out, cap,
                     "{\"details\":{\"greeting\":\"hello\",\"torrents\":[{\"name\":\"a\",\"progress\":0.5}],\"bytes\":%llu},"
                     "\"metrics\":["
                     "{\"name\":\"peerhost_hoard_received_bytes_total\",\"type\":\"counter\",\"help\":\"Bytes the probe received.\","
                     "\"labels\":{\"infohash\":\"00112233445566778899aabbccddeeff00112233\"},\"value\":%llu},"
                     "{\"name\":\"peerhost_hoard_held_buffers\",\"type\":\"gauge\",\"value\":%d}%s]}",
                     (unsigned long long)bytes, (unsigned long long)bytes, nheld,
                     mode == 3 ? ",{\"name\":\"peerhost_other_thing\",\"type\":\"gauge\",\"value\":1},"
                                 "{\"name\":\"peerhost_hoard_bad_label\",\"type\":\"gauge\",\"labels\":{\"plugin\":\"x\"},\"value\":1}" : "");
    }
    ph_bytes b = { (uint8_t *)out, n > 0 ? (size_t)n : 0 };
    return b;
}

static ph_status hoard_start(const ph_host *h, const char *config, size_t len, void **user) {
    (void)config; (void)len;
    host = h;
    *user = NULL;
    const char *addr = "tcp:127.0.0.1:7120";
    return host->listen(host->ctx, addr, strlen(addr)) > 0 ? PH_OK : PH_EINVAL;
}

static void hoard_stop(void *user) { (void)user; }

static void on_accept(void *user, ph_conn listener, ph_conn conn, const char *peer, size_t peer_len) {
    (void)user; (void)listener; (void)conn; (void)peer; (void)peer_len;
    accepted++;
}

static void on_data(void *user, ph_conn c, ph_buffer *buf) {
    (void)user; (void)c;
    const uint8_t *p = buf->data + buf->offset;
    for (uint32_t i = 0; i < buf->length; i++) { fnv ^= p[i]; fnv *= 1099511628211ull; }
    bytes += buf->length;
    if (holding && nheld < MAX_HELD) {
        held[nheld++] = *buf;
        if (nheld > max_held) max_held = nheld;
    } else {
        host->buffer_free(host->ctx, buf);
    }
}

static void on_closed(void *user, ph_conn c, ph_status reason) {
    (void)user; (void)c; (void)reason;
    closed_count++;
}

static void on_complete(void *user, ph_request request, ph_status status, int64_t value, ph_buffer *buf) {
    (void)user; (void)request; (void)status; (void)value;
    if (buf) host->buffer_free(host->ctx, buf);
}

static void on_writable(void *user, ph_conn c) { (void)user; (void)c; }

static const ph_plugin plugin = {
    .size = sizeof(ph_plugin),
    .abi_version = PH_ABI_VERSION,
    .name = "hoard-probe",
    .version = "1.0.0",
    .features = PH_FEAT_STREAMS | PH_FEAT_CONTROL,
    .start = hoard_start,
    .stop = hoard_stop,
    .on_accept = on_accept,
    .on_data = on_data,
    .on_writable = on_writable,
    .on_closed = on_closed,
    .on_complete = on_complete,
};

const ph_plugin *peerhost_plugin_v1(void) { return &plugin; }
