#ifndef C_HOST_SIGNALS_H
#define C_HOST_SIGNALS_H

/* The host's signal handlers, in C because a handler runs in signal context,
 * where only async-signal-safe calls are allowed and Swift's runtime is not.
 * Each handler writes the signal's number as one byte to a pipe that a host
 * thread reads. Handlers, unlike SIG_IGN, are reset to the default across
 * exec, so programs that plugins start get normal dispositions, and no thread
 * needs to block these signals. */

/* Creates the pipe the handlers write to (close-on-exec; the write end non-
 * blocking, so a handler never blocks on a full pipe) and returns its read
 * end, or -1 with errno set. pipe2 is a GNU extension Swift's Glibc hides. */
int csignal_open_pipe(void);

/* Installs the writing handler for `signo` (SA_RESTART) and remembers it for
 * csignal_reassert. Returns 0, or -1 with errno set. */
int csignal_install(int signo);

/* Installs a handler that does nothing for `signo`: a write to a closed pipe
 * then fails with EPIPE instead of killing the process, and unlike SIG_IGN
 * the disposition does not survive exec. Returns 0, or -1 with errno set. */
int csignal_install_noop(int signo);

/* Installs again every handler installed so far, in case plugin code replaced
 * one: a few sigaction calls. Returns how many it found replaced. */
int csignal_reassert(void);

#endif
