/*
 * flood: a test plugin that uses every byte of bandwidth it can get, for the shaper's tests.
 *
 *   peerhost ctl flood start "tcp:127.0.0.1:7110 4"   connect 4 connections to ADDR, then on each:
 *                                                     send from every free slot, again on every
 *                                                     send-done/writable and every millisecond,
 *                                                     and free whatever arrives at once
 *   peerhost ctl flood stats    → {"connected":4,"sent":N,"received":N,"eagain":N}
 *
 * It never waits for anything but the ring: the host's limits are all that holds it back.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peerhost.h"

#ifndef FLOOD_NAME
#define FLOOD_NAME "flood"   /* flood-b builds this file again under its own name */
#endif
#define MAX_CONNS 16

static const ph_host *host;
static ph_conn conns[MAX_CONNS];
static int nconns;
static uint64_t sent, received, eagain;
static int timer_armed;

/* Sends from free slots on every connection, round robin, until slots or the ring run out. */
static void pump(void) {
    if (nconns == 0) return;
    for (int round = 0; round < 4096; round++) {
        ph_conn c = conns[round % nconns];
        if (c == 0) continue;
        ph_buffer b;
        if (host->buffer_alloc(host->ctx, &b) != PH_OK) return;
        memset(b.data, 'f', 64);
        b.offset = 0;
        b.length = b.capacity;
        ph_status s = host->send(host->ctx, c, &b);
        if (s != PH_OK) {
            host->buffer_free(host->ctx, &b);
            eagain++;
            return;
        }
        sent += b.capacity;
    }
}

static void arm(void) {
    if (!timer_armed && host->timer(host->ctx, 1000000, 1) > 0) timer_armed = 1;
}

int64_t flood_start(const char *text) {
    if (!host || !text) return -1;
    char addr[256];
    int count = 1;
    if (sscanf(text, "%255s %d", addr, &count) < 1 || count < 1 || count > MAX_CONNS) return -1;
    for (int i = 0; i < count; i++) {
        int64_t r = host->connect(host->ctx, addr, strlen(addr));
        if (r <= 0) return r;
    }
    arm();
    return 0;
}

ph_bytes flood_stats(void) {
    char *out = malloc(256);
    int n = snprintf(out, 256, "{\"connected\":%d,\"sent\":%llu,\"received\":%llu,\"eagain\":%llu}", nconns,
                     (unsigned long long)sent, (unsigned long long)received, (unsigned long long)eagain);
    ph_bytes b = { (uint8_t *)out, n > 0 ? (size_t)n : 0 };
    return b;
}

static ph_status flood_plugin_start(const ph_host *h, const char *config, size_t len, void **user) {
    (void)config; (void)len;
    host = h;
    *user = NULL;
    return PH_OK;
}

static void flood_stop(void *user) { (void)user; }

static void on_data(void *user, ph_conn c, ph_buffer *buf) {
    (void)user; (void)c;
    received += buf->length;
    host->buffer_free(host->ctx, buf);
    pump();
}

static void on_writable(void *user, ph_conn c) { (void)user; (void)c; pump(); }

static void on_closed(void *user, ph_conn c, ph_status reason) {
    (void)user; (void)reason;
    for (int i = 0; i < nconns; i++) if (conns[i] == c) conns[i] = 0;
}

static void on_timer(void *user, int64_t id, uint64_t tag) {
    (void)user; (void)id; (void)tag;
    timer_armed = 0;
    pump();
    arm();
}

static void on_complete(void *user, ph_request request, ph_status status, int64_t value, ph_buffer *buf) {
    (void)user; (void)request;
    if (buf) host->buffer_free(host->ctx, buf);
    if (status == PH_OK && nconns < MAX_CONNS) conns[nconns++] = (ph_conn)value;
    pump();
}

static const ph_plugin plugin = {
    .size = sizeof(ph_plugin),
    .abi_version = PH_ABI_VERSION,
    .name = FLOOD_NAME,
    .version = "1.0.0",
    .features = PH_FEAT_STREAMS | PH_FEAT_TIMERS | PH_FEAT_CONTROL,
    .start = flood_plugin_start,
    .stop = flood_stop,
    .on_data = on_data,
    .on_writable = on_writable,
    .on_closed = on_closed,
    .on_timer = on_timer,
    .on_complete = on_complete,
};

const ph_plugin *peerhost_plugin_v1(void) { return &plugin; }
