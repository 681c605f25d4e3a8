/* Tensors: creation, queries, random generator, in-place writes, the step
 * arena, and the errors of each entry point. */
#include "harness.h"

#include <stdlib.h>

TEST(create_and_query) {
    int64_t shape[3] = {2, 3, 4};
    zg_tensor *t = zg_zeros(shape, 3);
    CHECK_PTR(t);
    CHECK(zg_tensor_ndim(t) == 3);
    CHECK(zg_tensor_numel(t) == 24);
    CHECK(zg_tensor_size(t, 1) == 3);
    CHECK(zg_tensor_size(t, -1) == 4);
    CHECK(zg_tensor_dtype(t) == ZG_FLOAT32);
    CHECK(zg_tensor_is_persistent(t));
    CHECK(zg_tensor_is_leaf(t));
    CHECK(!zg_tensor_requires_grad(t));
    CHECK(zg_tensor_grad(t) == NULL);
    for (int i = 0; i < 24; i++) CHECK(zg_tensor_get(t, i) == 0.0f);
    zg_tensor *o = zg_ones(shape, 3);
    zg_tensor *f = zg_full(shape, 2, 2.5f);
    CHECK(zg_tensor_get(o, 23) == 1.0f);
    CHECK(zg_tensor_numel(f) == 6 && zg_tensor_get(f, 5) == 2.5f);
    zg_tensor *s = zg_scalar(7.0f);
    CHECK(zg_tensor_ndim(s) == 0 && zg_tensor_numel(s) == 1);
    CHECK(zg_tensor_item(s) == 7.0f);
    float vals[4] = {1, 2, 3, 4};
    int64_t s2[2] = {2, 2};
    zg_tensor *d = zg_tensor_from_data(ZG_FLOAT32, vals, s2, 2);
    CHECK_VALUES(d, vals, 4, 0);
    int64_t labels[3] = {0, 9, 4};
    int64_t s1[1] = {3};
    zg_tensor *l = zg_tensor_from_data(ZG_INT64, labels, s1, 1);
    CHECK(zg_tensor_dtype(l) == ZG_INT64 && zg_tensor_data_i64(l)[1] == 9);
    CHECK_NULL_ERR(zg_tensor_data(l), "int64");
    zg_tensor *c = zg_tensor_clone(d);
    zg_tensor_data(d)[0] = 100;
    CHECK(zg_tensor_get(c, 0) == 1.0f);
    zg_tensor *free_list[] = {t, o, f, s, d, l, c};
    for (int i = 0; i < 7; i++) zg_tensor_free(free_list[i]);
}

TEST(four_and_more_dims) {
    int64_t shape[5] = {2, 1, 3, 2, 2};
    zg_tensor *t = zg_ones(shape, 5);
    CHECK(zg_tensor_numel(t) == 24);
    zg_tensor_free(t);
    int64_t big[ZG_MAX_DIMS + 1];
    for (int i = 0; i <= ZG_MAX_DIMS; i++) big[i] = 1;
    CHECK_NULL_ERR(zg_zeros(big, ZG_MAX_DIMS + 1), "dimensions");
}

TEST(creation_errors) {
    int64_t neg[2] = {2, -1};
    CHECK_NULL_ERR(zg_zeros(neg, 2), "zg_zeros: negative size -1");
    CHECK_NULL_ERR(zg_zeros(NULL, 2), "shape is NULL");
    CHECK_NULL_ERR(zg_tensor_from_data(ZG_FLOAT32, NULL, neg, 1), "data is NULL");
    CHECK_NULL_ERR(zg_tensor_new((zg_dtype)7, neg, 1), "unknown dtype");
    CHECK_NULL_ERR(zg_uniform(neg, 1, 1.0f, 0.0f), "lo");
    CHECK_NULL_ERR(zg_normal(neg, 1, 0.0f, -1.0f), "std");
    CHECK_NULL_ERR(zg_tensor_clone(NULL), "zg_tensor_clone");
    CHECK_NULL_ERR(zg_tensor_data(NULL), "zg_tensor_data");
    int64_t s[1] = {3};
    zg_tensor *t = zg_zeros(s, 1);
    CHECK(isnan(zg_tensor_item(t)));
    CHECK(strstr(zg_last_error(), "has 3 elements") != NULL);
    CHECK(isnan(zg_tensor_get(t, 3)));
    CHECK(strstr(zg_last_error(), "out of range") != NULL);
    CHECK_ERR((int)zg_tensor_size(t, 2), "dim 2 out of range");
    CHECK_ERR(zg_tensor_set_name(NULL, "x"), "NULL");
    zg_tensor_free(t);
    zg_tensor_free(NULL); /* a no-op, as free(NULL) */
}

TEST(rng_reproducible_and_distributed) {
    int64_t s[1] = {20000};
    zg_manual_seed(42);
    zg_tensor *a = zg_randn(s, 1);
    zg_manual_seed(42);
    zg_tensor *b = zg_randn(s, 1);
    CHECK_TENSOR_NEAR(a, b, 0, 0);
    double mean = 0, var = 0;
    for (int i = 0; i < 20000; i++) mean += zg_tensor_get(a, i);
    mean /= 20000;
    for (int i = 0; i < 20000; i++) var += pow(zg_tensor_get(a, i) - mean, 2);
    var /= 20000;
    /* Standard errors: mean 1/sqrt(n) = 0.007, variance sqrt(2/n) = 0.01. */
    CHECK_NEAR(mean, 0.0, 0.035);
    CHECK_NEAR(var, 1.0, 0.05);
    zg_tensor *u = zg_uniform(s, 1, -2.0f, 3.0f);
    double umin = 1e9, umax = -1e9, umean = 0;
    for (int i = 0; i < 20000; i++) {
        double v = zg_tensor_get(u, i);
        umin = fmin(umin, v);
        umax = fmax(umax, v);
        umean += v / 20000;
    }
    CHECK(umin >= -2.0 && umax < 3.0);
    CHECK_NEAR(umean, 0.5, 0.05);
    zg_manual_seed(43);
    zg_tensor *c = zg_randn(s, 1);
    CHECK(zg_tensor_get(c, 0) != zg_tensor_get(a, 0));
    zg_tensor_free(a);
    zg_tensor_free(b);
    zg_tensor_free(u);
    zg_tensor_free(c);
}

TEST(rng_state_save_restore) {
    int64_t s[1] = {5};
    zg_manual_seed(1);
    zg_tensor *warm = zg_randn(s, 1); /* an odd count of normals: no hidden spare */
    uint64_t st[4];
    zg_rng_get_state(st);
    zg_tensor *a = zg_randn(s, 1);
    zg_tensor *a2 = zg_rand(s, 1);
    zg_manual_seed(99);
    zg_rng_set_state(st);
    zg_tensor *b = zg_randn(s, 1);
    zg_tensor *b2 = zg_rand(s, 1);
    CHECK_TENSOR_NEAR(a, b, 0, 0);
    CHECK_TENSOR_NEAR(a2, b2, 0, 0);
    zg_tensor *l[] = {warm, a, a2, b, b2};
    for (int i = 0; i < 5; i++) zg_tensor_free(l[i]);
}

TEST(inplace_writes_bump_version) {
    int64_t s[1] = {3};
    zg_tensor *t = zg_zeros(s, 1);
    uint64_t v0 = zg_tensor_version(t);
    CHECK_OK(zg_tensor_fill_(t, 2.0f));
    CHECK(zg_tensor_version(t) == v0 + 1);
    zg_tensor *o = zg_ones(s, 1);
    CHECK_OK(zg_tensor_add_(t, o, 0.5f));
    float e1[3] = {2.5f, 2.5f, 2.5f};
    CHECK_VALUES(t, e1, 3, 0);
    CHECK_OK(zg_tensor_mul_scalar_(t, 2.0f));
    float e2[3] = {5, 5, 5};
    CHECK_VALUES(t, e2, 3, 0);
    CHECK_OK(zg_tensor_copy_(t, o));
    float e3[3] = {1, 1, 1};
    CHECK_VALUES(t, e3, 3, 0);
    CHECK(zg_tensor_version(t) == v0 + 4);
    int64_t s4[1] = {4};
    zg_tensor *w = zg_zeros(s4, 1);
    CHECK_ERR(zg_tensor_add_(t, w, 1.0f), "shapes [3] and [4] differ");
    CHECK_ERR(zg_tensor_copy_(t, w), "4 elements into 3");
    CHECK_ERR(zg_tensor_fill_(NULL, 1.0f), "zg_tensor_fill_: tensor is NULL");
    /* A parameter can only be written in place without grad mode. */
    CHECK_OK(zg_tensor_set_requires_grad(t, true));
    CHECK_ERR(zg_tensor_fill_(t, 0.0f), "requires grad");
    zg_no_grad_enter();
    CHECK_OK(zg_tensor_fill_(t, 0.0f));
    zg_no_grad_exit();
    zg_tensor_free(t);
    zg_tensor_free(o);
    zg_tensor_free(w);
}

TEST(arena_reuses_memory) {
    zg_arena_reset();
    size_t reserved = 0;
    /* A step that allocates the same sizes each time reserves once. */
    for (int step = 0; step < 50; step++) {
        int64_t s[2] = {256, 256};
        zg_tensor *a = zg_ones(s, 2);
        zg_tensor *d = zg_detach(a); /* an arena view */
        CHECK(!zg_tensor_is_persistent(d));
        CHECK(zg_tensor_data(d) == zg_tensor_data(a));
        zg_tensor_free(a);
        if (step == 1) reserved = zg_arena_bytes_reserved();
        if (step > 1) CHECK(zg_arena_bytes_reserved() == reserved);
        zg_arena_reset();
        CHECK(zg_arena_bytes_used() == 0);
    }
}

TEST(arena_mark_release) {
    zg_arena_reset();
    int64_t s[1] = {10};
    zg_tensor *a = zg_ones(s, 1);
    zg_tensor *keep = zg_detach(a);
    size_t m = zg_arena_mark();
    CHECK(m > 0);
    for (int i = 0; i < 100; i++) zg_detach(a);
    CHECK(zg_arena_bytes_used() > m);
    zg_arena_release(m);
    CHECK(zg_arena_bytes_used() == m);
    CHECK(zg_tensor_numel(keep) == 10);
    zg_tensor_free(a);
}

TEST(names_and_print) {
    int64_t s[2] = {2, 2};
    zg_tensor *t = zg_full(s, 2, 0.5f);
    CHECK_OK(zg_tensor_set_name(t, "fc.weight"));
    CHECK(!strcmp(zg_tensor_name(t), "fc.weight"));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    zg_tensor_print(t, f);
    fclose(f);
    CHECK(strstr(buf, "shape=[2,2]") && strstr(buf, "fc.weight") && strstr(buf, "0.5"));
    free(buf);
    zg_tensor_free(t);
}
