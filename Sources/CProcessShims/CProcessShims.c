#define _GNU_SOURCE
#include "CProcessShims.h"

#include <signal.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int cprocess_pidfd_open(pid_t pid) {
    return pidfd_open(pid, 0);
}

int cprocess_set_parent_death_signal(int signal) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0, 0, 0);
}

int cprocess_spawn_close_from(posix_spawn_file_actions_t *actions, int lowest) {
    return posix_spawn_file_actions_addclosefrom_np(actions, lowest);
}

int cprocess_spawnattr_reset_signals(posix_spawnattr_t *attributes) {
    sigset_t empty;
    sigset_t all;
    sigemptyset(&empty);
    sigfillset(&all);
    int result = posix_spawnattr_setsigmask(attributes, &empty);
    if (result == 0) result = posix_spawnattr_setsigdefault(attributes, &all);
    if (result == 0) result = posix_spawnattr_setflags(attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    return result;
}

/* The kernel's struct sigaction for rt_sigaction(2), for the signals glibc
 * reserves (32, 33) and refuses to touch through sigaction(). */
struct kernel_sigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    unsigned long mask;
};

void cprocess_reset_signals(void) {
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    for (int number = 1; number < NSIG; number++) {
        if (number == SIGKILL || number == SIGSTOP) continue;
        if (signal(number, SIG_DFL) == SIG_ERR) {
            /* A glibc-reserved signal: only an inherited SIG_IGN is undone,
             * a handler glibc installed stays. */
            struct kernel_sigaction old;
            if (syscall(SYS_rt_sigaction, number, NULL, &old, sizeof(unsigned long)) == 0 && old.handler == (void *)SIG_IGN) {
                struct kernel_sigaction reset = { (void *)SIG_DFL, 0, NULL, 0 };
                syscall(SYS_rt_sigaction, number, &reset, NULL, sizeof(unsigned long));
            }
        }
    }
}
