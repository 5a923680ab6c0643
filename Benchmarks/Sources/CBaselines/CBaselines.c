#include "CBaselines.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <ffi.h>
#include <stdio.h>
#include <stdlib.h>

typedef int32_t (*loop_fn)(void *);
typedef int32_t (*create_fn)(const void *, void **);
typedef void (*stop_fn)(void *);

typedef struct baseline {
    void *handle;
    void *ctx;
    loop_fn loop;
    stop_fn stop;
    ffi_cif cif;
    ffi_type *arguments[1];
} baseline;

/* The plugins used here need no host callbacks; a zeroed host is enough. */
static const char baseline_host[64];

void *baseline_open(const char *path, char *error, int error_size) {
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        snprintf(error, error_size, "%s", dlerror());
        return NULL;
    }
    baseline *self = calloc(1, sizeof *self);
    self->handle = handle;
    self->loop = (loop_fn)dlsym(handle, "svc_loop");
    self->stop = (stop_fn)dlsym(handle, "svc_stop");
    create_fn create = (create_fn)dlsym(handle, "svc_create");
    if (self->loop == NULL || self->stop == NULL || create == NULL || create(baseline_host, &self->ctx) < 0) {
        snprintf(error, error_size, "%s: not a usable plugin", path);
        dlclose(handle);
        free(self);
        return NULL;
    }
    self->arguments[0] = &ffi_type_pointer;
    ffi_prep_cif(&self->cif, FFI_DEFAULT_ABI, 1, &ffi_type_sint32, self->arguments);
    return self;
}

int64_t baseline_direct_calls(void *opaque, int64_t count) {
    baseline *self = opaque;
    /* volatile keeps the compiler from hoisting the load of the pointer. */
    loop_fn volatile loop = self->loop;
    int64_t sum = 0;
    for (int64_t i = 0; i < count; i++) sum += loop(self->ctx);
    return sum;
}

int64_t baseline_ffi_calls(void *opaque, int64_t count) {
    baseline *self = opaque;
    ffi_arg result = 0;
    void *arguments[1] = {&self->ctx};
    int64_t sum = 0;
    for (int64_t i = 0; i < count; i++) {
        ffi_call(&self->cif, FFI_FN(self->loop), &result, arguments);
        sum += (int32_t)result;
    }
    return sum;
}

void baseline_close(void *opaque) {
    baseline *self = opaque;
    self->stop(self->ctx);
    dlclose(self->handle);
    free(self);
}

extern char **environ;

int baseline_spawn_and_wait(const char *path) {
    char *argv[] = {(char *)path, NULL};
    pid_t pid;
    if (posix_spawn(&pid, path, NULL, NULL, argv, environ) != 0) return -1;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {}
    return status;
}

int64_t baseline_monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
}

typedef struct sleeper_options {
    int period_ms;
    uint64_t slack_ns;
    atomic_int *running;
} sleeper_options;

static void *sleeper(void *opaque) {
    sleeper_options *options = opaque;
    prctl(PR_SET_TIMERSLACK, (unsigned long)options->slack_ns, 0, 0, 0);
    while (atomic_load(options->running)) {
        struct timespec period = {options->period_ms / 1000, (options->period_ms % 1000) * 1000000L};
        clock_nanosleep(CLOCK_MONOTONIC, 0, &period, NULL);
    }
    return NULL;
}

static int64_t cpu_microseconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return ((int64_t)usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000000 + usage.ru_utime.tv_usec + usage.ru_stime.tv_usec;
}

int64_t baseline_idle_threads(int count, int period_ms, uint64_t slack_ns, int seconds) {
    atomic_int running = 1;
    sleeper_options options = {period_ms, slack_ns, &running};
    pthread_t *threads = calloc((size_t)count, sizeof *threads);
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setstacksize(&attributes, 64 * 1024);
    for (int i = 0; i < count; i++) pthread_create(&threads[i], &attributes, sleeper, &options);
    sleep(2);
    int64_t before = cpu_microseconds();
    int64_t began = baseline_monotonic_ns();
    sleep((unsigned)seconds);
    int64_t used = cpu_microseconds() - before;
    double wall = (double)(baseline_monotonic_ns() - began) / 1e9;
    atomic_store(&running, 0);
    for (int i = 0; i < count; i++) pthread_join(threads[i], NULL);
    free(threads);
    return (int64_t)((double)used / wall);
}
