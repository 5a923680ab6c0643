/*
 * slow_constructor.c -- a plugin whose constructor sleeps a minute: a worker
 * loading it is inside plugin code before it can read anything from the host.
 * Logs nothing (the host's "worker <pid> loads" line names the worker).
 */
#include "servicehost.h"

#include <unistd.h>

__attribute__((constructor)) static void slow(void) { sleep(60); }

SVC_EXPORT uint32_t svc_abi_version(void) { return SVC_ABI_VERSION; }
SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) { (void)host; *ctx = 0; return 0; }
SVC_EXPORT int32_t svc_loop(void *ctx) { (void)ctx; return SVC_DONE; }
SVC_EXPORT void svc_stop(void *ctx) { (void)ctx; }
