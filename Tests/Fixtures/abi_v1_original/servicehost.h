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
 *   For one service the host never calls into the plugin concurrently:
 *   svc_create, each svc_loop and svc_stop happen one after another, all on
 *   the same dedicated thread (never on a shared pool), so a plugin may block.
 *   Different services (different files) run on different threads.
 *   The callbacks in svc_host may be called from any thread.
 *
 * Loading
 *   The host loads a private copy of the file with RTLD_NOW | RTLD_LOCAL:
 *   every undefined symbol must resolve at load time, and plugins never see
 *   each other's symbols. When the file changes, the next restart of the
 *   service loads the new file (hot reload); an image without Swift code
 *   that is no longer used is unloaded with dlclose, so a plugin must not
 *   leave threads running or callbacks registered after svc_stop returns.
 */
#ifndef SERVICEHOST_H
#define SERVICEHOST_H

#include <stdint.h>

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
} svc_host;

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
