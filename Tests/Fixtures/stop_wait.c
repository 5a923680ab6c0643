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
 *
 * Log lines (exact text, relied on by tests):
 *   INFO  "config count=<n> (<status>) ratio=<x> (<status>) flag=<b> (<status>)"
 *         where <status> is ok, absent or invalid and absent/invalid values
 *         show the fallbacks 7, 0.5 and 1
 *   INFO  "waiting in <mode> (run <n>)"  at the start of the first svc_loop of
 *                                        the nth svc_create of this image
 *   INFO  "woken by the stop descriptor" / "saw stop_requested"
 *   INFO  "stop"                         in svc_stop
 *   ERROR "no stop descriptor"           when the host has none (svc_create fails with -2)
 */
#define _GNU_SOURCE

#include "servicehost.h"

#include <poll.h>
#include <string.h>

typedef struct state {
    const svc_host *host;
    int compute;
    int descriptor;
    int announced;
    int run;
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
    svc_logf(s->host, SVC_LOG_INFO, "stop");
}
