/* Thread-local error text: every failing call writes "fn: problem" here. */
#include "util_internal.h"

#include <stdarg.h>

#include <stdio.h>

static _Thread_local char zg_err_buf[1024];

const char *zg_last_error(void) { return zg_err_buf; }

void zg_clear_error(void) { zg_err_buf[0] = '\0'; }

static void set_v(const char *fmt, va_list ap) { vsnprintf(zg_err_buf, sizeof zg_err_buf, fmt, ap); }

void zg_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_v(fmt, ap);
    va_end(ap);
}

int zg__fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_v(fmt, ap);
    va_end(ap);
    return code;
}

void *zg__fail_null(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_v(fmt, ap);
    va_end(ap);
    return NULL;
}
