#ifndef CPROCESS_SHIMS_H
#define CPROCESS_SHIMS_H

#include <spawn.h>
#include <sys/types.h>

/* pidfd_open(2): glibc declares it in <sys/pidfd.h>, which Swift's Glibc
 * module does not include. A descriptor that becomes readable when the
 * process exits, so the host notices a worker's death even when another
 * process still holds the worker's socket open. -1 with errno on failure. */
int cprocess_pidfd_open(pid_t pid);

/* prctl(PR_SET_PDEATHSIG, signal): prctl is variadic, which Swift cannot call. */
int cprocess_set_parent_death_signal(int signal);

/* posix_spawn_file_actions_addclosefrom_np (glibc >= 2.34) needs _GNU_SOURCE,
 * which Swift's Glibc module is not built with: spawned processes inherit no
 * descriptor at or above `lowest`. */
int cprocess_spawn_close_from(posix_spawn_file_actions_t *actions, int lowest);

/* The POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF attributes with an empty
 * mask and every catchable signal reset to its default: a spawned process
 * starts as a normal one, whatever the spawning thread had blocked or ignored. */
int cprocess_spawnattr_reset_signals(posix_spawnattr_t *attributes);

/* Unblocks every signal and resets every catchable one to SIG_DFL, in the
 * calling process (a worker, before it runs plugin code). */
void cprocess_reset_signals(void);

#endif
