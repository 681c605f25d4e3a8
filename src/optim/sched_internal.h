/* Private to the schedulers (scheduler.c: the object, its record per
 * optimizer, the formulas and step; sched_new.c: the constructors;
 * sched_spec.c: the --schedule spec parser; sched_state.c: the state as
 * JSON, save and load). */
#ifndef ZG_OPTIM_SCHED_INTERNAL_H
#define ZG_OPTIM_SCHED_INTERNAL_H

#include "optim_internal.h"

#define SCHED_FORMAT "zgrad.sched.v1"

/* What PyTorch keeps in a param_group for its schedulers (see
 * scheduler.c). */
typedef struct {
    bool has_initial;
    double initial_lr;
    double max_lr, min_lr;             /* OneCycleLR */
    double max_momentum, base_momentum; /* OneCycleLR with cycle_momentum */
} zg__sched_extra;

typedef struct zg__sched_record {
    struct zg__sched_record *next;
    const zg_optim *opt;
    int refs;
    int n;
    zg__sched_extra *g;
} zg__sched_record;

typedef enum { K_STEP, K_COSINE, K_LINEAR, K_ONECYCLE, K_SEQUENTIAL } zg__sched_kind;

/* PyTorch's class names, by kind. */
extern const char *const zg__sched_kind_names[];

struct zg_sched {
    zg__sched_kind kind;
    zg_optim *opt;
    zg__sched_record *rec; /* NULL for SequentialLR and for parsed states */
    int n_groups;
    int64_t last_epoch;
    int64_t step_count; /* PyTorch's _step_count */
    double *base_lrs;   /* n_groups */
    double *last_lrs;   /* n_groups */
    bool owned;         /* a SequentialLR's child */

    /* StepLR */
    int64_t step_size;
    double gamma;
    /* CosineAnnealingLR */
    int64_t t_max;
    double eta_min;
    /* LinearLR */
    double start_factor, end_factor;
    int64_t total_iters;
    /* OneCycleLR (its per-group bounds are in rec) */
    int64_t total_steps;
    double pct_start, div_factor, final_div_factor;
    bool anneal_linear, three_phase, cycle_momentum, use_beta1;
    /* SequentialLR */
    zg_sched **children;
    int n_children;
    int64_t *milestones;

    /* A parsed state only: OneCycleLR's per-group bounds to write into rec. */
    zg__sched_extra *loaded_extra;
};

/* A scheduler of the kind over the optimizer's n_groups groups, its lrs
 * zero, last_epoch -1 (NULL when out of memory). */
zg_sched *zg__sched_alloc(zg__sched_kind kind, zg_optim *opt, int n_groups);
/* The optimizer's record with room for n groups (one more reference). */
zg__sched_record *zg__sched_record_acquire(const zg_optim *opt, int n);
/* Whether the scheduler's hyperparameters / group g's OneCycleLR bounds
 * are valid; if not, why, in msg. */
bool zg__sched_check_hyper(const zg_sched *s, char *msg, size_t n);
bool zg__sched_check_extra(const zg_sched *s, const zg__sched_extra *e, int g, char *msg, size_t n);
/* Group g's current lr in the optimizer. */
double zg__sched_group_lr(const zg_sched *s, int g);
/* PyTorch's step(): advances last_epoch (or sets it to epoch) and writes
 * the new lrs (and momenta) into the optimizer. */
int zg__sched_base_step(zg_sched *s, bool has_epoch, int64_t epoch);

#endif
