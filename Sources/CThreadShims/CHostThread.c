#define _GNU_SOURCE
#include "CHostThread.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct cthread_start {
    cthread_body body;
    void *context;
    int clear_mask;
    char name[16];
};

static void *cthread_trampoline(void *argument) {
    struct cthread_start start = *(struct cthread_start *)argument;
    free(argument);
    if (start.name[0] != '\0') pthread_setname_np(pthread_self(), start.name);
    if (start.clear_mask) {
        sigset_t empty;
        sigemptyset(&empty);
        pthread_sigmask(SIG_SETMASK, &empty, NULL);
    }
    start.body(start.context);
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
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int result = pthread_create(&thread, &attributes, cthread_trampoline, start);
    pthread_attr_destroy(&attributes);
    if (result != 0) free(start);
    return result;
}

int cthread_gettid(void) {
    return (int)syscall(SYS_gettid);
}
