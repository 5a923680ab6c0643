#define _GNU_SOURCE
/*
 * echo_server.c -- a TCP echo server on 127.0.0.1 that keeps its listening
 * socket across reloads through svc_host.fd_keep / fd_load, as the header's
 * reload = "overlap" text describes.
 *
 * Build-time choices:
 *   ECHO_VERSION       the version string (default "1.0.0").
 *   ECHO_CREATE_FAILS  if defined, svc_create keeps a socket of its own under
 *                      "listener" and then fails with -9: a broken new
 *                      version whose keeps must be dropped.
 *   ECHO_CREATE_WAITS  if defined, svc_create first waits until the file named
 *                      by [config] release_file exists (a hang a test ends).
 * [config]:
 *   port       int, required  the port to listen on (bound only when no
 *                             listener was kept)
 *   keep       bool, true     keep the listener (fd_keep) and read it back
 *                             (fd_load); false: bind anew in every run and
 *                             close it in svc_stop
 *   keep_many  int, 0         in svc_create, keep one eventfd under this many
 *                             names ("extra-<i>") and log how many were taken
 *   forget     bool, false    in svc_create, forget every "extra-<i>" kept so far
 *   done_on_stop bool, false  end the run (SVC_DONE) when the stop descriptor
 *                             is readable, instead of SVC_CONTINUE
 *
 * One connection is served whole in a loop turn: a line is read and written
 * back, then the connection is closed. The loop waits in poll() on the
 * listener and the host's stop descriptor.
 * Log lines (exact text, relied on by tests):
 *   INFO "listening version=<v> kept=<0|1>"
 *   INFO "kept <taken> of <asked>, first refusal <code>"
 *   INFO "forgot <n>"
 */
#include "servicehost.h"
#include "fixture_support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef ECHO_VERSION
#define ECHO_VERSION "1.0.0"
#endif

typedef struct echo {
    const svc_host *host;
    int listener;
    int stop;
    int done_on_stop;
} echo;

static int listen_on(int64_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(fd, 128) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

SVC_EXPORT uint32_t svc_abi_version(void) { return SVC_ABI_VERSION; }

SVC_EXPORT const char *svc_plugin_version(void) { return ECHO_VERSION; }

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
    int keep = 1;
    int64_t port = 0, many = 0;
    int forget = 0;
    svc_config_bool(host, "keep", 1, &keep);
    svc_config_int(host, "port", 0, &port);
    svc_config_int(host, "keep_many", 0, &many);
    svc_config_bool(host, "forget", 0, &forget);
    if (!SVC_HOST_HAS(host, fd_keep) || !SVC_HOST_HAS(host, fd_load) || !SVC_HOST_HAS(host, stop_descriptor)) return -2;

    if (many > 0) {
        int event = eventfd(0, EFD_CLOEXEC);
        int64_t taken = 0;
        int32_t refusal = 0;
        for (int64_t i = 0; i < many; i++) {
            char name[32];
            snprintf(name, sizeof name, "extra-%lld", (long long)i);
            int32_t code = host->fd_keep(name, event);
            if (code == 0) taken++;
            else if (refusal == 0) refusal = code;
        }
        close(event);
        fixture_log(host, SVC_LOG_INFO, "kept %lld of %lld, first refusal %d", (long long)taken, (long long)many, refusal);
    }
    if (forget) {
        int forgotten = 0;
        for (int i = 0; i < SVC_FD_MAX_KEPT; i++) {
            char name[32];
            snprintf(name, sizeof name, "extra-%d", i);
            int loaded = host->fd_load(name);
            if (loaded >= 0) {
                close(loaded);
                if (host->fd_keep(name, -1) == 0) forgotten++;
            }
        }
        fixture_log(host, SVC_LOG_INFO, "forgot %d", forgotten);
    }

#ifdef ECHO_CREATE_WAITS
    const char *release = host->config("release_file");
    fixture_log(host, SVC_LOG_INFO, "create waits");
    while (release != NULL && access(release, F_OK) != 0) usleep(1000);
#endif
#ifdef ECHO_CREATE_FAILS
    int mine = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    host->fd_keep("listener", mine);
    close(mine);
    return -9;
#endif

    int listener = keep ? host->fd_load("listener") : -1;
    int was_kept = listener >= 0;
    if (listener < 0) listener = listen_on(port);
    if (listener < 0) {
        fixture_log(host, SVC_LOG_ERROR, "cannot listen on port %lld: %s", (long long)port, strerror(errno));
        return -3;
    }
    if (keep && !was_kept && host->fd_keep("listener", listener) != 0) {
        close(listener);
        return -4;
    }
    echo *self = calloc(1, sizeof *self);
    if (self == NULL) {
        close(listener);
        return -1;
    }
    self->host = host;
    self->listener = listener;
    self->stop = host->stop_descriptor();
    svc_config_bool(host, "done_on_stop", 0, &self->done_on_stop);
    fixture_log(host, SVC_LOG_INFO, "listening version=%s kept=%d", ECHO_VERSION, was_kept);
    *ctx = self;
    return 0;
}

/* Serves one accepted connection whole: one line in, the same line out. */
static void serve(int connection) {
    struct timeval limit = {2, 0};
    setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    char line[256];
    size_t used = 0;
    while (used < sizeof line) {
        ssize_t got = read(connection, line + used, sizeof line - used);
        if (got <= 0) break;
        used += (size_t)got;
        if (memchr(line, '\n', used) != NULL) break;
    }
    size_t sent = 0;
    while (sent < used) {
        ssize_t wrote = write(connection, line + sent, used - sent);
        if (wrote <= 0) break;
        sent += (size_t)wrote;
    }
    close(connection);
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    echo *self = ctx;
    struct pollfd waits[2] = {{self->listener, POLLIN, 0}, {self->stop, POLLIN, 0}};
    int count = self->stop >= 0 ? 2 : 1;
    if (poll(waits, (nfds_t)count, self->stop >= 0 ? -1 : 100) <= 0) return SVC_CONTINUE;
    if (count == 2 && (waits[1].revents & POLLIN)) return self->done_on_stop ? SVC_DONE : SVC_CONTINUE;
    int connection = accept4(self->listener, NULL, NULL, SOCK_CLOEXEC);
    if (connection >= 0) serve(connection);
    return SVC_CONTINUE;
}

SVC_EXPORT void svc_stop(void *ctx) {
    echo *self = ctx;
    close(self->listener);
    free(self);
}
