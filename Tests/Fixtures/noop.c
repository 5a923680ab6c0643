/*
 * noop.c -- a plugin whose svc_loop does nothing and returns SVC_CONTINUE at
 * once: it measures the host's own cost of one dispatch (benchmarks).
 * No state (ctx is NULL), no logging.
 */
#include "servicehost.h"

#include <stddef.h>

uint32_t svc_abi_version(void) {
    return SVC_ABI_VERSION;
}

const char *svc_plugin_version(void) {
    return "noop";
}

int32_t svc_create(const svc_host *host, void **ctx) {
    (void)host;
    *ctx = NULL;
    return 0;
}

int32_t svc_loop(void *ctx) {
    (void)ctx;
    return SVC_CONTINUE;
}

void svc_stop(void *ctx) {
    (void)ctx;
}
