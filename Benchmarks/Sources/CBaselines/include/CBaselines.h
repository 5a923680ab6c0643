#ifndef C_BASELINES_H
#define C_BASELINES_H

#include <stdint.h>

/* Loads a plugin with dlopen and runs svc_create; returns NULL with a message
 * in `error` (of `error_size` bytes) on failure. */
void *baseline_open(const char *path, char *error, int error_size);

/* Calls svc_loop `count` times through a plain C function pointer. */
int64_t baseline_direct_calls(void *baseline, int64_t count);

/* Calls svc_loop `count` times through ffi_call with a CIF prepared once. */
int64_t baseline_ffi_calls(void *baseline, int64_t count);

/* Runs svc_stop and unloads the plugin. */
void baseline_close(void *baseline);

#endif
