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

/* posix_spawn's `path` with no arguments and waits for it; returns its wait
 * status, or -1 when it could not be started. What a process supervisor pays
 * for every restart. */
int baseline_spawn_and_wait(const char *path);

/* Starts `count` bare threads that each sleep `period_ms` in a loop (their
 * timer slack set to `slack_ns`, as the host sets its services'), waits for
 * them to settle, and returns the CPU this process used while they slept for
 * `seconds`, in microseconds per second. The floor under the host's idle cost:
 * what the kernel charges for that many wakeups, with no work in them. */
int64_t baseline_idle_threads(int count, int period_ms, uint64_t slack_ns, int seconds);

/* CLOCK_MONOTONIC in nanoseconds: the clock plugins stamp their reports with. */
int64_t baseline_monotonic_ns(void);

#endif
