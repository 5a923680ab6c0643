/*
 * probe.c -- the configurable test plugin of ServiceHost's tests.
 *
 * Every behaviour is chosen through the service's [config] table, read once
 * in svc_create through host->config (an absent key takes the default):
 *
 *   done_after    int,  0   svc_loop returns SVC_DONE on the Nth call (0 = never)
 *   fail_after    int,  0   svc_loop returns fail_code on the Nth call (0 = never)
 *   fail_code     int,  -5  the code returned by fail_after
 *   stop_after    int,  0   host->request_stop() during the Nth call (0 = never)
 *   create_result int,  0   if negative, svc_create fails with this code
 *   block_ms      int,  0   every svc_loop call sleeps this long first
 *   stop_block_ms int,  0   svc_stop sleeps this long first
 *   log_loops     bool, false  log "loop <n>" at SVC_LOG_DEBUG on every call
 *   warn_at       int,  0   on the Nth call log "warn at <n>" (WARN) and
 *                           "error at <n>" (ERROR) (0 = never)
 *   greeting      string    echoed in the create log line ("(none)" if absent)
 *
 * Order of one svc_loop call (n counts calls since svc_create, from 1):
 * log "loop <n>" (if log_loops), sleep block_ms, warn_at logs, request_stop
 * (if n == stop_after), then the result: fail_code if n == fail_after, else
 * SVC_DONE if n == done_after, else SVC_CONTINUE.
 *
 * Log lines (exact text, relied on by tests):
 *   INFO  "create name=<service_name> version=<PROBE_VERSION>
 *          greeting=<greeting or (none)> abi=<abi_version> size=<struct_size>"
 *          (one line; logged by every svc_create, also a failing one)
 *   ERROR "create failing with <code>"   (create_result < 0)
 *   WARN  "invalid <key> '<value>', using <default>"  (unparsable option)
 *   INFO  "stop after <n> loops"         (svc_stop)
 *
 * PROBE_VERSION (default "1.0.0") can be overridden at build time with
 * -DPROBE_VERSION=\"2.0.0\"; svc_plugin_version returns it.
 * PROBE_CREATE_RESULT (default 0) is the default of create_result, so that a
 * build of the probe can fail its create whatever its sidecar says (a broken
 * new version for the hot reload tests).
 */
#define _POSIX_C_SOURCE 200809L

#include "servicehost.h"
#include "fixture_support.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef PROBE_VERSION
#define PROBE_VERSION "1.0.0"
#endif

#ifndef PROBE_CREATE_RESULT
#define PROBE_CREATE_RESULT 0
#endif

typedef struct probe_options {
    long done_after;
    long fail_after;
    long fail_code;
    long stop_after;
    long create_result;
    long block_ms;
    long stop_block_ms;
    long warn_at;
    bool log_loops;
} probe_options;

typedef struct probe {
    const svc_host *host;
    probe_options options;
    long loops;
} probe;

static long option_int(const svc_host *host, const char *key, long fallback) {
    const char *text = fixture_config(host, key);
    if (text == NULL) {
        return fallback;
    }
    long value;
    if (!parse_int(text, &value)) {
        fixture_log(host, SVC_LOG_WARN, "invalid %s '%s', using %ld", key, text, fallback);
        return fallback;
    }
    return value;
}

static bool option_bool(const svc_host *host, const char *key, bool fallback) {
    const char *text = fixture_config(host, key);
    if (text == NULL) {
        return fallback;
    }
    if (strcmp(text, "true") == 0) {
        return true;
    }
    if (strcmp(text, "false") == 0) {
        return false;
    }
    fixture_log(host, SVC_LOG_WARN, "invalid %s '%s', using %s", key, text, fallback ? "true" : "false");
    return fallback;
}

static void sleep_ms(long ms) {
    if (ms <= 0) {
        return;
    }
    struct timespec remaining = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&remaining, &remaining) == -1 && errno == EINTR) {
        /* interrupted by a signal: sleep the rest */
    }
}

SVC_EXPORT uint32_t svc_abi_version(void) {
    return SVC_ABI_VERSION;
}

SVC_EXPORT const char *svc_plugin_version(void) {
    return PROBE_VERSION;
}

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
    const char *name = host->service_name != NULL ? host->service_name : "(null)";
    const char *greeting = fixture_config(host, "greeting");
    fixture_log(host, SVC_LOG_INFO, "create name=%s version=%s greeting=%s abi=%u size=%u",
              name, PROBE_VERSION, greeting != NULL ? greeting : "(none)",
              (unsigned)host->abi_version, (unsigned)host->struct_size);

    probe_options options = {
        .done_after = option_int(host, "done_after", 0),
        .fail_after = option_int(host, "fail_after", 0),
        .fail_code = option_int(host, "fail_code", -5),
        .stop_after = option_int(host, "stop_after", 0),
        .create_result = option_int(host, "create_result", PROBE_CREATE_RESULT),
        .block_ms = option_int(host, "block_ms", 0),
        .stop_block_ms = option_int(host, "stop_block_ms", 0),
        .warn_at = option_int(host, "warn_at", 0),
        .log_loops = option_bool(host, "log_loops", false),
    };

    if (options.create_result < 0) {
        fixture_log(host, SVC_LOG_ERROR, "create failing with %ld", options.create_result);
        return (int32_t)options.create_result;
    }

    probe *self = malloc(sizeof *self);
    if (self == NULL) {
        fixture_log(host, SVC_LOG_ERROR, "create failing with %d: out of memory", -12);
        return -12;
    }
    self->host = host;
    self->options = options;
    self->loops = 0;
    *ctx = self;
    return 0;
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    probe *self = ctx;
    const probe_options *options = &self->options;
    long n = ++self->loops;

    if (options->log_loops) {
        fixture_log(self->host, SVC_LOG_DEBUG, "loop %ld", n);
    }
    sleep_ms(options->block_ms);
    if (options->warn_at > 0 && n == options->warn_at) {
        fixture_log(self->host, SVC_LOG_WARN, "warn at %ld", n);
        fixture_log(self->host, SVC_LOG_ERROR, "error at %ld", n);
    }
    if (options->stop_after > 0 && n == options->stop_after && self->host->request_stop != NULL) {
        self->host->request_stop();
    }
    if (options->fail_after > 0 && n == options->fail_after) {
        return (int32_t)options->fail_code;
    }
    if (options->done_after > 0 && n == options->done_after) {
        return SVC_DONE;
    }
    return SVC_CONTINUE;
}

SVC_EXPORT void svc_stop(void *ctx) {
    probe *self = ctx;
    if (self == NULL) {
        return;
    }
    sleep_ms(self->options.stop_block_ms);
    fixture_log(self->host, SVC_LOG_INFO, "stop after %ld loops", self->loops);
    free(self);
}
