/*
 * counter_state.c -- a counter that keeps its count across runs and versions
 * through svc_host.state_save / state_load, as servicehost.h's example does.
 *
 * Build-time choices:
 *   COUNTER_FORMAT        1 (default) or 2: the state format this version
 *                         writes; both versions read both formats.
 *   COUNTER_VERSION       the version string (default "1.0.0").
 *   COUNTER_CREATE_FAILS  if defined, svc_create saves a state of its own
 *                         (count 999999, format 3) and then fails with -7:
 *                         a broken new version whose saves must be dropped.
 * [config]:
 *   log_at    int, 0       log "count <n>" when a loop brings the count to it
 *   crash_at  int, 0       raise SIGSEGV right after the loop that brings the
 *                          count to it has saved it (process isolation only)
 *   oversize  bool, false  in svc_create, try to save SVC_STATE_MAX_SIZE + 1
 *                          bytes and then exactly SVC_STATE_MAX_SIZE bytes,
 *                          and log both results
 *
 * Each svc_loop adds one and saves the state (a checkpoint); svc_stop saves it.
 * Log lines (exact text, relied on by tests):
 *   INFO "create version=<v> count=<n> kept=<bytes>"
 *   INFO "stop count=<n>"
 *   INFO "count <n>"                    (n == log_at)
 *   INFO "oversize save returned <code>, max save returned <code>"
 *   INFO "no kept state in this host"  (state_save/state_load absent)
 */
#include "servicehost.h"
#include "fixture_support.h"

#include <signal.h>
#include <string.h>

#ifndef COUNTER_FORMAT
#define COUNTER_FORMAT 1
#endif
#ifndef COUNTER_VERSION
#define COUNTER_VERSION "1.0.0"
#endif

struct counter_state_v1 { char tag[4]; uint32_t format; uint64_t count; };
struct counter_state_v2 { char tag[4]; uint32_t format; uint64_t count; uint64_t runs; };

typedef struct counter {
    const svc_host *host;
    uint64_t count;
    uint64_t runs;
    int64_t log_at;
    int64_t crash_at;
} counter;

static void save(counter *self) {
    if (!SVC_HOST_HAS(self->host, state_save)) return;
#if COUNTER_FORMAT == 2
    struct counter_state_v2 state = {{'C', 'N', 'T', 'R'}, 2, self->count, self->runs};
#else
    struct counter_state_v1 state = {{'C', 'N', 'T', 'R'}, 1, self->count};
#endif
    self->host->state_save(&state, sizeof state);
}

SVC_EXPORT uint32_t svc_abi_version(void) { return SVC_ABI_VERSION; }

SVC_EXPORT const char *svc_plugin_version(void) { return COUNTER_VERSION; }

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
    if (!SVC_HOST_HAS(host, state_save) || !SVC_HOST_HAS(host, state_load)) {
        fixture_log(host, SVC_LOG_INFO, "no kept state in this host");
    }
#ifdef COUNTER_CREATE_FAILS
    if (SVC_HOST_HAS(host, state_save)) {
        struct counter_state_v2 broken = {{'C', 'N', 'T', 'R'}, 3, 999999, 0};
        host->state_save(&broken, sizeof broken);
    }
    return -7;
#endif
    counter *self = calloc(1, sizeof *self);
    if (self == NULL) return -1;
    self->host = host;
    size_t size = 0;
    const unsigned char *kept = SVC_HOST_HAS(host, state_load) ? host->state_load(&size) : NULL;
    if (kept != NULL && size >= 16 && memcmp(kept, "CNTR", 4) == 0) {
        uint32_t format;
        memcpy(&format, kept + 4, sizeof format);
        if ((format == 1 && size == sizeof(struct counter_state_v1)) ||
            (format == 2 && size == sizeof(struct counter_state_v2))) {
            memcpy(&self->count, kept + 8, sizeof self->count);
        }
        if (format == 2 && size == sizeof(struct counter_state_v2)) {
            memcpy(&self->runs, kept + 16, sizeof self->runs);
        }
    }
    self->runs += 1;
    svc_config_int(host, "log_at", 0, &self->log_at);
    svc_config_int(host, "crash_at", 0, &self->crash_at);
    fixture_log(host, SVC_LOG_INFO, "create version=%s count=%llu kept=%zu", COUNTER_VERSION,
                (unsigned long long)self->count, size);
    int oversize = 0;
    if (svc_config_bool(host, "oversize", 0, &oversize) == SVC_CONFIG_OK && oversize && SVC_HOST_HAS(host, state_save)) {
        size_t max = SVC_STATE_MAX_SIZE;
        unsigned char *big = calloc(1, max + 1);
        int32_t over = big != NULL ? host->state_save(big, max + 1) : -ENOMEM;
        int32_t exact = big != NULL ? host->state_save(big, max) : -ENOMEM;
        free(big);
        fixture_log(host, SVC_LOG_INFO, "oversize save returned %d, max save returned %d", over, exact);
    }
    save(self);
    *ctx = self;
    return 0;
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    counter *self = ctx;
    self->count += 1;
    save(self);
    if (self->log_at > 0 && self->count == (uint64_t)self->log_at) {
        fixture_log(self->host, SVC_LOG_INFO, "count %llu", (unsigned long long)self->count);
    }
    if (self->crash_at > 0 && self->count == (uint64_t)self->crash_at) {
        raise(SIGSEGV);
    }
    return SVC_CONTINUE;
}

SVC_EXPORT void svc_stop(void *ctx) {
    counter *self = ctx;
    save(self);
    fixture_log(self->host, SVC_LOG_INFO, "stop count=%llu", (unsigned long long)self->count);
    free(self);
}
