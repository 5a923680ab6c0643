/*
 * done_at_once.c -- a plugin whose svc_loop returns SVC_DONE on every call,
 * so each run is create, one loop, stop: for restart-latency tests.
 * It deliberately does not export the optional svc_plugin_version, so it also
 * covers a loadable plugin without a version.
 */
#include "servicehost.h"

#include <stddef.h>

uint32_t svc_abi_version(void) {
    return SVC_ABI_VERSION;
}

int32_t svc_create(const svc_host *host, void **ctx) {
    (void)host;
    *ctx = NULL;
    return 0;
}

int32_t svc_loop(void *ctx) {
    (void)ctx;
    return SVC_DONE;
}

void svc_stop(void *ctx) {
    (void)ctx;
}
