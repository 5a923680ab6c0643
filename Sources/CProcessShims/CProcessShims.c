#define _GNU_SOURCE
#include "CProcessShims.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
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

int cprocess_wake_signal(void) {
    /* SIGRTMIN + 6: clear of glibc's own (32, 33, below SIGRTMIN) and of the
     * first few real-time signals that libraries commonly pick for timers. */
    return SIGRTMIN + 6;
}

/* The set holding the wake signal alone. */
static void cprocess_wake_set(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, cprocess_wake_signal());
}

void cprocess_block_wake_signal(void) {
    sigset_t wake;
    cprocess_wake_set(&wake);
    pthread_sigmask(SIG_BLOCK, &wake, NULL);
}

int cprocess_poll_wakeable(struct pollfd *fds, nfds_t count, int timeout_ms) {
    sigset_t wake;
    sigset_t during;
    cprocess_wake_set(&wake);
    /* Blocked from here on in this thread (if the caller has not already):
     * a wake-up sent before ppoll stays pending and interrupts it at once. */
    pthread_sigmask(SIG_BLOCK, &wake, &during);
    sigdelset(&during, cprocess_wake_signal());
    struct timespec timeout;
    if (timeout_ms >= 0) {
        timeout.tv_sec = timeout_ms / 1000;
        timeout.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
    }
    return ppoll(fds, count, timeout_ms >= 0 ? &timeout : NULL, &during);
}

int cprocess_wake(pthread_t thread) {
    return pthread_kill(thread, cprocess_wake_signal());
}

void cprocess_close_from(int lowest) {
    if (close_range((unsigned int)lowest, ~0U, 0) == 0) return;
    struct rlimit limit;
    long highest = getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY ? (long)limit.rlim_cur : 65536;
    for (long descriptor = lowest; descriptor < highest; descriptor++) close((int)descriptor);
}

int cprocess_epoll_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

int cprocess_epoll_add(int epoll, int descriptor, uint64_t tag) {
    struct epoll_event event = { .events = EPOLLIN, .data.u64 = tag };
    return epoll_ctl(epoll, EPOLL_CTL_ADD, descriptor, &event);
}

int cprocess_epoll_wait(int epoll, uint64_t *tags, int capacity, int timeout_ms) {
    struct epoll_event events[64];
    if (capacity > 64) capacity = 64;
    int ready = epoll_wait(epoll, events, capacity, timeout_ms);
    for (int index = 0; index < ready; index++) tags[index] = events[index].data.u64;
    return ready;
}

int cprocess_peek_exit(pid_t pid, int *status, int wait) {
    siginfo_t info;
    info.si_pid = 0;
    int result;
    /* Blocking when asked: a pidfd turns readable as the process exits, and
     * waitid must not race the last step that makes it a zombie. */
    do {
        result = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT | (wait ? 0 : WNOHANG));
    } while (result != 0 && errno == EINTR);
    if (result != 0) return -1;
    if (info.si_pid == 0) return 0;
    *status = info.si_code == CLD_EXITED ? (info.si_status & 0xff) << 8 : (info.si_status & 0x7f);
    return 1;
}

int cprocess_sealed_memfd(const void *bytes, size_t size) {
    int descriptor = memfd_create("servicehost-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (descriptor < 0) return -errno;
    size_t written = 0;
    while (written < size) {
        ssize_t count = write(descriptor, (const char *)bytes + written, size - written);
        if (count < 0 && errno == EINTR) continue;
        if (count <= 0) {
            int error = count < 0 ? errno : EIO;
            close(descriptor);
            return -error;
        }
        written += (size_t)count;
    }
    if (fcntl(descriptor, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
        int error = errno;
        close(descriptor);
        return -error;
    }
    return descriptor;
}

int cprocess_check_sealed(int descriptor, size_t size) {
    int seals = fcntl(descriptor, F_GET_SEALS);
    if (seals < 0) return -errno;
    int needed = F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK;
    if ((seals & needed) != needed) return -EPERM;
    struct stat info;
    if (fstat(descriptor, &info) != 0) return -errno;
    if (info.st_size < 0 || (size_t)info.st_size != size) return -EINVAL;
    return 0;
}
