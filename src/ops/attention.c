/* Scaled dot-product attention, fused.
 *
 * Shapes: q [*, T, E], k [*, S, E], v [*, S, Ev] -> o [*, T, Ev], with the
 * leading dims (batch, heads) flattened to N independent heads.
 *     s = scale q k^T + mask,   p = softmax(s) over keys,   o = p v
 * mask: causal (key j > query i is -inf, top-left aligned as PyTorch's
 * is_causal), or a float [T, S] / [*, T, S] added to s (-inf drops a key).
 *
 * Forward, per head, in blocks of BR queries by BC keys with an online
 * softmax: for each key block, the block's scores, the row maxima m, and
 *     l <- l e^(m_old - m) + sum_j e^(s_j - m),  acc <- acc e^(m_old - m) + P V
 * then o = acc / l. Kept for backward: o and lse = m + log l per query
 * (N T floats); the N x T x S scores and probabilities are never kept.
 * Backward recomputes each block's p = e^(s - lse) and, with
 * D_i = sum_c do_ic o_ic,
 *     dv += p^T do,   dp = do v^T,   ds = p (dp - D),
 *     dq += scale ds k,   dk += scale ds^T q.
 * Heads run in parallel, each serial on its own thread with single-threaded
 * GEMMs, so the bits do not depend on the thread count. A row whose keys
 * are all masked gives NaN, as PyTorch's softmax of -inf does. */
#include "ops_internal.h"
#include "pointwise.h" /* ZG_SIMD */
#include "vmath.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define BR 64
#define BC 64
#define GEMM_FLAGS (ZG__LP_SERIAL | ZG__GEMM_WHOLE)
/* Multiply-adds (N T S (E + Ev)) from which heads run on several threads:
 * below it a parallel region costs more than it saves. */
#define PAR_MIN_WORK (INT64_C(1) << 20)

/* Where head h's rows start in its tensor: (h / nh) * batch + (h % nh) *
 * head + off floats in, rows ld floats apart. Separate q, k, v, o tensors
 * hold their heads one after another (nh 1); a packed qkv [B, T, 3C] holds
 * head j of batch b at columns j hs.. of q, then C and 2C further on. */
typedef struct {
    int64_t nh, batch, head, ld, off;
} attn_layout;

static inline int64_t head_at(const attn_layout *l, int64_t h) {
    return (h / l->nh) * l->batch + (h % l->nh) * l->head + l->off;
}

typedef struct {
    int64_t N, T, S, E, Ev;
    attn_layout q, k, v, o;
    float scale;
    bool causal;
    const float *mask;      /* NULL, or [T, S] per head at mask + head * mask_stride */
    int64_t mask_stride;    /* 0 when one [T, S] mask serves every head */
} attn_shape;

typedef struct {
    attn_shape sh;
    const float *lse; /* [N, T], in the arena */
} attn_args;

static int64_t par_min(const attn_shape *sh) {
    return sh->N * sh->T * sh->S * (sh->E + sh->Ev) >= PAR_MIN_WORK ? 2 : INT64_MAX;
}

/* Scratch floats per thread: two BR x BC blocks, the BR x max(E, Ev)
 * accumulator and two BR vectors. */
static int64_t attn_scratch_floats(const attn_shape *sh) {
    return 2 * BR * BC + BR * (sh->Ev > sh->E ? sh->Ev : sh->E) + 2 * BR;
}

/* Per-thread scratch in the arena (the worker threads have none), for the
 * threads a parallel loop may start now. */
static float *attn_scratch(const attn_shape *sh) {
    return zg__arena_alloc((size_t)(omp_get_max_threads() * attn_scratch_floats(sh)) * sizeof(float));
}

/* s[r][c] = scale q_r . k_c + mask for the block at (i0, j0), nr x nc;
 * masked entries -inf. */
static void block_scores(const attn_shape *sh, int64_t head, const float *Q, const float *K, int64_t i0, int64_t nr,
                         int64_t j0, int64_t nc, float *s) {
    const int64_t lq = sh->q.ld, lk = sh->k.ld;
    zg__sgemm(GEMM_FLAGS, false, true, nr, nc, sh->E, Q + i0 * lq, lq, K + j0 * lk, lk, 0.0f, s, BC);
    const float *mk = sh->mask ? sh->mask + head * sh->mask_stride : NULL;
    for (int64_t r = 0; r < nr; r++) {
        float *row = s + r * BC;
        for (int64_t c = 0; c < nc; c++) {
            float x = row[c] * sh->scale;
            if (mk) x += mk[(i0 + r) * sh->S + j0 + c];
            if (sh->causal && j0 + c > i0 + r) x = -INFINITY;
            row[c] = x;
        }
    }
}

/* The last key block a query block [i0, i0 + nr) sees (all of them unless causal). */
static int64_t key_end(const attn_shape *sh, int64_t i0, int64_t nr) {
    return sh->causal ? (i0 + nr < sh->S ? i0 + nr : sh->S) : sh->S;
}

/* x[i] = e^(x[i] - base), i < n: vmath's exp, whose loop vectorises
 * (libm's expf is a call per element, a twentieth of the GPT's step). */
ZG_SIMD_CLONES static void exp_shifted(float *restrict x, int64_t n, float base) {
    ZG_SIMD for (int64_t i = 0; i < n; i++) x[i] = zg__vexpf(x[i] - base);
}

/* One head's output o and lse. */
static void attn_forward_head(const attn_shape *sh, int64_t h, const float *q, const float *k, const float *v,
                              float *o, float *lse, float *scr) {
    const int64_t T = sh->T, E = sh->E, Ev = sh->Ev, lv = sh->v.ld, lo = sh->o.ld;
    const float *Q = q + head_at(&sh->q, h), *K = k + head_at(&sh->k, h), *V = v + head_at(&sh->v, h);
    float *O = o + head_at(&sh->o, h), *L = lse + h * T;
    float *s = scr, *acc = scr + 2 * BR * BC, *m = acc + BR * (Ev > E ? Ev : E), *l = m + BR;
    for (int64_t i0 = 0; i0 < T; i0 += BR) {
        const int64_t nr = T - i0 < BR ? T - i0 : BR, jend = key_end(sh, i0, nr);
        for (int64_t r = 0; r < nr; r++) {
            m[r] = -INFINITY;
            l[r] = 0.0f;
        }
        memset(acc, 0, (size_t)(nr * Ev) * sizeof(float));
        for (int64_t j0 = 0; j0 < jend; j0 += BC) {
            const int64_t nc = jend - j0 < BC ? jend - j0 : BC;
            block_scores(sh, h, Q, K, i0, nr, j0, nc, s);
            for (int64_t r = 0; r < nr; r++) {
                float *row = s + r * BC, mx = m[r];
                for (int64_t c = 0; c < nc; c++) mx = row[c] > mx ? row[c] : mx;
                /* all -inf so far: nothing to rescale, p = 0 */
                const float base = mx == -INFINITY ? 0.0f : mx;
                const float corr = m[r] == -INFINITY ? 0.0f : zg__vexpf(m[r] - base);
                exp_shifted(row, nc, base);
                float sum = 0.0f;
                for (int64_t c = 0; c < nc; c++) sum += row[c];
                for (int64_t c = nc; c < BC; c++) row[c] = 0.0f;
                l[r] = l[r] * corr + sum;
                m[r] = mx;
                float *a = acc + r * Ev;
                for (int64_t c = 0; c < Ev; c++) a[c] *= corr;
            }
            zg__sgemm(GEMM_FLAGS, false, false, nr, Ev, nc, s, BC, V + j0 * lv, lv, 1.0f, acc, Ev);
        }
        for (int64_t r = 0; r < nr; r++) {
            const float inv = 1.0f / l[r]; /* l = 0 (every key masked): NaN below, as softmax gives */
            float *orow = O + (i0 + r) * lo;
            for (int64_t c = 0; c < Ev; c++) orow[c] = l[r] > 0.0f ? acc[r * Ev + c] * inv : NAN;
            L[i0 + r] = m[r] + logf(l[r]);
        }
    }
}

/* One head's dq, dk, dv (each NULL when not needed). */
static void attn_backward_head(const attn_args *a, int64_t h, const float *q, const float *k, const float *v,
                               const float *o, const float *go, float *dq, float *dk, float *dv, float *scr) {
    const attn_shape *sh = &a->sh;
    const int64_t T = sh->T, S = sh->S, E = sh->E, Ev = sh->Ev;
    const int64_t lq = sh->q.ld, lk = sh->k.ld, lv = sh->v.ld, lo = sh->o.ld;
    const int64_t oq = head_at(&sh->q, h), ok = head_at(&sh->k, h), ov = head_at(&sh->v, h), oo = head_at(&sh->o, h);
    const float *Q = q + oq, *K = k + ok, *V = v + ov, *O = o + oo, *dO = go + oo, *L = a->lse + h * T;
    float *dQ = dq ? dq + oq : NULL, *dK = dk ? dk + ok : NULL, *dV = dv ? dv + ov : NULL;
    float *p = scr, *ds = scr + BR * BC, *D = ds + BR * BC;
    /* this head's rows only: heads of a packed tensor share its rows */
    for (int64_t r = 0; r < T && dQ; r++) memset(dQ + r * lq, 0, (size_t)E * sizeof(float));
    for (int64_t r = 0; r < S && dK; r++) memset(dK + r * lk, 0, (size_t)E * sizeof(float));
    for (int64_t r = 0; r < S && dV; r++) memset(dV + r * lv, 0, (size_t)Ev * sizeof(float));
    for (int64_t i0 = 0; i0 < T; i0 += BR) {
        const int64_t nr = T - i0 < BR ? T - i0 : BR, jend = key_end(sh, i0, nr);
        for (int64_t r = 0; r < nr; r++) {
            double d = 0.0;
            for (int64_t c = 0; c < Ev; c++) d += (double)dO[(i0 + r) * lo + c] * O[(i0 + r) * lo + c];
            D[r] = (float)d;
        }
        for (int64_t j0 = 0; j0 < jend; j0 += BC) {
            const int64_t nc = jend - j0 < BC ? jend - j0 : BC;
            block_scores(sh, h, Q, K, i0, nr, j0, nc, p);
            for (int64_t r = 0; r < nr; r++) exp_shifted(p + r * BC, nc, L[i0 + r]);
            if (dV) zg__sgemm(GEMM_FLAGS, true, false, nc, Ev, nr, p, BC, dO + i0 * lo, lo, 1.0f, dV + j0 * lv, lv);
            /* ds = p (do v^T - D), scaled once here for both dq and dk */
            zg__sgemm(GEMM_FLAGS, false, true, nr, nc, Ev, dO + i0 * lo, lo, V + j0 * lv, lv, 0.0f, ds, BC);
            for (int64_t r = 0; r < nr; r++)
                for (int64_t c = 0; c < nc; c++)
                    ds[r * BC + c] = p[r * BC + c] * (ds[r * BC + c] - D[r]) * sh->scale;
            if (dQ) zg__sgemm(GEMM_FLAGS, false, false, nr, E, nc, ds, BC, K + j0 * lk, lk, 1.0f, dQ + i0 * lq, lq);
            if (dK) zg__sgemm(GEMM_FLAGS, true, false, nc, E, nr, ds, BC, Q + i0 * lq, lq, 1.0f, dK + j0 * lk, lk);
        }
    }
}

static int attn_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    const attn_args *a = ZG_NODE_ARGS(n, attn_args);
    const zg_tensor *q = n->saved[0], *k = n->saved[1], *v = n->saved[2], *o = n->saved[3];
    for (int i = 0; i < 3; i++)
        if (zg__node_needs(n, i) && !(gin[i] = zg__empty_like(n->in[i]))) return ZG_ERR_NOMEM;
    float *dq = gin[0] ? zg__f32(gin[0]) : NULL, *dk = gin[1] ? zg__f32(gin[1]) : NULL;
    float *dv = gin[2] ? zg__f32(gin[2]) : NULL;
    const float *Q = zg__f32(q), *K = zg__f32(k), *V = zg__f32(v), *O = zg__f32(o), *G = zg__f32(gout);
    float *scratch = attn_scratch(&a->sh);
    if (!scratch) return ZG_ERR_NOMEM;
    const int64_t sf = attn_scratch_floats(&a->sh);
    ZG_PARALLEL_FOR(h, a->sh.N, par_min(&a->sh), {
        float *scr = scratch + (int64_t)omp_get_thread_num() * sf;
        attn_backward_head(a, h, Q, K, V, O, G, dq, dk, dv, scr);
    });
    return ZG_OK;
}

/* The heads' shape from q, k, v and the mask, or an error. */
static int attn_check(const char *fn, const zg_tensor *q, const zg_tensor *k, const zg_tensor *v,
                      const zg_tensor *mask, bool causal, attn_shape *sh) {
    char sq[ZG_SHAPE_BUF], sk[ZG_SHAPE_BUF], svv[ZG_SHAPE_BUF];
    zg__shape_str(q, sq, sizeof sq);
    zg__shape_str(k, sk, sizeof sk);
    zg__shape_str(v, svv, sizeof svv);
    const int d = q->ndim;
    bool ok = d >= 2 && k->ndim == d && v->ndim == d;
    for (int i = 0; ok && i < d - 2; i++) ok = k->shape[i] == q->shape[i] && v->shape[i] == q->shape[i];
    ok = ok && k->shape[d - 1] == q->shape[d - 1] && v->shape[d - 2] == k->shape[d - 2];
    if (!ok)
        return zg__fail(ZG_ERR_SHAPE, "%s: q %s, k %s, v %s: expected [*, T, E], [*, S, E], [*, S, Ev] with the same *",
                        fn, sq, sk, svv);
    *sh = (attn_shape){.T = q->shape[d - 2], .S = k->shape[d - 2], .E = q->shape[d - 1], .Ev = v->shape[d - 1]};
    if (!sh->T || !sh->S || !sh->E || !sh->Ev)
        return zg__fail(ZG_ERR_SHAPE, "%s: q %s, k %s, v %s: T, S, E and Ev must be positive", fn, sq, sk, svv);
    sh->N = q->numel / (sh->T * sh->E);
    sh->q = (attn_layout){.nh = 1, .batch = sh->T * sh->E, .ld = sh->E};
    sh->k = (attn_layout){.nh = 1, .batch = sh->S * sh->E, .ld = sh->E};
    sh->v = (attn_layout){.nh = 1, .batch = sh->S * sh->Ev, .ld = sh->Ev};
    sh->o = (attn_layout){.nh = 1, .batch = sh->T * sh->Ev, .ld = sh->Ev};
    sh->causal = causal;
    if (!mask) return ZG_OK;
    if (causal)
        return zg__fail(ZG_ERR_ARG, "%s: pass attn_mask or is_causal, not both (as PyTorch)", fn);
    if (zg__check_f32(fn, mask, "attn_mask")) return ZG_ERR_ARG;
    if (mask->requires_grad) return zg__fail(ZG_ERR_ARG, "%s: an attn_mask that requires grad is not supported", fn);
    char sm[ZG_SHAPE_BUF];
    zg__shape_str(mask, sm, sizeof sm);
    bool two = mask->ndim == 2, full = mask->ndim == d;
    for (int i = 0; full && i < d - 2; i++) full = mask->shape[i] == q->shape[i];
    if (!(two || full) || mask->shape[mask->ndim - 2] != sh->T || mask->shape[mask->ndim - 1] != sh->S)
        return zg__fail(ZG_ERR_SHAPE, "%s: attn_mask %s must be [T, S] = [%lld, %lld] or q's leading dims + [T, S]",
                        fn, sm, (long long)sh->T, (long long)sh->S);
    sh->mask = zg__f32(mask);
    sh->mask_stride = two ? 0 : sh->T * sh->S;
    return ZG_OK;
}

zg_tensor *zg_scaled_dot_product_attention(zg_tensor *q, zg_tensor *k, zg_tensor *v, const zg_tensor *attn_mask,
                                           bool is_causal, float scale) {
    const char *fn = "zg_scaled_dot_product_attention";
    if (zg__check_f32(fn, q, "q") || zg__check_f32(fn, k, "k") || zg__check_f32(fn, v, "v")) return NULL;
    attn_shape sh;
    if (attn_check(fn, q, k, v, attn_mask, is_causal, &sh)) return NULL;
    if (!isfinite(scale)) return zg__fail_null("%s: scale %g must be finite (0: 1/sqrt(E))", fn, scale);
    sh.scale = scale != 0.0f ? scale : (float)(1.0 / sqrt((double)(sh.E ? sh.E : 1)));

    int64_t oshape[ZG_MAX_DIMS];
    memcpy(oshape, q->shape, (size_t)q->ndim * sizeof(int64_t));
    oshape[q->ndim - 1] = sh.Ev;
    zg_tensor *o = zg__empty(ZG_FLOAT32, oshape, q->ndim);
    const int64_t sf = attn_scratch_floats(&sh);
    float *lse = zg__arena_alloc((size_t)(sh.N ? sh.N * sh.T : 1) * sizeof(float));
    float *scratch = attn_scratch(&sh);
    if (!o || !lse || !scratch) return NULL;
    const float *Q = zg__f32(q), *K = zg__f32(k), *V = zg__f32(v);
    float *O = zg__f32(o);
    ZG_PARALLEL_FOR(h, sh.N, par_min(&sh), {
        float *scr = scratch + (int64_t)omp_get_thread_num() * sf;
        attn_forward_head(&sh, h, Q, K, V, O, lse, scr);
    });

    zg__node *n = ZG_RECORD(attn_args, "scaled_dot_product_attention", attn_backward, o, (zg_tensor *[]){q, k, v}, 3);
    if (n) {
        zg__save(n, q);
        zg__save(n, k);
        zg__save(n, v);
        zg__save(n, o);
        if (attn_mask) {
            /* backward reads the mask again: a copy, as the caller may
             * change or free theirs before it runs */
            float *copy = zg__arena_alloc((size_t)attn_mask->numel * sizeof(float));
            if (!copy) return NULL;
            memcpy(copy, sh.mask, (size_t)attn_mask->numel * sizeof(float));
            sh.mask = copy;
        }
        *ZG_NODE_ARGS(n, attn_args) = (attn_args){.sh = sh, .lse = lse};
    }
    return o;
}

/* ---- packed q, k, v: the GPT's layout ----------------------------------------- */

/* d(qkv) of every head into one [B, T, 3C] gradient: each head fills its
 * own columns of q, k and v. */
static int attn_packed_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    const attn_args *a = ZG_NODE_ARGS(n, attn_args);
    if (!zg__node_needs(n, 0)) return ZG_OK;
    const zg_tensor *qkv = n->saved[0], *o = n->saved[1];
    if (!(gin[0] = zg__empty_like(qkv))) return ZG_ERR_NOMEM;
    float *scratch = attn_scratch(&a->sh);
    if (!scratch) return ZG_ERR_NOMEM;
    const int64_t sf = attn_scratch_floats(&a->sh);
    const float *X = zg__f32(qkv), *O = zg__f32(o), *G = zg__f32(gout);
    float *dX = zg__f32(gin[0]);
    ZG_PARALLEL_FOR(h, a->sh.N, par_min(&a->sh), {
        float *scr = scratch + (int64_t)omp_get_thread_num() * sf;
        attn_backward_head(a, h, X, X, X, O, G, dX, dX, dX, scr);
    });
    return ZG_OK;
}

zg_tensor *zg__attention_packed(zg_tensor *qkv, int64_t n_head) {
    const char *fn = "zg__attention_packed";
    if (zg__check_f32(fn, qkv, "qkv")) return NULL;
    char sq[ZG_SHAPE_BUF];
    zg__shape_str(qkv, sq, sizeof sq);
    if (qkv->ndim != 3 || n_head < 1 || qkv->shape[2] % (3 * n_head) || qkv->shape[1] < 1 || qkv->shape[2] < 3)
        return zg__fail_null("%s: qkv %s must be [B, T, 3 C] with C a multiple of the %lld heads", fn, sq,
                             (long long)n_head);
    const int64_t B = qkv->shape[0], T = qkv->shape[1], C3 = qkv->shape[2], C = C3 / 3, hs = C / n_head;
    attn_shape sh = {.N = B * n_head, .T = T, .S = T, .E = hs, .Ev = hs, .causal = true};
    sh.q = (attn_layout){.nh = n_head, .batch = T * C3, .head = hs, .ld = C3, .off = 0};
    sh.k = sh.q;
    sh.k.off = C;
    sh.v = sh.q;
    sh.v.off = 2 * C;
    sh.o = (attn_layout){.nh = n_head, .batch = T * C, .head = hs, .ld = C};
    sh.scale = (float)(1.0 / sqrt((double)hs));
    zg_tensor *o = zg__empty(ZG_FLOAT32, (int64_t[]){B, T, C}, 3);
    float *lse = zg__arena_alloc((size_t)(sh.N ? sh.N * T : 1) * sizeof(float));
    float *scratch = attn_scratch(&sh);
    if (!o || !lse || !scratch) return NULL;
    const int64_t sf = attn_scratch_floats(&sh);
    const float *X = zg__f32(qkv);
    float *O = zg__f32(o);
    ZG_PARALLEL_FOR(h, sh.N, par_min(&sh), {
        float *scr = scratch + (int64_t)omp_get_thread_num() * sf;
        attn_forward_head(&sh, h, X, X, X, O, lse, scr);
    });
    zg__node *n = ZG_RECORD(attn_args, "scaled_dot_product_attention", attn_packed_backward, o, &qkv, 1);
    if (n) {
        zg__save(n, qkv);
        zg__save(n, o);
        *ZG_NODE_ARGS(n, attn_args) = (attn_args){.sh = sh, .lse = lse};
    }
    return o;
}
