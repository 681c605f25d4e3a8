/* Private to the schedulers (scheduler.c: the object, validation, step;
 * sched_formula.c: each kind's lr formulas; sched_new.c: the constructors;
 * sched_composite.c: SequentialLR and ChainedScheduler; sched_plateau.c:
 * ReduceLROnPlateau; sched_spec.c: the --schedule spec parser;
 * sched_state.c: the state as JSON, save and load). */
#ifndef ZG_OPTIM_SCHED_INTERNAL_H
#define ZG_OPTIM_SCHED_INTERNAL_H

#include "optim_internal.h"

#define SCHED_FORMAT "zgrad.sched.v1"

typedef enum {
    K_STEP,
    K_COSINE,
    K_LINEAR,
    K_ONECYCLE,
    K_SEQUENTIAL,
    K_EXPONENTIAL,
    K_MULTISTEP,
    K_CONSTANT,
    K_POLYNOMIAL,
    K_LAMBDA,
    K_MULTIPLICATIVE,
    K_WARM_RESTARTS,
    K_CHAINED,
    K_PLATEAU,
} zg__sched_kind;

/* PyTorch's class names, by kind. */
extern const char *const zg__sched_kind_names[];

/* The three ways PyTorch's schedulers reach get_lr. */
typedef enum {
    ZG__SCHED_INITIAL, /* the constructor's step (_initial_step, _is_initial) */
    ZG__SCHED_NEXT,    /* step() */
    ZG__SCHED_EPOCH,   /* step(epoch), _update_lr(epoch): the closed form where the kind has one */
} zg__sched_mode;

/* The counters a step advances. */
typedef struct {
    int64_t last_epoch;
    int64_t step_count; /* PyTorch's _step_count */
    int64_t t_cur, t_i; /* CosineAnnealingWarmRestarts */
} zg__sched_pos;

/* ReduceLROnPlateau's settings and what it has seen. */
typedef struct {
    bool mode_max, threshold_abs;
    bool has_default_min_lr; /* min_lr was one number: new groups get it (PyTorch 2.x) */
    int64_t patience, cooldown;
    double threshold, eps, default_min_lr;
    double *min_lrs; /* n_groups */
    double best;     /* +inf (min) / -inf (max) until a metric improves on it */
    int64_t num_bad_epochs, cooldown_counter;
} zg__plateau;

struct zg_sched {
    zg__sched_kind kind;
    zg_optim *opt;
    int n_groups;
    int64_t last_epoch;
    int64_t step_count; /* PyTorch's _step_count */
    double *base_lrs;   /* n_groups */
    double *last_lrs;   /* n_groups */
    zg_sched *owner;    /* the SequentialLR or ChainedScheduler that holds it */

    /* StepLR, MultiStepLR, ExponentialLR */
    int64_t step_size;
    double gamma;
    /* CosineAnnealingLR, CosineAnnealingWarmRestarts */
    int64_t t_max;
    double eta_min;
    int64_t t_0, t_mult, t_cur, t_i;
    /* LinearLR, ConstantLR (factor), PolynomialLR (power) */
    double start_factor, end_factor, factor, power;
    int64_t total_iters;
    /* OneCycleLR (its per-group bounds are in the optimizer's groups) */
    int64_t total_steps;
    double pct_start, div_factor, final_div_factor;
    bool anneal_linear, three_phase, cycle_momentum, use_beta1;
    /* LambdaLR, MultiplicativeLR */
    zg_lr_lambda fn;
    void *user;
    /* SequentialLR (n_children - 1 milestones), MultiStepLR (n_milestones,
     * sorted, repeats kept), ChainedScheduler */
    zg_sched **children;
    int n_children;
    int64_t *milestones;
    int n_milestones;
    /* ReduceLROnPlateau */
    zg__plateau plat;

    /* A parsed state only: OneCycleLR's per-group bounds to write into
     * the groups. */
    zg__sched_extra *loaded_extra;
};

/* A scheduler of the kind over the optimizer's n_groups groups, its lrs
 * zero, last_epoch -1 (NULL when out of memory). */
zg_sched *zg__sched_alloc(zg__sched_kind kind, zg_optim *opt, int n_groups);
/* Group g's scheduler values, kept in the optimizer's group. */
zg__sched_extra *zg__sched_extra_of(const zg_sched *s, int g);
/* Whether the scheduler's hyperparameters / group g's OneCycleLR bounds
 * are valid; if not, why, in msg. */
bool zg__sched_check_hyper(const zg_sched *s, char *msg, size_t n);
bool zg__sched_check_extra(const zg_sched *s, const zg__sched_extra *e, int g, char *msg, size_t n);
/* Group g's current lr in the optimizer. */
double zg__sched_group_lr(const zg_sched *s, int g);
/* What one step would write: from the groups' current lrs cur, the new
 * lrs (and OneCycleLR's momenta) and the counters after it. Changes
 * nothing; an error (a negative lr, OneCycleLR past its end) is set. */
int zg__sched_plan(const zg_sched *s, zg__sched_mode mode, int64_t epoch, const double *cur, double *lrs,
                   double *moms, zg__sched_pos *pos);
/* Writes lrs (and moms under key mk, unless NULL) into the optimizer's
 * first n groups, restoring what it changed if one is refused (old_lr,
 * old_m: n each, scratch). who names the scheduler in the error. */
int zg__sched_apply(zg_optim *opt, int n, const double *lrs, const double *moms, zg_hparam mk, const char *who,
                    double *old_lr, double *old_m);
/* Adopts a planned step's counters and the groups' lrs as the last ones. */
void zg__sched_commit(zg_sched *s, const zg__sched_pos *pos);
/* One step of a basic (non-composite) scheduler: plan, apply, commit;
 * nothing changes on an error. */
int zg__sched_base_step(zg_sched *s, zg__sched_mode mode, int64_t epoch);
/* The optimizer still has the scheduler's group count, and its counters
 * can advance. */
int zg__sched_check_step(const zg_sched *s);
/* SequentialLR's and ChainedScheduler's step. */
int zg__sched_sequential_step(zg_sched *s);
int zg__sched_chained_step(zg_sched *s);
/* ReduceLROnPlateau's step on a metric. */
int zg__sched_plateau_step(zg_sched *s, double metric);
/* The optimizer's groups when a scheduler is made; fn names the caller. */
zg_sched *zg__sched_begin(const char *fn, zg__sched_kind kind, zg_optim *opt);

#endif
