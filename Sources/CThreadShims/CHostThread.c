#define _GNU_SOURCE
#include "CHostThread.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Linux 6.13's lightweight guard regions; Debian 12's headers predate them. */
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

/* ---- The stack pool -------------------------------------------------------
 *
 * glibc gives every thread a mapping of its own for its stack and a PROT_NONE
 * mapping below it for its guard: two of the vm.max_map_count (65,530 by
 * default) mappings a process may have. With a thread per service, 10,000
 * services took 20,000 mappings for stacks alone, and past the limit threads
 * could not be created. Here stacks are cut from slabs, each slab one
 * mapping, with a guard region below every stack installed by
 * MADV_GUARD_INSTALL: the kernel faults on those pages like on a PROT_NONE
 * mapping, without splitting the slab's mapping. The guards are larger than
 * glibc's one page, at no cost, so a large stack frame does not jump over one.
 * Slabs double from CTHREAD_FIRST_SLAB_STACKS stacks to CTHREAD_SLAB_STACKS,
 * so that a worker process with two threads reserves the address space of 4
 * stacks, not 64.
 * Where the kernel has no guard install (before 6.13), or a slab cannot be
 * mapped, a thread gets glibc's own stack and guard as before.
 *
 * A pooled thread is joinable, not detached: when its body returns it puts its
 * stack on the `exited` list, and the stack is reused only once
 * pthread_tryjoin_np says the thread has ended (the kernel cleared its thread
 * id, after which it touches its stack no more). tryjoin never waits, so a
 * thread held up after its body (in a thread-local destructor of a plugin)
 * only keeps its own stack from reuse. */

#define CTHREAD_FIRST_SLAB_STACKS 4
#define CTHREAD_SLAB_STACKS 64
#define CTHREAD_GUARD_SIZE (64 * 1024)
#define CTHREAD_REUSE_TRIES 4

struct cthread_stack {
    char *low;                  /* the lowest usable byte, just above the guard */
    pthread_t thread;           /* its thread, once on the exited list */
    struct cthread_stack *next;
};

static struct {
    pthread_mutex_t lock;
    int usable;                 /* 1 until a slab or a guard could not be made */
    size_t stack_size;
    size_t slabs;
    struct cthread_stack *ready;
    struct cthread_stack *exited, *exited_tail;
} pool = { PTHREAD_MUTEX_INITIALIZER, 1, 0, 0, NULL, NULL, NULL };

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* A forked child has one thread and none of its parent's: their stacks are
 * not its to reuse, and the lock may have been held by a thread that is gone. */
static void pool_forget_in_child(void) {
    pthread_mutex_init(&pool.lock, NULL);
    pool.ready = NULL;
    pool.exited = pool.exited_tail = NULL;
    pool.slabs = 0;
}

static void pool_setup(void) {
    size_t size = 0;
    pthread_attr_t defaults;
    /* The size glibc would give (from RLIMIT_STACK), so that a plugin sees the stack it would anyway. */
    if (pthread_getattr_default_np(&defaults) == 0) {
        pthread_attr_getstacksize(&defaults, &size);
        pthread_attr_destroy(&defaults);
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (size < 256 * 1024) size = 256 * 1024;
    pool.stack_size = (size + page - 1) / page * page;
    pthread_atfork(NULL, NULL, pool_forget_in_child);
}

/* Maps one more slab onto the ready list; returns 0 or an error number. */
static int pool_grow_locked(void) {
    size_t count = CTHREAD_SLAB_STACKS;
    if (pool.slabs < 4) count = (size_t)CTHREAD_FIRST_SLAB_STACKS << pool.slabs;
    size_t slot = CTHREAD_GUARD_SIZE + pool.stack_size;
    size_t length = slot * count;
    char *slab = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (slab == MAP_FAILED) return errno;
    struct cthread_stack *stacks = calloc(count, sizeof *stacks);
    if (stacks == NULL) {
        munmap(slab, length);
        return ENOMEM;
    }
    /* Stacks touch a few pages each: never a 2 MiB huge page for one. */
    (void)madvise(slab, length, MADV_NOHUGEPAGE);
    for (size_t index = 0; index < count; index++) {
        if (madvise(slab + index * slot, CTHREAD_GUARD_SIZE, MADV_GUARD_INSTALL) != 0) {
            int error = errno;
            munmap(slab, length);
            free(stacks);
            return error;
        }
    }
    for (size_t index = count; index-- > 0;) {
        stacks[index].low = slab + index * slot + CTHREAD_GUARD_SIZE;
        stacks[index].next = pool.ready;
        pool.ready = &stacks[index];
    }
    pool.slabs += 1;
    return 0;
}

/* A stack for a new thread, or NULL: use glibc's. */
static struct cthread_stack *pool_take(void) {
    pthread_once(&pool_once, pool_setup);
    pthread_mutex_lock(&pool.lock);
    struct cthread_stack *stack = NULL;
    for (int tries = 0; tries < CTHREAD_REUSE_TRIES && pool.exited != NULL && stack == NULL; tries++) {
        struct cthread_stack *oldest = pool.exited;
        pool.exited = oldest->next;
        if (pool.exited == NULL) pool.exited_tail = NULL;
        oldest->next = NULL;
        if (pthread_tryjoin_np(oldest->thread, NULL) == 0) {
            stack = oldest;
        } else if (pool.exited_tail != NULL) {
            pool.exited_tail->next = oldest;
            pool.exited_tail = oldest;
        } else {
            pool.exited = pool.exited_tail = oldest;
        }
    }
    if (stack == NULL && pool.ready == NULL && pool.usable) {
        /* No guard install (an older kernel) stays so. A slab that cannot be
         * mapped now (at vm.max_map_count, out of memory) may be later; this
         * thread tries glibc's stack, whose error is reported for it alone. */
        if (pool_grow_locked() == EINVAL) pool.usable = 0;
    }
    if (stack == NULL && pool.ready != NULL) {
        stack = pool.ready;
        pool.ready = stack->next;
        stack->next = NULL;
    }
    pthread_mutex_unlock(&pool.lock);
    return stack;
}

static void pool_put_ready(struct cthread_stack *stack) {
    pthread_mutex_lock(&pool.lock);
    stack->next = pool.ready;
    pool.ready = stack;
    pthread_mutex_unlock(&pool.lock);
}

static void pool_put_exited(struct cthread_stack *stack, pthread_t thread) {
    pthread_mutex_lock(&pool.lock);
    stack->thread = thread;
    stack->next = NULL;
    if (pool.exited_tail != NULL) pool.exited_tail->next = stack;
    else pool.exited = stack;
    pool.exited_tail = stack;
    pthread_mutex_unlock(&pool.lock);
}


/* ---- Threads -------------------------------------------------------------- */

struct cthread_start {
    cthread_body body;
    void *context;
    int clear_mask;
    struct cthread_stack *stack;
    char name[16];
};

/* Run when the body returns, and also when plugin code ends the thread with
 * pthread_exit (which runs cleanup handlers), so that its stack is reused. */
static void cthread_release_stack(void *argument) {
    if (argument != NULL) pool_put_exited(argument, pthread_self());
}

static void *cthread_trampoline(void *argument) {
    struct cthread_start start = *(struct cthread_start *)argument;
    free(argument);
    if (start.name[0] != '\0') pthread_setname_np(pthread_self(), start.name);
    if (start.clear_mask) {
        sigset_t empty;
        sigemptyset(&empty);
        pthread_sigmask(SIG_SETMASK, &empty, NULL);
    }
    pthread_cleanup_push(cthread_release_stack, start.stack);
    start.body(start.context);
    pthread_cleanup_pop(1);
    return NULL;
}

int cthread_spawn(const char *name, int clear_mask, cthread_body body, void *context) {
    struct cthread_start *start = calloc(1, sizeof *start);
    if (start == NULL) return ENOMEM;
    start->body = body;
    start->context = context;
    start->clear_mask = clear_mask;
    if (name != NULL) strncpy(start->name, name, sizeof start->name - 1);
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    start->stack = pool_take();
    if (start->stack != NULL) {
        pthread_attr_setstack(&attributes, start->stack->low, pool.stack_size);
    } else {
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    }
    pthread_t thread;
    int result = pthread_create(&thread, &attributes, cthread_trampoline, start);
    pthread_attr_destroy(&attributes);
    if (result != 0) {
        if (start->stack != NULL) pool_put_ready(start->stack);
        free(start);
    }
    return result;
}

int cthread_current_stack(void **low, size_t *size) {
    pthread_attr_t attributes;
    int result = pthread_getattr_np(pthread_self(), &attributes);
    if (result != 0) return result;
    result = pthread_attr_getstack(&attributes, low, size);
    pthread_attr_destroy(&attributes);
    return result;
}

int cthread_gettid(void) {
    return (int)syscall(SYS_gettid);
}
