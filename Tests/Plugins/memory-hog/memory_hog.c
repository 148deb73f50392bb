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
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

static ph_status on_start(const ph_host *h, const char *config, size_t len, void **user) {
    (void)h; (void)config; (void)len; (void)user;
    return PH_OK;
}

static const ph_plugin plugin = {
    .size = sizeof(ph_plugin),
    .abi_version = PH_ABI_VERSION,
    .name = "memory-hog",
    .version = "1.0.0",
    .features = PH_FEAT_CONTROL,
    .start = on_start,
};

const ph_plugin *peerhost_plugin_v1(void) { return &plugin; }
