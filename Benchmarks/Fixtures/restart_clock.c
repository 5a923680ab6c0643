/* Measures the host's restart latency from inside a plugin.
 *
 * svc_loop returns SVC_DONE at once, after noting the time. The next
 * svc_create, and the first svc_loop after it, note how long after that
 * SVC_DONE they were called (CLOCK_MONOTONIC). The image is not reloaded
 * between restarts, so the samples accumulate in static memory. After
 * `samples` restarts (from [config]) the plugin writes them all to the file
 * `samples_file` as "create=a,b,... loop=a,b,..." (far longer than the
 * host's 32 KiB limit on a log line), logs "restart-samples written" at
 * SVC_LOG_ERROR, then keeps returning SVC_CONTINUE until the benchmark stops it. */
#define _POSIX_C_SOURCE 200809L
#include "servicehost.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_SAMPLES 100000

static const svc_host *host_in_use;
static long long done_at_ns;
static int have_done;
static int awaiting_first_loop;
static int count;
static int target = 1000;
static int reported;
static long long create_ns[MAX_SAMPLES];
static long long loop_ns[MAX_SAMPLES];

static long long now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

SVC_EXPORT uint32_t svc_abi_version(void) { return SVC_ABI_VERSION; }

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
    long long now = now_ns();
    if (have_done && count < MAX_SAMPLES) {
        create_ns[count] = now - done_at_ns;
        awaiting_first_loop = 1;
    }
    host_in_use = host;
    const char *samples = host->config("samples");
    if (samples != NULL) target = atoi(samples) < MAX_SAMPLES ? atoi(samples) : MAX_SAMPLES;
    *ctx = NULL;
    return 0;
}

static void report(void) {
    const char *path = host_in_use->config("samples_file");
    FILE *out = path != NULL ? fopen(path, "w") : NULL;
    if (out == NULL) {
        host_in_use->log(SVC_LOG_ERROR, "restart-samples failed: no samples_file");
        return;
    }
    fputs("create=", out);
    for (int i = 0; i < count; i++) fprintf(out, i ? ",%lld" : "%lld", create_ns[i]);
    fputs(" loop=", out);
    for (int i = 0; i < count; i++) fprintf(out, i ? ",%lld" : "%lld", loop_ns[i]);
    fclose(out);
    host_in_use->log(SVC_LOG_ERROR, "restart-samples written");
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    (void)ctx;
    if (awaiting_first_loop) {
        loop_ns[count++] = now_ns() - done_at_ns;
        awaiting_first_loop = 0;
    }
    if (count >= target) {
        if (!reported) {
            reported = 1;
            report();
        }
        return SVC_CONTINUE;
    }
    have_done = 1;
    done_at_ns = now_ns();
    return SVC_DONE;
}

SVC_EXPORT void svc_stop(void *ctx) { (void)ctx; }
