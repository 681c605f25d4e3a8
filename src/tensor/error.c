/* Thread-local error text: every failing call writes "fn: problem" here. */
#include "../internal.h"

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

const char *zg__shape_str(const zg_tensor *t, char *buf, size_t n) {
    if (!t) {
        snprintf(buf, n, "(null)");
        return buf;
    }
    size_t used = 0;
    used += (size_t)snprintf(buf + used, n - used, "[");
    for (int i = 0; i < t->ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}
