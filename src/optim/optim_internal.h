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
    unsigned fresh; /* BUF_BITs of buffers made for the step under way, not yet used */
} zg__param_state;

/* What PyTorch keeps in a param_group for its schedulers: 'initial_lr',
 * set by the first scheduler made on the optimizer (OneCycleLR overwrites
 * it) and then the base lr of every later one, for the group's lifetime
 * (saved with the optimizer's state); OneCycleLR's 'max_lr', 'min_lr',
 * 'max_momentum' and 'base_momentum'. */
typedef struct {
    bool has_initial;
    double initial_lr;
    double max_lr, min_lr;
    double max_momentum, base_momentum;
} zg__sched_extra;

/* A parameter group: a contiguous range of opt->params plus its
 * hyperparameters (indexed by zg_hparam; booleans are 0 / 1) and its
 * schedulers' values. */
typedef struct {
    int first;
    int n;
    double hp[ZG_HP_COUNT];
    zg__sched_extra sched;
} zg__group;

struct zg_optim {
    zg_optim_kind kind;
    double defaults[ZG_HP_COUNT]; /* fills keys a new group does not set */
    zg__group *groups;
    int n_groups, cap_groups;
    zg_tensor **params;     /* every parameter, groups in order */
    zg__param_state *state; /* parallel to params; a repeated listing's slot stays unused */
    int *canon;             /* parallel to params: the index of the parameter's first
                             * listing, whose state every listing shares */
    int n_params, cap_params;
};

/* Applies one update of the kind's rule to parameter p with gradient g.
 * The core has already advanced st->step (so it counts this update) and
 * skips parameters whose grad is None. hp holds the group's current
 * hyperparameters. Returns ZG_OK or a negative status (out of memory).
 * With g == NULL it only makes the state buffers the update will need and
 * returns: the core does that for every parameter first, so that running
 * out of memory fails a step before any parameter has moved. */
typedef int (*zg__update_fn)(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp);

int zg__sgd_update(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp);
int zg__adam_update(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp);
int zg__adamw_update(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp);
int zg__rmsprop_update(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp);
int zg__adagrad_update(zg_tensor *p, const zg_tensor *g, zg__param_state *st, const double *hp);

/* The state buffer `id` of st, allocated with p's shape and filled with
 * `init` if missing. *fresh (fresh may be NULL) says whether it was made
 * for this step (here or in the step's reservation pass). NULL only when
 * out of memory (error set). */
zg_tensor *zg__optim_buffer(zg__param_state *st, zg__buf_id id, const zg_tensor *p, float init, bool *fresh);

/* What the core knows of each kind (optim.c's table): its class name,
 * its key in saved files, the hyperparameters it has, the state buffers it
 * may hold and must hold in a saved state, and its update rule. */
typedef struct {
    const char *name;
    const char *key;
    unsigned hp_mask;      /* bits HP_BIT(zg_hparam) */
    unsigned buf_mask;     /* bits BUF_BIT(zg__buf_id) */
    unsigned buf_required;
    zg__update_fn update;
} zg__optim_kind_info;
#define HP_BIT(k) (1u << (k))
#define BUF_BIT(b) (1u << (b))

/* The kind's row (NULL for an unknown kind). */
const zg__optim_kind_info *zg__optim_kind_of(zg_optim_kind kind);
/* Whether the kind has hyperparameter `key`. */
bool zg__hp_valid_for(const zg__optim_kind_info *ki, int key);
/* Checks the hyperparameters the kind uses; on a problem writes it to msg
 * and returns false. */
bool zg__optim_check_hparams(const zg__optim_kind_info *ki, const double *hp, char *msg, size_t n);
/* PyTorch's names of the hyperparameters and of the state buffers. */
extern const char *const zg__hp_names[ZG_HP_COUNT];
extern const char *const zg__buf_names[ZG__BUF_COUNT];
/* The buffer named `name`, or -1. */
int zg__optim_buf_id(const char *name);
/* Frees a parameter's state buffers and zeroes it. */
void zg__optim_state_clear(zg__param_state *st);

/* Element loops of the update rules run in parallel above this size. */
#define ZG__OPTIM_PAR_MIN 65536

#endif
