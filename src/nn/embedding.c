/* Embedding(num_embeddings, embedding_dim, padding_idx): weight [V, D]
 * drawn from N(0, 1) as PyTorch's default init (normal_ from the default
 * generator), with the padding row then set to zeros. The input is an
 * int64 tensor of indices. */
#include "nn_internal.h"

#include <stdio.h>
#include <string.h>

/* iv: num_embeddings, embedding_dim, padding_idx (-1: none). */
static zg_tensor *embedding_forward(zg_module *m, zg_tensor *x) {
    return zg_embedding(m->params[0], x, m->iv[2] < 0 ? ZG_NO_PADDING_IDX : m->iv[2]);
}

static void embedding_describe(const zg_module *m, char *buf, size_t n) {
    if (m->iv[2] < 0) snprintf(buf, n, "Embedding(%lld, %lld)", (long long)m->iv[0], (long long)m->iv[1]);
    else
        snprintf(buf, n, "Embedding(%lld, %lld, padding_idx=%lld)", (long long)m->iv[0], (long long)m->iv[1],
                 (long long)m->iv[2]);
}

zg_module *zg_nn_embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx) {
    const char *fn = "zg_nn_embedding";
    if (num_embeddings <= 0 || embedding_dim <= 0)
        return zg__fail_null("%s: sizes must be positive (num_embeddings %lld, embedding_dim %lld)", fn,
                             (long long)num_embeddings, (long long)embedding_dim);
    int64_t pad = -1;
    if (padding_idx != ZG_NO_PADDING_IDX) {
        if (padding_idx < -num_embeddings || padding_idx >= num_embeddings)
            return zg__fail_null("%s: padding_idx %lld must lie in [-%lld, %lld)", fn, (long long)padding_idx,
                                 (long long)num_embeddings, (long long)num_embeddings);
        pad = padding_idx < 0 ? padding_idx + num_embeddings : padding_idx;
    }
    zg_module *m = zg__module_new("Embedding", embedding_forward, embedding_describe);
    if (!m) return NULL;
    m->iv[0] = num_embeddings;
    m->iv[1] = embedding_dim;
    m->iv[2] = pad;
    int64_t shape[2] = {num_embeddings, embedding_dim};
    if (zg__module_add_param(m, "weight", zg_normal(shape, 2, 0.0f, 1.0f))) {
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", zg_last_error());
        zg_module_free(m);
        return zg__fail_null("%s: %s", fn, inner);
    }
    if (pad >= 0) memset(zg__f32(m->params[0]) + pad * embedding_dim, 0, (size_t)embedding_dim * sizeof(float));
    return m;
}
