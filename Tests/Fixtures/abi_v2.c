/*
 * abi_v2.c -- a complete plugin that answers svc_abi_version() with 2, an ABI
 * this host does not implement: the host must refuse it ("ABI mismatch")
 * before calling anything else. svc_create fails loudly if it is called.
 */
#include "servicehost.h"

#include <stddef.h>

uint32_t svc_abi_version(void) {
    return 2;
}

const char *svc_plugin_version(void) {
    return "2.0.0";
}

int32_t svc_create(const svc_host *host, void **ctx) {
    if (host->log != NULL) {
        host->log(SVC_LOG_ERROR, "abi_v2: svc_create must never be called");
    }
    *ctx = NULL;
    return -1;
}

int32_t svc_loop(void *ctx) {
    (void)ctx;
    return SVC_DONE;
}

void svc_stop(void *ctx) {
    (void)ctx;
}
