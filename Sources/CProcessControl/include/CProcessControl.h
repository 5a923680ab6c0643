#ifndef C_PROCESS_CONTROL_H
#define C_PROCESS_CONTROL_H

/* prctl is variadic, and Glibc's Swift module does not export <sys/prctl.h>:
 * Swift can call neither, so this makes the one call the host needs.
 * Marks the calling process a child subreaper: orphaned descendants (the
 * workers, whose middle process exits at once) are adopted by it instead of
 * by init, so it can wait for them. Returns 0, or -1 with errno set. */
int cprocess_become_subreaper(void);

#endif
