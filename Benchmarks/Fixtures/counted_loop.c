/* A no-op service for dispatch benchmarks: svc_loop only counts its calls and
 * returns SVC_DONE after `loops` of them (from [config]; never when absent or
 * when the host has no config callback), so a benchmark can time a known
 * number of loop dispatches through the host. */
#include "servicehost.h"

#include <stdlib.h>

typedef struct counted {
    long long calls;
    long long limit;
} counted;

SVC_EXPORT uint32_t svc_abi_version(void) { return SVC_ABI_VERSION; }

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
    counted *self = calloc(1, sizeof *self);
    if (self == NULL) return -12;
    const char *limit = host->config != NULL ? host->config("loops") : NULL;
    self->limit = limit != NULL ? atoll(limit) : 0;
    *ctx = self;
    return 0;
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    counted *self = ctx;
    return ++self->calls == self->limit ? SVC_DONE : SVC_CONTINUE;
}

SVC_EXPORT void svc_stop(void *ctx) { free(ctx); }
