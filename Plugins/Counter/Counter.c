/*
 * Counter -- the smallest useful C service: it keeps state between calls
 * (a loop counter in the ctx made by svc_create) and reads its [config]
 * table with the header's typed helpers. Every loop it logs
 * "<label>: tick <n>" at info, and it finishes after `limit` ticks if the
 * sidecar sets one (0, the default, means never); Counter.toml sets the pace
 * (interval_ms) and the label.
 */
#include "servicehost.h"

typedef struct counter {
    const svc_host *host;
    const char *label; /* owned by the host, valid until svc_stop returns */
    int64_t limit;
    int64_t ticks;
} counter;

SVC_EXPORT uint32_t svc_abi_version(void) {
    return SVC_ABI_VERSION;
}

SVC_EXPORT const char *svc_plugin_version(void) {
    return "1.1.0";
}

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
    counter *self = calloc(1, sizeof *self);
    if (self == NULL) {
        return -12; /* out of memory */
    }
    self->host = host;
    const char *label = host->config("label");
    self->label = label != NULL ? label : host->service_name;
    if (svc_config_int(host, "limit", 0, &self->limit) == SVC_CONFIG_INVALID) {
        svc_logf(host, SVC_LOG_WARN, "limit '%s' is not a whole number; counting forever", host->config("limit"));
    }
    *ctx = self;
    return 0;
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    counter *self = ctx;
    self->ticks += 1;
    svc_logf(self->host, SVC_LOG_INFO, "%s: tick %lld", self->label, (long long)self->ticks);
    return self->limit > 0 && self->ticks >= self->limit ? SVC_DONE : SVC_CONTINUE;
}

SVC_EXPORT void svc_stop(void *ctx) {
    free(ctx);
}
