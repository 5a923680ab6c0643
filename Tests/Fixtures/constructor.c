/*
 * constructor.c -- a plugin whose load-time code misbehaves, chosen at build
 * time: -DCONSTRUCTOR_FAULT=1 segfaults, =2 calls exit(7), =3 sleeps forever,
 * =4 sleeps forever only once the file CONSTRUCTOR_MARKER exists (so a scan
 * passes and a later load hangs), =5 waits (up to a minute) until the file
 * CONSTRUCTOR_RELEASE exists, anything else (0) behaves. Used to prove
 * the load-time scanner keeps all of that out of the host.
 * CONSTRUCTOR_VERSION names the version.
 */
#include "fixture_support.h"

#include <signal.h>
#include <unistd.h>

#ifndef CONSTRUCTOR_FAULT
#define CONSTRUCTOR_FAULT 0
#endif
#ifndef CONSTRUCTOR_VERSION
#define CONSTRUCTOR_VERSION "1.0.0"
#endif

__attribute__((constructor)) static void misbehave(void) {
    switch (CONSTRUCTOR_FAULT) {
    case 1: raise(SIGSEGV); break;
    case 2: exit(7);
    case 3: for (;;) pause();
#ifdef CONSTRUCTOR_MARKER
    case 4: if (access(CONSTRUCTOR_MARKER, F_OK) == 0) for (;;) pause(); break;
#endif
#ifdef CONSTRUCTOR_RELEASE
    case 5:
        for (int waited = 0; waited < 60000 && access(CONSTRUCTOR_RELEASE, F_OK) != 0; waited++) usleep(1000);
        break;
#endif
    default: break;
    }
}

uint32_t svc_abi_version(void) { return SVC_ABI_VERSION; }
const char *svc_plugin_version(void) { return CONSTRUCTOR_VERSION; }

int32_t svc_create(const svc_host *host, void **ctx) {
    fixture_log(host, 1, "create version=%s", CONSTRUCTOR_VERSION);
    *ctx = NULL;
    return 0;
}

int32_t svc_loop(void *ctx) {
    (void)ctx;
    usleep(1000);
    return SVC_CONTINUE;
}

void svc_stop(void *ctx) { (void)ctx; }
