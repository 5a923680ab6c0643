/*
 * servicehost.h -- the plugin ABI of ServiceHost.
 *
 * A service is a shared library that exports the five functions declared at
 * the end of this file. `servicehost run` loads every `*.so` in its plugins
 * directory and supervises one service per file. This header is the whole
 * contract: nothing else from the host is visible to a plugin.
 *
 * ABI rules
 *   - SVC_ABI_VERSION changes only when an existing declaration changes
 *     meaning. The host calls svc_abi_version() before anything else and
 *     refuses a plugin whose answer differs from its own.
 *   - svc_host is append-only: new members are only ever added at the end,
 *     and struct_size tells a plugin which members the running host has.
 *     A plugin built against a newer header must check struct_size before
 *     touching a member this header marks as added later.
 *
 * Threading
 *   For one version of a service the host never calls into the plugin
 *   concurrently: svc_create, each svc_loop and svc_stop happen one after
 *   another, on a dedicated thread (never on a shared pool), so a plugin may
 *   block. Different services (different files) run on different threads.
 *   The callbacks in svc_host may be called from any thread.
 *   The one exception is a service with reload = "overlap" in its sidecar
 *   (see "Reloads without a gap" below): while it is reloaded, the new version's
 *   svc_create runs on another thread of the host, or in another worker,
 *   while the old version's svc_loop runs; each version is its own image.
 *
 * Loading
 *   The host loads a private copy of the file with RTLD_NOW | RTLD_LOCAL:
 *   every undefined symbol must resolve at load time, and plugins never see
 *   each other's symbols. When the file changes, the next restart of the
 *   service loads the new file (hot reload); an image without Swift code
 *   that is no longer used is unloaded with dlclose, so a plugin must not
 *   leave threads running or callbacks registered after svc_stop returns.
 *
 * C++
 *   Declare the entry points with SVC_EXPORT (it adds extern "C"): a mangled
 *   name is not found, and the plugin is refused. No exception may leave an
 *   entry point (svc_abi_version, svc_create, svc_loop, svc_stop,
 *   svc_plugin_version) or a function the plugin hands to a C library: the
 *   host is not C++ and cannot catch it, so the C++ runtime calls
 *   std::terminate and the process aborts (in thread isolation the whole
 *   host, in process isolation the service's worker, which the host then
 *   reports as killed by SIGABRT and restarts). Catch everything at the
 *   boundary and return a negative code:
 *
 *       SVC_EXPORT int32_t svc_loop(void *ctx) {
 *           auto *service = static_cast<Service *>(ctx);
 *           try {
 *               return service->loop();
 *           } catch (const std::exception &error) {
 *               svc_logf(service->host, SVC_LOG_ERROR, "svc_loop: %s", error.what());
 *               return -1;
 *           } catch (...) {
 *               return -1;
 *           }
 *       }
 *
 *   The svc_host callbacks never throw. Static constructors run when the
 *   image is loaded (in a scan process first, then in the host or worker):
 *   they must not throw either.
 */
#ifndef SERVICEHOST_H
#define SERVICEHOST_H

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
#define SVC_EXTERN_C extern "C"
#else
#define SVC_EXTERN_C
#endif

/* Marks a plugin entry point: C linkage and default visibility, so that it
 * stays exported under -fvisibility=hidden. */
#define SVC_EXPORT SVC_EXTERN_C __attribute__((visibility("default")))

/* The ABI this header describes. svc_abi_version() must return it. */
#define SVC_ABI_VERSION 1

/* Results of svc_loop. */
#define SVC_CONTINUE 0 /* call svc_loop again after the service's interval */
#define SVC_DONE 1     /* the service finished: it is stopped cleanly      */
/* Any negative result means the service failed; the value is recorded as its
 * error code. Values above SVC_DONE are reserved and count as failures. */

/* Levels for svc_host.log. */
#define SVC_LOG_DEBUG 0
#define SVC_LOG_INFO 1
#define SVC_LOG_WARN 2
#define SVC_LOG_ERROR 3

/*
 * What the host hands to svc_create. The pointer, every member and every
 * string reached through it stay valid from svc_create until svc_stop
 * returns; the host owns all of them and the plugin must not free any.
 * The function pointers take no context argument: the host binds each of them
 * to the service it was handed to.
 */
typedef struct svc_host {
    /* The host's SVC_ABI_VERSION. */
    uint32_t abi_version;
    /* sizeof(svc_host) as the host was built: members are only appended. */
    uint32_t struct_size;
    /* The service's name: the file name without "lib" and ".so". */
    const char *service_name;
    /* Write `message` (a NUL-terminated UTF-8 string, copied before the call
     * returns) to the host's log under the service's name. `level` is one of
     * SVC_LOG_*; other values are logged as errors. */
    void (*log)(int32_t level, const char *message);
    /* The value of `key` in the service's sidecar [config] table as text:
     * strings as written, numbers and booleans in their TOML spelling,
     * arrays in TOML inline form; dotted keys ("db.port") reach nested
     * tables. NULL when the key is absent or `key` is NULL. */
    const char *(*config)(const char *key);
    /* Ask the host to stop this service once the current svc_loop call
     * returns (or at once, if no call is running). This is the service
     * stopping itself, not an order: with recovery on, the host restarts it
     * according to its restart policy. Safe to call more than once. */
    void (*request_stop)(void);

    /* ---- Appended later in ABI 1: check with SVC_HOST_HAS(host, member)
     * before use; a host that predates them has a smaller struct_size. ---- */

    /* Nonzero once this run should end: the host ordered it to stop (a stop,
     * restart, removal or shutdown) or the service asked (request_stop). One
     * atomic load, no system call: for a loop that computes for long and
     * wants to return early. */
    int32_t (*stop_requested)(void);
    /* A descriptor that becomes readable once stop_requested() would return
     * nonzero, for a loop blocked in poll(), epoll_wait() or select(): add it
     * to the set (POLLIN) and return when it is readable. Made on the first
     * call (a plugin that never asks costs nothing) and the same for the
     * service's whole life (with reload = "overlap", one of two that the
     * versions alternate: see "Reloads without a gap" below); it stays
     * readable until the run ends. The host
     * owns it: never read, write or close it. -1 when the host could not
     * make one (no descriptor left): then poll stop_requested(). */
    int32_t (*stop_descriptor)(void);

    /* ---- Kept state (appended later in ABI 1; check with SVC_HOST_HAS) ----
     * The host keeps one byte string per service across the service's runs:
     * restarts, recoveries and reloads to another version of the file, and
     * gives the old bytes back when a new version is refused or its
     * svc_create fails. It is dropped when the service is removed, and not
     * written to disk: a new host process starts with none.
     * The bytes are the plugin's own format, and another version of the
     * plugin may read them: begin them with a tag and a format version, and
     * accept every format you have ever written (see the example below). */

    /* Keep `size` bytes at `bytes` (copied before the call returns) in place
     * of what was kept before; size 0 keeps nothing. Call it whenever the
     * state is worth keeping (a checkpoint: what a crash between two calls
     * loses is what changed since the last one) and in svc_stop. Any thread,
     * any time between svc_create and the return of svc_stop. Returns 0;
     * -E2BIG past SVC_STATE_MAX_SIZE, -EINVAL for a NULL `bytes` with a
     * nonzero size, -ENOMEM when the host has no memory for the copy: what was
     * kept before stays kept; -ESTALE after the run ended or another took
     * over (see reload = "overlap" below). In process isolation the bytes
     * reach the host before the call returns (in a sealed memfd over the
     * worker's socket), so what was saved survives a crash of the worker right
     * after; there the worker checks the arguments and the size, and what the
     * host could not keep (-ENOMEM, -ESTALE) is logged by the host instead. */
    int32_t (*state_save)(const void *bytes, size_t size);
    /* What was kept when this run began (before svc_create was called): a
     * pointer to *size bytes, owned by the host and valid until svc_stop
     * returns, or NULL with *size 0 when nothing was kept. state_save calls
     * of this run do not change it. */
    const void *(*state_load)(size_t *size);

    /* ---- Kept descriptors (appended later in ABI 1; check with SVC_HOST_HAS) ----
     * The host holds descriptors for a service under names, across its runs
     * and versions as it holds the state above: a listening socket that
     * stays bound (connections wait in its backlog instead of being
     * refused), an eventfd, a memfd with a cache. Rollback and removal as
     * for the state: a refused version's keeps are dropped, and every kept
     * descriptor is closed when the service is removed. `ctl status` lists
     * the names. In process isolation they travel over the worker's socket
     * (SCM_RIGHTS). A name is 1 to SVC_FD_NAME_MAX bytes of letters, digits,
     * '.', '_' and '-'. */

    /* Keep a duplicate of `fd` under `name` in place of what was kept under
     * it before; `fd` -1 forgets `name`. The host closes its copy of a
     * replaced or forgotten descriptor once no run that began while it was
     * kept can still fd_load it. The plugin's own `fd` stays the plugin's:
     * close it in svc_stop as usual. Same threads and times as state_save.
     * Returns 0; -EINVAL for a bad name, -EBADF for a descriptor that is not
     * open, -ENOSPC when the service keeps SVC_FD_MAX_KEPT already (forget one
     * first; the host logs why, once per run), -EMFILE when the host has no
     * descriptor left, -ESTALE after the run ended or another took over (in
     * process isolation the worker checks the name, the descriptor and the
     * limit; what the host then cannot keep is logged by the host). */
    int32_t (*fd_keep)(const char *name, int32_t fd);
    /* A new descriptor (close-on-exec, the plugin's to close) for what was
     * kept under `name` when this run began; -ENOENT when nothing was, -EMFILE
     * when the process has no descriptor left. Each call makes another. */
    int32_t (*fd_load)(const char *name);
} svc_host;

/* The most bytes state_save keeps (16 MiB). */
#define SVC_STATE_MAX_SIZE (16u * 1024u * 1024u)
/* The most descriptors a service keeps. */
#define SVC_FD_MAX_KEPT 256
/* The longest name of a kept descriptor, in bytes. */
#define SVC_FD_NAME_MAX 64

/* Reloads without a gap. By default a reload stops the old version
 * (svc_stop) before the new one's svc_create. With `reload = "overlap"` in
 * the service's sidecar the new version is created while the old one still
 * runs (in process isolation, in a second worker); it reads what the old one
 * kept until then, state and descriptors. Only once its svc_create returned
 * 0 is the old one told to stop (its stop_requested() returns nonzero, the
 * stop descriptor becomes readable), and what the old one saves from the
 * moment the new one began is not what the new one reads: it is dropped
 * when the new one takes over (and its state_save and fd_keep return
 * -ESTALE from then on), kept when the new one fails. So checkpoint in
 * svc_loop, not only in svc_stop. If the new version fails, the old one
 * keeps running and keeping as if nothing happened. Each version has its
 * own stop descriptor: the handover makes only the old one's readable, so
 * threads the new version started in svc_create sleep on. A server that keeps its
 * listening socket (fd_keep) and reads it back (fd_load) in svc_create is
 * reloaded with no connection refused: both versions accept on the same
 * socket for a moment, then only the new one. Two versions run svc_create
 * and svc_loop at the same time, each in its own image: a plugin whose
 * svc_create takes something exclusive (a lock file, a port bound without
 * fd_keep) must use the default. */

/* A kept state that survives a change of format, e.g. a counter whose
 * version 2 added a field:
 *
 *     struct counter_state_v1 { char tag[4]; uint32_t format; uint64_t count; };
 *     struct counter_state_v2 { char tag[4]; uint32_t format; uint64_t count; uint64_t reloads; };
 *
 *     size_t size = 0;
 *     const unsigned char *kept = SVC_HOST_HAS(host, state_load) ? host->state_load(&size) : NULL;
 *     struct counter_state_v2 state = { "CNTR", 2, 0, 0 };
 *     if (kept != NULL && size >= 8 && memcmp(kept, "CNTR", 4) == 0) {
 *         uint32_t format;
 *         memcpy(&format, kept + 4, sizeof format);
 *         if (format == 1 && size == sizeof(struct counter_state_v1)) {
 *             memcpy(&state.count, kept + 8, sizeof state.count);
 *         } else if (format == 2 && size == sizeof state) {
 *             memcpy(&state, kept, sizeof state);
 *         }   // an unknown format: start afresh rather than misread it
 *     }
 *     ...
 *     if (SVC_HOST_HAS(host, state_save)) host->state_save(&state, sizeof state);
 *
 * Copy the bytes out with memcpy: the host's buffer has no particular
 * alignment. An older version that must read the newer format reads the
 * fields it knows (here `count`, at the same offset in both). */

/* Whether the running host has `member` of svc_host (it was appended after
 * the plugin's oldest supported host): struct_size covers it. */
#define SVC_HOST_HAS(host, member) \
    ((host) != NULL && (host)->struct_size >= offsetof(svc_host, member) + sizeof((host)->member) && \
     (host)->member != NULL)

/* Helpers, header-only (nothing new for the host to provide; C99 or later).
 * They leave errno as they found it. ------------------------------------------ */

/* Logs a printf-style message through host->log. Messages longer than 4095
 * bytes are cut. */
__attribute__((format(printf, 3, 4), unused))
static inline void svc_logf(const svc_host *host, int32_t level, const char *format, ...) {
    if (host == NULL || host->log == NULL || format == NULL) {
        return;
    }
    char message[4096];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof message, format, arguments);
    va_end(arguments);
    host->log(level, message);
}

/* What a typed config read found. */
typedef enum svc_config_status {
    SVC_CONFIG_OK = 0,      /* present and valid: *value is the sidecar's     */
    SVC_CONFIG_ABSENT = 1,  /* no such key: *value is the fallback            */
    SVC_CONFIG_INVALID = -1 /* present but not of that type: *value is the fallback */
} svc_config_status;

/* Looks `key` up and copies its text without TOML's digit separators
 * ("1_000") into `digits`: SVC_CONFIG_ABSENT, SVC_CONFIG_INVALID (too long or
 * empty) or SVC_CONFIG_OK. Shared by the numeric readers below. */
__attribute__((unused))
static inline svc_config_status svc_config_internal_digits(const svc_host *host, const char *key, char *digits, size_t size) {
    const char *text = (host != NULL && host->config != NULL) ? host->config(key) : NULL;
    if (text == NULL) {
        return SVC_CONFIG_ABSENT;
    }
    size_t used = 0;
    for (; *text != '\0'; text++) {
        if (*text == '_') {
            continue;
        }
        if (used + 1 >= size) {
            return SVC_CONFIG_INVALID;
        }
        digits[used++] = *text;
    }
    digits[used] = '\0';
    return used > 0 ? SVC_CONFIG_OK : SVC_CONFIG_INVALID;
}

/* The sidecar's [config] `key` as a whole number (TOML integer: decimal,
 * optional sign, "_" separators). */
__attribute__((unused))
static inline svc_config_status svc_config_int(const svc_host *host, const char *key, int64_t fallback, int64_t *value) {
    *value = fallback;
    char digits[64];
    svc_config_status found = svc_config_internal_digits(host, key, digits, sizeof digits);
    if (found != SVC_CONFIG_OK) {
        return found;
    }
    char *end = NULL;
    int saved = errno;
    errno = 0;
    long long parsed = strtoll(digits, &end, 10);
    int failed = errno != 0 || *end != '\0';
    errno = saved;
    if (failed) {
        return SVC_CONFIG_INVALID;
    }
    *value = (int64_t)parsed;
    return SVC_CONFIG_OK;
}

/* The sidecar's [config] `key` as a number (TOML float or integer). */
__attribute__((unused))
static inline svc_config_status svc_config_double(const svc_host *host, const char *key, double fallback, double *value) {
    *value = fallback;
    char digits[64];
    svc_config_status found = svc_config_internal_digits(host, key, digits, sizeof digits);
    if (found != SVC_CONFIG_OK) {
        return found;
    }
    char *end = NULL;
    int saved = errno;
    errno = 0;
    /* strtod follows LC_NUMERIC: a plugin that sets a comma-decimal locale reads "1.5" as invalid. */
    double parsed = strtod(digits, &end);
    int failed = errno != 0 || *end != '\0';
    errno = saved;
    if (failed) {
        return SVC_CONFIG_INVALID;
    }
    *value = parsed;
    return SVC_CONFIG_OK;
}

/* The sidecar's [config] `key` as a boolean (TOML true or false). */
__attribute__((unused))
static inline svc_config_status svc_config_bool(const svc_host *host, const char *key, int fallback, int *value) {
    *value = fallback;
    const char *text = (host != NULL && host->config != NULL) ? host->config(key) : NULL;
    if (text == NULL) {
        return SVC_CONFIG_ABSENT;
    }
    if (strcmp(text, "true") == 0) {
        *value = 1;
        return SVC_CONFIG_OK;
    }
    if (strcmp(text, "false") == 0) {
        *value = 0;
        return SVC_CONFIG_OK;
    }
    return SVC_CONFIG_INVALID;
}

/* Plugin entry points. ------------------------------------------------------ */

/* Required. Return SVC_ABI_VERSION. Called first, before any other function;
 * must have no side effects. */
SVC_EXPORT uint32_t svc_abi_version(void);

/* Required. Create the service. Return 0 when created, with *ctx set to the
 * service's state (NULL is allowed); it is passed to svc_loop and svc_stop.
 * Return a negative value when creation failed: it is recorded as the
 * service's error code, svc_stop is not called, and whatever was allocated
 * must be released before returning. Called again, with a fresh *ctx, on
 * every restart. */
SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx);

/* Required. Do one unit of work; may block. Return SVC_CONTINUE, SVC_DONE or
 * a negative error code (see above). */
SVC_EXPORT int32_t svc_loop(void *ctx);

/* Required. Release what svc_create made. Called exactly once after every
 * successful svc_create, after the last svc_loop call has returned: on
 * SVC_DONE, on an error, after request_stop, and when the host stops. */
SVC_EXPORT void svc_stop(void *ctx);

/* Optional. A version string, e.g. "1.2.0", shown in the host's logs (on
 * reload: "1.0.0 -> 1.1.0"). The string must be static. */
SVC_EXPORT const char *svc_plugin_version(void);

#endif /* SERVICEHOST_H */
