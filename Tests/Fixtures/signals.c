/*
 * signals.c -- a plugin that looks at the signal state it and its children
 * get, and meddles with the host's handlers. [config] keys:
 *   report_thread "true"  log "thread TID" from svc_create, so a test can read
 *                         /proc/<pid>/task/TID/{comm,status}
 *   spawn_to      PATH    start /bin/sh from svc_create, which writes
 *                         the SigBlk and SigIgn lines of its own status to PATH
 *   spawn_with    "posix_spawn" (default) | "fork"   how /bin/sh is started
 *   sigterm       "default" | "handler" | "ignore"   replace the host's
 *                         SIGTERM disposition in svc_create
 *   message       TEXT    log TEXT (with \n, \e unescaped) from svc_create
 * svc_loop returns SVC_CONTINUE; pace it with interval_ms.
 */
#define _GNU_SOURCE
#include "fixture_support.h"

#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

uint32_t svc_abi_version(void) {
    return SVC_ABI_VERSION;
}

const char *svc_plugin_version(void) {
    return "signals";
}

static void plugin_handler(int signo) {
    (void)signo;
}

static int spawn_status_reader(const char *path, int with_fork) {
    char script[1024];
    snprintf(script, sizeof script, "grep -E 'SigBlk|SigIgn' /proc/self/status > '%s'", path);
    char *arguments[] = { "sh", "-c", script, NULL };
    pid_t child;
    if (with_fork) {
        child = fork();
        if (child < 0) return -errno;
        if (child == 0) {
            execve("/bin/sh", arguments, environ);
            _exit(127);
        }
    } else {
        int error = posix_spawn(&child, "/bin/sh", NULL, NULL, arguments, environ);
        if (error != 0) return -error;
    }
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int32_t svc_create(const svc_host *host, void **ctx) {
    *ctx = NULL;
    const char *report = fixture_config(host, "report_thread");
    if (report != NULL && strcmp(report, "true") == 0) {
        fixture_log(host, SVC_LOG_INFO, "thread %ld", (long)syscall(SYS_gettid));
    }
    const char *path = fixture_config(host, "spawn_to");
    if (path != NULL) {
        const char *with = fixture_config(host, "spawn_with");
        int result = spawn_status_reader(path, with != NULL && strcmp(with, "fork") == 0);
        fixture_log(host, SVC_LOG_INFO, "spawned status reader: %d", result);
    }
    const char *sigterm = fixture_config(host, "sigterm");
    if (sigterm != NULL) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        sigemptyset(&action.sa_mask);
        if (strcmp(sigterm, "default") == 0) action.sa_handler = SIG_DFL;
        else if (strcmp(sigterm, "ignore") == 0) action.sa_handler = SIG_IGN;
        else action.sa_handler = plugin_handler;
        sigaction(SIGTERM, &action, NULL);
        fixture_log(host, SVC_LOG_INFO, "replaced SIGTERM: %s", sigterm);
    }
    const char *message = fixture_config(host, "message");
    if (message != NULL) {
        char text[256];
        size_t length = 0;
        for (const char *p = message; *p != '\0' && length + 1 < sizeof text; p++) {
            if (p[0] == '\\' && p[1] == 'n') { text[length++] = '\n'; p++; }
            else if (p[0] == '\\' && p[1] == 'e') { text[length++] = '\x1b'; p++; }
            else text[length++] = *p;
        }
        text[length] = '\0';
        host->log(SVC_LOG_INFO, text);
    }
    return 0;
}

int32_t svc_loop(void *ctx) {
    (void)ctx;
    return SVC_CONTINUE;
}

void svc_stop(void *ctx) {
    (void)ctx;
}
