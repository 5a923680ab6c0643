/*
 * chdir_root.c -- a plugin whose svc_create changes the process's current
 * directory to "/", as a careless daemon-style plugin does; the host must
 * still find its plugins directory (given relative) on SIGHUP.
 */
#include "servicehost.h"

#include <stddef.h>
#include <unistd.h>

uint32_t svc_abi_version(void) {
    return SVC_ABI_VERSION;
}

const char *svc_plugin_version(void) {
    return "chdir";
}

int32_t svc_create(const svc_host *host, void **ctx) {
    (void)host;
    *ctx = NULL;
    return chdir("/") == 0 ? 0 : -1;
}

int32_t svc_loop(void *ctx) {
    (void)ctx;
    usleep(1000);
    return SVC_CONTINUE;
}

void svc_stop(void *ctx) {
    (void)ctx;
}
