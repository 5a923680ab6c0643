/* Idle plugin for Benchmarks/side-by-side.py: svc_loop does nothing and
 * returns at once; the sidecar's interval_ms = 1000 makes the host call it
 * once a second, as side_idle_program.c wakes once a second. */
#include "servicehost.h"

SVC_EXPORT uint32_t svc_abi_version(void) { return SVC_ABI_VERSION; }

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
    (void)host;
    *ctx = NULL;
    return 0;
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    (void)ctx;
    return SVC_CONTINUE;
}

SVC_EXPORT void svc_stop(void *ctx) { (void)ctx; }
