/*
 * threaded: a test plugin that starts a pthread in start() and lets it do the echo work. Proves the
 * threads profile (sandbox/profiles/plugin-threads.toml) is enough for a plugin with a thread of its
 * own, and that the default profile is not: under it, pthread_create's clone kills the runner with
 * SIGSYS before start() returns.
 *
 * Callbacks and host calls stay on the runner's thread (the ABI: callbacks never run concurrently,
 * and the rings have one producer). on_data hands the buffer to the worker through a one-item
 * mailbox (mutex + condition variables) and waits for it: the worker reverses nothing, it counts the
 * bytes and marks the job done; on_data then sends the very buffer back. Waiting is fine for a test
 * plugin; a real one would hand results back through a queue drained on a timer.
 *
 *   peerhost ctl threaded worker_jobs     -> i64  jobs the worker thread did (proves it ran them)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "peerhost.h"

static const ph_host *host;
static char listen_addr[128] = "tcp:127.0.0.1:7006";

static pthread_t worker;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t posted = PTHREAD_COND_INITIALIZER;
static pthread_cond_t finished = PTHREAD_COND_INITIALIZER;
static const ph_buffer *job;      /* the mailbox: non-NULL while a job waits or runs */
static bool job_done, quitting, started;
static int64_t jobs, job_bytes;

static void *work(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (!job && !quitting) pthread_cond_wait(&posted, &lock);
        if (quitting) break;
        job_bytes += job->length;   /* the "work" */
        jobs++;
        job_done = true;
        pthread_cond_signal(&finished);
        while (job) pthread_cond_wait(&posted, &lock);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

int64_t threaded_worker_jobs(void) {
    pthread_mutex_lock(&lock);
    int64_t n = jobs;
    pthread_mutex_unlock(&lock);
    return n;
}

static ph_status on_start(const ph_host *h, const char *config, size_t len, void **user) {
    host = h;
    (void)user;
    const char *k = config ? memmem(config, len, "\"listen\"", 8) : NULL;
    if (k) {
        const char *q = memchr(k + 8, '"', len - (size_t)(k + 8 - config));
        const char *e = q ? memchr(q + 1, '"', len - (size_t)(q + 1 - config)) : NULL;
        if (q && e && (size_t)(e - q - 1) < sizeof listen_addr) {
            memcpy(listen_addr, q + 1, (size_t)(e - q - 1));
            listen_addr[e - q - 1] = 0;
        }
    }
    if (pthread_create(&worker, NULL, work, NULL) != 0) return PH_ENOMEM;
    started = true;
    int64_t r = host->listen(host->ctx, listen_addr, strlen(listen_addr));
    return r > 0 ? PH_OK : (ph_status)r;
}

static void on_data(void *user, ph_conn conn, ph_buffer *buf) {
    (void)user;
    pthread_mutex_lock(&lock);
    job = buf;
    job_done = false;
    pthread_cond_signal(&posted);
    while (!job_done) pthread_cond_wait(&finished, &lock);
    job = NULL;
    pthread_cond_signal(&posted);
    pthread_mutex_unlock(&lock);
    if (host->send(host->ctx, conn, buf) != PH_OK) host->buffer_free(host->ctx, buf);
}

static void on_stop(void *user) {
    (void)user;
    if (!started) return;
    pthread_mutex_lock(&lock);
    quitting = true;
    pthread_cond_signal(&posted);
    pthread_mutex_unlock(&lock);
    pthread_join(worker, NULL);
    started = false;
}

static const ph_plugin plugin = {
    .size = sizeof(ph_plugin),
    .abi_version = PH_ABI_VERSION,
    .name = "threaded",
    .version = "1.0.0",
    .features = PH_FEAT_STREAMS | PH_FEAT_CONTROL,
    .start = on_start,
    .stop = on_stop,
    .on_data = on_data,
};

const ph_plugin *peerhost_plugin_v1(void) { return &plugin; }
