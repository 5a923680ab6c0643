/* Crash-loop program for Benchmarks/side-by-side.py, the supervisord twin of
 * side_crash_plugin.c: appends one byte to the file named by argv[1] (so the
 * file's size counts starts), then dies of SIGSEGV. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return 1;
    ssize_t written = write(fd, "x", 1);
    close(fd);
    if (written != 1) return 1;
    raise(SIGSEGV);
    return 1;
}
