/*
 * Flaky -- shows recovery: every fifth loop the service stops itself with
 * host->request_stop(), saying why, and because its sidecar Flaky.toml says
 * restart = "always" the host creates it again (a fresh ctx, so the count
 * starts over) and it carries on.
 */
#include "servicehost.h"

#include <stdio.h>
#include <stdlib.h>

#define LOOPS_BEFORE_STOP 5

typedef struct flaky {
    const svc_host *host;
    int loops;
} flaky;

SVC_EXPORT uint32_t svc_abi_version(void) {
    return SVC_ABI_VERSION;
}

SVC_EXPORT const char *svc_plugin_version(void) {
    return "1.0.0";
}

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
    flaky *self = malloc(sizeof *self);
    if (self == NULL) {
        return -12; /* out of memory */
    }
    self->host = host;
    self->loops = 0;
    *ctx = self;
    host->log(SVC_LOG_INFO, "started");
    return 0;
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    flaky *self = ctx;
    self->loops += 1;
    char message[160];
    if (self->loops < LOOPS_BEFORE_STOP) {
        snprintf(message, sizeof message, "working (%d of %d)", self->loops, LOOPS_BEFORE_STOP);
        self->host->log(SVC_LOG_INFO, message);
        return SVC_CONTINUE;
    }
    snprintf(message, sizeof message,
             "stopping myself after %d loops to show recovery; restart = \"always\" brings me back",
             self->loops);
    self->host->log(SVC_LOG_WARN, message);
    self->host->request_stop();
    return SVC_CONTINUE;
}

SVC_EXPORT void svc_stop(void *ctx) {
    flaky *self = ctx;
    self->host->log(SVC_LOG_INFO, "stopped");
    free(self);
}
