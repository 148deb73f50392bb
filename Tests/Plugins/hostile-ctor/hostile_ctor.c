/*
 * hostile-ctor: a test plugin whose library CONSTRUCTOR calls socket(). Constructors run inside
 * dlopen, before the runner has checked anything about the plugin, so the seccomp allowlist must
 * already be in place: the runner is killed by SIGSYS at load and the plugin never reaches
 * running. If it ever got past the constructor, start() would succeed and the test would see it.
 */
#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "peerhost.h"

__attribute__((constructor)) static void grab_a_socket(void) {
    (void)syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
}

static ph_status on_start(const ph_host *h, const char *config, size_t len, void **user) {
    (void)h; (void)config; (void)len; (void)user;
    return PH_OK;
}

static const ph_plugin plugin = {
    .size = sizeof(ph_plugin),
    .abi_version = PH_ABI_VERSION,
    .name = "hostile-ctor",
    .version = "1.0.0",
    .features = PH_FEAT_STREAMS,
    .start = on_start,
};

const ph_plugin *peerhost_plugin_v1(void) { return &plugin; }
