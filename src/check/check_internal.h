/* The check layer: the gradient-lifecycle sanitizer. It listens to the
 * events of tensor/grad_events.h and keeps, per tensor, optimizer and
 * scheduler, a record in one open-addressing map keyed by the object's
 * address (san_table.c); the rules live in sanitizer.c, the reports, their
 * counters and the trace lines in san_report.c. Not installed. */
#ifndef ZG_CHECK_INTERNAL_H
#define ZG_CHECK_INTERNAL_H

#include "../autograd/autograd_internal.h"

enum { SAN_TENSOR = 1, SAN_OPTIM, SAN_SCHED };

typedef struct {
    const void *key;
    uint8_t type;
    /* A tensor's grads since they were last cleared or used by a step:
     * `passes` backward passes, the first and the last of them numbered
     * (every backward gets the next number). */
    uint32_t passes;
    uint64_t first_pass, last_pass;
    bool consumed;      /* a step used them and nothing cleared them since */
    bool leftover;      /* a backward then added onto the used grads */
    bool scaled;        /* a scaled loss's backward fed them; unscale_ has not run */
    bool unscaled_pass; /* a backward of an unscaled loss fed them */
    bool handset;       /* set by zg_tensor_set_grad, not by a backward */
    /* Since the last step that used it: a zero_grad erased fresh grads no
     * step used (erased), or fresh grads it may clear (zeroed_fresh: read,
     * clipped, non-finite, a by-product of a used pass; zeroed_nonfinite:
     * non-finite ones, a skipped batch); the first such call. */
    bool erased, zeroed_fresh, zeroed_nonfinite;
    const char *erase_call;
    bool is_param;      /* a module registered it as a parameter */
    bool orphan_listed; /* in the list of parameters held by no optimizer */
    float scale;        /* the loss scale behind `scaled` */
    int64_t read_step;  /* the step a scaled read of it was last reported at */
    int holders;        /* live optimizers holding it */
    int owner;          /* number of the last optimizer seen holding it */
    /* An optimizer: its number (in order of first sight), steps taken or
     * skipped by the scaler, and the declared accumulation window. */
    int number, accum;
    int erase_streak; /* its latest windows in a row that erased grads */
    int64_t steps;
    /* A scheduler: the optimizer's step count at its last step. */
    int64_t at_steps;
    bool has_stepped;
} zg__san_entry;

/* The record of key, or NULL. */
zg__san_entry *zg__san_find(const void *key);
/* The record of key, created (zeroed, of the given type) if missing; NULL
 * when out of memory (the sanitizer then stays silent about key). */
zg__san_entry *zg__san_get(const void *key, int type);
/* Removes the record of key, if any. */
void zg__san_erase(const void *key);
/* Removes every record but those for which keep() is true. */
void zg__san_clear(bool (*keep)(zg__san_entry *e));
/* Whether the map holds anything (its frees must still be heard). */
bool zg__san_nonempty(void);

/* Parameter names gathered for one report: "0.weight, 0.bias", each
 * qualified by its optimizer's number when several optimizers live. */
#define ZG__SAN_NAMES_MAX 600
typedef struct {
    char buf[ZG__SAN_NAMES_MAX];
    size_t len;
    int n, dropped;
} zg__san_names;
void zg__san_names_add(zg__san_names *l, const zg_tensor *t, int optimizers_live);

/* One report: "zgrad sanitizer: <kind> at step <step>: <what> (<names>) at
 * <call>; fix: <fix>". Counted, kept as the last report, given to the
 * report function or printed (the first few of each kind); in error mode
 * the error is set and ZG_ERR_STATE returned, else 0. */
int zg__san_report(int mode, zg_sanitize_kind kind, int64_t step, const char *what, const zg__san_names *names,
                   const char *call, const char *fix);
/* Forgets the counters and the last report (san_report.c also answers the
 * public queries about them and holds the report function). */
void zg__san_reports_reset(void);

/* Trace mode: one line per optimizer step for the first steps, the loop's
 * events in order and the pattern they make. `word` is "forward",
 * "backward", "zero_grad", "unscale", "clip", "step", "skip" or "sched";
 * opt_number names the optimizer of a step when several live (else 0). */
void zg__san_trace(const char *word, int opt_number);
/* Prints the open line (at reset, mode change and exit). */
void zg__san_trace_flush(void);
void zg__san_trace_reset(void);

#endif
