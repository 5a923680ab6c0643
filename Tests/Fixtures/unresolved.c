/*
 * unresolved.c -- a complete plugin whose svc_loop calls a function defined
 * nowhere. A shared object may keep undefined symbols, so this links, but
 * dlopen(RTLD_NOW) fails with "undefined symbol:
 * svc_fixture_undefined_function" ("load failed").
 */
#include "servicehost.h"

#include <stddef.h>

/* Declared, never defined anywhere. */
extern int32_t svc_fixture_undefined_function(void);

uint32_t svc_abi_version(void) {
    return SVC_ABI_VERSION;
}

int32_t svc_create(const svc_host *host, void **ctx) {
    (void)host;
    *ctx = NULL;
    return 0;
}

int32_t svc_loop(void *ctx) {
    (void)ctx;
    return svc_fixture_undefined_function();
}

void svc_stop(void *ctx) {
    (void)ctx;
}
