/*
 * fixture_support.h -- what the C test fixtures share: logging through the
 * host and reading [config] options. Static, so each fixture stays one
 * self-contained shared object.
 */
#ifndef FIXTURE_SUPPORT_H
#define FIXTURE_SUPPORT_H

#include "servicehost.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((format(printf, 3, 4)))
__attribute__((unused)) static void fixture_log(const svc_host *host, int32_t level, const char *format, ...) {
    if (host == NULL || host->log == NULL) {
        return;
    }
    char message[1024];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof message, format, arguments);
    va_end(arguments);
    host->log(level, message);
}

__attribute__((unused)) static const char *fixture_config(const svc_host *host, const char *key) {
    if (host == NULL || host->config == NULL) {
        return NULL;
    }
    return host->config(key);
}

/* Parses a base-10 integer that fits an int32_t, allowing surrounding
 * whitespace and TOML's digit separators ("1_000"). Returns false when the
 * text is not such a number. */
__attribute__((unused)) static bool parse_int(const char *text, long *out) {
    char digits[64];
    size_t length = 0;
    for (const char *p = text; *p != '\0'; p++) {
        if (*p == '_') {
            continue;
        }
        if (length + 1 >= sizeof digits) {
            return false;
        }
        digits[length++] = *p;
    }
    digits[length] = '\0';

    char *end = NULL;
    errno = 0;
    long value = strtol(digits, &end, 10);
    if (end == digits || errno == ERANGE) {
        return false;
    }
    while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r') {
        end++;
    }
    if (*end != '\0' || value < INT32_MIN || value > INT32_MAX) {
        return false;
    }
    *out = value;
    return true;
}

#endif
