#ifndef CPROCESS_SHIMS_H
#define CPROCESS_SHIMS_H

#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/types.h>

/* pidfd_open(2): glibc declares it in <sys/pidfd.h>, which Swift's Glibc
 * module does not include. A descriptor that becomes readable when the
 * process exits, so the host notices a worker's death even when another
 * process still holds the worker's socket open. -1 with errno on failure. */
int cprocess_pidfd_open(pid_t pid);

/* prctl(PR_SET_PDEATHSIG, signal): prctl is variadic, which Swift cannot call. */
int cprocess_set_parent_death_signal(int signal);

/* posix_spawn_file_actions_addclosefrom_np (glibc >= 2.34) needs _GNU_SOURCE,
 * which Swift's Glibc module is not built with: spawned processes inherit no
 * descriptor at or above `lowest`. */
int cprocess_spawn_close_from(posix_spawn_file_actions_t *actions, int lowest);

/* The POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF attributes with an empty
 * mask and every catchable signal reset to its default: a spawned process
 * starts as a normal one, whatever the spawning thread had blocked or ignored. */
int cprocess_spawnattr_reset_signals(posix_spawnattr_t *attributes);

/* Unblocks every signal and resets every catchable one to SIG_DFL, in the
 * calling process (a worker, before it runs plugin code). */
void cprocess_reset_signals(void);

/* The signal that wakes a host thread waiting for its worker when a stop is
 * ordered (instead of a descriptor per worker, which would cost the host one
 * more descriptor per process-isolated service). SIGRTMIN is a function call
 * in glibc, a macro Swift cannot import. The signal is only ever sent to the
 * host's own waiting threads, with pthread_kill. */
int cprocess_wake_signal(void);

/* ppoll(2) that a cprocess_wake_signal() sent to this thread interrupts
 * (-1 with errno EINTR), without losing one sent before the call: the signal
 * is blocked in the calling thread and unblocked only inside ppoll, atomically.
 * `timeout_ms` < 0 waits without a deadline. ppoll and its sigset are not
 * reachable from Swift's Glibc module without _GNU_SOURCE. */
int cprocess_poll_wakeable(struct pollfd *fds, nfds_t count, int timeout_ms);

/* Blocks cprocess_wake_signal() in the calling thread, before it says it
 * waits: a wake-up sent from then on stays pending until its ppoll. */
void cprocess_block_wake_signal(void);

/* pthread_kill(thread, cprocess_wake_signal()). */
int cprocess_wake(pthread_t thread);

/* close_range(lowest, ~0U, 0): the fork server's children keep none of the
 * descriptors it holds for other workers (glibc hides close_range without
 * _GNU_SOURCE). Falls back to closing one by one up to the soft limit. */
void cprocess_close_from(int lowest);

/* The wait status (as waitpid(2) gives it) of a child that has exited,
 * without reaping it (waitid with WNOWAIT: its pid stays taken until it is
 * reaped, so nobody can kill a stranger by that number). Returns 1 with
 * `*status` set; 0 while it runs (only without `wait`, which waits for the
 * exit); -1 with errno on failure. siginfo_t's fields are macros over unions
 * Swift cannot name. */
int cprocess_peek_exit(pid_t pid, int *status, int wait);

/* epoll, whose struct epoll_event is packed on x86-64 (Swift cannot import a
 * packed struct faithfully): watch `descriptor` for input with `tag` as its
 * data; wait for at most `capacity` tags. Return as the epoll calls do. */
int cprocess_epoll_create(void);
int cprocess_epoll_add(int epoll, int descriptor, uint64_t tag);
int cprocess_epoll_wait(int epoll, uint64_t *tags, int capacity, int timeout_ms);

/* Kept state crosses between the host and a worker in a memfd passed over the
 * worker's socket, sealed so that the side that made it cannot change it
 * while the other reads. memfd_create and the F_ADD_SEALS / F_GET_SEALS
 * commands are not visible to Swift (fcntl's commands are macros built from
 * F_LINUX_SPECIFIC_BASE).
 * A new memfd holding a copy of `size` bytes, sealed against writing,
 * growing and shrinking and against more seals; the descriptor, or -errno. */
int cprocess_sealed_memfd(const void *bytes, size_t size);
/* 0 when `descriptor` is a memfd of exactly `size` bytes sealed against
 * writing, growing and shrinking; else -errno (-EPERM when not sealed so,
 * -EINVAL when of another size). */
int cprocess_check_sealed(int descriptor, size_t size);

#endif
