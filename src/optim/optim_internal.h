/* The optim layer: the optimizer object shared by the core (optim.c) and
 * the update rules (sgd.c, adam.c, rmsprop.c, adagrad.c), which clipping,
 * the schedulers and the GradScaler also read. Not installed. */
#ifndef ZG_OPTIM_INTERNAL_H
#define ZG_OPTIM_INTERNAL_H

#include "../autograd/autograd_internal.h"
#include "../io/io_internal.h"

/* Per-parameter state buffers. Each optimizer kind uses a subset; a buffer
 * is allocated the first time its rule needs it. */
typedef enum {
    ZG__BUF_MOMENTUM = 0, /* "momentum_buffer": SGD, RMSprop */
    ZG__BUF_EXP_AVG,      /* Adam(W) first moment */
    ZG__BUF_EXP_AVG_SQ,   /* Adam(W) second moment */
    ZG__BUF_MAX_EXP_AVG_SQ, /* Adam(W) with amsgrad */
    ZG__BUF_SQUARE_AVG,   /* RMSprop */
    ZG__BUF_GRAD_AVG,     /* RMSprop centered */
    ZG__BUF_SUM,          /* Adagrad */
    ZG__BUF_COUNT
} zg__buf_id;

typedef struct {
    bool active;  /* the parameter has taken at least one step */
    int64_t step; /* number of updates applied to this parameter */
    zg_tensor *buf[ZG__BUF_COUNT]; /* persistent, NULL until needed */
} zg__param_state;

/* A parameter group: a contiguous range of opt->params plus its
 * hyperparameters (indexed by zg_hparam; booleans are 0 / 1). */
typedef struct {
    int first;
    int n;
    double hp[ZG_HP_COUNT];
} zg__group;

struct zg_optim {
    zg_optim_kind kind;
    double defaults[ZG_HP_COUNT]; /* fills keys a new group does not set */
    zg__group *groups;
    int n_groups, cap_groups;
    zg_tensor **params;     /* every parameter, groups in order */
    zg__param_state *state; /* parallel to params */
    int n_params, cap_params;
};

/* Applies one update of the kind's rule to parameter p with gradient g.
 * The core has already advanced st->step (so it counts this update) and
 * skips parameters whose grad is None. hp holds the group's current
 * hyperparameters. Returns ZG_OK or a negative status (out of memory). */
typedef int (*zg__update_fn)(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp);

int zg__sgd_update(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp);
int zg__adam_update(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp);
int zg__adamw_update(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp);
int zg__rmsprop_update(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp);
int zg__adagrad_update(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp);

/* The state buffer `id` of st, allocated with p's shape and filled with
 * `init` if missing (then *fresh is set true, else false; fresh may be
 * NULL). NULL only when out of memory (error set). */
zg_tensor *zg__optim_buffer(zg__param_state *st, zg__buf_id id, const zg_tensor *p, float init, bool *fresh);

/* Element loops of the update rules run in parallel above this size. */
#define ZG__OPTIM_PAR_MIN 65536

#endif
