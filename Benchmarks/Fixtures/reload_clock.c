/* For reload benchmarks: on its first svc_loop after each svc_create, logs
 * "first-loop <CLOCK_MONOTONIC ns> <version>" at SVC_LOG_ERROR. RELOAD_VERSION
 * tells builds apart; BLOB_SIZE makes the image that much larger (read-only
 * data that is part of the file, as a large plugin's would be).
 *
 * KEPT_STATE_SIZE (bytes, at least 4096) makes it a plugin that keeps that
 * much state across its runs, as a real one would: svc_create reads what was
 * kept (state_load), checks it (tag, size, and a checksum of every byte) while
 * copying it into its own buffer, and svc_stop hands the buffer back
 * (state_save) with its generation advanced by one. The first-loop line then
 * ends in " kept=<bytes read> generation=<generation read> state=<ok|none|bad>",
 * so that a benchmark can tell every reload carried the state whole, then
 * " stop=<ns> saved=<ns> create=<ns> read=<ns>": when the previous run's
 * svc_stop began and its state_save returned, and when this run's svc_create
 * began and had read the state (0 when unknown). The previous run's two go
 * through `[config] clock_file`, a small file both runs map: svc_stop only
 * stores into it, and the mapping is made after the first-loop stamp, so
 * that no extra system call lands in the measured time. */
#define _POSIX_C_SOURCE 200809L
#include "servicehost.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef RELOAD_VERSION
#define RELOAD_VERSION "1"
#endif
#ifndef BLOB_SIZE
#define BLOB_SIZE 16
#endif

__attribute__((used)) static const unsigned char blob[BLOB_SIZE] = {1};

#ifdef KEPT_STATE_SIZE
/* The kept bytes: this header, then words of payload filling KEPT_STATE_SIZE. */
typedef struct kept_header {
    char tag[8];          /* "RLDSTATE" */
    uint64_t generation;  /* how many runs saved it */
    uint64_t checksum;    /* of the payload (payload_checksum) */
} kept_header;

#define PAYLOAD_WORDS ((KEPT_STATE_SIZE - sizeof(kept_header)) / sizeof(uint64_t))
_Static_assert(KEPT_STATE_SIZE % sizeof(uint64_t) == 0 && KEPT_STATE_SIZE >= 4096, "KEPT_STATE_SIZE: a multiple of 8, 4096 or more");

static long long now_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* `[config] clock_file` mapped shared: [0] when svc_stop began, [1] when its
 * state_save returned. NULL without one. */
static volatile long long *map_clock(const svc_host *host) {
    const char *path = host->config("clock_file");
    if (path == NULL) return NULL;
    int descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (descriptor < 0) return NULL;
    void *mapped = ftruncate(descriptor, 4096) == 0
        ? mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, 0) : MAP_FAILED;
    close(descriptor);
    return mapped == MAP_FAILED ? NULL : mapped;
}

/* Copies `count` payload words from `from` (no particular alignment: the
 * host's buffer has none) to `to`, and returns their checksum. */
static uint64_t copy_payload(uint64_t *to, const unsigned char *from, size_t count) {
    uint64_t sum = 0;
    for (size_t i = 0; i < count; i++) {
        uint64_t word;
        memcpy(&word, from + i * sizeof word, sizeof word);
        to[i] = word;
        sum += word ^ (uint64_t)i;
    }
    return sum;
}
#endif

typedef struct state {
    const svc_host *host;
    int looped;
#ifdef KEPT_STATE_SIZE
    unsigned char *kept;    /* KEPT_STATE_SIZE bytes: a kept_header, then the payload */
    size_t read;            /* how many bytes state_load gave */
    uint64_t generation;    /* as read */
    const char *verdict;    /* "ok", "none" (nothing kept: the first run) or "bad" */
    long long created;      /* when svc_create began */
    long long read_done;    /* when it had read and checked the state */
    volatile long long *clock;
#endif
} state;

SVC_EXPORT uint32_t svc_abi_version(void) { return SVC_ABI_VERSION; }
SVC_EXPORT const char *svc_plugin_version(void) { return RELOAD_VERSION; }

SVC_EXPORT int32_t svc_create(const svc_host *host, void **ctx) {
#ifdef KEPT_STATE_SIZE
    long long created = now_ns();
#endif
    state *self = calloc(1, sizeof *self);
    if (self == NULL) return -12;
    self->host = host;
#ifdef KEPT_STATE_SIZE
    self->created = created;
    if (!SVC_HOST_HAS(host, state_load) || !SVC_HOST_HAS(host, state_save)) {
        host->log(SVC_LOG_ERROR, "reload_clock: this host keeps no state");
        free(self);
        return -38;
    }
    self->kept = malloc(KEPT_STATE_SIZE);
    if (self->kept == NULL) {
        free(self);
        return -12;
    }
    kept_header header = {{'R', 'L', 'D', 'S', 'T', 'A', 'T', 'E'}, 0, 0};
    uint64_t *payload = (uint64_t *)(self->kept + sizeof header);
    size_t size = 0;
    const unsigned char *kept = host->state_load(&size);
    self->read = size;
    if (kept == NULL || size == 0) {
        /* The first run: a payload of pseudo-random words. */
        uint64_t x = 0x9E3779B97F4A7C15u;
        for (size_t i = 0; i < PAYLOAD_WORDS; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            payload[i] = x;
            header.checksum += x ^ (uint64_t)i;
        }
        self->verdict = "none";
    } else {
        kept_header old = {{0}, 0, 0};
        if (size >= sizeof old) memcpy(&old, kept, sizeof old);
        int whole = size == KEPT_STATE_SIZE && memcmp(old.tag, header.tag, sizeof old.tag) == 0;
        /* Every byte is read and copied, as a plugin reading its state back would. */
        uint64_t sum = whole ? copy_payload(payload, kept + sizeof header, PAYLOAD_WORDS) : 0;
        whole = whole && sum == old.checksum;
        header = old;
        self->generation = old.generation;
        self->verdict = whole ? "ok" : "bad";
    }
    memcpy(self->kept, &header, sizeof header);
    self->read_done = now_ns();
#endif
    *ctx = self;
    return 0;
}

SVC_EXPORT int32_t svc_loop(void *ctx) {
    state *self = ctx;
    if (!self->looped) {
        self->looped = 1;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        char line[256];
#ifdef KEPT_STATE_SIZE
        self->clock = map_clock(self->host);
        snprintf(line, sizeof line, "first-loop %lld %s kept=%zu generation=%llu state=%s stop=%lld saved=%lld create=%lld read=%lld",
                 (long long)now.tv_sec * 1000000000LL + now.tv_nsec, RELOAD_VERSION,
                 self->read, (unsigned long long)self->generation, self->verdict,
                 self->clock ? self->clock[0] : 0, self->clock ? self->clock[1] : 0, self->created, self->read_done);
#else
        snprintf(line, sizeof line, "first-loop %lld %s",
                 (long long)now.tv_sec * 1000000000LL + now.tv_nsec, RELOAD_VERSION);
#endif
        self->host->log(SVC_LOG_ERROR, line);
    }
    return SVC_CONTINUE;
}

SVC_EXPORT void svc_stop(void *ctx) {
    state *self = ctx;
#ifdef KEPT_STATE_SIZE
    if (self->clock) self->clock[0] = now_ns();
    /* The state changes between runs: the generation, and the first payload
     * word with it (the checksum follows). Then all of it is handed back. */
    kept_header header;
    memcpy(&header, self->kept, sizeof header);
    uint64_t *payload = (uint64_t *)(self->kept + sizeof header);
    header.generation += 1;
    header.checksum += header.generation - payload[0];  /* word 0's term: word ^ 0 */
    payload[0] = header.generation;
    memcpy(self->kept, &header, sizeof header);
    int32_t saved = self->host->state_save(self->kept, KEPT_STATE_SIZE);
    if (self->clock) {
        self->clock[1] = now_ns();
        munmap((void *)self->clock, 4096);
    }
    if (saved != 0) {
        char line[96];
        snprintf(line, sizeof line, "reload_clock: state_save returned %d", (int)saved);
        self->host->log(SVC_LOG_ERROR, line);
    }
    free(self->kept);
#endif
    free(self);
}
