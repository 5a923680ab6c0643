/*
 * missing_loop.c -- a plugin that exports svc_abi_version, svc_create and
 * svc_stop but not the required svc_loop: the host must refuse it with
 * "missing symbol" without calling anything but (at most) svc_abi_version.
 */
#include "servicehost.h"

#include <stddef.h>

uint32_t svc_abi_version(void) {
    return SVC_ABI_VERSION;
}

int32_t svc_create(const svc_host *host, void **ctx) {
    if (host->log != NULL) {
        host->log(SVC_LOG_ERROR, "missing_loop: svc_create must never be called");
    }
    *ctx = NULL;
    return -1;
}

/* svc_loop is declared by servicehost.h but intentionally not defined. */

void svc_stop(void *ctx) {
    (void)ctx;
}
