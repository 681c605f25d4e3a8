/* gradient_as_bucket_view: each parameter's .grad is a view of its slot in
 * its bucket (a persistent tensor header over the bucket's storage, owning
 * no data), so backward accumulates straight into the bucket, the
 * averaging divides it in place by world_size and nothing is copied back
 * after the all-reduce. */
#include "ddp_internal.h"

#ifdef ZG_HAVE_MPI
#include <stdlib.h>
#include <string.h>

bool zg__ddp_grad_is_view(const zg_ddp *d, int i) {
    const zg_tensor *g = d->params[i]->grad;
    const zg__bucket *b = &d->buckets[d->bucket_of[i]];
    return g && g->storage == &b->storage && g->offset == b->off[d->slot_of[i]];
}

int zg__ddp_attach_views(zg_ddp *d, zg__bucket *bk, const int *bucket_of, const int *slot_of) {
    zg_tensor **v = zg__calloc((size_t)d->n_params, sizeof *v);
    for (int i = 0; v && i < d->n_params; i++)
        if (!(v[i] = zg__calloc(1, sizeof *v[i]))) {
            while (i-- > 0) free(v[i]);
            free(v);
            v = NULL;
        }
    if (!v) return zg__fail(ZG_ERR_NOMEM, "zg_ddp: out of memory making the gradients views of the buckets");
    for (int i = 0; i < d->n_params; i++) {
        zg_tensor *p = d->params[i], *g = v[i];
        zg__bucket *b = &bk[bucket_of[i]];
        g->storage = &b->storage;
        g->offset = b->off[slot_of[i]];
        g->ndim = p->ndim;
        memcpy(g->shape, p->shape, sizeof g->shape);
        g->numel = p->numel;
        g->dtype = ZG_FLOAT32;
        g->persistent = true;
        /* The values so far (gradients accumulated before, or zeros). */
        if (p->grad && zg__same_shape(p->grad, p))
            memcpy(zg__f32(g), zg__f32(p->grad), (size_t)p->numel * sizeof(float));
        zg_tensor_free(p->grad);
        p->grad = g;
    }
    free(v);
    d->views_attached = true;
    return ZG_OK;
}

void zg__ddp_detach_views(zg_ddp *d) {
    for (int i = 0; d->views_attached && i < d->n_params; i++) {
        zg_tensor *p = d->params[i];
        if (!zg__ddp_grad_is_view(d, i)) continue;
        /* Out of memory here loses the gradient (None): freeing cannot fail. */
        zg_tensor *own = zg_tensor_clone(p->grad);
        zg_tensor_free(p->grad);
        p->grad = own;
        if (!own) p->grad_defined = false;
    }
    d->views_attached = false;
}
#endif
