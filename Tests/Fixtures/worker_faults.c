/*
 * worker_faults.c -- a test plugin for the ways a worker process can hide
 * its state from the host (process isolation tests).
 *
 * [config] keys, read in svc_create:
 *   blob     string   if present, svc_create logs "blob length <n>"
 *   fault    string   "none" (default):
 *              "fork_keep_socket" on the first svc_loop, fork a child that
 *                                 inherits every descriptor (the worker's
 *                                 socket too) and sleeps 60 s, then SIGSEGV
 *              "close_fds"        svc_create closes descriptors 3..1024,
 *                                 then succeeds
 *              "pthread_exit"     the first svc_loop calls pthread_exit
 *   log      "child <pid>"         logged by the parent after the fork
 */
#define _GNU_SOURCE

#include "servicehost.h"
#include "fixture_support.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

typedef struct state {
    const svc_host *host;
    const char *fault;
} state;

SVC_EXPORT uint32_t svc_abi_version(void) { return SVC_ABI_VERSION; }

SVC_EXPORT const char *svc_plugin_version(void) { return "worker_faults"; }

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
    static state the_state;
    the_state.host = host;
    const char *fault = fixture_config(host, "fault");
    the_state.fault = fault == NULL ? "none" : fault;
    const char *blob = fixture_config(host, "blob");
    if (blob != NULL) {
        fixture_log(host, SVC_LOG_INFO, "blob length %zu", strlen(blob));
    }
    if (strcmp(the_state.fault, "close_fds") == 0) {
        for (int fd = 3; fd <= 1024; fd++) {
            close(fd);
        }
    }
    *ctx = &the_state;
    return 0;
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    state *s = ctx;
    if (strcmp(s->fault, "fork_keep_socket") == 0) {
        pid_t child = fork();
        if (child == 0) {
            sleep(60);
            _exit(0);
        }
        fixture_log(s->host, SVC_LOG_INFO, "child %d", (int)child);
        volatile int *null = NULL;
        *null = 1;
    }
    if (strcmp(s->fault, "pthread_exit") == 0) {
        fixture_log(s->host, SVC_LOG_INFO, "calling pthread_exit");
        pthread_exit(NULL);
    }
    usleep(1000);
    return SVC_CONTINUE;
}

SVC_EXPORT void svc_stop(void *ctx) { (void)ctx; }
