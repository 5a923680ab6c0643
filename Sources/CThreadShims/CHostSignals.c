#define _GNU_SOURCE
#include "CHostSignals.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile int csignal_pipe = -1;
/* 0: not installed; 1: writing handler; 2: no-op handler. Indexed by signal number. */
static volatile sig_atomic_t csignal_kind[65];

static void csignal_write(int signo) {
    int saved = errno;
    unsigned char byte = (unsigned char)signo;
    if (csignal_pipe >= 0) {
        ssize_t ignored = write(csignal_pipe, &byte, 1);
        (void)ignored;
    }
    errno = saved;
}

static void csignal_nothing(int signo) {
    (void)signo;
}

int csignal_open_pipe(void) {
    int ends[2];
    if (pipe2(ends, O_CLOEXEC) != 0) return -1;
    fcntl(ends[1], F_SETFL, fcntl(ends[1], F_GETFL) | O_NONBLOCK);
    csignal_pipe = ends[1];
    return ends[0];
}

static int csignal_set(int signo, void (*handler)(int)) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    return sigaction(signo, &action, NULL);
}

int csignal_install(int signo) {
    if (signo <= 0 || signo > 64) { errno = EINVAL; return -1; }
    if (csignal_set(signo, csignal_write) != 0) return -1;
    csignal_kind[signo] = 1;
    return 0;
}

int csignal_install_noop(int signo) {
    if (signo <= 0 || signo > 64) { errno = EINVAL; return -1; }
    if (csignal_set(signo, csignal_nothing) != 0) return -1;
    csignal_kind[signo] = 2;
    return 0;
}

int csignal_reassert(void) {
    int replaced = 0;
    for (int signo = 1; signo <= 64; signo++) {
        if (csignal_kind[signo] == 0) continue;
        void (*ours)(int) = csignal_kind[signo] == 1 ? csignal_write : csignal_nothing;
        struct sigaction current;
        if (sigaction(signo, NULL, &current) != 0) continue;
        if (current.sa_handler == ours && (current.sa_flags & SA_SIGINFO) == 0) continue;
        replaced++;
        csignal_set(signo, ours);
    }
    return replaced;
}
