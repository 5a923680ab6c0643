#define _GNU_SOURCE
#include "CProcessShims.h"

#include <signal.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>

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

void cprocess_reset_signals(void) {
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    for (int number = 1; number < NSIG; number++) {
        if (number == SIGKILL || number == SIGSTOP) continue;
        signal(number, SIG_DFL);
    }
}
