/*
 * stop_wait.c -- a test plugin whose svc_loop blocks until the host orders a
 * stop, through the appended svc_host members (stop_descriptor and
 * stop_requested), and which reads its [config] with the header's typed
 * helpers and logs with svc_logf.
 *
 * [config] keys:
 *   mode   string  "poll" (default): svc_loop blocks in poll() on
 *                  stop_descriptor() for up to an hour;
 *                  "compute": svc_loop spins until stop_requested()
 *   count  int     only echoed (see the create line)
 *   ratio  float   only echoed
 *   flag   bool    only echoed
 *   helper bool    svc_create starts a thread that polls stop_descriptor()
 *                  (up to an hour) and logs once it is readable; svc_stop
 *                  joins it
 *
 * STOP_WAIT_VERSION (a define, default "1") names the version in the
 * helper's line, and gives each version its own bytes.
 *
 * Log lines (exact text, relied on by tests):
 *   INFO  "config count=<n> (<status>) ratio=<x> (<status>) flag=<b> (<status>)"
 *         where <status> is ok, absent or invalid and absent/invalid values
 *         show the fallbacks 7, 0.5 and 1
 *   INFO  "waiting in <mode> (run <n>)"  at the start of the first svc_loop of
 *                                        the nth svc_create of this image
 *   INFO  "woken by the stop descriptor" / "saw stop_requested"
 *   INFO  "helper (version <v>) woken, stop_requested=<0|1>"
 *   INFO  "stop"                         in svc_stop
 *   ERROR "no stop descriptor"           when the host has none (svc_create fails with -2)
 */
#define _GNU_SOURCE

#include "servicehost.h"

#include <poll.h>
#include <pthread.h>
#include <string.h>

#ifndef STOP_WAIT_VERSION
#define STOP_WAIT_VERSION "1"
#endif

typedef struct state {
    const svc_host *host;
    int compute;
    int descriptor;
    int announced;
    int run;
    int helping;
    pthread_t helper;
} state;

static state the_state;
static int runs;

static const char *status_name(svc_config_status status) {
    switch (status) {
    case SVC_CONFIG_OK: return "ok";
    case SVC_CONFIG_ABSENT: return "absent";
    default: return "invalid";
    }
}

SVC_EXPORT uint32_t svc_abi_version(void) { return SVC_ABI_VERSION; }
SVC_EXPORT const char *svc_plugin_version(void) { return STOP_WAIT_VERSION; }

/* A thread of the plugin's own that waits for the stop: what a server's
 * accept or I/O thread does. */
static void *help(void *argument) {
    state *s = argument;
    struct pollfd wanted = {.fd = s->host->stop_descriptor(), .events = POLLIN};
    if (poll(&wanted, 1, 3600 * 1000) == 1) {
        svc_logf(s->host, SVC_LOG_INFO, "helper (version %s) woken, stop_requested=%d", STOP_WAIT_VERSION,
                 s->host->stop_requested() ? 1 : 0);
    }
    return NULL;
}

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
    int64_t count;
    double ratio;
    int flag;
    svc_config_status count_status = svc_config_int(host, "count", 7, &count);
    svc_config_status ratio_status = svc_config_double(host, "ratio", 0.5, &ratio);
    svc_config_status flag_status = svc_config_bool(host, "flag", 1, &flag);
    svc_logf(host, SVC_LOG_INFO, "config count=%lld (%s) ratio=%g (%s) flag=%d (%s)", (long long)count,
             status_name(count_status), ratio, status_name(ratio_status), flag, status_name(flag_status));
    const char *mode = host->config("mode");
    the_state.host = host;
    the_state.compute = mode != NULL && strcmp(mode, "compute") == 0;
    the_state.announced = 0;
    the_state.run = ++runs;
    if (!SVC_HOST_HAS(host, stop_descriptor) || !SVC_HOST_HAS(host, stop_requested)) {
        svc_logf(host, SVC_LOG_ERROR, "no stop descriptor");
        return -2;
    }
    the_state.descriptor = the_state.compute ? -1 : host->stop_descriptor();
    if (!the_state.compute && the_state.descriptor < 0) {
        svc_logf(host, SVC_LOG_ERROR, "no stop descriptor");
        return -2;
    }
    int helper = 0;
    svc_config_bool(host, "helper", 0, &helper);
    the_state.helping = helper && pthread_create(&the_state.helper, NULL, help, &the_state) == 0;
    *ctx = &the_state;
    return 0;
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    state *s = ctx;
    if (!s->announced) {
        s->announced = 1;
        svc_logf(s->host, SVC_LOG_INFO, "waiting in %s (run %d)", s->compute ? "compute" : "poll", s->run);
    }
    if (s->compute) {
        volatile unsigned long spins = 0;
        while (!s->host->stop_requested()) {
            spins++;
        }
        svc_logf(s->host, SVC_LOG_INFO, "saw stop_requested");
        return SVC_CONTINUE;
    }
    struct pollfd wanted = {.fd = s->descriptor, .events = POLLIN};
    int ready = poll(&wanted, 1, 3600 * 1000);
    if (ready == 1 && (wanted.revents & POLLIN)) {
        svc_logf(s->host, SVC_LOG_INFO, "woken by the stop descriptor");
    }
    return SVC_CONTINUE;
}

SVC_EXPORT void svc_stop(void *ctx) {
    state *s = ctx;
    if (s->helping) pthread_join(s->helper, NULL);
    svc_logf(s->host, SVC_LOG_INFO, "stop");
}
