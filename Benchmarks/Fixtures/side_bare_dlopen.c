/* Bare-dlopen floor for Benchmarks/side-by-side.py's thread scale workload:
 * dlopens (RTLD_NOW | RTLD_LOCAL, as the host does) every file named on
 * standard input, one path a line, in order, and prints one line:
 *   "opened N in S s; 1,000 in S s; half in S s"
 * (or "failed at N: REASON"). glibc's loader walks every image already loaded
 * several times per dlopen, so opening N distinct images in one process takes
 * time quadratic in N: this is what a host that keeps each thread-isolated
 * service's private image in its own address space cannot go below. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

int main(void) {
    size_t capacity = 1024, count = 0;
    char **paths = malloc(capacity * sizeof *paths);
    char line[4096];
    while (paths != NULL && fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0') continue;
        if (count == capacity) {
            capacity *= 2;
            paths = realloc(paths, capacity * sizeof *paths);
            if (paths == NULL) break;
        }
        paths[count++] = strdup(line);
    }
    if (paths == NULL) {
        printf("failed at 0: out of memory\n");
        return 1;
    }
    double begun = seconds(), thousand = 0, half = 0;
    for (size_t index = 0; index < count; index++) {
        if (dlopen(paths[index], RTLD_NOW | RTLD_LOCAL) == NULL) {
            printf("failed at %zu: %s\n", index, dlerror());
            return 1;
        }
        if (index + 1 == 1000) thousand = seconds() - begun;
        if (index + 1 == count / 2) half = seconds() - begun;
    }
    printf("opened %zu in %.3f s; 1,000 in %.3f s; half in %.3f s\n", count, seconds() - begun, thousand, half);
    return 0;
}
