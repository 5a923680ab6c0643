#ifndef C_THREAD_SHIMS_H
#define C_THREAD_SHIMS_H

#include "CHostSignals.h"
#include "CHostThread.h"

#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* prctl is variadic and Glibc's Swift module does not export <sys/prctl.h>,
 * so Swift can call neither. Sets the calling thread's timer slack: how late
 * the kernel may fire its timers so that it can fire several at once. A
 * service pausing for a second between loops does not care about a few
 * milliseconds, and a thousand of them cost far less CPU when their wakeups
 * are coalesced. Returns 0, or -1 with errno set. */
int cthread_set_timer_slack(uint64_t nanoseconds);

/* A stop word: a 32-bit value that only ever rises until cleared, which a
 * service's thread checks on every loop turn and sleeps on between turns.
 * Sleeping is a futex wait on the word itself with an absolute monotonic
 * deadline: one system call per pause, where a condition variable takes two
 * and a mutex. The futex call is a variadic syscall, which Swift cannot make,
 * and the functions are inline so that the per-turn load stays a plain load. */

static inline uint32_t cthread_word_load(uint32_t *word) {
    return __atomic_load_n(word, __ATOMIC_ACQUIRE);
}

static inline void cthread_word_store(uint32_t *word, uint32_t value) {
    __atomic_store_n(word, value, __ATOMIC_RELEASE);
}

/* Replaces `expected` with `desired`; returns whether it did. */
static inline int cthread_word_replace(uint32_t *word, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(word, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* Raises the word to at least `value` and wakes every thread waiting on it. */
static inline void cthread_word_raise(uint32_t *word, uint32_t value) {
    uint32_t current = __atomic_load_n(word, __ATOMIC_ACQUIRE);
    while (current < value
           && !__atomic_compare_exchange_n(word, &current, value, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    }
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

/* Sleeps until the word is at least `level` or CLOCK_MONOTONIC reaches
 * `deadline_ns`; returns the word's value. */
static inline uint32_t cthread_word_wait(uint32_t *word, uint32_t level, int64_t deadline_ns) {
    struct timespec deadline = {(time_t)(deadline_ns / 1000000000), (long)(deadline_ns % 1000000000)};
    for (;;) {
        uint32_t current = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        if (current >= level) return current;
        /* FUTEX_WAIT_BITSET takes an absolute deadline, on CLOCK_MONOTONIC by default. */
        long result = syscall(SYS_futex, word, FUTEX_WAIT_BITSET_PRIVATE, current, &deadline, NULL,
                              FUTEX_BITSET_MATCH_ANY);
        if (result == -1 && errno == ETIMEDOUT) return __atomic_load_n(word, __ATOMIC_ACQUIRE);
    }
}

/* A stop descriptor (svc_host.stop_descriptor): an eventfd that becomes
 * readable when a stop is raised, for a plugin blocked in poll(). Glibc's
 * Swift module does not export <sys/eventfd.h>, so Swift can reach neither
 * eventfd() nor its flags. Returns the descriptor (close-on-exec,
 * non-blocking), or -1 with errno set. */
static inline int cthread_stop_descriptor_make(void) {
    return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

/* Makes the stop descriptor readable (adds 1 to its counter). */
static inline void cthread_stop_descriptor_signal(int descriptor) {
    uint64_t one = 1;
    ssize_t written;
    do {
        written = write(descriptor, &one, sizeof one);
    } while (written < 0 && errno == EINTR);
}

/* Makes it unreadable again (reads its counter back to zero; non-blocking). */
static inline void cthread_stop_descriptor_clear(int descriptor) {
    uint64_t count;
    ssize_t got;
    do {
        got = read(descriptor, &count, sizeof count);
    } while (got < 0 && errno == EINTR);
}

#endif
