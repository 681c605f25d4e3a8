/* The module core: forward dispatch, the parameter and buffer registries
 * (depth first, dotted names as in PyTorch's named_parameters /
 * named_buffers), train/eval, zero_grad, free, and the state (weights and
 * buffers) saved / loaded by name as safetensors, as PyTorch's state_dict. */
#include "nn_internal.h"

#include <stdio.h>

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *c = zg__malloc(n);
    if (c) memcpy(c, s, n);
    return c;
}

zg_module *zg__module_new(const char *type, zg__module_forward_fn forward, zg__module_describe_fn describe) {
    zg_module *m = zg__calloc(1, sizeof *m);
    char *path = dup_str("");
    if (!m || !path) {
        free(m);
        free(path);
        return zg__fail_null("zg_nn: out of memory creating a %s module", type);
    }
    m->type = type;
    m->forward = forward;
    m->describe = describe;
    m->training = true;
    m->path = path;
    return m;
}

/* Grows *arr (of element size sz) to hold one more than *n. */
static int grow(void **arr, int n, int *cap, size_t sz) {
    if (n < *cap) return 0;
    int nc = *cap ? *cap * 2 : 4;
    void *p = zg__realloc(*arr, (size_t)nc * sz);
    if (!p) return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

/* "prefix.rest", or the one that is non-empty. */
static char *join(const char *prefix, const char *rest) {
    size_t a = strlen(prefix), b = strlen(rest);
    char *s = zg__malloc(a + b + 2);
    if (!s) return NULL;
    memcpy(s, prefix, a);
    size_t k = a;
    if (a && b) s[k++] = '.';
    memcpy(s + k, rest, b + 1);
    return s;
}

int zg__module_add_param(zg_module *m, const char *name, zg_tensor *t) {
    if (!t) return ZG_ERR_NOMEM; /* the constructor's allocation failed; its error stands */
    if (grow((void **)&m->params, m->n_params, &m->cap_params, sizeof *m->params)) {
        zg_tensor_free(t);
        return zg__fail(ZG_ERR_NOMEM, "zg_nn: out of memory adding parameter '%s'", name);
    }
    m->params[m->n_params++] = t;
    char *full = join(m->path, name);
    if (!full) return zg__fail(ZG_ERR_NOMEM, "zg_nn: out of memory adding parameter '%s'", name);
    int rc = zg_tensor_set_name(t, full);
    free(full);
    if (rc) return rc;
    rc = zg_tensor_set_requires_grad(t, true);
    if (!rc) zg__emit_param_new(t); /* event: a parameter a listener may expect in some optimizer */
    return rc;
}

int zg__module_add_buffer(zg_module *m, const char *name, zg_tensor *t) {
    if (!t) return ZG_ERR_NOMEM; /* the constructor's allocation failed; its error stands */
    if (grow((void **)&m->buffers, m->n_buffers, &m->cap_buffers, sizeof *m->buffers)) {
        zg_tensor_free(t);
        return zg__fail(ZG_ERR_NOMEM, "zg_nn: out of memory adding buffer '%s'", name);
    }
    m->buffers[m->n_buffers++] = t;
    char *full = join(m->path, name);
    if (!full) return zg__fail(ZG_ERR_NOMEM, "zg_nn: out of memory adding buffer '%s'", name);
    int rc = zg_tensor_set_name(t, full);
    free(full);
    return rc;
}

/* Prefixes the name of t with `prefix.`. */
static int rename_tensor(zg_tensor *t, const char *prefix) {
    char *nm = join(prefix, zg_tensor_name(t));
    int rc = nm ? zg_tensor_set_name(t, nm) : ZG_ERR_NOMEM;
    free(nm);
    return rc;
}

/* Puts `prefix.` in front of the path of every module and the name of every
 * parameter and buffer below (and including) m. */
static int add_prefix(zg_module *m, const char *prefix) {
    char *p = join(prefix, m->path);
    if (!p) return ZG_ERR_NOMEM;
    free(m->path);
    m->path = p;
    for (int i = 0; i < m->n_params; i++) {
        int rc = rename_tensor(m->params[i], prefix);
        if (rc) return rc;
    }
    for (int i = 0; i < m->n_buffers; i++) {
        int rc = rename_tensor(m->buffers[i], prefix);
        if (rc) return rc;
    }
    for (int i = 0; i < m->n_children; i++) {
        int rc = add_prefix(m->children[i], prefix);
        if (rc) return rc;
    }
    return ZG_OK;
}

int zg__module_add_child(zg_module *m, const char *name, zg_module *child) {
    if (grow((void **)&m->children, m->n_children, &m->cap_children, sizeof *m->children)) {
        zg_module_free(child);
        return zg__fail(ZG_ERR_NOMEM, "zg_nn: out of memory adding child '%s'", name);
    }
    m->children[m->n_children++] = child;
    child->parent = m;
    char *prefix = join(m->path, name);
    int rc = prefix ? add_prefix(child, prefix) : ZG_ERR_NOMEM;
    free(prefix);
    if (rc) return zg__fail(ZG_ERR_NOMEM, "zg_nn: out of memory naming child '%s'", name);
    return ZG_OK;
}

static void describe(const zg_module *m, char *buf, size_t n) {
    if (m->describe)
        m->describe(m, buf, n);
    else
        snprintf(buf, n, "%s", m->type);
}

zg_tensor *zg__module_call(zg_module *m, zg_tensor *x) {
    zg_tensor *y = m->forward(m, x);
    if (!y && m->n_children == 0) {
        char inner[1024], d[160];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        describe(m, d, sizeof d);
        if (m->path[0])
            zg_set_error("zg_module_forward: %s at '%s': %s", d, m->path, inner);
        else
            zg_set_error("zg_module_forward: %s: %s", d, inner);
    }
    return y;
}

zg_tensor *zg_module_forward(zg_module *m, zg_tensor *x) {
    if (!m) return zg__fail_null("zg_module_forward: module is NULL");
    if (!x) {
        char d[160];
        describe(m, d, sizeof d);
        return zg__fail_null("zg_module_forward: %s: input is NULL", d);
    }
    zg__emit_forward(m); /* event: the loop's forward (a trace line shows it) */
    return zg__module_call(m, x);
}

/* ---- parameter registry ------------------------------------------------ */

/* Calls fn on every parameter below m, depth first (own ones first), until
 * it returns true; returns whether it stopped. */
typedef bool (*visit_fn)(zg_tensor *p, void *ctx);
static bool visit(const zg_module *m, visit_fn fn, void *ctx) {
    for (int i = 0; i < m->n_params; i++)
        if (fn(m->params[i], ctx)) return true;
    for (int i = 0; i < m->n_children; i++)
        if (visit(m->children[i], fn, ctx)) return true;
    return false;
}

/* Length of the part of a parameter's name that lies above m ("0." for a
 * parameter of child 0 seen from child 0 itself). */
static size_t prefix_len(const zg_module *m) { return m->path[0] ? strlen(m->path) + 1 : 0; }

typedef struct {
    int index;
    zg_tensor *found;
    int count;
    int64_t numel;
    zg_tensor **out;
    int max;
    const char *name;
    size_t skip;
    bool set_to_none;
} walk_ctx;

static bool count_fn(zg_tensor *p, void *c) {
    walk_ctx *w = c;
    if (w->out && w->count < w->max) w->out[w->count] = p;
    w->count++;
    w->numel += p->numel;
    return false;
}
static bool index_fn(zg_tensor *p, void *c) {
    walk_ctx *w = c;
    if (w->count++ == w->index) {
        w->found = p;
        return true;
    }
    return false;
}
static bool name_fn(zg_tensor *p, void *c) {
    walk_ctx *w = c;
    if (strcmp(zg_tensor_name(p) + w->skip, w->name) == 0) {
        w->found = p;
        return true;
    }
    return false;
}
static bool same_fn(zg_tensor *p, void *c) { return p == ((walk_ctx *)c)->found; }
static bool zero_fn(zg_tensor *p, void *c) {
    zg_tensor_zero_grad(p, ((walk_ctx *)c)->set_to_none);
    return false;
}

int zg_module_num_params(const zg_module *m) {
    if (!m) return zg__fail(ZG_ERR_ARG, "zg_module_num_params: module is NULL");
    walk_ctx w = {0};
    visit(m, count_fn, &w);
    return w.count;
}

zg_tensor *zg_module_param(const zg_module *m, int index) {
    if (!m) return zg__fail_null("zg_module_param: module is NULL");
    walk_ctx w = {.index = index};
    if (index < 0 || !visit(m, index_fn, &w))
        return zg__fail_null("zg_module_param: index %d out of range (%s has %d parameters)", index, m->type,
                             zg_module_num_params(m));
    return w.found;
}

const char *zg_module_param_name(const zg_module *m, int index) {
    zg_tensor *p = zg_module_param(m, index);
    if (!p) return NULL;
    return zg_tensor_name(p) + prefix_len(m);
}

zg_tensor *zg_module_param_by_name(const zg_module *m, const char *name) {
    if (!m || !name) return zg__fail_null("zg_module_param_by_name: NULL argument");
    walk_ctx w = {.name = name, .skip = prefix_len(m)};
    if (!visit(m, name_fn, &w)) return zg__fail_null("zg_module_param_by_name: %s has no parameter '%s'", m->type, name);
    return w.found;
}

int zg_module_params(const zg_module *m, zg_tensor **out, int max) {
    if (!m) return zg__fail(ZG_ERR_ARG, "zg_module_params: module is NULL");
    if (max < 0 || (max > 0 && !out)) return zg__fail(ZG_ERR_ARG, "zg_module_params: bad output array");
    walk_ctx w = {.out = out, .max = max};
    visit(m, count_fn, &w);
    return w.count;
}

int64_t zg_module_num_elements(const zg_module *m) {
    if (!m) return zg__fail(ZG_ERR_ARG, "zg_module_num_elements: module is NULL");
    walk_ctx w = {0};
    visit(m, count_fn, &w);
    return w.numel;
}

zg_module *zg_module_child(const zg_module *m, int index) {
    if (!m) return zg__fail_null("zg_module_child: module is NULL");
    if (index < 0 || index >= m->n_children)
        return zg__fail_null("zg_module_child: index %d out of range (%s has %d children)", index, m->type,
                             m->n_children);
    return m->children[index];
}

int zg_module_num_children(const zg_module *m) {
    if (!m) return zg__fail(ZG_ERR_ARG, "zg_module_num_children: module is NULL");
    return m->n_children;
}

const char *zg_module_type(const zg_module *m) { return m ? m->type : NULL; }

void zg_module_train(zg_module *m, bool train) {
    if (!m) return;
    m->training = train;
    for (int i = 0; i < m->n_children; i++) zg_module_train(m->children[i], train);
}

bool zg_module_is_training(const zg_module *m) { return m && m->training; }

void zg_module_zero_grad(zg_module *m, bool set_to_none) {
    if (!m) return;
    walk_ctx w = {.set_to_none = set_to_none};
    zg__emit_zero_begin("zg_module_zero_grad", NULL, NULL, 0); /* event: the erased grads as one report */
    visit(m, zero_fn, &w);
    zg__emit_zero_end();
}

/* ---- buffers ------------------------------------------------------------ */

/* Calls fn on every buffer below m, depth first (own ones first). */
static bool visit_buffers(const zg_module *m, visit_fn fn, void *ctx) {
    for (int i = 0; i < m->n_buffers; i++)
        if (fn(m->buffers[i], ctx)) return true;
    for (int i = 0; i < m->n_children; i++)
        if (visit_buffers(m->children[i], fn, ctx)) return true;
    return false;
}

int zg_module_num_buffers(const zg_module *m) {
    if (!m) return zg__fail(ZG_ERR_ARG, "zg_module_num_buffers: module is NULL");
    walk_ctx w = {0};
    visit_buffers(m, count_fn, &w);
    return w.count;
}

zg_tensor *zg_module_buffer(const zg_module *m, int index) {
    if (!m) return zg__fail_null("zg_module_buffer: module is NULL");
    walk_ctx w = {.index = index};
    if (index < 0 || !visit_buffers(m, index_fn, &w))
        return zg__fail_null("zg_module_buffer: index %d out of range (%s has %d buffers)", index, m->type,
                             zg_module_num_buffers(m));
    return w.found;
}

const char *zg_module_buffer_name(const zg_module *m, int index) {
    zg_tensor *b = zg_module_buffer(m, index);
    if (!b) return NULL;
    return zg_tensor_name(b) + prefix_len(m);
}

/* Every parameter and buffer in state-dict order (PyTorch's: a module's
 * parameters, then its buffers, then its children's, depth first). */
static bool visit_state(const zg_module *m, visit_fn fn, void *ctx) {
    for (int i = 0; i < m->n_params; i++)
        if (fn(m->params[i], ctx)) return true;
    for (int i = 0; i < m->n_buffers; i++)
        if (fn(m->buffers[i], ctx)) return true;
    for (int i = 0; i < m->n_children; i++)
        if (visit_state(m->children[i], fn, ctx)) return true;
    return false;
}

static void module_free(zg_module *m) {
    zg__emit_module_free(m); /* event: a listener stops watching it */
    for (int i = 0; i < m->n_children; i++) module_free(m->children[i]);
    for (int i = 0; i < m->n_params; i++) zg_tensor_free(m->params[i]);
    for (int i = 0; i < m->n_buffers; i++) zg_tensor_free(m->buffers[i]);
    free(m->children);
    free(m->params);
    free(m->buffers);
    free(m->path);
    free(m);
}

void zg_module_free(zg_module *m) {
    if (!m) return;
    /* A child belongs to its container, which frees it. */
    if (m->parent) {
        zg__fail(ZG_ERR_STATE, "zg_module_free: '%s' belongs to a %s; free that instead", m->path, m->parent->type);
        return;
    }
    module_free(m);
}

/* ---- save / load ------------------------------------------------------- */

/* The state tensors of m in state-dict order, in a malloc'd array. */
static zg_tensor **state_list(const zg_module *m, int *n) {
    walk_ctx w = {0};
    visit_state(m, count_fn, &w);
    zg_tensor **ts = zg__malloc(((size_t)w.count + 1) * sizeof *ts);
    if (!ts) return NULL;
    walk_ctx f = {.out = ts, .max = w.count};
    visit_state(m, count_fn, &f);
    *n = w.count;
    return ts;
}

int zg_module_save(const zg_module *m, const char *path) {
    if (!m || !path) return zg__fail(ZG_ERR_ARG, "zg_module_save: NULL argument");
    int n = 0;
    zg_tensor **ts = state_list(m, &n);
    const char **names = zg__malloc(((size_t)n + 1) * sizeof *names);
    if (!ts || !names) {
        free(ts);
        free(names);
        return zg__fail(ZG_ERR_NOMEM, "zg_module_save: out of memory");
    }
    size_t skip = prefix_len(m);
    for (int i = 0; i < n; i++) names[i] = zg_tensor_name(ts[i]) + skip;
    int rc = zg_safetensors_write(path, ts, names, n, NULL, NULL, 0);
    free(ts);
    free(names);
    if (rc) {
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        return zg__fail(rc, "zg_module_save: %s", inner);
    }
    return ZG_OK;
}

/* Appends to a bounded message; marks truncation with "...". */
typedef struct {
    char s[900];
    size_t n;
    int problems;
} msg;

static void msg_add(msg *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void msg_add(msg *b, const char *fmt, ...) {
    b->problems++;
    if (b->n >= sizeof b->s - 4) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s + b->n, sizeof b->s - b->n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof b->s - b->n) {
        memcpy(b->s + sizeof b->s - 4, "...", 4);
        b->n = sizeof b->s;
    } else {
        b->n += (size_t)k;
    }
}

static const char *dtype_name(zg_dtype d) { return d == ZG_INT64 ? "int64" : "float32"; }

int zg_module_load(zg_module *m, const char *path) {
    if (!m || !path) return zg__fail(ZG_ERR_ARG, "zg_module_load: NULL argument");
    zg_safetensors *st;
    int rc = zg__safetensors_open(path, &st);
    if (rc) {
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        return zg__fail(rc, "zg_module_load: %s", inner);
    }
    int n = 0;
    zg_tensor **ps = state_list(m, &n);
    if (!ps) {
        zg_safetensors_free(st);
        return zg__fail(ZG_ERR_NOMEM, "zg_module_load: out of memory");
    }
    size_t skip = prefix_len(m);
    msg b = {.n = 0};
    /* Every check first, so that a bad file changes nothing. */
    for (int i = 0; i < n; i++) {
        const char *name = zg_tensor_name(ps[i]) + skip;
        walk_ctx pw = {.found = ps[i]};
        const char *kind = visit(m, same_fn, &pw) ? "parameter" : "buffer";
        zg_tensor *t = zg_safetensors_get(st, name);
        char a[ZG_SHAPE_BUF], c[ZG_SHAPE_BUF];
        if (!t)
            msg_add(&b, "%smissing %s '%s'", b.problems ? "; " : "", kind, name);
        else if (t->dtype != ps[i]->dtype)
            msg_add(&b, "%s'%s' is %s in the file, the %s is %s", b.problems ? "; " : "", name, dtype_name(t->dtype),
                    kind, dtype_name(ps[i]->dtype));
        else if (!zg__same_shape(t, ps[i]))
            msg_add(&b, "%s'%s' has shape %s in the file, the %s has %s", b.problems ? "; " : "", name,
                    zg__shape_str(t, a, sizeof a), kind, zg__shape_str(ps[i], c, sizeof c));
    }
    int count = zg_safetensors_count(st);
    for (int i = 0; i < count; i++) {
        const char *name = zg_safetensors_name(st, i);
        walk_ctx w = {.name = name, .skip = skip};
        if (!visit_state(m, name_fn, &w)) msg_add(&b, "%sunexpected tensor '%s'", b.problems ? "; " : "", name);
    }
    if (b.problems) {
        free(ps);
        zg_safetensors_free(st);
        return zg__fail(ZG_ERR_FORMAT, "zg_module_load: '%s' does not fit this %s: %s", path, m->type, b.s);
    }
    for (int i = 0; i < n; i++) {
        const zg_tensor *t = zg_safetensors_get(st, zg_tensor_name(ps[i]) + skip);
        memcpy((char *)ps[i]->storage->data + ps[i]->offset * zg__dtype_size(ps[i]->dtype),
               (const char *)t->storage->data + t->offset * zg__dtype_size(t->dtype),
               (size_t)ps[i]->numel * zg__dtype_size(ps[i]->dtype));
        /* A tracked write: a graph that saved the old weights must not
         * backward through the new ones. */
        zg__bump_version(ps[i]);
    }
    free(ps);
    zg_safetensors_free(st);
    return ZG_OK;
}
