/*
 * symbol_mistakes.c -- the two most common ways a plugin fails to export an
 * entry point, for `servicehost check`'s hints. -DMISTAKE=1: svc_abi_version
 * carries a C++-mangled name (as a C++ file without extern "C" gives it);
 * -DMISTAKE=2: svc_loop is hidden. Standalone on purpose: servicehost.h
 * declares the entry points visible, which is what prevents these mistakes.
 */
#include <stddef.h>
#include <stdint.h>

#define VISIBLE __attribute__((visibility("default")))

#if MISTAKE == 1
VISIBLE uint32_t mangled_abi_version(void) __asm__("_Z15svc_abi_versionv");
VISIBLE uint32_t mangled_abi_version(void) { return 1; }
#else
VISIBLE uint32_t svc_abi_version(void) { return 1; }
#endif

VISIBLE int32_t svc_create(const void *host, void **ctx) { (void)host; *ctx = NULL; return 0; }

#if MISTAKE == 2
__attribute__((visibility("hidden")))
#else
VISIBLE
#endif
int32_t svc_loop(void *ctx) { (void)ctx; return 0; }

VISIBLE void svc_stop(void *ctx) { (void)ctx; }
