/*
 * Counter -- the smallest useful C service: it keeps state between calls
 * (a loop counter in the ctx made by svc_create) and reads its [config]
 * table through the host. Every loop it logs "<label>: tick <n>" at info;
 * the sidecar Counter.toml sets the pace (interval_ms) and the label.
 */
#include "servicehost.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct counter {
    const svc_host *host;
    const char *label; /* owned by the host, valid until svc_stop returns */
    unsigned long ticks;
} counter;

SVC_EXPORT uint32_t svc_abi_version(void) {
    return SVC_ABI_VERSION;
}

SVC_EXPORT const char *svc_plugin_version(void) {
    return "1.0.0";
}

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
    counter *self = malloc(sizeof *self);
    if (self == NULL) {
        return -12; /* out of memory */
    }
    const char *label = host->config("label");
    self->host = host;
    self->label = label != NULL ? label : host->service_name;
    self->ticks = 0;
    *ctx = self;
    return 0;
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    counter *self = ctx;
    self->ticks += 1;
    char message[256];
    snprintf(message, sizeof message, "%s: tick %lu", self->label, self->ticks);
    self->host->log(SVC_LOG_INFO, message);
    return SVC_CONTINUE;
}

SVC_EXPORT void svc_stop(void *ctx) {
    free(ctx);
}
