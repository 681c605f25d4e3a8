/* The nn layer: the module object behind the opaque zg_module, and the
 * helpers that module constructors use. Modules call the ops (and one
 * fused op of ops_internal.h); nothing below knows about modules. Not
 * installed. */
#ifndef ZG_NN_INTERNAL_H
#define ZG_NN_INTERNAL_H

#include "../ops/ops_internal.h"
#include "../io/io_internal.h"

/* Computes the module's output for x (an arena tensor, or NULL and an
 * error). Called through zg__module_call, which adds the module to the
 * error text. */
typedef zg_tensor *(*zg__module_forward_fn)(zg_module *m, zg_tensor *x);
/* Writes a one-line description ("Linear(in_features=4, ...)"). */
typedef void (*zg__module_describe_fn)(const zg_module *m, char *buf, size_t n);

struct zg_module {
    const char *type; /* "Linear", "ReLU", ... (static text) */
    zg__module_forward_fn forward;
    zg__module_describe_fn describe; /* NULL: the type alone */
    bool training;                  /* true at creation, as in PyTorch */
    /* Where the module sits: the container that owns it (NULL for a root)
     * and its dotted path from the root ("" for the root, "0", "1.0").
     * Parameter tensors are named with their full dotted path from the
     * root, so the name relative to this module starts after path + ".". */
    zg_module *parent;
    char *path;
    /* Own parameters (persistent, requires_grad, owned), in registration
     * order; the module's own ones come before its children's. */
    int n_params, cap_params;
    zg_tensor **params;
    /* Own buffers (persistent, owned, never requiring grad; float32 or
     * int64), named like parameters. In a state dict a module's parameters
     * come first, then its buffers, then its children's. */
    int n_buffers, cap_buffers;
    zg_tensor **buffers;
    /* Children (owned) in order. */
    int n_children, cap_children;
    zg_module **children;
    /* Hyperparameters of the concrete module. */
    int64_t iv[8];
    float sc[2];
    bool flag;
};

/* A new root module with no parameters or children (NULL and an error on
 * out of memory). */
zg_module *zg__module_new(const char *type, zg__module_forward_fn forward, zg__module_describe_fn describe);
/* Registers t (persistent float32) as the parameter `name`: the module
 * takes ownership (also on failure), sets requires_grad and names it. */
int zg__module_add_param(zg_module *m, const char *name, zg_tensor *t);
/* Registers t (persistent) as the buffer `name`: the module takes
 * ownership (also on failure) and names it. */
int zg__module_add_buffer(zg_module *m, const char *name, zg_tensor *t);
/* Appends `child` (a root) under `name`; the module owns it from then on,
 * also when renaming its parameters fails. */
int zg__module_add_child(zg_module *m, const char *name, zg_module *child);
/* Runs m's forward; on failure prefixes the error with the module that
 * failed (leaf modules only, so the innermost module is named once). */
zg_tensor *zg__module_call(zg_module *m, zg_tensor *x);

/* Runs mods[0..k) as one fused op where they form a pattern it covers
 * (Conv2d, MaxPool2d(2), ReLU: src/nn/conv.c); returns k with *x replaced
 * by their output, or 0 and nothing done. */
int zg__nn_conv2d_pool_forward(zg_module *const *mods, int n, zg_tensor **x);

#endif
