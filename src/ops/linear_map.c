/* Differentiable backwards of ops that are linear maps y = A x whose
 * matrix the op's saved state fixes (pooling windows and argmaxes, an
 * embedding's indices): their gradient A^T g is linear in g, so under
 * create_graph it is recorded as a node of its own, whose backward is A
 * again (and so on, to any order). The kernels are the op's own. */
#include "ops_internal.h"

typedef struct {
    const zg__linmap *m;
    bool transpose; /* this node computed A^T v (else A v) */
} linmap_args;

static zg_tensor *linmap_apply(const zg__linmap *m, zg_tensor *v, bool transpose);

/* d(A v)/dv applied to g is A^T g, and the other way round; recorded in
 * grad mode (create_graph), so this is the differentiable form as well. */
static int linmap_backward(zg__node *n, zg_tensor *g, zg_tensor **gin) {
    const linmap_args *a = ZG_NODE_ARGS(n, linmap_args);
    return (gin[0] = linmap_apply(a->m, g, !a->transpose)) ? ZG_OK : ZG_ERR_NOMEM;
}

static zg_tensor *linmap_apply(const zg__linmap *m, zg_tensor *v, bool transpose) {
    zg_tensor *out = transpose ? zg__empty(ZG_FLOAT32, m->in_shape, m->in_nd)
                               : zg__empty(ZG_FLOAT32, m->out_shape, m->out_nd);
    if (!out) return NULL;
    (transpose ? m->apply_t : m->apply)(m->ctx, zg__f32(v), zg__f32(out));
    zg__node *n = ZG_RECORD(linmap_args, transpose ? m->name_t : m->name, linmap_backward, out, &v, 1);
    zg__node_set_double_backward(n, linmap_backward);
    if (n) *ZG_NODE_ARGS(n, linmap_args) = (linmap_args){m, transpose};
    return out;
}

zg_tensor *zg__linmap_t(const zg__linmap *spec, const int64_t *in_shape, int in_nd, zg_tensor *g) {
    zg__linmap *m = zg__arena_alloc(sizeof *m);
    if (!m) return NULL;
    *m = *spec;
    m->in_nd = in_nd;
    m->out_nd = g->ndim;
    memcpy(m->in_shape, in_shape, (size_t)in_nd * sizeof(int64_t));
    memcpy(m->out_shape, g->shape, (size_t)g->ndim * sizeof(int64_t));
    return linmap_apply(m, g, true);
}

int zg__linmap_backward(zg__node *n, zg_tensor *g, zg_tensor **gin, const zg__linmap *spec) {
    if (!zg__node_needs(n, 0)) return ZG_OK;
    return (gin[0] = zg__linmap_t(spec, n->in[0]->shape, n->in[0]->ndim, g)) ? ZG_OK : ZG_ERR_NOMEM;
}
