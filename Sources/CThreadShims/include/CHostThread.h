#ifndef C_HOST_THREAD_H
#define C_HOST_THREAD_H

#include <stddef.h>

/* Foundation's Thread cannot name itself from inside (setting `name` from
 * outside before start never reaches the kernel) and copies its creator's
 * signal mask, which on a libdispatch worker blocks almost every signal. A
 * bare pthread whose first act is to name itself and clear its mask gives
 * `ps -T`/`top -H` a readable name and lets plugin code receive signals as in
 * any normal process. */
typedef void (*cthread_body)(void *context);

/* Starts a thread named `name` (cut to the kernel's 15 bytes) that clears its
 * signal mask when `clear_mask` is non-zero, then runs `body(context)`. Its
 * stack comes from a pool where the kernel allows it (see CHostThread.c);
 * nobody joins it. Returns 0, or the error number of pthread_create. */
int cthread_spawn(const char *name, int clear_mask, cthread_body body, void *context);

/* The calling thread's stack: its lowest address and its size. Swift's Glibc
 * module does not export the GNU pthread_getattr_np. Returns 0 or an error number. */
int cthread_current_stack(void **low, size_t *size);

/* The calling thread's kernel thread id, as in /proc/self/task/<tid>. */
int cthread_gettid(void);

#endif
