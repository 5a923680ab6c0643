/*
 * faulty.c -- a test plugin that misbehaves on purpose, for ServiceHost's
 * crash and hang tests.
 *
 * What it does is chosen through the service's [config] table, read once in
 * svc_create through host->config (an absent key takes the default):
 *
 *   fault        string, "none"   what to do:
 *                  "segv"   store through a null pointer (a real SIGSEGV)
 *                  "abort"  abort() (SIGABRT)
 *                  "exit"   exit(exit_code): atexit handlers and stdio
 *                           flushing run, in the host's process
 *                  "_exit"  _exit(exit_code): no handlers, no flushing
 *                  "kill"   raise(SIGKILL) on itself
 *                  "hang"   spin forever at 100% CPU (a busy loop on a
 *                           volatile counter; it never sleeps or returns)
 *                  "sleep"  block in nanosleep for fault_ms milliseconds,
 *                           then carry on normally
 *                  "wait"   block until the file release_file exists (a
 *                           test creates it to let the call return), then
 *                           carry on normally
 *                  "none"   never misbehave
 *   fault_in     string, "loop"   where: "loop", "create" or "stop"
 *   fault_after  int,    1        with fault_in = "loop": misbehave on the
 *                                 Nth svc_loop call since svc_create (only
 *                                 that call; earlier and later calls return
 *                                 SVC_CONTINUE). Counts restart from 1 on
 *                                 every svc_create.
 *   exit_code    int,    3        the status for "exit" and "_exit"
 *   fault_ms     int,    3600000  how long "sleep" blocks (one hour)
 *   release_file string           the file "wait" waits for
 *   log_loops    bool,   false    log "loop <n>" on every svc_loop call
 *
 * An unknown fault or fault_in, or an unparsable number, makes svc_create
 * fail with -22 (EINVAL) after logging the reason at SVC_LOG_ERROR, so that a
 * typo in a test's sidecar cannot pass for a plugin that did not misbehave.
 *
 * Log lines (exact text, relied on by tests):
 *   INFO  "create"                       first thing in every svc_create
 *   INFO  "loop <n>"                     each svc_loop call, if log_loops
 *   INFO  "stop"                         first thing in svc_stop
 *   WARN  "fault <fault> in <fault_in>"  just before misbehaving, e.g.
 *                                        "fault segv in loop"
 *   ERROR "invalid <key> '<value>'"      a bad option (svc_create fails)
 *
 * svc_plugin_version returns "faulty".
 */
#define _POSIX_C_SOURCE 200809L

#include "servicehost.h"
#include "fixture_support.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FAULTY_EINVAL (-22)
#define FAULTY_ENOMEM (-12)

typedef enum fault_kind {
    FAULT_NONE,
    FAULT_SEGV,
    FAULT_ABORT,
    FAULT_EXIT,
    FAULT__EXIT,
    FAULT_KILL,
    FAULT_HANG,
    FAULT_SLEEP,
    FAULT_WAIT,
} fault_kind;

typedef enum fault_place {
    FAULT_IN_LOOP,
    FAULT_IN_CREATE,
    FAULT_IN_STOP,
} fault_place;

static const struct {
    const char *name;
    fault_kind kind;
} fault_names[] = {
    { "none", FAULT_NONE },   { "segv", FAULT_SEGV }, { "abort", FAULT_ABORT },
    { "exit", FAULT_EXIT },   { "_exit", FAULT__EXIT }, { "kill", FAULT_KILL },
    { "hang", FAULT_HANG },   { "sleep", FAULT_SLEEP }, { "wait", FAULT_WAIT },
};

static const struct {
    const char *name;
    fault_place place;
} place_names[] = {
    { "loop", FAULT_IN_LOOP },
    { "create", FAULT_IN_CREATE },
    { "stop", FAULT_IN_STOP },
};

typedef struct faulty_options {
    fault_kind fault;
    fault_place fault_in;
    const char *fault_name;    /* static: from fault_names */
    const char *fault_in_name; /* static: from place_names */
    long fault_after;
    long exit_code;
    long fault_ms;
    const char *release_file; /* owned by the host, valid until svc_stop */
    bool log_loops;
} faulty_options;

typedef struct faulty {
    const svc_host *host;
    faulty_options options;
    long loops;
} faulty;

/* Reads an int option into *out (the fallback when absent). False, after
 * logging, when the value is not a number. */
static bool option_int(const svc_host *host, const char *key, long fallback, long *out) {
    const char *text = fixture_config(host, key);
    if (text == NULL) {
        *out = fallback;
        return true;
    }
    if (!parse_int(text, out)) {
        fixture_log(host, SVC_LOG_ERROR, "invalid %s '%s'", key, text);
        return false;
    }
    return true;
}

static bool option_bool(const svc_host *host, const char *key, bool fallback, bool *out) {
    const char *text = fixture_config(host, key);
    if (text == NULL) {
        *out = fallback;
    } else if (strcmp(text, "true") == 0) {
        *out = true;
    } else if (strcmp(text, "false") == 0) {
        *out = false;
    } else {
        fixture_log(host, SVC_LOG_ERROR, "invalid %s '%s'", key, text);
        return false;
    }
    return true;
}

/* Reads every option; false, after logging the bad one, on an invalid value. */
static bool read_options(const svc_host *host, faulty_options *options) {
    const char *fault = fixture_config(host, "fault");
    if (fault == NULL) {
        fault = "none";
    }
    options->fault_name = NULL;
    for (size_t i = 0; i < sizeof fault_names / sizeof fault_names[0]; i++) {
        if (strcmp(fault, fault_names[i].name) == 0) {
            options->fault = fault_names[i].kind;
            options->fault_name = fault_names[i].name;
        }
    }
    if (options->fault_name == NULL) {
        fixture_log(host, SVC_LOG_ERROR, "invalid fault '%s'", fault);
        return false;
    }

    const char *place = fixture_config(host, "fault_in");
    if (place == NULL) {
        place = "loop";
    }
    options->fault_in_name = NULL;
    for (size_t i = 0; i < sizeof place_names / sizeof place_names[0]; i++) {
        if (strcmp(place, place_names[i].name) == 0) {
            options->fault_in = place_names[i].place;
            options->fault_in_name = place_names[i].name;
        }
    }
    if (options->fault_in_name == NULL) {
        fixture_log(host, SVC_LOG_ERROR, "invalid fault_in '%s'", place);
        return false;
    }

    options->release_file = fixture_config(host, "release_file");
    if (options->fault == FAULT_WAIT && options->release_file == NULL) {
        fixture_log(host, SVC_LOG_ERROR, "fault 'wait' needs release_file");
        return false;
    }
    return option_int(host, "fault_after", 1, &options->fault_after)
        && option_int(host, "exit_code", 3, &options->exit_code)
        && option_int(host, "fault_ms", 3600000L, &options->fault_ms)
        && option_bool(host, "log_loops", false, &options->log_loops);
}

static void sleep_ms(long ms) {
    if (ms <= 0) {
        return;
    }
    struct timespec remaining = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&remaining, &remaining) == -1 && errno == EINTR) {
        /* interrupted by a signal: sleep the rest */
    }
}

/* Misbehaves as `options` says, after logging that it is about to. Returns
 * only for FAULT_NONE, FAULT_SLEEP and FAULT_WAIT. */
static void misbehave(const svc_host *host, const faulty_options *options) {
    if (options->fault == FAULT_NONE) {
        return;
    }
    fixture_log(host, SVC_LOG_WARN, "fault %s in %s", options->fault_name, options->fault_in_name);

    switch (options->fault) {
    case FAULT_NONE:
        return;
    case FAULT_SEGV: {
        /* A volatile pointer to volatile, so the compiler can neither prove
         * it null (and turn the store into a trap instruction, SIGILL) nor
         * drop the store as dead before abort(): this is a real store to
         * address 0. */
        volatile int *volatile nowhere = NULL;
        *nowhere = 1;
        abort(); /* not reached */
    }
    case FAULT_ABORT:
        abort();
    case FAULT_EXIT:
        exit((int)options->exit_code);
    case FAULT__EXIT:
        _exit((int)options->exit_code);
    case FAULT_KILL:
        raise(SIGKILL);
        abort(); /* not reached */
    case FAULT_HANG: {
        volatile unsigned long spins = 0;
        for (;;) {
            spins++;
        }
    }
    case FAULT_SLEEP:
        sleep_ms(options->fault_ms);
        return;
    case FAULT_WAIT:
        while (access(options->release_file, F_OK) != 0) {
            sleep_ms(5);
        }
        return;
    }
}

SVC_EXPORT uint32_t svc_abi_version(void) {
    return SVC_ABI_VERSION;
}

SVC_EXPORT const char *svc_plugin_version(void) {
    return "faulty";
}

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
    fixture_log(host, SVC_LOG_INFO, "create");

    faulty_options options;
    if (!read_options(host, &options)) {
        return FAULTY_EINVAL;
    }
    if (options.fault_in == FAULT_IN_CREATE) {
        misbehave(host, &options);
    }

    faulty *self = malloc(sizeof *self);
    if (self == NULL) {
        fixture_log(host, SVC_LOG_ERROR, "create failing with %d: out of memory", FAULTY_ENOMEM);
        return FAULTY_ENOMEM;
    }
    self->host = host;
    self->options = options;
    self->loops = 0;
    *ctx = self;
    return 0;
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    faulty *self = ctx;
    long n = ++self->loops;

    if (self->options.log_loops) {
        fixture_log(self->host, SVC_LOG_INFO, "loop %ld", n);
    }
    if (self->options.fault_in == FAULT_IN_LOOP && n == self->options.fault_after) {
        misbehave(self->host, &self->options);
    }
    return SVC_CONTINUE;
}

SVC_EXPORT void svc_stop(void *ctx) {
    faulty *self = ctx;
    if (self == NULL) {
        return;
    }
    fixture_log(self->host, SVC_LOG_INFO, "stop");
    if (self->options.fault_in == FAULT_IN_STOP) {
        misbehave(self->host, &self->options);
    }
    free(self);
}
