/* Idle program for Benchmarks/side-by-side.py, the supervisord twin of
 * side_idle_plugin.c: wakes once a second and does nothing, forever. */
#define _POSIX_C_SOURCE 200809L
#include <time.h>

int main(void) {
    const struct timespec second = {1, 0};
    for (;;) nanosleep(&second, NULL);
}
