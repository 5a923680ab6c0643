#include "CBaselines.h"

#include <dlfcn.h>
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
