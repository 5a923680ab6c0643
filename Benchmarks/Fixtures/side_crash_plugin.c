/* Crash-loop plugin for Benchmarks/side-by-side.py. Every start (svc_create)
 * appends one byte to the file named by [config] counter_file, exactly as
 * side_crash_program.c does on every start, so the file's size counts starts.
 * Then the first svc_loop fails at once: it raises SIGSEGV, or, with
 * [config] fail = "error" (for thread isolation, where a SIGSEGV would take
 * the whole host down), returns an error code instead. */
#define _POSIX_C_SOURCE 200809L
#include "servicehost.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static int fail_with_error;

SVC_EXPORT uint32_t svc_abi_version(void) { return SVC_ABI_VERSION; }

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
    *ctx = NULL;
    const char *path = host->config("counter_file");
    const char *fail = host->config("fail");
    fail_with_error = fail != NULL && strcmp(fail, "error") == 0;
    if (path == NULL) return -22;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    ssize_t written = write(fd, "x", 1);
    close(fd);
    return written == 1 ? 0 : -5;
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    (void)ctx;
    if (fail_with_error) return -1;
    raise(SIGSEGV);
    return -1;
}

SVC_EXPORT void svc_stop(void *ctx) { (void)ctx; }
