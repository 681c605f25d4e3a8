/* 2-D max and average pooling over NCHW tensors (no dilation), with
 * PyTorch's rules:
 *  - output size (H + 2 pad - k) / stride + 1, floored, or with ceil_mode
 *    rounded up, then one less if the last window would start past the
 *    input and its left padding (so every window holds an input element);
 *    pad <= k / 2;
 *  - max: padding never wins (it counts as -inf); a value replaces the
 *    running maximum when it is greater or NaN, so ties go to the first
 *    maximum in scan order and NaN propagates (the last NaN is the argmax);
 *    the gradient flows to the argmax only;
 *  - avg: a window's divisor is divisor_override when given, else its
 *    size within the padded input (count_include_pad = True: kH*kW unless
 *    a ceil_mode window hangs past the right padding), else the number of
 *    input elements it covers (count_include_pad = False).
 * Planes (n, c) are independent and run in parallel. */
#include "ops_internal.h"
#include "pool_internal.h"

#include <math.h>

#define PAR_MIN_ELEMS 32768

typedef struct {
    int64_t N, C, H, W, OH, OW;
    int64_t kh, kw, sh, sw, ph, pw;
    bool overhang;     /* ceil_mode: a last window reaches past the padding */
    bool exclude_pad;  /* avg: count_include_pad = False */
    int divisor;       /* avg: divisor_override, 0 for none */
    int32_t *argmax; /* max pool: flat index in the input plane per output */
    uint8_t *win;    /* max pool 2x2 stride 2 instead: the argmax's place in
                      * its window, 0 1 / 2 3 (a quarter of the memory) */
} pool_geom;

static int64_t par_min(int64_t units, int64_t work) { return units * work >= PAR_MIN_ELEMS ? 2 : INT64_MAX; }

/* One dim's output size (PyTorch's pooling_output_shape, dilation 1); 0
 * or less when no window fits. */
static int64_t pool_out_size(int64_t in, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
    const int64_t e = in + 2 * p - k + (ceil_mode ? s - 1 : 0);
    if (e < 0) return 0;
    int64_t o = e / s + 1;
    /* The last window starts inside the input or its left padding. */
    if (ceil_mode && (o - 1) * s >= in + p) o--;
    return o;
}

/* Validates the arguments and fills the geometry; NULL stride means the
 * kernel size (PyTorch's stride=None). */
static int pool_setup(const char *fn, const zg_tensor *x, const int kernel[2], const int stride[2],
                      const int padding[2], const zg_pool_opts *o, pool_geom *g) {
    if (zg__check_f32(fn, x, "x")) return ZG_ERR_ARG;
    if (!kernel) return zg__fail(ZG_ERR_ARG, "%s: kernel is NULL", fn);
    const int k[2] = {kernel[0], kernel[1]};
    const int s[2] = {stride ? stride[0] : k[0], stride ? stride[1] : k[1]};
    const int p[2] = {padding ? padding[0] : 0, padding ? padding[1] : 0};
    char sx[ZG_SHAPE_BUF];
    zg__shape_str(x, sx, sizeof sx);
    if (x->ndim != 4) return zg__fail(ZG_ERR_SHAPE, "%s: x of shape %s must be 4-D [N,C,H,W]", fn, sx);
    if (k[0] <= 0 || k[1] <= 0) return zg__fail(ZG_ERR_ARG, "%s: kernel {%d,%d} must be positive", fn, k[0], k[1]);
    if (s[0] <= 0 || s[1] <= 0) return zg__fail(ZG_ERR_ARG, "%s: stride {%d,%d} must be positive", fn, s[0], s[1]);
    if (p[0] < 0 || p[1] < 0) return zg__fail(ZG_ERR_ARG, "%s: padding {%d,%d} must be non-negative", fn, p[0], p[1]);
    if (p[0] > k[0] / 2 || p[1] > k[1] / 2)
        return zg__fail(ZG_ERR_ARG, "%s: padding {%d,%d} should be at most half of kernel size {%d,%d}", fn, p[0], p[1],
                        k[0], k[1]);
    *g = (pool_geom){.N = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3],
                     .kh = k[0], .kw = k[1], .sh = s[0], .sw = s[1], .ph = p[0], .pw = p[1],
                     .exclude_pad = o->exclude_pad, .divisor = o->divisor_override};
    g->OH = pool_out_size(g->H, g->kh, g->sh, g->ph, o->ceil_mode);
    g->OW = pool_out_size(g->W, g->kw, g->sw, g->pw, o->ceil_mode);
    if (g->OH <= 0 || g->OW <= 0)
        return zg__fail(ZG_ERR_SHAPE,
                        "%s: x of shape %s with kernel {%d,%d} and padding {%d,%d}: output size %lldx%lld is too small",
                        fn, sx, k[0], k[1], p[0], p[1], (long long)g->OH, (long long)g->OW);
    if (g->H * g->W > INT32_MAX)
        return zg__fail(ZG_ERR_SHAPE, "%s: x of shape %s has planes too large", fn, sx);
    g->overhang = (g->OH - 1) * g->sh + g->kh > g->H + 2 * g->ph || (g->OW - 1) * g->sw + g->kw > g->W + 2 * g->pw;
    return ZG_OK;
}

static zg_tensor *pool_out(const pool_geom *g) {
    int64_t shape[4] = {g->N, g->C, g->OH, g->OW};
    return zg__empty(ZG_FLOAT32, shape, 4);
}

/* ---- max ---------------------------------------------------------------- */

/* One plane: out[oh, ow] = max over the window, and its argmax if asked. */
static void max_plane(const pool_geom *g, const float *restrict x, float *restrict y, int32_t *restrict am) {
    for (int64_t oh = 0; oh < g->OH; oh++) {
        int64_t h0 = oh * g->sh - g->ph, h1 = h0 + g->kh;
        if (h0 < 0) h0 = 0;
        if (h1 > g->H) h1 = g->H;
        for (int64_t ow = 0; ow < g->OW; ow++) {
            int64_t w0 = ow * g->sw - g->pw, w1 = w0 + g->kw;
            if (w0 < 0) w0 = 0;
            if (w1 > g->W) w1 = g->W;
            float m = -INFINITY;
            int64_t idx = h0 * g->W + w0;
            for (int64_t h = h0; h < h1; h++)
                for (int64_t w = w0; w < w1; w++) {
                    float v = x[h * g->W + w];
                    if (v > m || isnan(v)) {
                        m = v;
                        idx = h * g->W + w;
                    }
                }
            y[oh * g->OW + ow] = m;
            if (am) am[oh * g->OW + ow] = (int32_t)idx;
        }
    }
}

/* ---- max 2x2, stride 2, no padding (the usual case) -----------------------
 * The same rule in two stages: for a window a b / c d scanned in that order,
 *     top = pick(a, b), bottom = pick(c, d), result = pick(top, bottom)
 * where pick(u, v) is v when v > u or v is NaN, else u. Without NaN the
 * scan keeps the first maximum, and the top pair comes first; a NaN in the
 * bottom pair replaces whatever the top pair gave, and within a pair the
 * later NaN wins, as in the scan. The first stage runs over the pairs of
 * the input rows, which with W even lie end to end: one long loop that the
 * compiler vectorises. The second runs over output rows, which are short
 * (14 and 7 outputs in the default CNN), in unaligned blocks of 8 or 4
 * lanes, the last block overlapping the one before (it rewrites the same
 * values). The backward runs the two stages in reverse. Planes go through
 * in blocks of output rows, so that the buffers between the stages stay on
 * the stack; a window's place is 0 1 / 2 3. */
#define PAIRS_MAX 1024

bool zg__max_pool_2x2_fits(int64_t W) { return W / 2 <= PAIRS_MAX / 2; }

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint8_t v8b __attribute__((vector_size(8)));
typedef uint8_t v32b __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef uint8_t v4b __attribute__((vector_size(4)));
typedef uint8_t v16b __attribute__((vector_size(16)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef uint32_t v4u __attribute__((vector_size(16)));

/* Places (0..3) from 32-bit lanes to bytes by a byte shuffle, and back by
 * shifts: GCC turns __builtin_convertvector between these widths into
 * scalar code. LO is the low byte of a lane. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define LO 3
#else
#define LO 0
#endif
/* (Vectors pass through pointers: the baseline x86-64 ABI has no AVX
 * registers to pass them in.) */
static inline void narrow8(const v8i *k, uint8_t *win) {
    const v32b b = (v32b)*k;
    const v8b r = __builtin_shufflevector(b, b, LO, 4 + LO, 8 + LO, 12 + LO, 16 + LO, 20 + LO, 24 + LO, 28 + LO);
    memcpy(win, &r, sizeof r);
}
static inline void narrow4(const v4i *k, uint8_t *win) {
    const v16b b = (v16b)*k;
    const v4b r = __builtin_shufflevector(b, b, LO, 4 + LO, 8 + LO, 12 + LO);
    memcpy(win, &r, sizeof r);
}
/* Bytes win[0..L) into 32-bit lanes: each group of 4 read as one word,
 * shifted per lane. */
static inline void widen8(const uint8_t *win, v8i *k) {
    uint32_t w[2];
    memcpy(w, win, sizeof w);
    const v8i v = {(int32_t)w[0], (int32_t)w[0], (int32_t)w[0], (int32_t)w[0],
                   (int32_t)w[1], (int32_t)w[1], (int32_t)w[1], (int32_t)w[1]};
    const v8i sh = {8 * LO, 8 * (LO ^ 1), 8 * (LO ^ 2), 8 * (LO ^ 3), 8 * LO, 8 * (LO ^ 1), 8 * (LO ^ 2), 8 * (LO ^ 3)};
    *k = (v8i)((v8u)v >> (v8u)sh) & 0xff;
}
static inline void widen4(const uint8_t *win, v4i *k) {
    uint32_t w;
    memcpy(&w, win, sizeof w);
    const v4i v = {(int32_t)w, (int32_t)w, (int32_t)w, (int32_t)w};
    const v4i sh = {8 * LO, 8 * (LO ^ 1), 8 * (LO ^ 2), 8 * (LO ^ 3)};
    *k = (v4i)((v4u)v >> (v4u)sh) & 0xff;
}

/* m[i] = pick(x[2i], x[2i+1]); b[i]: whether x[2i+1] won. */
static inline void pick_pairs(const float *restrict x, int64_t n, float *restrict m, int32_t *restrict b) {
    for (int64_t i = 0; i < n; i++) {
        const float u = x[2 * i], v = x[2 * i + 1];
        const int32_t t = (v > u) | (v != v);
        m[i] = t ? v : u;
        b[i] = t;
    }
}

/* One block of L outputs: y = pick(top, bottom) and the winner's place. */
#define DEFINE_PICK_ROWS(L, vf, vi)                                                                    \
    static inline void pick_rows##L(const float *mt, const int32_t *bt, const float *mb, const int32_t *bb, \
                                    float *y, uint8_t *win) {                                              \
        vf u, v;                                                                                           \
        vi ku, kv;                                                                                         \
        memcpy(&u, mt, sizeof u);                                                                          \
        memcpy(&v, mb, sizeof v);                                                                          \
        memcpy(&ku, bt, sizeof ku);                                                                        \
        memcpy(&kv, bb, sizeof kv);                                                                        \
        const vi t = (v > u) | (v != v);                                                                   \
        const vf r = (vf)(((vi)v & t) | ((vi)u & ~t));                                                     \
        const vi k = ((kv + 2) & t) | (ku & ~t);                                                           \
        memcpy(y, &r, sizeof r);                                                                           \
        narrow##L(&k, win);                                                                                \
    }
DEFINE_PICK_ROWS(8, v8f, v8i)
DEFINE_PICK_ROWS(4, v4f, v4i)

static inline void pick_rows(const float *mt, const int32_t *bt, const float *mb, const int32_t *bb, int64_t n,
                             float *y, uint8_t *win) {
    if (n >= 8) {
        for (int64_t k = 0;; k += 8) {
            if (k > n - 8) k = n - 8;
            pick_rows8(mt + k, bt + k, mb + k, bb + k, y + k, win + k);
            if (k == n - 8) break;
        }
    } else if (n >= 4) {
        pick_rows4(mt, bt, mb, bb, y, win);
        pick_rows4(mt + n - 4, bt + n - 4, mb + n - 4, bb + n - 4, y + n - 4, win + n - 4);
    } else {
        for (int64_t i = 0; i < n; i++) {
            const int32_t t = (mb[i] > mt[i]) | (mb[i] != mb[i]);
            y[i] = t ? mb[i] : mt[i];
            win[i] = (uint8_t)(t ? 2 + bb[i] : bt[i]);
        }
    }
}

ZG_SIMD_CLONES
static void max_plane_2x2(const float *restrict x, int64_t H, int64_t W, float *restrict y, uint8_t *restrict win) {
    const int64_t OH = H / 2, OW = W / 2, rows = PAIRS_MAX / (2 * OW);
    float m[PAIRS_MAX];
    int32_t b[PAIRS_MAX];
    uint8_t unused[PAIRS_MAX / 2];
    for (int64_t oh0 = 0; oh0 < OH; oh0 += rows) {
        const int64_t nr = rows < OH - oh0 ? rows : OH - oh0;
        const float *xs = x + 2 * oh0 * W;
        if (W == 2 * OW)
            pick_pairs(xs, 2 * nr * OW, m, b);
        else
            for (int64_t r = 0; r < 2 * nr; r++) pick_pairs(xs + r * W, OW, m + r * OW, b + r * OW);
        for (int64_t i = 0; i < nr; i++) {
            const int64_t o = (oh0 + i) * OW;
            pick_rows(m + 2 * i * OW, b + 2 * i * OW, m + (2 * i + 1) * OW, b + (2 * i + 1) * OW, OW, y + o,
                      win ? win + o : unused);
        }
    }
}

/* The backward's first stage, a block of L outputs: each gradient goes to
 * its winner's row (+0 to the other), with its column (0 or 1) for both. */
#define DEFINE_UNPICK_ROWS(L, vf, vi)                                                                       \
    static inline void unpick_rows##L(const float *s, const uint8_t *win, float *vt, float *vbot, int32_t *bt, \
                                      int32_t *bb) {                                                           \
        vf gv;                                                                                                 \
        memcpy(&gv, s, sizeof gv);                                                                             \
        vi k;                                                                                                  \
        widen##L(win, &k);                                                                                     \
        const vi top = k < 2, col = k & 1;                                                                     \
        const vf a = (vf)((vi)gv & top), c = (vf)((vi)gv & ~top);                                              \
        memcpy(vt, &a, sizeof a);                                                                              \
        memcpy(vbot, &c, sizeof c);                                                                            \
        memcpy(bt, &col, sizeof col);                                                                          \
        memcpy(bb, &col, sizeof col);                                                                          \
    }
DEFINE_UNPICK_ROWS(8, v8f, v8i)
DEFINE_UNPICK_ROWS(4, v4f, v4i)

static inline void unpick_rows(const float *s, const uint8_t *win, int64_t n, float *vt, float *vbot, int32_t *bt,
                               int32_t *bb) {
    if (n >= 8) {
        for (int64_t k = 0;; k += 8) {
            if (k > n - 8) k = n - 8;
            unpick_rows8(s + k, win + k, vt + k, vbot + k, bt + k, bb + k);
            if (k == n - 8) break;
        }
    } else if (n >= 4) {
        unpick_rows4(s, win, vt, vbot, bt, bb);
        unpick_rows4(s + n - 4, win + n - 4, vt + n - 4, vbot + n - 4, bt + n - 4, bb + n - 4);
    } else {
        for (int64_t i = 0; i < n; i++) {
            vt[i] = win[i] < 2 ? s[i] : 0.0f;
            vbot[i] = win[i] < 2 ? 0.0f : s[i];
            bt[i] = bb[i] = win[i] & 1;
        }
    }
}

/* The second stage: pair i gets v[i] in its column b[i], +0 in the other. */
static inline void unpick_pairs(const float *restrict v, const int32_t *restrict b, int64_t n, float *restrict d) {
    for (int64_t i = 0; i < n; i++) {
        d[2 * i] = b[i] ? 0.0f : v[i];
        d[2 * i + 1] = b[i] ? v[i] : 0.0f;
    }
}

/* dX of one plane: every element written once (the uncovered last row and
 * column of odd sizes zero). */
ZG_SIMD_CLONES
static void max_plane_backward_2x2(const float *restrict s, const uint8_t *restrict win, int64_t H, int64_t W,
                                   float *restrict d) {
    const int64_t OH = H / 2, OW = W / 2, rows = PAIRS_MAX / (2 * OW);
    float v[PAIRS_MAX];
    int32_t b[PAIRS_MAX];
    for (int64_t oh0 = 0; oh0 < OH; oh0 += rows) {
        const int64_t nr = rows < OH - oh0 ? rows : OH - oh0;
        for (int64_t i = 0; i < nr; i++) {
            const int64_t o = (oh0 + i) * OW;
            unpick_rows(s + o, win + o, OW, v + 2 * i * OW, v + (2 * i + 1) * OW, b + 2 * i * OW,
                        b + (2 * i + 1) * OW);
        }
        float *ds = d + 2 * oh0 * W;
        if (W == 2 * OW) {
            unpick_pairs(v, b, 2 * nr * OW, ds);
        } else {
            for (int64_t r = 0; r < 2 * nr; r++) {
                unpick_pairs(v + r * OW, b + r * OW, OW, ds + r * W);
                ds[r * W + W - 1] = 0.0f;
            }
        }
    }
    for (int64_t h = 2 * OH; h < H; h++) memset(d + h * W, 0, (size_t)W * sizeof(float));
}

/* Entry points for other files; the multi-versioned kernels stay static
 * (clang 14 leaves calls from another file to a target_clones function
 * unresolved at link time). */
void zg__max_pool_2x2_plane(const float *x, int64_t H, int64_t W, float *y, uint8_t *win) {
    max_plane_2x2(x, H, W, y, win);
}

void zg__max_pool_2x2_plane_backward(const float *s, const uint8_t *win, int64_t H, int64_t W, float *d) {
    max_plane_backward_2x2(s, win, H, W, d);
}

/* Backward of one plane when windows tile it without overlap or padding
 * (stride == kernel): every element is written once, the argmax of its
 * window gets the gradient, the rest (and any uncovered border) zero. */
static void max_plane_backward_tiled(const pool_geom *g, const float *restrict s, const int32_t *restrict am,
                                     float *restrict d) {
    const int64_t W = g->W;
    for (int64_t oh = 0; oh < g->OH; oh++) {
        for (int64_t i = 0; i < g->kh; i++) {
            const int64_t h = oh * g->kh + i;
            float *dr = d + h * W;
            for (int64_t ow = 0; ow < g->OW; ow++) {
                const int32_t a = am[oh * g->OW + ow];
                const float v = s[oh * g->OW + ow];
                for (int64_t j = 0; j < g->kw; j++) {
                    const int64_t w = ow * g->kw + j;
                    dr[w] = h * W + w == a ? v : 0.0f;
                }
            }
            for (int64_t w = g->OW * g->kw; w < W; w++) dr[w] = 0.0f;
        }
    }
    for (int64_t h = g->OH * g->kh; h < g->H; h++) memset(d + h * W, 0, (size_t)W * sizeof(float));
}

/* The pooling's geometry (in the arena; max pooling's with where each
 * maximum came from). */
typedef struct {
    const pool_geom *geom;
} pool_args;

/* dX = each gradient of G at its window's argmax (A^T G for max pooling
 * seen as y = A x). */
static void max_scatter(const void *ctx, const float *G, float *dX) {
    const pool_geom *g = ctx;
    const int64_t HW = g->H * g->W, OHW = g->OH * g->OW;
    const bool tiled = g->sh == g->kh && g->sw == g->kw && g->ph == 0 && g->pw == 0 && !g->overhang;
    ZG_PARALLEL_FOR(u, g->N * g->C, par_min(g->N * g->C, HW), {
        float *d = dX + u * HW;
        const float *s = G + u * OHW;
        const int32_t *am = g->argmax ? g->argmax + u * OHW : NULL;
        if (g->win) {
            max_plane_backward_2x2(s, g->win + u * OHW, g->H, g->W, d);
        } else if (tiled) {
            max_plane_backward_tiled(g, s, am, d);
        } else {
            memset(d, 0, (size_t)HW * sizeof(float));
            for (int64_t o = 0; o < OHW; o++) d[am[o]] += s[o];
        }
    });
}

/* Y = X at each window's argmax (A X, the pooling with its argmaxes
 * fixed): the backward of max_scatter. */
static void max_gather(const void *ctx, const float *X, float *Y) {
    const pool_geom *g = ctx;
    const int64_t HW = g->H * g->W, OHW = g->OH * g->OW;
    ZG_PARALLEL_FOR(u, g->N * g->C, par_min(g->N * g->C, OHW), {
        const float *x = X + u * HW;
        float *y = Y + u * OHW;
        for (int64_t o = 0; o < OHW; o++) {
            /* the 2x2 windows' places 0 1 / 2 3 */
            const int64_t w = g->win ? g->win[u * OHW + o] : 0, oh = o / g->OW, ow = o % g->OW;
            y[o] = x[g->win ? (2 * oh + w / 2) * g->W + 2 * ow + w % 2 : g->argmax[u * OHW + o]];
        }
    });
}

static int max_pool2d_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    zg_tensor *gx = zg__empty_like(n->in[0]);
    if (!gx) return ZG_ERR_NOMEM;
    max_scatter(ZG_NODE_ARGS(n, pool_args)->geom, zg__f32(gout), zg__f32(gx));
    gin[0] = gx;
    return ZG_OK;
}

static int max_pool2d_backward_diff(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    const zg__linmap spec = {.name = "max_pool2d", .name_t = "max_pool2d_backward", .apply = max_gather,
                             .apply_t = max_scatter, .ctx = ZG_NODE_ARGS(n, pool_args)->geom};
    return zg__linmap_backward(n, gout, gin, &spec);
}

static const zg_pool_opts default_opts = {0};

static zg_tensor *max_pool2d(const char *fn, zg_tensor *x, const int kernel[2], const int stride[2],
                             const int padding[2], const zg_pool_opts *opts) {
    const zg_pool_opts *o = opts ? opts : &default_opts;
    if (o->exclude_pad || o->divisor_override)
        return zg__fail_null("%s: exclude_pad and divisor_override apply to average pooling only", fn);
    pool_geom g;
    if (pool_setup(fn, x, kernel, stride, padding, o, &g)) return NULL;
    zg_tensor *y = pool_out(&g);
    if (!y) return NULL;
    const bool track = zg_grad_enabled() && x->requires_grad;
    const bool k2s2 = g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0 && !g.overhang &&
                      zg__max_pool_2x2_fits(g.W);
    pool_geom *sg = NULL;
    if (track) {
        sg = zg__arena_alloc(sizeof *sg);
        if (!sg) return NULL;
        *sg = g;
        const size_t n_out = (size_t)(y->numel ? y->numel : 1);
        if (k2s2)
            sg->win = zg__arena_alloc(n_out);
        else
            sg->argmax = zg__arena_alloc(n_out * sizeof(int32_t));
        if (!sg->win && !sg->argmax) return NULL;
    }
    const int64_t HW = g.H * g.W, OHW = g.OH * g.OW;
    const float *X = zg__f32(x);
    float *Y = zg__f32(y);
    int32_t *AM = sg ? sg->argmax : NULL;
    uint8_t *WIN = sg ? sg->win : NULL;
    ZG_PARALLEL_FOR(u, g.N * g.C, par_min(g.N * g.C, HW), {
        if (k2s2)
            max_plane_2x2(X + u * HW, g.H, g.W, Y + u * OHW, WIN ? WIN + u * OHW : NULL);
        else
            max_plane(&g, X + u * HW, Y + u * OHW, AM ? AM + u * OHW : NULL);
    });
    zg__node *n = ZG_RECORD(pool_args, "max_pool2d", max_pool2d_backward, y, (zg_tensor *[]){x}, 1);
    zg__node_set_double_backward(n, max_pool2d_backward_diff);
    if (n) ZG_NODE_ARGS(n, pool_args)->geom = sg;
    return y;
}

/* ---- average ------------------------------------------------------------ */

/* The input rows (or columns) [*lo, *hi) of a window of k starting at s
 * (before clipping to the n of the input). */
static inline void clip_window(int64_t s, int64_t k, int64_t n, int64_t *lo, int64_t *hi) {
    *lo = s < 0 ? 0 : s;
    *hi = s + k < n ? s + k : n;
}

/* The divisor of the window whose unclipped rows are [h0, h0 + kh) and
 * columns [w0, w0 + kw). */
static float avg_divisor(const pool_geom *g, int64_t h0, int64_t w0) {
    if (g->divisor) return (float)g->divisor;
    int64_t h1 = h0 + g->kh, w1 = w0 + g->kw;
    if (h1 > g->H + g->ph) h1 = g->H + g->ph;
    if (w1 > g->W + g->pw) w1 = g->W + g->pw;
    if (g->exclude_pad) {
        if (h0 < 0) h0 = 0;
        if (w0 < 0) w0 = 0;
        if (h1 > g->H) h1 = g->H;
        if (w1 > g->W) w1 = g->W;
    }
    return (float)((h1 - h0) * (w1 - w0));
}

/* One plane's gradient: each output's gradient over its divisor, added to
 * the input elements of its window. */
static void avg_plane_backward(const pool_geom *g, const float *restrict s, float *restrict d) {
    memset(d, 0, (size_t)(g->H * g->W) * sizeof(float));
    for (int64_t oh = 0; oh < g->OH; oh++) {
        const int64_t hs = oh * g->sh - g->ph;
        int64_t h0, h1, w0, w1;
        clip_window(hs, g->kh, g->H, &h0, &h1);
        for (int64_t ow = 0; ow < g->OW; ow++) {
            const int64_t ws = ow * g->sw - g->pw;
            clip_window(ws, g->kw, g->W, &w0, &w1);
            const float v = s[oh * g->OW + ow] * (1.0f / avg_divisor(g, hs, ws));
            for (int64_t h = h0; h < h1; h++)
                for (int64_t w = w0; w < w1; w++) d[h * g->W + w] += v;
        }
    }
}

static void avg_scatter(const void *ctx, const float *G, float *dX) {
    const pool_geom *g = ctx;
    const int64_t HW = g->H * g->W, OHW = g->OH * g->OW;
    ZG_PARALLEL_FOR(u, g->N * g->C, par_min(g->N * g->C, HW), { avg_plane_backward(g, G + u * OHW, dX + u * HW); });
}

static int avg_pool2d_backward(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    zg_tensor *gx = zg__empty_like(n->in[0]);
    if (!gx) return ZG_ERR_NOMEM;
    avg_scatter(ZG_NODE_ARGS(n, pool_args)->geom, zg__f32(gout), zg__f32(gx));
    gin[0] = gx;
    return ZG_OK;
}

/* One plane: each output the sum of its window's input elements over the
 * window's divisor. */
static void avg_plane(const pool_geom *g, const float *restrict xs, float *restrict ys) {
    for (int64_t oh = 0; oh < g->OH; oh++) {
        const int64_t hs = oh * g->sh - g->ph;
        int64_t h0, h1, w0, w1;
        clip_window(hs, g->kh, g->H, &h0, &h1);
        for (int64_t ow = 0; ow < g->OW; ow++) {
            const int64_t ws = ow * g->sw - g->pw;
            clip_window(ws, g->kw, g->W, &w0, &w1);
            float sum = 0.0f;
            for (int64_t h = h0; h < h1; h++)
                for (int64_t w = w0; w < w1; w++) sum += xs[h * g->W + w];
            ys[oh * g->OW + ow] = sum / avg_divisor(g, hs, ws);
        }
    }
}

/* All planes (the forward, and the backward of avg_scatter). */
static void avg_apply(const void *ctx, const float *X, float *Y) {
    const pool_geom *g = ctx;
    const int64_t HW = g->H * g->W, OHW = g->OH * g->OW;
    ZG_PARALLEL_FOR(u, g->N * g->C, par_min(g->N * g->C, HW), { avg_plane(g, X + u * HW, Y + u * OHW); });
}

static int avg_pool2d_backward_diff(zg__node *n, zg_tensor *gout, zg_tensor **gin) {
    const zg__linmap spec = {.name = "avg_pool2d", .name_t = "avg_pool2d_backward", .apply = avg_apply,
                             .apply_t = avg_scatter, .ctx = ZG_NODE_ARGS(n, pool_args)->geom};
    return zg__linmap_backward(n, gout, gin, &spec);
}

static zg_tensor *avg_pool2d(const char *fn, zg_tensor *x, const int kernel[2], const int stride[2],
                             const int padding[2], const zg_pool_opts *opts) {
    const zg_pool_opts *o = opts ? opts : &default_opts;
    pool_geom g;
    if (pool_setup(fn, x, kernel, stride, padding, o, &g)) return NULL;
    zg_tensor *y = pool_out(&g);
    if (!y) return NULL;
    avg_apply(&g, zg__f32(x), zg__f32(y));
    zg__node *n = ZG_RECORD(pool_args, "avg_pool2d", avg_pool2d_backward, y, (zg_tensor *[]){x}, 1);
    zg__node_set_double_backward(n, avg_pool2d_backward_diff);
    if (n) {
        pool_geom *sg = zg__arena_alloc(sizeof *sg);
        if (!sg) return NULL;
        *sg = g;
        ZG_NODE_ARGS(n, pool_args)->geom = sg;
    }
    return y;
}

zg_tensor *zg_max_pool2d(zg_tensor *x, const int kernel[2], const int stride[2], const int padding[2]) {
    return max_pool2d("zg_max_pool2d", x, kernel, stride, padding, NULL);
}

zg_tensor *zg_max_pool2d_ex(zg_tensor *x, const int kernel[2], const int stride[2], const int padding[2],
                            const zg_pool_opts *opts) {
    return max_pool2d("zg_max_pool2d_ex", x, kernel, stride, padding, opts);
}

zg_tensor *zg_avg_pool2d(zg_tensor *x, const int kernel[2], const int stride[2], const int padding[2]) {
    return avg_pool2d("zg_avg_pool2d", x, kernel, stride, padding, NULL);
}

zg_tensor *zg_avg_pool2d_ex(zg_tensor *x, const int kernel[2], const int stride[2], const int padding[2],
                            const zg_pool_opts *opts) {
    return avg_pool2d("zg_avg_pool2d_ex", x, kernel, stride, padding, opts);
}
