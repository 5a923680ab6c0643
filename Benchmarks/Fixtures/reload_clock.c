/* For reload benchmarks: on its first svc_loop after each svc_create, logs
 * "first-loop <CLOCK_MONOTONIC ns> <version>" at SVC_LOG_ERROR. RELOAD_VERSION
 * tells builds apart; BLOB_SIZE makes the image that much larger (read-only
 * data that is part of the file, as a large plugin's would be). */
#define _POSIX_C_SOURCE 200809L
#include "servicehost.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifndef RELOAD_VERSION
#define RELOAD_VERSION "1"
#endif
#ifndef BLOB_SIZE
#define BLOB_SIZE 16
#endif

__attribute__((used)) static const unsigned char blob[BLOB_SIZE] = {1};

typedef struct state {
    const svc_host *host;
    int looped;
} state;

SVC_EXPORT uint32_t svc_abi_version(void) { return SVC_ABI_VERSION; }
SVC_EXPORT const char *svc_plugin_version(void) { return RELOAD_VERSION; }

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
    state *self = calloc(1, sizeof *self);
    if (self == NULL) return -12;
    self->host = host;
    *ctx = self;
    return 0;
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    state *self = ctx;
    if (!self->looped) {
        self->looped = 1;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        char line[96];
        snprintf(line, sizeof line, "first-loop %lld %s",
                 (long long)now.tv_sec * 1000000000LL + now.tv_nsec, RELOAD_VERSION);
        self->host->log(SVC_LOG_ERROR, line);
    }
    return SVC_CONTINUE;
}

SVC_EXPORT void svc_stop(void *ctx) { free(ctx); }
