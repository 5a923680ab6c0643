/* Bare-thread floor for Benchmarks/side-by-side.py's scale workload: starts
 * argv[1] threads (glibc's default stack size, from RLIMIT_STACK, as the
 * host's service threads have) that each loop on nanosleep(1 s) and do
 * nothing else, with the timer slack in argv[2] nanoseconds (default 10 ms,
 * what the host gives a service with interval_ms = 1000), then sleeps
 * forever. What the kernel charges for that many threads waking once a
 * second, with no work in them. Prints "started N" on standard output once
 * every thread is created (or "started N of M: REASON" when one could not
 * be, and keeps the N it has). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static unsigned long slack_ns = 10000000UL;

static void *sleeper(void *unused) {
    (void)unused;
    prctl(PR_SET_TIMERSLACK, slack_ns, 0, 0, 0);
    const struct timespec second = {1, 0};
    for (;;) nanosleep(&second, NULL);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s THREADS [SLACK_NS]\n", argv[0]);
        return 2;
    }
    long count = strtol(argv[1], NULL, 10);
    if (argc > 2) slack_ns = strtoul(argv[2], NULL, 10);
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    long started = 0;
    int error = 0;
    for (; started < count; started++) {
        pthread_t thread;
        if ((error = pthread_create(&thread, &attributes, sleeper, NULL)) != 0) break;
    }
    if (error != 0) {
        printf("started %ld of %ld: %s\n", started, count, strerror(error));
    } else {
        printf("started %ld\n", started);
    }
    fflush(stdout);
    for (;;) pause();
}
