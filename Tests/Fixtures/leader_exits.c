/* An executable whose main thread ends with the exit system call (not
 * exit_group) while another thread lives on: /proc shows its leader as a
 * zombie, yet the process runs. The host must not take such a worker for
 * dead (it would ask its fork server for a status the process cannot give). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

static void *linger(void *unused) {
    (void)unused;
    sleep(60);
    return NULL;
}

int main(void) {
    pthread_t thread;
    if (pthread_create(&thread, NULL, linger, NULL) != 0) return 1;
    syscall(SYS_exit, 0);
    return 0;
}
