/* Losses: cross_entropy (reductions, ignore_index, label smoothing, class
 * weights and their combinations), nll_loss, mse_loss, bce_with_logits
 * (pos_weight, extreme logits). Values and some gradients against PyTorch
 * (torch 1.13, printed with 9 digits); a gradient check of every option;
 * the errors of each entry point. */
#include "harness.h"

#define SHAPE(...) ((int64_t[]){__VA_ARGS__}), (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))

/* X[i][j] = 2 sin(1.3 i + 0.7 j), 4 rows of 5 classes. */
static const float X[20] = {0.0f,         1.28843534f,  1.97089946f,  1.72641873f,  0.669976294f,
                            1.92711639f,  1.81859481f,  0.854759753f, -0.511082232f, -1.63655424f,
                            1.03100276f,  -0.315491378f, -1.513605f,  -1.99984646f, -1.54552901f,
                            -1.37553227f, -1.98738205f, -1.66453493f, -0.558830976f, 0.809699833f};
static const int64_t TGT[4] = {1, 0, 4, 2};
static const int64_t TGT_IGN[4] = {1, -100, 4, 2};
static const float CW[5] = {0.5f, 1.0f, 2.0f, 1.5f, 0.25f};

static zg_tensor *logits_leaf(void) { return zgt_param_from(X, SHAPE(4, 5)); }

static zg_tensor *targets(const int64_t *v) { return zg_tensor_from_data(ZG_INT64, v, SHAPE(4)); }

static bool has_grad_fn(const zg_tensor *t, const char *name) {
    const char *g = zg_tensor_grad_fn_name(t);
    return g && !strcmp(g, name);
}

static zg_loss_opts opts_of(zg_reduction r, int64_t ignore, float eps, const zg_tensor *w) {
    zg_loss_opts o = ZG_LOSS_DEFAULTS;
    o.reduction = r;
    o.ignore_index = ignore;
    o.label_smoothing = eps;
    o.weight = w;
    return o;
}

/* ---- cross_entropy: values ---------------------------------------------- */

TEST(cross_entropy_reductions_match_pytorch) {
    zg_tensor *x = logits_leaf(), *t = targets(TGT);
    zg_tensor *m = zg_cross_entropy(x, t, NULL);
    CHECK(zg_tensor_ndim(m) == 0);
    CHECK_NEAR(zg_tensor_item(m), 2.09426498f, 1e-6);
    CHECK(has_grad_fn(m, "cross_entropy"));
    zg_loss_opts o = ZG_LOSS_DEFAULTS;
    CHECK_NEAR(zg_tensor_item(zg_cross_entropy(x, t, &o)), 2.09426498f, 1e-6);
    o.reduction = ZG_REDUCTION_SUM;
    CHECK_NEAR(zg_tensor_item(zg_cross_entropy(x, t, &o)), 8.37705994f, 1e-5);
    o.reduction = ZG_REDUCTION_NONE;
    zg_tensor *n = zg_cross_entropy(x, t, &o);
    CHECK(zg_tensor_ndim(n) == 1 && zg_tensor_size(n, 0) == 4);
    CHECK_VALUES(n, ((float[]){1.67575026f, 0.856546402f, 2.95699811f, 2.88776565f}), 4, 1e-6);
    zg_tensor_free(x);
    zg_tensor_free(t);
}

TEST(cross_entropy_ignore_index_matches_pytorch) {
    zg_tensor *x = logits_leaf(), *ti = targets(TGT_IGN), *t = targets(TGT);
    zg_loss_opts o = ZG_LOSS_DEFAULTS;
    /* The ignored row is out of the mean's denominator (3 rows, not 4). */
    CHECK_NEAR(zg_tensor_item(zg_cross_entropy(x, ti, &o)), 2.50683808f, 1e-6);
    o.reduction = ZG_REDUCTION_SUM;
    CHECK_NEAR(zg_tensor_item(zg_cross_entropy(x, ti, &o)), 7.52051401f, 1e-5);
    o.reduction = ZG_REDUCTION_NONE;
    CHECK_VALUES(zg_cross_entropy(x, ti, &o), ((float[]){1.67575026f, 0, 2.95699811f, 2.88776565f}), 4, 1e-6);
    /* A class index as ignore_index. */
    o = opts_of(ZG_REDUCTION_MEAN, 4, 0, NULL);
    CHECK_NEAR(zg_tensor_item(zg_cross_entropy(x, t, &o)), 1.80668736f, 1e-6);
    /* The ignored row gets no gradient. */
    o = ZG_LOSS_DEFAULTS;
    CHECK_OK(zg_backward(zg_cross_entropy(x, ti, &o), NULL));
    for (int c = 0; c < 5; c++) CHECK(zg_tensor_get(zg_tensor_grad(x), 5 + c) == 0.0f);
    zg_tensor_free(x);
    zg_tensor_free(ti);
    zg_tensor_free(t);
}

TEST(cross_entropy_label_smoothing_matches_pytorch) {
    zg_tensor *x = logits_leaf(), *t = targets(TGT);
    zg_loss_opts o = opts_of(ZG_REDUCTION_MEAN, -100, 0.1f, NULL);
    CHECK_NEAR(zg_tensor_item(zg_cross_entropy(x, t, &o)), 2.09945965f, 1e-6);
    o.reduction = ZG_REDUCTION_SUM;
    CHECK_NEAR(zg_tensor_item(zg_cross_entropy(x, t, &o)), 8.39783859f, 1e-5);
    o.reduction = ZG_REDUCTION_NONE;
    CHECK_VALUES(zg_cross_entropy(x, t, &o), ((float[]){1.69147909f, 1.00020134f, 2.88931465f, 2.81684375f}), 4,
                 1e-6);
    zg_tensor_free(x);
    zg_tensor_free(t);
}

TEST(cross_entropy_class_weights_match_pytorch) {
    zg_tensor *x = logits_leaf(), *t = targets(TGT), *w = zg_tensor_from_data(ZG_FLOAT32, CW, SHAPE(5));
    /* mean = sum of weighted losses / sum of the targets' weights. */
    zg_loss_opts o = opts_of(ZG_REDUCTION_MEAN, -100, 0, w);
    CHECK_NEAR(zg_tensor_item(zg_cross_entropy(x, t, &o)), 2.29834795f, 1e-6);
    o.reduction = ZG_REDUCTION_SUM;
    CHECK_NEAR(zg_tensor_item(zg_cross_entropy(x, t, &o)), 8.61880493f, 1e-5);
    o.reduction = ZG_REDUCTION_NONE;
    CHECK_VALUES(zg_cross_entropy(x, t, &o), ((float[]){1.67575026f, 0.428273201f, 0.739249527f, 5.77553129f}), 4,
                 1e-6);
    zg_tensor_free(x);
    zg_tensor_free(t);
    zg_tensor_free(w);
}

TEST(cross_entropy_weights_ignore_smoothing_together_match_pytorch) {
    zg_tensor *x = logits_leaf(), *t = targets(TGT_IGN), *w = zg_tensor_from_data(ZG_FLOAT32, CW, SHAPE(5));
    zg_loss_opts o = opts_of(ZG_REDUCTION_SUM, -100, 0.2f, w);
    CHECK_NEAR(zg_tensor_item(zg_cross_entropy(x, t, &o)), 7.92283201f, 1e-5);
    o.reduction = ZG_REDUCTION_NONE;
    CHECK_VALUES(zg_cross_entropy(x, t, &o), ((float[]){1.64358497f, 0, 1.13634217f, 5.14290524f}), 4, 1e-6);
    o.reduction = ZG_REDUCTION_MEAN;
    zg_tensor *l = zg_cross_entropy(x, t, &o);
    CHECK_NEAR(zg_tensor_item(l), 2.43779445f, 1e-6);
    CHECK_OK(zg_backward(l, NULL));
    const float g[20] = {0.00988261309f, -0.200295582f, 0.0904803574f, 0.0716712177f, 0.0282613859f,
                         0,              0,             0,             0,             0,
                         0.0800777003f,  0.0101255048f, -0.0178458765f, -0.0142987436f, -0.0580585748f,
                         0.0352620184f,  0.0101540675f, -0.48590216f,  0.0752635151f, 0.365222514f};
    CHECK_VALUES(zg_tensor_grad(x), g, 20, 1e-6);
    zg_tensor_free(x);
    zg_tensor_free(t);
    zg_tensor_free(w);
}

TEST(cross_entropy_1d_logits_with_0dim_target) {
    zg_tensor *x = zg_tensor_from_data(ZG_FLOAT32, X + 10, SHAPE(5));
    zg_tensor *t = zg_tensor_from_data(ZG_INT64, (int64_t[]){3}, NULL, 0);
    CHECK_NEAR(zg_tensor_item(zg_cross_entropy(x, t, NULL)), 3.41131544f, 1e-6);
    zg_loss_opts o = opts_of(ZG_REDUCTION_NONE, -100, 0.3f, NULL);
    zg_tensor *l = zg_cross_entropy(x, t, &o);
    CHECK(zg_tensor_ndim(l) == 0);
    CHECK_NEAR(zg_tensor_item(l), 3.07196975f, 1e-6);
    zg_tensor_free(x);
    zg_tensor_free(t);
}

TEST(cross_entropy_all_ignored) {
    zg_tensor *x = logits_leaf(), *t = targets((int64_t[]){-100, -100, -100, -100});
    /* mean over no rows is 0/0, as in PyTorch; sum is 0 with zero gradient. */
    CHECK(isnan(zg_tensor_item(zg_cross_entropy(x, t, NULL))));
    zg_loss_opts o = opts_of(ZG_REDUCTION_SUM, -100, 0.1f, NULL);
    zg_tensor *s = zg_cross_entropy(x, t, &o);
    CHECK(zg_tensor_item(s) == 0.0f);
    CHECK_OK(zg_backward(s, NULL));
    for (int i = 0; i < 20; i++) CHECK(zg_tensor_get(zg_tensor_grad(x), i) == 0.0f);
    zg_tensor_free(x);
    zg_tensor_free(t);
}

TEST(cross_entropy_stable_at_large_logits) {
    zg_tensor *x = zg_tensor_from_data(ZG_FLOAT32, (float[]){1000, -1000, 0, 500, 1000, 999}, SHAPE(2, 3));
    zg_tensor_set_requires_grad(x, true);
    zg_tensor *t = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 2}, SHAPE(2));
    zg_loss_opts o = opts_of(ZG_REDUCTION_NONE, -100, 0, NULL);
    zg_tensor *l = zg_cross_entropy(x, t, &o);
    /* Row 0: 2000; row 1: log(1 + e) (500 is negligible). */
    CHECK_VALUES(l, ((float[]){2000.0f, 1.31326163f}), 2, 1e-4);
    CHECK_OK(zg_backward(zg_cross_entropy(x, t, NULL), NULL));
    for (int i = 0; i < 6; i++) CHECK(isfinite(zg_tensor_get(zg_tensor_grad(x), i)));
    CHECK_NEAR(zg_tensor_get(zg_tensor_grad(x), 1), -0.5, 1e-6);
    zg_tensor_free(x);
    zg_tensor_free(t);
}

TEST(cross_entropy_equals_log_softmax_then_nll) {
    zg_tensor *x = zgt_param(zg_randn(SHAPE(6, 7)));
    zg_tensor *x2 = zg_tensor_clone(x);
    zg_tensor_set_requires_grad(x2, true);
    zg_tensor *t = zg_tensor_from_data(ZG_INT64, (int64_t[]){0, 6, 3, -100, 2, 6}, SHAPE(6));
    zg_tensor *w = zg_uniform(SHAPE(7), 0.5f, 2.0f);
    zg_loss_opts o = opts_of(ZG_REDUCTION_MEAN, -100, 0, w);
    zg_tensor *a = zg_cross_entropy(x, t, &o);
    zg_tensor *b = zg_nll_loss(zg_log_softmax(x2, 1), t, &o);
    CHECK_NEAR(zg_tensor_item(a), zg_tensor_item(b), 1e-6);
    CHECK_OK(zg_backward(a, NULL));
    CHECK_OK(zg_backward(b, NULL));
    CHECK_TENSOR_NEAR(zg_tensor_grad(x), zg_tensor_grad(x2), 1e-7, 1e-5);
    zg_tensor_free(x);
    zg_tensor_free(x2);
    zg_tensor_free(t);
    zg_tensor_free(w);
}

TEST(cross_entropy_second_backward_needs_retain_graph) {
    zg_tensor *x = logits_leaf(), *t = targets(TGT);
    zg_tensor *l = zg_cross_entropy(x, t, NULL);
    CHECK_OK(zg_backward(l, NULL));
    CHECK_ERR(zg_backward(l, NULL), "second time");
    zg_tensor_free(x);
    zg_tensor_free(t);
}

/* ---- cross_entropy / nll: gradient checks ------------------------------- */

typedef struct {
    const zg_tensor *target;
    zg_loss_opts opts;
} class_case;

static zg_tensor *op_ce(zg_tensor *const *in, void *ctx) {
    class_case *c = ctx;
    return zg_cross_entropy(in[0], c->target, &c->opts);
}
static zg_tensor *op_nll(zg_tensor *const *in, void *ctx) {
    class_case *c = ctx;
    return zg_nll_loss(in[0], c->target, &c->opts);
}

TEST(cross_entropy_gradcheck_every_option) {
    zg_tensor *x = zgt_param(zg_randn(SHAPE(5, 4)));
    zg_tensor *t = zg_tensor_from_data(ZG_INT64, (int64_t[]){3, 0, 1, 3, 2}, SHAPE(5));
    zg_tensor *ti = zg_tensor_from_data(ZG_INT64, (int64_t[]){3, -100, 1, 3, -100}, SHAPE(5));
    zg_tensor *w = zg_tensor_from_data(ZG_FLOAT32, (float[]){0.3f, 1.7f, 1.0f, 2.5f}, SHAPE(4));
    const zg_reduction reds[3] = {ZG_REDUCTION_MEAN, ZG_REDUCTION_SUM, ZG_REDUCTION_NONE};
    const char *rn[3] = {"mean", "sum", "none"};
    for (int r = 0; r < 3; r++) {
        struct {
            const char *what;
            const zg_tensor *target;
            int64_t ignore;
            float eps;
            const zg_tensor *w;
        } cases[] = {
            {"plain", t, -100, 0, NULL},
            {"ignore -100", ti, -100, 0, NULL},
            {"ignore_index 3", t, 3, 0, NULL},
            {"smoothing", t, -100, 0.15f, NULL},
            {"weights", t, -100, 0, w},
            {"weights+ignore", ti, -100, 0, w},
            {"smoothing+ignore", ti, -100, 0.25f, NULL},
            {"smoothing+weights", t, -100, 0.1f, w},
            {"smoothing+weights+ignore", ti, -100, 0.3f, w},
            {"smoothing 1", ti, -100, 1.0f, w},
        };
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            class_case c = {cases[k].target, opts_of(reds[r], cases[k].ignore, cases[k].eps, cases[k].w)};
            char name[96];
            snprintf(name, sizeof name, "cross_entropy %s %s", rn[r], cases[k].what);
            GRADCHECK(name, op_ce, &x, 1, &c, NULL);
        }
    }
    /* 1-D logits. */
    zg_tensor *x1 = zgt_param(zg_randn(SHAPE(6)));
    zg_tensor *t0 = zg_tensor_from_data(ZG_INT64, (int64_t[]){4}, NULL, 0);
    class_case c1 = {t0, opts_of(ZG_REDUCTION_MEAN, -100, 0.2f, NULL)};
    GRADCHECK("cross_entropy 1-D", op_ce, &x1, 1, &c1, NULL);
    zg_tensor *fl[] = {x, t, ti, w, x1, t0};
    for (int i = 0; i < 6; i++) zg_tensor_free(fl[i]);
}

TEST(nll_loss_matches_pytorch_and_gradcheck) {
    zg_tensor *x = logits_leaf(), *t = targets(TGT), *ti = targets(TGT_IGN);
    zg_tensor *w = zg_tensor_from_data(ZG_FLOAT32, CW, SHAPE(5));
    CHECK_NEAR(zg_tensor_item(zg_nll_loss(x, t, NULL)), -0.00137194991f, 1e-6);
    zg_loss_opts o = opts_of(ZG_REDUCTION_MEAN, -100, 0, w);
    zg_tensor *m = zg_nll_loss(x, ti, &o);
    CHECK_NEAR(zg_tensor_item(m), 0.746774375f, 1e-6);
    CHECK(has_grad_fn(m, "nll_loss"));
    o.reduction = ZG_REDUCTION_SUM;
    CHECK_NEAR(zg_tensor_item(zg_nll_loss(x, ti, &o)), 2.42701674f, 1e-6);
    o.reduction = ZG_REDUCTION_NONE;
    CHECK_VALUES(zg_nll_loss(x, ti, &o), ((float[]){-1.28843534f, 0, 0.386382252f, 3.32906985f}), 4, 1e-6);
    /* label_smoothing is ignored by nll_loss. */
    o = opts_of(ZG_REDUCTION_MEAN, -100, 0.5f, NULL);
    CHECK_NEAR(zg_tensor_item(zg_nll_loss(x, t, &o)), -0.00137194991f, 1e-6);

    const zg_reduction reds[3] = {ZG_REDUCTION_MEAN, ZG_REDUCTION_SUM, ZG_REDUCTION_NONE};
    for (int r = 0; r < 3; r++) {
        class_case a = {t, opts_of(reds[r], -100, 0, NULL)};
        class_case b = {ti, opts_of(reds[r], -100, 0, w)};
        class_case c = {t, opts_of(reds[r], 2, 0, w)};
        GRADCHECK("nll plain", op_nll, &x, 1, &a, NULL);
        GRADCHECK("nll weights+ignore", op_nll, &x, 1, &b, NULL);
        GRADCHECK("nll ignore_index 2", op_nll, &x, 1, &c, NULL);
    }
    zg_tensor *x1 = zgt_param(zg_randn(SHAPE(5)));
    zg_tensor *t0 = zg_tensor_from_data(ZG_INT64, (int64_t[]){1}, NULL, 0);
    class_case d = {t0, opts_of(ZG_REDUCTION_SUM, -100, 0, w)};
    GRADCHECK("nll 1-D", op_nll, &x1, 1, &d, NULL);
    zg_tensor *fl[] = {x, t, ti, w, x1, t0};
    for (int i = 0; i < 6; i++) zg_tensor_free(fl[i]);
}

/* ---- cross_entropy / nll: [N, C, d1, ...] inputs -------------------------- */

/* X as logits [2, 5, 2] (classes along dim 1), targets [2, 2]. */
TEST(cross_entropy_spatial_matches_pytorch) {
    zg_tensor *x = zgt_param_from(X, SHAPE(2, 5, 2));
    zg_tensor *t = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 4, -100, 2}, SHAPE(2, 2));
    zg_tensor *w = zg_tensor_from_data(ZG_FLOAT32, CW, SHAPE(5));
    /* F.cross_entropy(x, t, weight=w, label_smoothing=0.1, reduction=r). */
    zg_loss_opts o = opts_of(ZG_REDUCTION_MEAN, -100, 0.1f, w);
    zg_tensor *m = zg_cross_entropy(x, t, &o);
    CHECK_NEAR(zg_tensor_item(m), 2.208248615f, 2e-6);
    o.reduction = ZG_REDUCTION_SUM;
    CHECK_NEAR(zg_tensor_item(zg_cross_entropy(x, t, &o)), 7.176808357f, 5e-6);
    o.reduction = ZG_REDUCTION_NONE;
    zg_tensor *none = zg_cross_entropy(x, t, &o);
    CHECK(none && zg_tensor_ndim(none) == 2 && zg_tensor_size(none, 0) == 2 && zg_tensor_size(none, 1) == 2);
    CHECK_VALUES(none, ((float[]){0.949085593f, 1.192021608f, 0.0f, 5.035701275f}), 4, 2e-6);
    CHECK_OK(zg_backward(m, NULL));
    const float g[20] = {0.0152268670f, 0.0166571103f,  -0.151708275f, 0.0244255997f, 0.0234614071f,
                         0.0250681937f, 0.103578985f,   0.00355929951f, 0.00944099296f, -0.0697101951f,
                         0.0f,          0.117226407f,   0.0f,           0.0161701310f,  0.0f,
                         -0.524475753f, 0.0f,           0.0219865423f,  0.0f,           0.369092703f};
    CHECK_VALUES(zg_tensor_grad(x), g, 20, 2e-6);
    /* F.nll_loss(x, t, weight=w) and reduction none (x read as log-probabilities). */
    o = opts_of(ZG_REDUCTION_MEAN, -100, 0, w);
    CHECK_NEAR(zg_tensor_item(zg_nll_loss(x, t, &o)), 0.365939558f, 1e-6);
    o = opts_of(ZG_REDUCTION_NONE, -100, 0, NULL);
    CHECK_VALUES(zg_nll_loss(x, t, &o), ((float[]){-1.970899463f, 1.636554241f, 0.0f, 1.375532269f}), 4, 1e-6);
    zg_tensor *fl[] = {x, t, w};
    for (int i = 0; i < 3; i++) zg_tensor_free(fl[i]);
}

/* [N, C, d1, d2] equals [N d1 d2, C] with the classes moved last, for every
 * option: the spatial path against the 2-D one. */
TEST(cross_entropy_spatial_equals_rows) {
    const int64_t N = 2, C = 4, D = 6;
    zg_tensor *x = zg_randn(SHAPE(N, C, 2, 3)), *rows = zg_zeros(SHAPE(N * D, C));
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t d = 0; d < D; d++)
                zg_tensor_data(rows)[(n * D + d) * C + c] = zg_tensor_get(x, (n * C + c) * D + d);
    /* Targets with -100 (ignored by default) and with 2 for ignore_index 2. */
    const int64_t tv[2][12] = {{0, 3, -100, 2, 1, 1, 3, 0, 2, -100, 2, 1}, {0, 3, 2, 2, 1, 1, 3, 0, 2, 1, 2, 1}};
    zg_tensor *t = zg_tensor_new(ZG_INT64, SHAPE(N, 2, 3)), *tr = zg_tensor_new(ZG_INT64, SHAPE(12));
    zg_tensor *w = zg_tensor_from_data(ZG_FLOAT32, (float[]){0.3f, 1.7f, 1.0f, 2.5f}, SHAPE(4));
    const zg_reduction reds[3] = {ZG_REDUCTION_MEAN, ZG_REDUCTION_SUM, ZG_REDUCTION_NONE};
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 4; k++) {
            memcpy(zg_tensor_data_i64(t), tv[k == 3], sizeof tv[0]);
            memcpy(zg_tensor_data_i64(tr), tv[k == 3], sizeof tv[0]);
            zg_loss_opts o = opts_of(reds[r], k == 3 ? 2 : -100, k >= 1 ? 0.2f : 0.0f, k >= 2 ? w : NULL);
            zg_tensor *a = zg_cross_entropy(x, t, &o), *b = zg_cross_entropy(rows, tr, &o);
            zg_tensor *na = zg_nll_loss(x, t, &o), *nb = zg_nll_loss(rows, tr, &o);
            CHECK(a && b && na && nb && zg_tensor_numel(a) == zg_tensor_numel(b));
            if (!a || !b || !na || !nb) continue;
            CHECK(reds[r] != ZG_REDUCTION_NONE || (zg_tensor_ndim(a) == 3 && zg_tensor_size(a, 2) == 3));
            CHECK_VALUES(a, zg_tensor_data(b), (int)zg_tensor_numel(b), 1e-6);
            CHECK_VALUES(na, zg_tensor_data(nb), (int)zg_tensor_numel(nb), 1e-6);
        }
    zg_tensor *fl[] = {x, rows, t, tr, w};
    for (int i = 0; i < 5; i++) zg_tensor_free(fl[i]);
}

TEST(cross_entropy_spatial_gradchecks) {
    zg_tensor *x = zgt_param(zg_randn(SHAPE(2, 4, 3, 2)));
    zg_tensor *t = zg_tensor_from_data(ZG_INT64, (int64_t[]){3, 0, 1, 3, 2, 2, 0, -100, 1, 3, -100, 0}, SHAPE(2, 3, 2));
    zg_tensor *t1 = zg_tensor_from_data(ZG_INT64, (int64_t[]){3, 0, 1, 3, 2, 2, 0, 3, 1, 3, 1, 0}, SHAPE(2, 3, 2));
    zg_tensor *w = zg_tensor_from_data(ZG_FLOAT32, (float[]){0.3f, 1.7f, 1.0f, 2.5f}, SHAPE(4));
    const zg_reduction reds[3] = {ZG_REDUCTION_MEAN, ZG_REDUCTION_SUM, ZG_REDUCTION_NONE};
    const char *rn[3] = {"mean", "sum", "none"};
    for (int r = 0; r < 3; r++) {
        const struct {
            const char *what;
            const zg_tensor *t;
            int64_t ignore;
            float eps;
            const zg_tensor *w;
        } cases[] = {{"ignore -100", t, -100, 0, NULL},    {"ignore_index 3", t1, 3, 0, NULL},
                     {"smoothing", t, -100, 0.15f, NULL}, {"weights", t, -100, 0, w},
                     {"all", t1, 1, 0.3f, w}};
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            class_case c = {cases[k].t, opts_of(reds[r], cases[k].ignore, cases[k].eps, cases[k].w)};
            char name[96];
            snprintf(name, sizeof name, "cross_entropy [2,4,3,2] %s %s", rn[r], cases[k].what);
            CHECK(GRADCHECK(name, op_ce, &x, 1, &c, NULL));
            snprintf(name, sizeof name, "nll_loss [2,4,3,2] %s %s", rn[r], cases[k].what);
            CHECK(GRADCHECK(name, op_nll, &x, 1, &c, NULL));
        }
    }
    /* [N, C, d] (3-D). */
    zg_tensor *x3 = zgt_param(zg_randn(SHAPE(3, 5, 4)));
    zg_tensor *t3 = zg_tensor_from_data(ZG_INT64, (int64_t[]){0, 4, 2, 1, 3, 3, -100, 0, 4, 1, 2, 2}, SHAPE(3, 4));
    class_case c3 = {t3, opts_of(ZG_REDUCTION_MEAN, -100, 0.1f, NULL)};
    CHECK(GRADCHECK("cross_entropy [3,5,4]", op_ce, &x3, 1, &c3, NULL));
    zg_tensor *fl[] = {x, t, t1, w, x3, t3};
    for (int i = 0; i < 6; i++) zg_tensor_free(fl[i]);
}

TEST(cross_entropy_spatial_errors) {
    zg_tensor *x = zg_zeros(SHAPE(2, 3, 4, 5));
    zg_tensor *t = zg_tensor_new(ZG_INT64, SHAPE(2, 4, 5));
    zg_tensor_data_i64(t)[13] = 3;
    CHECK_NULL_ERR(zg_cross_entropy(x, t, NULL),
                   "zg_cross_entropy: target 3 out of range [0,3) at element 13 of the target");
    CHECK_NULL_ERR(zg_nll_loss(x, t, NULL), "zg_nll_loss: target 3 out of range [0,3) at element 13 of the target");
    zg_tensor *tb = zg_tensor_new(ZG_INT64, SHAPE(2, 5, 4));
    CHECK_NULL_ERR(zg_cross_entropy(x, tb, NULL),
                   "zg_cross_entropy: target of shape [2,5,4] does not match logits of shape [2,3,4,5] (expected "
                   "[2,4,5])");
    zg_tensor *tn = zg_tensor_new(ZG_INT64, SHAPE(2, 4));
    CHECK_NULL_ERR(zg_nll_loss(x, tn, NULL),
                   "zg_nll_loss: target of shape [2,4] does not match input of shape [2,3,4,5] (expected [2,4,5])");
    zg_tensor *x0 = zg_zeros(NULL, 0);
    CHECK_NULL_ERR(zg_cross_entropy(x0, tn, NULL), "zg_cross_entropy: logits of shape [] must be [C], [N,C] or "
                                                   "[N,C,d1,...]");
    zg_tensor *fl[] = {x, t, tb, tn, x0};
    for (int i = 0; i < 5; i++) zg_tensor_free(fl[i]);
}

/* Live PyTorch parity (tests/parity/options_reference.py): segmentation-
 * shaped inputs with every reduction, ignore_index, weights and label
 * smoothing, values and gradients. */
static const char *const loss_ref_files[] = {"options_loss"};
static const char *const loss_ref_sources[] = {"tests/parity/options_reference.py", "tests/parity/torch_reference.py"};
static zgt_refset loss_refs = {loss_ref_sources, 2, loss_ref_files, 1, NULL, 0};
static double loss_worst;

static void run_loss_case(const zg_safetensors *st, const char *c) {
    const char *spec = zg_safetensors_metadata(st, c);
    char op[32] = "", red[16] = "";
    long long ignore = 0;
    float eps = 0;
    int weighted = 0;
    bool ce = spec && !strncmp(spec, "cross_entropy", 13);
    int got = !spec ? 0
              : ce  ? sscanf(spec, "%31s %15s %lld %f %d", op, red, &ignore, &eps, &weighted)
                    : sscanf(spec, "%31s %15s %lld %d", op, red, &ignore, &weighted) + 1;
    zg_tensor *x = zg_tensor_clone(zgt_ref_get(st, "%s.x", c));
    if (got != 5 || !x) {
        zgt_fail(__FILE__, __LINE__, "%s: cannot parse spec \"%s\"", c, spec ? spec : "");
        zg_tensor_free(x);
        return;
    }
    zg_tensor_set_requires_grad(x, true);
    zg_loss_opts o = opts_of(!strcmp(red, "mean")  ? ZG_REDUCTION_MEAN
                             : !strcmp(red, "sum") ? ZG_REDUCTION_SUM
                                                   : ZG_REDUCTION_NONE,
                             ignore, eps, weighted ? zgt_ref_get(st, "%s.w", c) : NULL);
    const zg_tensor *t = zgt_ref_get(st, "%s.t", c);
    zg_tensor *y = ce ? zg_cross_entropy(x, t, &o) : zg_nll_loss(x, t, &o);
    char what[128];
    snprintf(what, sizeof what, "%s y", c);
    CHECK_REF(what, y, zgt_ref_get(st, "%s.y", c), 1e-6, &loss_worst);
    if (y) {
        CHECK_OK(zg_backward(y, &(zg_backward_opts){.grad = zgt_ref_get(st, "%s.gy", c)}));
        snprintf(what, sizeof what, "%s gx", c);
        CHECK_REF(what, zg_tensor_grad(x), zgt_ref_get(st, "%s.gx", c), 1e-6, &loss_worst);
    }
    zg_tensor_free(x);
    zg_arena_reset();
}

TEST(parity_cross_entropy_nll_spatial) {
    zg_safetensors *st = zgt_refs_open(&loss_refs, "options_loss");
    if (!st) return;
    loss_worst = 0;
    int n = zgt_ref_cases(st, run_loss_case);
    CHECK(n >= 15);
    printf("parity spatial cross_entropy / nll_loss (torch %s): %d cases, worst relative error %.3g\n",
           zg_safetensors_metadata(st, "torch"), n, loss_worst);
    zg_safetensors_free(st);
}

/* ---- cross_entropy / nll: errors ---------------------------------------- */

TEST(cross_entropy_errors) {
    zg_tensor *x = logits_leaf(), *t = targets(TGT);
    zg_tensor *bad = targets((int64_t[]){1, 0, 5, 2});
    CHECK_NULL_ERR(zg_cross_entropy(x, bad, NULL), "zg_cross_entropy: target 5 out of range [0,5) in row 2");
    zg_tensor *neg = targets((int64_t[]){1, -1, 0, 2});
    CHECK_NULL_ERR(zg_cross_entropy(x, neg, NULL), "zg_cross_entropy: target -1 out of range [0,5) in row 1");
    /* -100 is only skipped while it is the ignore_index. */
    zg_tensor *ti = targets(TGT_IGN);
    zg_loss_opts o = opts_of(ZG_REDUCTION_MEAN, 0, 0, NULL);
    CHECK_NULL_ERR(zg_cross_entropy(x, ti, &o), "target -100 out of range [0,5) in row 1");
    CHECK_NULL_ERR(zg_cross_entropy(NULL, t, NULL), "zg_cross_entropy: logits is NULL");
    CHECK_NULL_ERR(zg_cross_entropy(x, NULL, NULL), "zg_cross_entropy: target is NULL");
    zg_tensor *ft = zg_zeros(SHAPE(4));
    CHECK_NULL_ERR(zg_cross_entropy(x, ft, NULL), "zg_cross_entropy: target must be int64");
    zg_tensor *t3 = zg_tensor_from_data(ZG_INT64, (int64_t[]){0, 1, 2}, SHAPE(3));
    CHECK_NULL_ERR(zg_cross_entropy(x, t3, NULL),
                   "zg_cross_entropy: target of shape [3] does not match logits of shape [4,5]");
    zg_tensor *x1 = zg_zeros(SHAPE(5));
    CHECK_NULL_ERR(zg_cross_entropy(x1, t, NULL), "zg_cross_entropy: target of shape [4] does not match logits");
    zg_tensor *x3 = zg_zeros(SHAPE(2, 2, 5));
    CHECK_NULL_ERR(zg_cross_entropy(x3, t, NULL),
                   "zg_cross_entropy: target of shape [4] does not match logits of shape [2,2,5] (expected [2,5])");
    zg_tensor *li = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 2}, SHAPE(1, 2));
    CHECK_NULL_ERR(zg_cross_entropy(li, t, NULL), "zg_cross_entropy: logits must be float32");
    zg_tensor *w4 = zg_ones(SHAPE(4));
    o = opts_of(ZG_REDUCTION_MEAN, -100, 0, w4);
    CHECK_NULL_ERR(zg_cross_entropy(x, t, &o), "zg_cross_entropy: weight of shape [4] does not match 5 classes");
    zg_tensor *wi = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 1, 1, 1, 1}, SHAPE(5));
    o = opts_of(ZG_REDUCTION_MEAN, -100, 0, wi);
    CHECK_NULL_ERR(zg_cross_entropy(x, t, &o), "zg_cross_entropy: weight must be float32");
    o = opts_of(ZG_REDUCTION_MEAN, -100, 1.5f, NULL);
    CHECK_NULL_ERR(zg_cross_entropy(x, t, &o), "zg_cross_entropy: label_smoothing must be in [0, 1], got 1.5");
    o = opts_of(ZG_REDUCTION_MEAN, -100, -0.1f, NULL);
    CHECK_NULL_ERR(zg_cross_entropy(x, t, &o), "zg_cross_entropy: label_smoothing");
    o = opts_of((zg_reduction)7, -100, 0, NULL);
    CHECK_NULL_ERR(zg_cross_entropy(x, t, &o), "zg_cross_entropy: unknown reduction 7");
    zg_tensor *fl[] = {x, t, bad, neg, ti, ft, t3, x1, x3, li, w4, wi};
    for (int i = 0; i < 12; i++) zg_tensor_free(fl[i]);
}

TEST(nll_loss_errors) {
    zg_tensor *x = logits_leaf();
    zg_tensor *bad = targets((int64_t[]){1, 0, 2, 9});
    CHECK_NULL_ERR(zg_nll_loss(x, bad, NULL), "zg_nll_loss: target 9 out of range [0,5) in row 3");
    CHECK_NULL_ERR(zg_nll_loss(NULL, bad, NULL), "zg_nll_loss: input is NULL");
    CHECK_NULL_ERR(zg_nll_loss(x, NULL, NULL), "zg_nll_loss: target is NULL");
    zg_tensor *ft = zg_zeros(SHAPE(4));
    CHECK_NULL_ERR(zg_nll_loss(x, ft, NULL), "zg_nll_loss: target must be int64");
    zg_tensor *t2 = zg_tensor_from_data(ZG_INT64, (int64_t[]){0, 1, 2, 3}, SHAPE(2, 2));
    CHECK_NULL_ERR(zg_nll_loss(x, t2, NULL), "zg_nll_loss: target of shape [2,2] does not match input of shape [4,5]");
    zg_loss_opts o = opts_of((zg_reduction)-1, -100, 0, NULL);
    zg_tensor *t = targets(TGT);
    CHECK_NULL_ERR(zg_nll_loss(x, t, &o), "zg_nll_loss: unknown reduction -1");
    zg_tensor *w = zg_ones(SHAPE(1, 5));
    o = opts_of(ZG_REDUCTION_SUM, -100, 0, w);
    CHECK_NULL_ERR(zg_nll_loss(x, t, &o), "zg_nll_loss: weight of shape [1,5] does not match 5 classes");
    zg_tensor *fl[] = {x, bad, ft, t2, t, w};
    for (int i = 0; i < 6; i++) zg_tensor_free(fl[i]);
}

/* ---- mse_loss ------------------------------------------------------------ */

static zg_tensor *op_mse(zg_tensor *const *in, void *ctx) { return zg_mse_loss(in[0], in[1], *(zg_reduction *)ctx); }

TEST(mse_loss_matches_pytorch_and_gradcheck) {
    zg_tensor *a = zg_tensor_from_data(ZG_FLOAT32, (float[]){0.5f, -1, 2, 3, 0.25f, -0.75f}, SHAPE(2, 3));
    zg_tensor *b = zg_tensor_from_data(ZG_FLOAT32, (float[]){1, -1.5f, 0, 2.5f, 0.5f, 1.25f}, SHAPE(2, 3));
    zg_tensor_set_requires_grad(a, true);
    zg_tensor *m = zg_mse_loss(a, b, ZG_REDUCTION_MEAN);
    CHECK_NEAR(zg_tensor_item(m), 1.46875f, 1e-6);
    CHECK(has_grad_fn(m, "mse_loss"));
    CHECK_NEAR(zg_tensor_item(zg_mse_loss(a, b, ZG_REDUCTION_SUM)), 8.8125f, 1e-6);
    zg_tensor *n = zg_mse_loss(a, b, ZG_REDUCTION_NONE);
    CHECK(zg_tensor_ndim(n) == 2);
    CHECK_VALUES(n, ((float[]){0.25f, 0.25f, 4, 0.25f, 0.0625f, 4}), 6, 1e-7);
    /* d mean / da = 2 (a - b) / 6. */
    CHECK_OK(zg_backward(m, NULL));
    CHECK_VALUES(zg_tensor_grad(a), ((float[]){-1.0f / 6, 1.0f / 6, 4.0f / 6, 1.0f / 6, -0.5f / 6, -4.0f / 6}), 6,
                 1e-7);
    /* Both sides require grad in the check. */
    zg_tensor *x = zgt_param(zg_randn(SHAPE(3, 4))), *y = zgt_param(zg_randn(SHAPE(3, 4)));
    zg_reduction reds[3] = {ZG_REDUCTION_MEAN, ZG_REDUCTION_SUM, ZG_REDUCTION_NONE};
    for (int r = 0; r < 3; r++) GRADCHECK("mse", op_mse, ((zg_tensor *[]){x, y}), 2, &reds[r], NULL);
    zg_tensor_set_requires_grad(x, false);
    GRADCHECK("mse, target only", op_mse, ((zg_tensor *[]){x, y}), 2, &reds[0], NULL);
    zg_tensor *fl[] = {a, b, x, y};
    for (int i = 0; i < 4; i++) zg_tensor_free(fl[i]);
}

TEST(mse_loss_errors) {
    zg_tensor *a = zg_zeros(SHAPE(2, 3)), *b = zg_zeros(SHAPE(3, 2));
    CHECK_NULL_ERR(zg_mse_loss(a, b, ZG_REDUCTION_MEAN),
                   "zg_mse_loss: input of shape [2,3] and target of shape [3,2] differ");
    CHECK_NULL_ERR(zg_mse_loss(NULL, b, ZG_REDUCTION_MEAN), "zg_mse_loss: input is NULL");
    CHECK_NULL_ERR(zg_mse_loss(a, NULL, ZG_REDUCTION_MEAN), "zg_mse_loss: target is NULL");
    CHECK_NULL_ERR(zg_mse_loss(a, a, (zg_reduction)3), "zg_mse_loss: unknown reduction 3");
    zg_tensor *l = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 2, 3, 4, 5, 6}, SHAPE(2, 3));
    CHECK_NULL_ERR(zg_mse_loss(a, l, ZG_REDUCTION_SUM), "zg_mse_loss: target must be float32");
    zg_tensor_free(a);
    zg_tensor_free(b);
    zg_tensor_free(l);
}

/* ---- bce_with_logits ----------------------------------------------------- */

static const float BL[6] = {-100, 100, 0.5f, -2, 3, 0};
static const float BT[6] = {1, 0, 0.3f, 1, 0, 0.5f};
static const float PW[3] = {2, 0.5f, 1.5f};

TEST(bce_with_logits_matches_pytorch) {
    zg_tensor *x = zg_tensor_from_data(ZG_FLOAT32, BL, SHAPE(2, 3));
    zg_tensor *t = zg_tensor_from_data(ZG_FLOAT32, BT, SHAPE(2, 3));
    zg_tensor *pw = zg_tensor_from_data(ZG_FLOAT32, PW, SHAPE(3));
    CHECK_NEAR(zg_tensor_item(zg_bce_with_logits(x, t, ZG_REDUCTION_MEAN, NULL)), 34.4487877f, 1e-4);
    CHECK_NEAR(zg_tensor_item(zg_bce_with_logits(x, t, ZG_REDUCTION_SUM, NULL)), 206.692734f, 1e-4);
    CHECK_VALUES(zg_bce_with_logits(x, t, ZG_REDUCTION_NONE, NULL),
                 ((float[]){100, 100, 0.82407701f, 2.12692809f, 3.04858732f, 0.693147182f}), 6, 1e-5);
    CHECK_NEAR(zg_tensor_item(zg_bce_with_logits(x, t, ZG_REDUCTION_MEAN, pw)), 51.5106812f, 1e-4);
    CHECK_NEAR(zg_tensor_item(zg_bce_with_logits(x, t, ZG_REDUCTION_SUM, pw)), 309.064087f, 1e-3);
    CHECK_VALUES(zg_bce_with_logits(x, t, ZG_REDUCTION_NONE, pw),
                 ((float[]){200, 100, 0.89518857f, 4.25385618f, 3.04858732f, 0.866433978f}), 6, 1e-5);
    /* Gradients of both logits and target, with pos_weight. */
    zg_tensor_set_requires_grad(x, true);
    zg_tensor_set_requires_grad(t, true);
    zg_tensor *l = zg_bce_with_logits(x, t, ZG_REDUCTION_MEAN, pw);
    CHECK(has_grad_fn(l, "bce_with_logits"));
    CHECK_OK(zg_backward(l, NULL));
    CHECK_VALUES(zg_tensor_grad(x),
                 ((float[]){-0.333333343f, 0.166666672f, 0.0443047136f, -0.293599039f, 0.158762351f, -0.020833334f}),
                 6, 1e-6);
    CHECK_VALUES(zg_tensor_grad(t),
                 ((float[]){33.3333321f, -16.666666f, -0.043826919f, 0.687821388f, -0.504048944f, 0.0577622652f}), 6,
                 1e-5);
    zg_tensor_free(x);
    zg_tensor_free(t);
    zg_tensor_free(pw);
}

TEST(bce_with_logits_finite_at_extreme_logits) {
    zg_tensor *x = zg_tensor_from_data(ZG_FLOAT32, (float[]){100, -100, 100, -100}, SHAPE(4));
    zg_tensor *t = zg_tensor_from_data(ZG_FLOAT32, (float[]){1, 0, 0, 1}, SHAPE(4));
    zg_tensor_set_requires_grad(x, true);
    zg_tensor *l = zg_bce_with_logits(x, t, ZG_REDUCTION_NONE, NULL);
    CHECK_VALUES(l, ((float[]){0, 0, 100, 100}), 4, 1e-6);
    for (int i = 0; i < 4; i++) CHECK(isfinite(zg_tensor_get(l, i)));
    zg_tensor *s = zg_bce_with_logits(x, t, ZG_REDUCTION_SUM, NULL);
    CHECK_OK(zg_backward(s, NULL));
    CHECK_VALUES(zg_tensor_grad(x), ((float[]){0, 0, 1, -1}), 4, 1e-6);
    /* Also with pos_weight, and further out. */
    zg_tensor *pw = zg_tensor_from_data(ZG_FLOAT32, (float[]){3}, SHAPE(1));
    zg_tensor *x2 = zg_tensor_from_data(ZG_FLOAT32, (float[]){1e4f, -1e4f, 1e4f, -1e4f}, SHAPE(4));
    CHECK_VALUES(zg_bce_with_logits(x2, t, ZG_REDUCTION_NONE, pw), ((float[]){0, 0, 1e4f, 3e4f}), 4, 1e-2);
    zg_tensor_free(x);
    zg_tensor_free(t);
    zg_tensor_free(pw);
    zg_tensor_free(x2);
}

typedef struct {
    zg_reduction red;
    const zg_tensor *pw;
} bce_case;

static zg_tensor *op_bce(zg_tensor *const *in, void *ctx) {
    bce_case *c = ctx;
    return zg_bce_with_logits(in[0], in[1], c->red, c->pw);
}

TEST(bce_with_logits_gradcheck) {
    zg_tensor *x = zgt_param(zg_randn(SHAPE(3, 4)));
    zg_tensor *t = zg_rand(SHAPE(3, 4));
    zg_tensor_set_requires_grad(t, true);
    zg_tensor *pw = zg_tensor_from_data(ZG_FLOAT32, (float[]){0.5f, 1, 2, 4}, SHAPE(4));
    zg_tensor *pw1 = zg_tensor_from_data(ZG_FLOAT32, (float[]){2.5f}, SHAPE(1));
    zg_reduction reds[3] = {ZG_REDUCTION_MEAN, ZG_REDUCTION_SUM, ZG_REDUCTION_NONE};
    for (int r = 0; r < 3; r++) {
        bce_case a = {reds[r], NULL}, b = {reds[r], pw}, c = {reds[r], pw1};
        GRADCHECK("bce", op_bce, ((zg_tensor *[]){x, t}), 2, &a, NULL);
        GRADCHECK("bce pos_weight [C]", op_bce, ((zg_tensor *[]){x, t}), 2, &b, NULL);
        GRADCHECK("bce pos_weight [1]", op_bce, ((zg_tensor *[]){x, t}), 2, &c, NULL);
    }
    /* Large logits: the gradient saturates to the right limits. */
    zg_tensor *xb = zg_tensor_from_data(ZG_FLOAT32, (float[]){30, -30, 50, -50}, SHAPE(4));
    zg_tensor_set_requires_grad(xb, true);
    zg_tensor *tb = zg_tensor_from_data(ZG_FLOAT32, (float[]){0.2f, 0.7f, 1, 0}, SHAPE(4));
    bce_case d = {ZG_REDUCTION_SUM, NULL};
    GRADCHECK("bce large logits", op_bce, ((zg_tensor *[]){xb, tb}), 2, &d, NULL);
    zg_tensor *fl[] = {x, t, pw, pw1, xb, tb};
    for (int i = 0; i < 6; i++) zg_tensor_free(fl[i]);
}

TEST(bce_with_logits_errors) {
    zg_tensor *x = zg_zeros(SHAPE(2, 3)), *t = zg_zeros(SHAPE(2, 3)), *t2 = zg_zeros(SHAPE(3, 2));
    CHECK_NULL_ERR(zg_bce_with_logits(x, t2, ZG_REDUCTION_MEAN, NULL),
                   "zg_bce_with_logits: logits of shape [2,3] and target of shape [3,2] differ");
    CHECK_NULL_ERR(zg_bce_with_logits(NULL, t, ZG_REDUCTION_MEAN, NULL), "zg_bce_with_logits: logits is NULL");
    CHECK_NULL_ERR(zg_bce_with_logits(x, NULL, ZG_REDUCTION_MEAN, NULL), "zg_bce_with_logits: target is NULL");
    zg_tensor *li = zg_tensor_from_data(ZG_INT64, (int64_t[]){0, 1, 0, 1, 1, 0}, SHAPE(2, 3));
    CHECK_NULL_ERR(zg_bce_with_logits(x, li, ZG_REDUCTION_MEAN, NULL), "zg_bce_with_logits: target must be float32");
    zg_tensor *pw2 = zg_ones(SHAPE(2));
    CHECK_NULL_ERR(zg_bce_with_logits(x, t, ZG_REDUCTION_MEAN, pw2),
                   "zg_bce_with_logits: pos_weight of shape [2] does not match the last dim of logits of shape [2,3]");
    zg_tensor *pwi = zg_tensor_from_data(ZG_INT64, (int64_t[]){1, 1, 1}, SHAPE(3));
    CHECK_NULL_ERR(zg_bce_with_logits(x, t, ZG_REDUCTION_MEAN, pwi), "zg_bce_with_logits: pos_weight must be float32");
    CHECK_NULL_ERR(zg_bce_with_logits(x, t, (zg_reduction)9, NULL), "zg_bce_with_logits: unknown reduction 9");
    zg_tensor *fl[] = {x, t, t2, li, pw2, pwi};
    for (int i = 0; i < 6; i++) zg_tensor_free(fl[i]);
}
