/* Measures the host's restart latency in process isolation from inside the
 * plugin: every worker notes the time and crashes (SIGSEGV) on its first
 * svc_loop; the next worker's first svc_loop reads that time and records how
 * long the host took from the crash to calling it. CLOCK_MONOTONIC is the
 * same clock in every process, and a file carries the time across them.
 * After `samples` restarts the plugin logs all of them in one SVC_LOG_ERROR
 * line, "crash-samples a,b,...", and stops crashing. */
#define _POSIX_C_SOURCE 200809L
#include "servicehost.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const svc_host *host_in_use;

static long long now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

SVC_EXPORT uint32_t svc_abi_version(void) { return SVC_ABI_VERSION; }

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
    host_in_use = host;
    *ctx = NULL;
    return 0;
}

static void report(const char *samples_file) {
    FILE *in = fopen(samples_file, "r");
    if (in == NULL) return;
    static char line[1 << 20];
    size_t used = (size_t)snprintf(line, sizeof line, "crash-samples ");
    long long sample;
    int first = 1;
    while (fscanf(in, "%lld", &sample) == 1 && used < sizeof line - 32) {
        used += (size_t)snprintf(line + used, sizeof line - used, first ? "%lld" : ",%lld", sample);
        first = 0;
    }
    fclose(in);
    host_in_use->log(SVC_LOG_ERROR, line);
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    (void)ctx;
    static int reported = 0;
    if (reported) return SVC_CONTINUE;
    long long now = now_ns();
    const char *clock_file = host_in_use->config("clock_file");
    const char *samples_file = host_in_use->config("samples_file");
    const char *wanted = host_in_use->config("samples");
    if (clock_file == NULL || samples_file == NULL || wanted == NULL) return -22;
    long long count = 0, crashed_at = 0;
    FILE *clock = fopen(clock_file, "r");
    if (clock != NULL) {
        if (fscanf(clock, "%lld %lld", &count, &crashed_at) != 2) count = 0;
        fclose(clock);
    }
    if (count > 0) {
        FILE *samples = fopen(samples_file, "a");
        if (samples != NULL) {
            fprintf(samples, "%lld\n", now - crashed_at);
            fclose(samples);
        }
    }
    if (count >= atoll(wanted)) {
        reported = 1;
        report(samples_file);
        return SVC_CONTINUE;
    }
    clock = fopen(clock_file, "w");
    if (clock == NULL) return -5;
    fprintf(clock, "%lld %lld\n", count + 1, now_ns());
    fclose(clock);
    raise(SIGSEGV);
    return SVC_CONTINUE;
}

SVC_EXPORT void svc_stop(void *ctx) { (void)ctx; }
