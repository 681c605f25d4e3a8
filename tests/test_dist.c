/* Data parallel training over MPI (src/dist): each case runs on several
 * ranks. Run as usual (scripts/run-tests), a case launches this binary
 * under `mpirun --allow-run-as-root --oversubscribe -np N` with
 * ZG_DIST_CASE naming it and passes when every rank passes; on the ranks
 * it runs its body. */
#include "harness.h"
#include "cli_runner.h" /* zgt_mpi_env */

#include "util/util_internal.h" /* zg__alloc_fail_after */

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- running a case on N ranks ------------------------------------------ */

static int rank, world;

/* Outside mpirun: runs this binary's case `name` on np ranks (np == 0: as
 * a plain process, a world of one) and checks that it passed. */
static void spawn(const char *name, int np) {
    const char *self = zgt_self_exe();
    CHECK(self != NULL);
    if (!self) return;
    char cmd[4096], env[1400];
    zgt_mpi_env(env, sizeof env);
    if (np > 0)
        snprintf(cmd, sizeof cmd,
                 "%s ZG_DIST_CASE=%s OMP_NUM_THREADS=1 timeout 120 mpirun --allow-run-as-root --oversubscribe "
                 "--mca btl self,vader -np %d '%s' %s 2>&1",
                 env, name, np, self, name);
    else
        snprintf(cmd, sizeof cmd, "%s ZG_DIST_CASE=%s OMP_NUM_THREADS=1 timeout 120 '%s' %s 2>&1", env, name, self,
                 name);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    if (!p) return;
    /* The ranks' output: their "# " lines (figures) always, the rest when
     * the run fails. */
    char line[1024], *log = NULL;
    size_t len = 0;
    FILE *keep = open_memstream(&log, &len);
    while (fgets(line, sizeof line, p)) {
        if (strncmp(line, "# ", 2) == 0) fprintf(stderr, "    %s", line);
        if (keep) fprintf(keep, "    [%s] %s", name, line);
    }
    int st = pclose(p);
    if (keep) fclose(keep);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        zgt_fail(__FILE__, __LINE__, "%s on %d ranks failed (status %d)", name, np, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        if (log) fputs(log, stderr);
    }
    free(log);
}

static void finalize_at_exit(void) { zg_dist_finalize(); }

/* True on a rank of this case's run (MPI initialised); false in the
 * launching process (which has spawned and checked the run) and on the
 * ranks of other cases' runs. */
static bool on_rank(const char *name, int np) {
    if (!zg_dist_available()) return false; /* dist_without_mpi_says_so instead */
    const char *c = getenv("ZG_DIST_CASE");
    if (!c) {
        spawn(name, np);
        return false;
    }
    if (strcmp(c, name) != 0) return false;
    if (!zg_dist_is_initialized()) {
        CHECK_OK(zg_dist_init(NULL, NULL));
        atexit(finalize_at_exit);
    }
    rank = zg_dist_rank();
    world = zg_dist_world_size();
    return true;
}

#define DIST_TEST(name, np)                                                                                \
    static void name##_rank(void);                                                                         \
    TEST(name) {                                                                                           \
        if (on_rank(#name, np)) name##_rank();                                                             \
    }                                                                                                      \
    static void name##_rank(void)

/* ---- data and models ------------------------------------------------------- */

/* A value in [-1, 1) from (a, b, c): the same on every rank, no generator. */
static float hashf(uint64_t a, uint64_t b, uint64_t c) {
    uint64_t x = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull ^ c * 0x94D049BB133111EBull;
    x ^= x >> 31;
    x *= 0xD6E8FEB86659FD93ull;
    x ^= x >> 32;
    return (float)((double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Rows [row0, row0 + n) of step `step`'s batch: inputs [n, in] and class
 * targets [n] (persistent). */
static void batch(int step, int64_t row0, int64_t n, int64_t in, int classes, zg_tensor **x, zg_tensor **y) {
    float *xv = malloc((size_t)(n * in) * sizeof *xv);
    int64_t *yv = malloc((size_t)n * sizeof *yv);
    for (int64_t r = 0; r < n; r++) {
        for (int64_t j = 0; j < in; j++) xv[r * in + j] = hashf((uint64_t)step, (uint64_t)(row0 + r), (uint64_t)j);
        yv[r] = (int64_t)((hashf((uint64_t)step, (uint64_t)(row0 + r), 999) + 1.0f) * 0.5f * (float)classes) % classes;
    }
    *x = zg_tensor_from_data(ZG_FLOAT32, xv, (int64_t[]){n, in}, 2);
    *y = zg_tensor_from_data(ZG_INT64, yv, (int64_t[]){n}, 1);
    free(xv);
    free(yv);
}

static const int64_t MLP_SIZES[] = {12, 16, 10, 5};
enum { MLP_IN = 12, MLP_CLASSES = 5 };

static zg_module *mlp(uint64_t seed) {
    zg_manual_seed(seed);
    return zg_model_mlp(MLP_SIZES, 4);
}

static zg_optim *optim(zg_optim_kind kind, zg_module *m) {
    zg_tensor *ps[64];
    int n = zg_module_params(m, ps, 64);
    zg_optim_config c = zg_optim_defaults(kind);
    c.lr = kind == ZG_SGD ? 0.1 : 0.01;
    if (kind == ZG_SGD) c.momentum = 0.9;
    return zg_optim_new(kind, ps, n, &c);
}

/* One step of m on rows [row0, row0 + n) of step's batch, the loss times
 * `scale` (a power of two keeps it exact), forward through ddp when given. */
static float step_on(zg_module *m, zg_ddp *ddp, int step, int64_t row0, int64_t n, float scale) {
    zg_tensor *x, *y;
    batch(step, row0, n, MLP_IN, MLP_CLASSES, &x, &y);
    zg_tensor *out = ddp ? zg_ddp_forward(ddp, x) : zg_module_forward(m, x);
    zg_tensor *loss = zg_cross_entropy(out, y, NULL);
    if (scale != 1.0f) loss = zg_mul_scalar(loss, scale);
    float l = zg_tensor_item(loss);
    CHECK_OK(zg_backward(loss, NULL));
    zg_tensor_free(x);
    zg_tensor_free(y);
    return l;
}

/* max |a - b| / (|b| + atol) over the parameters of two modules; 0 when
 * equal bit for bit. */
static double max_rel_diff(zg_module *a, zg_module *b, double atol, bool *bitwise) {
    double worst = 0;
    *bitwise = true;
    for (int i = 0; i < zg_module_num_params(a); i++) {
        zg_tensor *p = zg_module_param(a, i), *q = zg_module_param(b, i);
        for (int64_t k = 0; k < zg_tensor_numel(p); k++) {
            float u = zg_tensor_get(p, k), v = zg_tensor_get(q, k);
            if (memcmp(&u, &v, sizeof u) != 0) *bitwise = false;
            double r = fabs((double)u - v) / (fabs((double)v) + atol);
            if (r > worst) worst = r;
        }
    }
    return worst;
}

/* ---- cases ------------------------------------------------------------------ */

/* make ZG_MPI=0: the same functions, each failing with the reason. */
TEST(dist_without_mpi_says_so) {
    if (zg_dist_available() || getenv("ZG_DIST_CASE")) return;
    CHECK_ERR(zg_dist_init(NULL, NULL), "built without MPI");
    CHECK(zg_dist_rank() == 0 && zg_dist_world_size() == 1);
    zg_module *m = mlp(1);
    CHECK_NULL_ERR(zg_ddp_new(m, NULL), "built without MPI");
    zg_module_free(m);
}

DIST_TEST(dist_world_of_one_without_mpirun, 0) {
    CHECK(zg_dist_available());
    CHECK(world == 1 && rank == 0);
    CHECK_OK(zg_dist_init(NULL, NULL)); /* idempotent */
    double v[2] = {1.5, -2};
    CHECK_OK(zg_dist_allreduce_sum_f64(v, 2));
    CHECK(v[0] == 1.5 && v[1] == -2);
    CHECK_OK(zg_dist_barrier());
}

DIST_TEST(dist_comm_primitives, 3) {
    CHECK(world == 3);
    double v[2] = {rank, 1};
    CHECK_OK(zg_dist_allreduce_sum_f64(v, 2));
    CHECK(v[0] == 3 && v[1] == 3);
    char msg[16] = "";
    if (rank == 1) snprintf(msg, sizeof msg, "from one");
    CHECK_OK(zg_dist_broadcast(msg, sizeof msg, 1));
    CHECK(strcmp(msg, "from one") == 0);
    CHECK_ERR(zg_dist_broadcast(msg, sizeof msg, 3), "root 3 is not a rank");
    CHECK_OK(zg_dist_barrier());
}

/* 2 ranks with batch B against one process: (a) the same two halves as
 * micro-batches with loss / 2 accumulated: the same numbers summed the same
 * way, so bit for bit (g0 / 2 + g1 / 2: scaling by 1/2 is exact and a sum
 * of two terms does not depend on their order); (b) one batch of 2B: the
 * GEMMs sum the 2B rows in one pass instead of two halves then a sum, so
 * the gradients differ in the last bits and 20 steps of momentum SGD and
 * Adam carry that to a relative difference well under 1e-5. */
static void equal_to_one_process(zg_optim_kind kind) {
    const int64_t B = 8;
    zg_module *m = mlp(7), *acc = mlp(7), *big = mlp(7);
    /* Rank 1 starts from other weights: zg_ddp_new copies rank 0's. */
    if (rank == 1) {
        zg_module_free(m);
        m = mlp(99);
    }
    zg_ddp *ddp = zg_ddp_new(m, NULL);
    CHECK_PTR(ddp);
    if (!ddp) return;
    zg_optim *o = optim(kind, m), *oa = optim(kind, acc), *ob = optim(kind, big);
    for (int s = 0; s < 20; s++) {
        step_on(m, ddp, s, rank * B, B, 1.0f);
        CHECK_OK(zg_optim_step(o));
        zg_optim_zero_grad(o, true);
        for (int r = 0; r < 2; r++) step_on(acc, NULL, s, r * B, B, 0.5f);
        CHECK_OK(zg_optim_step(oa));
        zg_optim_zero_grad(oa, true);
        step_on(big, NULL, s, 0, 2 * B, 1.0f);
        CHECK_OK(zg_optim_step(ob));
        zg_optim_zero_grad(ob, true);
        zg_arena_reset();
    }
    bool bitwise;
    double d = max_rel_diff(m, acc, 0, &bitwise);
    if (!bitwise) zgt_fail(__FILE__, __LINE__, "2 ranks vs 2 micro-batches: not bit-identical (max rel %g)", d);
    d = max_rel_diff(m, big, 1e-3, &bitwise);
    CHECK(d < 1e-5);
    if (rank == 0) fprintf(stderr, "# 2 ranks vs batch 2B (%s): max relative difference %.3g%s\n",
                           kind == ZG_SGD ? "SGD" : "Adam", d, bitwise ? " (bit-identical)" : "");
    zg_ddp_stats st;
    CHECK_OK(zg_ddp_get_stats(ddp, &st));
    CHECK(st.reductions == 20);
    CHECK(st.allreduces == 20 * st.num_buckets);
    zg_ddp_free(ddp);
    zg_optim_free(o);
    zg_optim_free(oa);
    zg_optim_free(ob);
    zg_module_free(m);
    zg_module_free(acc);
    zg_module_free(big);
}

DIST_TEST(ddp_mlp_sgd_2_ranks_equals_one_process, 2) { equal_to_one_process(ZG_SGD); }
DIST_TEST(ddp_mlp_adam_2_ranks_equals_one_process, 2) { equal_to_one_process(ZG_ADAM); }

/* Parameter sizes of mlp(): 0: [16,12] 768 bytes, 1: [16] 64, 2: [10,16]
 * 640, 3: [10] 40, 4: [5,10] 200, 5: [5] 20. With a first cap of 200
 * bytes and then 700, reverse registration order gives {5, 4} (220 bytes
 * reach 200), {3, 2, 1} (744 reach 700), {0}. */
static void check_buckets(zg_ddp *ddp, const int *want, const int *sizes, int nb) {
    zg_ddp_stats st;
    CHECK_OK(zg_ddp_get_stats(ddp, &st));
    CHECK(st.num_buckets == nb);
    int k = 0;
    for (int b = 0; b < nb; b++) {
        int idx[8];
        int n = zg_ddp_bucket_params(ddp, b, idx, 8);
        CHECK(n == sizes[b]);
        for (int j = 0; j < n && j < 8; j++, k++)
            if (idx[j] != want[k]) zgt_fail(__FILE__, __LINE__, "bucket %d slot %d: param %d, want %d", b, j, idx[j], want[k]);
    }
}

DIST_TEST(ddp_buckets_by_size_in_reverse_registration_order, 2) {
    zg_module *m = mlp(3);
    zg_ddp_options o = zg_ddp_default_options();
    o.first_bucket_cap_mb = 200.0 / 1048576;
    o.bucket_cap_mb = 700.0 / 1048576;
    zg_ddp *ddp = zg_ddp_new(m, &o);
    CHECK_PTR(ddp);
    if (!ddp) return;
    check_buckets(ddp, (int[]){5, 4, 3, 2, 1, 0}, (int[]){2, 3, 1}, 3);
    step_on(m, ddp, 0, rank * 4, 4, 1.0f);
    zg_ddp_stats st;
    CHECK_OK(zg_ddp_get_stats(ddp, &st));
    /* Buckets 0 and 1 start while gradients are still to come (overlap);
     * the last one when the last gradient is in. */
    CHECK(st.allreduces == 3 && st.allreduces_overlapped == 2);
    CHECK(st.allreduce_bytes == (768 + 64 + 640 + 40 + 200 + 20));
    /* The comm window starts at bucket 0's launch, before backward ends
     * (two gradients were still to come), and splits into overlap + wait:
     * three differences of the same three clock readings. */
    CHECK(st.overlap_seconds > 0 && st.wait_seconds >= 0 && st.comm_seconds >= st.overlap_seconds);
    CHECK(fabs(st.comm_seconds - (st.overlap_seconds + st.wait_seconds)) <= 1e-12 + 1e-9 * st.comm_seconds);
    zg_ddp_free(ddp);
    zg_module_free(m);
}

/* Two Linear(12, 12) registered as A, B but applied as A(B(x)): A's
 * gradients are ready first, so the ready order (1, 0, 3, 2: A.bias,
 * A.weight, B.bias, B.weight) is not the reverse registration order
 * (3, 2, 1, 0). After the first iteration the buckets follow it: with caps
 * of 100 and 600 bytes, {1, 0} then {3, 2}. */
DIST_TEST(ddp_buckets_rebuilt_in_ready_order, 2) {
    zg_manual_seed(4);
    zg_module *ab[2] = {zg_nn_linear(12, 12, true), zg_nn_linear(12, 12, true)};
    zg_module *m = zg_nn_sequential(ab, 2);
    zg_ddp_options o = zg_ddp_default_options();
    o.first_bucket_cap_mb = 100.0 / 1048576;
    o.bucket_cap_mb = 600.0 / 1048576;
    zg_ddp *ddp = zg_ddp_new(m, &o);
    CHECK_PTR(ddp);
    if (!ddp) return;
    check_buckets(ddp, (int[]){3, 2, 1, 0}, (int[]){2, 2}, 2);
    for (int it = 0; it < 2; it++) {
        zg_tensor *x, *y;
        batch(it, rank * 4, 4, 12, 12, &x, &y);
        CHECK_OK(zg_ddp_before_forward(ddp));
        zg_tensor *out = zg_module_forward(zg_module_child(m, 0), zg_module_forward(zg_module_child(m, 1), x));
        CHECK_OK(zg_backward(zg_cross_entropy(out, y, NULL), NULL));
        zg_tensor_free(x);
        zg_tensor_free(y);
        zg_arena_reset();
    }
    check_buckets(ddp, (int[]){1, 0, 3, 2}, (int[]){2, 2}, 2);
    zg_ddp_stats st;
    CHECK_OK(zg_ddp_get_stats(ddp, &st));
    CHECK(st.reductions == 2 && st.allreduces == 4);
    zg_ddp_free(ddp);
    zg_module_free(m);
}

/* The averaging form: DDP copies each gradient into its bucket times
 * 1/world_size (rounded to float), then sums; it does not sum and then
 * divide. With 3 ranks where ranks 1 and 2 contribute zeros the result is
 * g * float(1/3) exactly, which differs from g / 3 in some elements. */
static void averaging_form(bool as_view) {
    zg_module *m = mlp(5), *local = mlp(5);
    zg_ddp_options o = zg_ddp_default_options();
    o.gradient_as_bucket_view = as_view;
    zg_ddp *ddp = zg_ddp_new(m, &o);
    CHECK_PTR(ddp);
    if (!ddp) return;
    step_on(m, ddp, 1, 0, 6, rank == 0 ? 1.0f : 0.0f);
    step_on(local, NULL, 1, 0, 6, 1.0f); /* rank 0's gradient, on every rank */
    const float third = (float)(1.0 / 3);
    int differs = 0;
    for (int i = 0; i < zg_module_num_params(m); i++) {
        zg_tensor *g = zg_tensor_grad(zg_module_param(m, i)), *g0 = zg_tensor_grad(zg_module_param(local, i));
        for (int64_t k = 0; k < zg_tensor_numel(g); k++) {
            const float x = zg_tensor_get(g0, k), got = zg_tensor_get(g, k);
            const float want = as_view ? x / 3.0f : x * third, other = as_view ? x * third : x / 3.0f;
            if (memcmp(&want, &got, 4) != 0) {
                zgt_fail(__FILE__, __LINE__, "param %d [%lld]: %.9g, want %.9g", i, (long long)k, got, want);
                break;
            }
            differs += got != other;
        }
    }
    CHECK(differs > 0);
    if (rank == 0 && !as_view)
        fprintf(stderr, "# 3 ranks: %d gradient elements differ between g * (1/3) and g / 3\n", differs);
    zg_ddp_free(ddp);
    /* Freed, the zg_ddp gives each .grad its own memory, values kept. */
    for (int i = 0; i < zg_module_num_params(m); i++) {
        zg_tensor *g = zg_tensor_grad(zg_module_param(m, i));
        CHECK(g && zg_tensor_get(g, 0) == (as_view ? zg_tensor_get(zg_tensor_grad(zg_module_param(local, i)), 0) / 3.0f
                                                    : zg_tensor_get(zg_tensor_grad(zg_module_param(local, i)), 0) * third));
    }
    zg_module_free(m);
    zg_module_free(local);
}

DIST_TEST(ddp_averages_by_multiplying_with_one_over_world_size, 3) { averaging_form(false); }
/* gradient_as_bucket_view: .grad is the bucket, divided in place by 3. */
DIST_TEST(ddp_bucket_view_averages_by_dividing_in_place, 3) { averaging_form(true); }

DIST_TEST(ddp_shape_mismatch_names_the_parameter, 2) {
    const int64_t other[] = {12, 16, 11, 5};
    zg_manual_seed(1);
    zg_module *m = rank == 1 ? zg_model_mlp(other, 4) : mlp(1);
    CHECK_NULL_ERR(zg_ddp_new(m, NULL), "parameter 2 ('3.weight') has shape [10,16] on rank 0 but [11,16] on rank 1");
    zg_module_free(m);
}

/* no_sync through zg_accum: windows of 4 micro-batches reduce once per
 * bucket per window (the last micro-batch's backward reduces the window's
 * sum), and a short window closed by zg_accum_flush is averaged by
 * zg_ddp_sync_gradients. The parameters equal, bit for bit, one process
 * that accumulates each rank's micro-batches separately and averages the
 * two sums the same way (g0 / 2 + g1 / 2). */
static void copy_params(zg_module *dst, zg_module *src) {
    for (int i = 0; i < zg_module_num_params(src); i++)
        memcpy(zg_tensor_data(zg_module_param(dst, i)), zg_tensor_data(zg_module_param(src, i)),
               (size_t)zg_tensor_numel(zg_module_param(src, i)) * sizeof(float));
}

static void accumulate_rank(zg_module *m, int step, int r, int k0, int k1) {
    for (int k = k0; k < k1; k++) step_on(m, NULL, step * 16 + k, r * 4, 4, 0.25f);
}

static void accumulation_case(bool as_view) {
    zg_module *m = mlp(11), *r0 = mlp(11), *r1 = mlp(11), *ref = mlp(11);
    zg_ddp_options o = zg_ddp_default_options();
    o.first_bucket_cap_mb = 300.0 / 1048576; /* several buckets */
    o.gradient_as_bucket_view = as_view;
    zg_ddp *ddp = zg_ddp_new(m, &o);
    CHECK_PTR(ddp);
    if (!ddp) return;
    zg_optim *opt = optim(ZG_SGD, m), *oref = optim(ZG_SGD, ref);
    zg_accum *acc = zg_accum_new(opt, NULL, 4);
    zg_ddp_stats st;
    CHECK_OK(zg_ddp_get_stats(ddp, &st));
    const int nb = st.num_buckets;
    CHECK(nb >= 2);
    /* Two full windows, then a short one of 2 micro-batches. */
    const int lens[3] = {4, 4, 2};
    for (int w = 0; w < 3; w++) {
        for (int k = 0; k < lens[w]; k++) {
            zg_tensor *x, *y;
            batch(w * 16 + k, rank * 4, 4, MLP_IN, MLP_CLASSES, &x, &y);
            zg_tensor *loss = zg_cross_entropy(zg_ddp_forward(ddp, x), y, NULL);
            CHECK(zg_accum_backward(acc, loss) >= 0);
            zg_tensor_free(x);
            zg_tensor_free(y);
            bool stepped;
            CHECK_OK(zg_accum_step(acc, &stepped));
            zg_arena_reset();
        }
        if (lens[w] < 4) CHECK_OK(zg_accum_flush(acc, NULL));
        CHECK_OK(zg_ddp_get_stats(ddp, &st));
        CHECK(st.allreduces == (int64_t)(w + 1) * nb);
        /* The reference: each rank's window in its own module, averaged. */
        zg_module_zero_grad(r0, true);
        zg_module_zero_grad(r1, true);
        copy_params(r0, ref);
        copy_params(r1, ref);
        accumulate_rank(r0, w, 0, 0, lens[w]);
        accumulate_rank(r1, w, 1, 0, lens[w]);
        for (int i = 0; i < zg_module_num_params(ref); i++) {
            zg_tensor *g0 = zg_tensor_grad(zg_module_param(r0, i)), *g1 = zg_tensor_grad(zg_module_param(r1, i));
            zg_tensor *avg = zg_tensor_clone(g0);
            for (int64_t e = 0; e < zg_tensor_numel(avg); e++)
                zg_tensor_data(avg)[e] = zg_tensor_get(g0, e) * 0.5f + zg_tensor_get(g1, e) * 0.5f;
            CHECK_OK(zg_tensor_set_grad(zg_module_param(ref, i), avg));
            zg_tensor_free(avg);
        }
        CHECK_OK(zg_optim_step(oref));
        zg_optim_zero_grad(oref, true);
        zg_arena_reset();
    }
    bool bitwise;
    double d = max_rel_diff(m, ref, 0, &bitwise);
    if (!bitwise) zgt_fail(__FILE__, __LINE__, "accumulation under DDP vs the reference: max rel %g", d);
    CHECK(st.reductions == 3);
    CHECK(st.num_buckets == nb);
    zg_accum_free(acc);
    zg_ddp_free(ddp);
    zg_optim_free(opt);
    zg_optim_free(oref);
    zg_module_free(m);
    zg_module_free(r0);
    zg_module_free(r1);
    zg_module_free(ref);
}

DIST_TEST(ddp_accumulation_reduces_once_per_window, 2) { accumulation_case(false); }
DIST_TEST(ddp_bucket_view_accumulation, 2) { accumulation_case(true); }

/* Three Linear(4, 4): A, B, C. */
static zg_module *three_linears(void) {
    zg_manual_seed(21);
    zg_module *l[3] = {zg_nn_linear(4, 4, true), zg_nn_linear(4, 4, true), zg_nn_linear(4, 4, true)};
    return zg_nn_sequential(l, 3);
}

/* The loss of A(x), through B too when use_b; C never. */
static void unused_step(zg_module *m, zg_ddp *ddp, bool use_b, float scale) {
    zg_tensor *x, *y;
    batch(3, rank * 4, 4, 4, 4, &x, &y);
    if (ddp) CHECK_OK(zg_ddp_before_forward(ddp));
    zg_tensor *h = zg_module_forward(zg_module_child(m, 0), x);
    if (use_b) h = zg_module_forward(zg_module_child(m, 1), h);
    zg_tensor *loss = zg_cross_entropy(h, y, NULL);
    CHECK_OK(zg_backward(scale != 1.0f ? zg_mul_scalar(loss, scale) : loss, NULL));
    zg_tensor_free(x);
    zg_tensor_free(y);
}

/* find_unused_parameters false (the default): C gets no gradient, its
 * bucket never completes, and the next forward says so, naming it. */
DIST_TEST(ddp_unused_parameter_fails_the_next_forward, 2) {
    zg_module *m = three_linears();
    zg_ddp *ddp = zg_ddp_new(m, NULL);
    CHECK_PTR(ddp);
    if (!ddp) return;
    unused_step(m, ddp, true, 1.0f);
    CHECK_ERR(zg_ddp_before_forward(ddp), "expected to have finished reduction in the prior iteration");
    CHECK(strstr(zg_last_error(), "'2.weight', '2.bias'") != NULL);
    CHECK(strstr(zg_last_error(), "find_unused_parameters") != NULL);
    zg_ddp_free(ddp);
    zg_module_free(m);
}

/* find_unused_parameters true: C unused on every rank keeps .grad None; B,
 * used on rank 0 only, gets rank 0's gradient / 2 plus rank 1's zeros on
 * both ranks; A the average. */
DIST_TEST(ddp_find_unused_parameters, 2) {
    zg_module *m = three_linears(), *ref0 = three_linears(), *ref1 = three_linears();
    zg_ddp_options o = zg_ddp_default_options();
    o.find_unused_parameters = true;
    zg_ddp *ddp = zg_ddp_new(m, &o);
    CHECK_PTR(ddp);
    if (!ddp) return;
    for (int it = 0; it < 2; it++) {
        zg_module_zero_grad(m, true);
        unused_step(m, ddp, rank == 0, 1.0f);
        CHECK_OK(zg_ddp_before_forward(ddp)); /* no unfinished reduction */
        zg_arena_reset();
    }
    /* Each rank's own gradients, computed without DDP on both ranks. */
    int saved = rank;
    rank = 0;
    unused_step(ref0, NULL, true, 0.5f);
    rank = 1;
    unused_step(ref1, NULL, false, 0.5f);
    rank = saved;
    for (int i = 0; i < 4; i++) {
        zg_tensor *g = zg_tensor_grad(zg_module_param(m, i));
        zg_tensor *g0 = zg_tensor_grad(zg_module_param(ref0, i)), *g1 = zg_tensor_grad(zg_module_param(ref1, i));
        CHECK(g != NULL);
        if (!g) continue;
        for (int64_t k = 0; k < zg_tensor_numel(g); k++) {
            float want = zg_tensor_get(g0, k) + (g1 ? zg_tensor_get(g1, k) : 0.0f);
            if (zg_tensor_get(g, k) != want) {
                zgt_fail(__FILE__, __LINE__, "param %d [%lld]: %.9g, want %.9g", i, (long long)k, zg_tensor_get(g, k), want);
                break;
            }
        }
    }
    CHECK(zg_tensor_grad(zg_module_param(m, 4)) == NULL && zg_tensor_grad(zg_module_param(m, 5)) == NULL);
    zg_ddp_free(ddp);
    zg_module_free(m);
    zg_module_free(ref0);
    zg_module_free(ref1);
}

/* broadcast_buffers: BatchNorm's running statistics, which each rank's
 * forward moves with its own data, are rank 0's again after the next
 * zg_ddp_before_forward; with broadcast_buffers false they stay apart. */
static void buffers_case(bool broadcast) {
    zg_manual_seed(8);
    zg_module *l[3] = {zg_nn_linear(12, 8, true), zg_nn_batch_norm1d(8, 1e-5f, 0.1f), zg_nn_linear(8, 5, true)};
    zg_module *m = zg_nn_sequential(l, 3);
    zg_ddp_options o = zg_ddp_default_options();
    o.broadcast_buffers = broadcast;
    zg_ddp *ddp = zg_ddp_new(m, &o);
    CHECK_PTR(ddp);
    if (!ddp) return;
    step_on(m, ddp, 0, rank * 4, 4, 1.0f);
    CHECK_OK(zg_ddp_before_forward(ddp));
    int same = 0, total = 0;
    for (int b = 0; b < zg_module_num_buffers(m); b++) {
        zg_tensor *buf = zg_module_buffer(m, b);
        if (zg_tensor_dtype(buf) != ZG_FLOAT32) continue;
        zg_tensor *mine = zg_tensor_clone(buf), *r0 = zg_tensor_clone(buf);
        CHECK_OK(zg_dist_broadcast(zg_tensor_data(r0), (size_t)zg_tensor_numel(r0) * 4, 0));
        total++;
        same += memcmp(zg_tensor_data(mine), zg_tensor_data(r0), (size_t)zg_tensor_numel(r0) * 4) == 0;
        zg_tensor_free(mine);
        zg_tensor_free(r0);
    }
    CHECK(total == 2);
    if (broadcast || rank == 0) CHECK(same == total);
    else CHECK(same == 0);
    zg_ddp_free(ddp);
    zg_module_free(m);
}

DIST_TEST(ddp_broadcasts_buffers_from_rank_0, 2) { buffers_case(true); }
DIST_TEST(ddp_keeps_buffers_without_broadcast_buffers, 2) { buffers_case(false); }

/* Uneven inputs: rank r has counts[r] batches. Under join none hangs, the
 * done ranks contribute zeros (divisor: the initial world size) and at the
 * end every rank holds the last joiner's parameters. With 2 ranks the
 * result equals, bit for bit, one process that steps on g0 / 2 + g1 / 2
 * while both have data and on g0 / 2 after. */
static void join_case(const int *counts) {
    zg_module *m = mlp(13), *ref = mlp(13), *r1 = mlp(13);
    zg_ddp *ddp = zg_ddp_new(m, NULL);
    CHECK_PTR(ddp);
    if (!ddp) return;
    zg_optim *opt = optim(ZG_SGD, m), *oref = optim(ZG_SGD, ref);
    CHECK_OK(zg_ddp_join_begin(ddp));
    for (int s = 0; s < counts[rank]; s++) {
        step_on(m, ddp, s, rank * 4, 4, 1.0f);
        CHECK_OK(zg_optim_step(opt));
        zg_optim_zero_grad(opt, true);
        zg_arena_reset();
    }
    CHECK_OK(zg_ddp_join_end(ddp));
    zg_ddp_stats st;
    CHECK_OK(zg_ddp_get_stats(ddp, &st));
    int most = 0;
    for (int r = 0; r < world; r++) most = counts[r] > most ? counts[r] : most;
    CHECK(st.join_shadows == (int64_t)(most - counts[rank]) * st.num_buckets);
    /* Every rank holds the same parameters. */
    for (int i = 0; i < zg_module_num_params(m); i++) {
        zg_tensor *p = zg_module_param(m, i), *p0 = zg_tensor_clone(p);
        CHECK_OK(zg_dist_broadcast(zg_tensor_data(p0), (size_t)zg_tensor_numel(p) * 4, 0));
        CHECK(memcmp(zg_tensor_data(p0), zg_tensor_data(p), (size_t)zg_tensor_numel(p) * 4) == 0);
        zg_tensor_free(p0);
    }
    if (world == 2) {
        for (int s = 0; s < most; s++) {
            for (int r = 0; r < 2; r++)
                if (s < counts[r]) {
                    copy_params(r1, ref);
                    step_on(r == 0 ? ref : r1, NULL, s, r * 4, 4, 0.5f);
                }
            /* ref's grad += r1's (each already halved). */
            for (int i = 0; i < zg_module_num_params(ref) && s < counts[1]; i++)
                CHECK_OK(zg_tensor_add_(zg_tensor_grad(zg_module_param(ref, i)), zg_tensor_grad(zg_module_param(r1, i)), 1.0f));
            CHECK_OK(zg_optim_step(oref));
            zg_optim_zero_grad(oref, true);
            zg_module_zero_grad(r1, true);
            zg_arena_reset();
        }
        bool bitwise;
        double d = max_rel_diff(m, ref, 0, &bitwise);
        if (!bitwise) zgt_fail(__FILE__, __LINE__, "join vs the reference: max rel %g", d);
    }
    zg_ddp_free(ddp);
    zg_optim_free(opt);
    zg_optim_free(oref);
    zg_module_free(m);
    zg_module_free(ref);
    zg_module_free(r1);
}

DIST_TEST(ddp_join_uneven_inputs_2_ranks, 2) { join_case((int[]){5, 3}); }
DIST_TEST(ddp_join_uneven_inputs_3_ranks, 3) { join_case((int[]){2, 5, 3}); }

/* ---- equality with one process: MLP, CNN with BatchNorm, GPT ------------- */

typedef struct {
    const char *name;
    zg_module *(*build)(void);
    /* Rows [row0, row0 + n) of step's batch. */
    void (*make)(int step, int64_t row0, int64_t n, zg_tensor **x, zg_tensor **y);
    zg_tensor *(*loss)(zg_tensor *out, zg_tensor *y);
    int64_t B;
    int steps;
} model_case;

static zg_tensor *ce_loss(zg_tensor *out, zg_tensor *y) { return zg_cross_entropy(out, y, NULL); }

static zg_module *build_mlp(void) { return mlp(17); }
static void make_mlp(int step, int64_t row0, int64_t n, zg_tensor **x, zg_tensor **y) {
    batch(step, row0, n, MLP_IN, MLP_CLASSES, x, y);
}

/* Conv 1->4 3x3 pad 1, BatchNorm2d, ReLU, MaxPool 2, Flatten, Linear 64->5
 * on 1x8x8 images. */
static zg_module *build_cnn(void) {
    zg_manual_seed(23);
    zg_module *l[6] = {zg_nn_conv2d(1, 4, 3, 1, 1, 1, 1, true), zg_nn_batch_norm2d(4, 1e-5f, 0.1f), zg_nn_relu(),
                       zg_nn_max_pool2d(2, 2, 0), zg_nn_flatten(), zg_nn_linear(64, 5, true)};
    return zg_nn_sequential(l, 6);
}
static void make_cnn(int step, int64_t row0, int64_t n, zg_tensor **x, zg_tensor **y) {
    zg_tensor *flat;
    batch(step, row0, n, 64, 5, &flat, y);
    *x = zg_tensor_clone(zg_reshape(flat, (int64_t[]){n, 1, 8, 8}, 4));
    zg_tensor_free(flat);
}

/* A GPT of 2 layers, 2 heads, 16 embd over a vocabulary of 11, 6 tokens. */
static zg_module *build_gpt(void) {
    zg_manual_seed(29);
    zg_gpt_config c = {.vocab_size = 11, .block_size = 8, .n_layer = 2, .n_head = 2, .n_embd = 16, .dropout = 0,
                       .bias = true};
    return zg_nn_gpt(&c);
}
static void make_gpt(int step, int64_t row0, int64_t n, zg_tensor **x, zg_tensor **y) {
    enum { T = 6 };
    int64_t xv[64 * T], yv[64 * T];
    for (int64_t r = 0; r < n; r++)
        for (int t = 0; t <= T; t++) {
            int64_t tok = (int64_t)((hashf((uint64_t)step, (uint64_t)(row0 + r), (uint64_t)t) + 1.0f) * 5.5f) % 11;
            if (t < T) xv[r * T + t] = tok;
            if (t > 0) yv[r * T + t - 1] = tok;
        }
    *x = zg_tensor_from_data(ZG_INT64, xv, (int64_t[]){n, T}, 2);
    *y = zg_tensor_from_data(ZG_INT64, yv, (int64_t[]){n * T}, 1);
}
static zg_tensor *gpt_loss(zg_tensor *logits, zg_tensor *y) {
    return zg_cross_entropy(zg_reshape(logits, (int64_t[]){-1, 11}, 2), y, NULL);
}

static const model_case MODELS[] = {
    {"mlp", build_mlp, make_mlp, ce_loss, 8, 20},
    {"cnn", build_cnn, make_cnn, ce_loss, 4, 20},
    {"gpt", build_gpt, make_gpt, gpt_loss, 2, 20},
};

static float case_step(const model_case *mc, zg_module *m, zg_ddp *ddp, int step, int64_t row0, int64_t n, float scale) {
    zg_tensor *x, *y;
    mc->make(step, row0, n, &x, &y);
    zg_tensor *out = ddp ? zg_ddp_forward(ddp, x) : zg_module_forward(m, x);
    zg_tensor *loss = mc->loss(out, y);
    if (scale != 1.0f) loss = zg_mul_scalar(loss, scale);
    float l = zg_tensor_item(loss);
    CHECK_OK(zg_backward(loss, NULL));
    zg_tensor_free(x);
    zg_tensor_free(y);
    return l;
}

/* m's buffers (running statistics) saved, put back, dropped. */
static void buffers_save(zg_module *m, zg_tensor **keep) {
    for (int b = 0; b < zg_module_num_buffers(m); b++) keep[b] = zg_tensor_clone(zg_module_buffer(m, b));
}
static void buffers_restore(zg_module *m, zg_tensor **keep) {
    for (int b = 0; b < zg_module_num_buffers(m); b++) {
        zg_tensor *t = zg_module_buffer(m, b);
        if (zg_tensor_dtype(t) == ZG_INT64)
            memcpy(zg_tensor_data_i64(t), zg_tensor_data_i64(keep[b]), (size_t)zg_tensor_numel(t) * 8);
        else
            memcpy(zg_tensor_data(t), zg_tensor_data(keep[b]), (size_t)zg_tensor_numel(t) * 4);
    }
}
static void buffers_drop(zg_module *m, zg_tensor **keep) {
    for (int b = 0; b < zg_module_num_buffers(m); b++) zg_tensor_free(keep[b]);
}

static bool same_grads(zg_tensor *p, zg_tensor *q) {
    zg_tensor *a = zg_tensor_grad(p), *b = zg_tensor_grad(q);
    return a && b && memcmp(zg_tensor_data(a), zg_tensor_data(b), (size_t)zg_tensor_numel(a) * 4) == 0;
}

static bool same_floats(zg_tensor *a, zg_tensor *b) {
    return memcmp(zg_tensor_data(a), zg_tensor_data(b), (size_t)zg_tensor_numel(a) * 4) == 0;
}

/* world ranks with batch B against one process that runs the world
 * micro-batches with loss / world accumulated (the statistics of
 * BatchNorm's running buffers from rank 0's micro-batch only, as DDP's
 * broadcast leaves them), and, for models without BatchNorm (whose
 * training statistics are per rank, as in PyTorch without SyncBatchNorm),
 * one process with batch world * B. */
static void model_equality(const model_case *mc, double acc_tol, double big_tol) {
    zg_module *m = mc->build(), *acc = mc->build(), *big = mc->build();
    zg_ddp *ddp = zg_ddp_new(m, NULL);
    CHECK_PTR(ddp);
    if (!ddp) return;
    /* Plain SGD, lr 0.01: Adam's normalised update (and a large step)
     * would magnify the last bits of near-zero gradients, which says
     * nothing about DDP. */
    zg_optim_config c = zg_optim_defaults(ZG_SGD);
    c.lr = 0.01;
    zg_tensor *ps[3][128];
    zg_module *ms[3] = {m, acc, big};
    zg_optim *os[3];
    for (int k = 0; k < 3; k++) os[k] = zg_optim_new(ZG_SGD, ps[k], zg_module_params(ms[k], ps[k], 128), &c);
    zg_optim *o = os[0], *oa = os[1], *ob = os[2];
    const bool has_bn = zg_module_num_buffers(m) > 0;
    const float inv = 1.0f / (float)world; /* exact: world is a power of two */
    for (int s = 0; s < mc->steps; s++) {
        case_step(mc, m, ddp, s, rank * mc->B, mc->B, 1.0f);
        CHECK_OK(zg_optim_step(o));
        zg_optim_zero_grad(o, true);
        zg_tensor *keep[8];
        for (int r = 0; r < world; r++) {
            case_step(mc, acc, NULL, s, r * mc->B, mc->B, inv);
            if (has_bn && r == 0) buffers_save(acc, keep);
        }
        if (has_bn) {
            buffers_restore(acc, keep);
            buffers_drop(acc, keep);
        }
        CHECK_OK(zg_optim_step(oa));
        zg_optim_zero_grad(oa, true);
        if (!has_bn) {
            case_step(mc, big, NULL, s, 0, world * mc->B, 1.0f);
            CHECK_OK(zg_optim_step(ob));
            zg_optim_zero_grad(ob, true);
        }
        zg_arena_reset();
    }
    bool bitwise;
    double d = max_rel_diff(m, acc, 1e-3, &bitwise);
    if (acc_tol == 0 && !bitwise) zgt_fail(__FILE__, __LINE__, "%s: %d ranks vs micro-batches: not bit-identical (max rel %g)", mc->name, world, d);
    CHECK(d <= acc_tol);
    if (rank == 0) fprintf(stderr, "# %s, %d ranks vs %d accumulated micro-batches: %s (max rel %.3g)\n", mc->name, world, world, bitwise ? "bit-identical" : "differs", d);
    if (!has_bn) {
        d = max_rel_diff(m, big, 1e-3, &bitwise);
        CHECK(d <= big_tol);
        if (rank == 0) fprintf(stderr, "# %s, %d ranks vs one batch of %d: max rel %.3g%s\n", mc->name, world, (int)(world * mc->B), d, bitwise ? " (bit-identical)" : "");
    } else if (rank == 0) {
        /* Rank 0's running statistics: its own micro-batch's. */
        for (int b = 0; b < zg_module_num_buffers(m); b++) {
            zg_tensor *x = zg_module_buffer(m, b), *y = zg_module_buffer(acc, b);
            if (zg_tensor_dtype(x) != ZG_FLOAT32) continue;
            if (acc_tol == 0) CHECK(same_floats(x, y));
            else CHECK_TENSOR_NEAR(x, y, 1e-7, acc_tol);
        }
    }
    zg_ddp_free(ddp);
    zg_optim_free(o);
    zg_optim_free(oa);
    zg_optim_free(ob);
    zg_module_free(m);
    zg_module_free(acc);
    zg_module_free(big);
}

/* Tolerances: max |a - b| / (|b| + 1e-3) over the parameters after 20
 * steps. 2 ranks against the accumulated micro-batches: 0 (bit for bit).
 * 4 ranks: MPI adds the 4 terms in an order of its own (recursive
 * doubling or a ring, chunk by chunk), the reference in sequence, so each
 * step's gradient may differ by a rounding: measured <= 6.2e-7, bound
 * 1e-6. Against one batch of world * B the GEMMs sum all rows at once
 * instead of per rank: measured <= 1.8e-6, bound 5e-6. */
DIST_TEST(ddp_cnn_batchnorm_2_ranks_equals_one_process, 2) { model_equality(&MODELS[1], 0, 0); }
DIST_TEST(ddp_gpt_2_ranks_equals_one_process, 2) { model_equality(&MODELS[2], 0, 5e-6); }
DIST_TEST(ddp_models_4_ranks_equal_one_process, 4) {
    for (int k = 0; k < 3; k++) model_equality(&MODELS[k], 1e-6, 5e-6);
}

/* ---- live parity with PyTorch 2.x DDP (gloo, CPU, 2 processes) ------------ */

static const char *const ddp_sources[] = {"tests/parity/ddp_reference_torch2.py", "tests/parity/torch_reference.py"};
static const char *const ddp_files[] = {"ddp_torch2"};
static zgt_refset ddp_refs = {ddp_sources, 2, ddp_files, 1, NULL, 0};

/* The same model, initial weights, data and optimizer as
 * tests/parity/ddp_reference_torch2.py: after 20 steps on 2 ranks every
 * parameter is within 1e-6 of PyTorch's (the matrix products round in
 * another order, and SGD with momentum carries that along). */
static void pytorch_parity_rank(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/ddp_torch2.safetensors", zgt_reference_dir());
    zg_safetensors *st = zg_safetensors_read(path);
    CHECK_PTR(st);
    if (!st) return;
    zg_module *l[3] = {zg_nn_linear(12, 16, true), zg_nn_relu(), zg_nn_linear(16, 5, true)};
    zg_module *m = zg_nn_sequential(l, 3);
    for (int i = 0; i < zg_module_num_params(m); i++) {
        zg_tensor *init = zgt_ref_get(st, "init.%s", zg_module_param_name(m, i));
        if (init) memcpy(zg_tensor_data(zg_module_param(m, i)), zg_tensor_data(init), (size_t)zg_tensor_numel(init) * 4);
    }
    zg_ddp *ddp = zg_ddp_new(m, NULL);
    zg_optim *o = optim(ZG_SGD, m); /* lr 0.1, momentum 0.9 */
    zg_tensor *xs = zgt_ref_get(st, "x"), *ys = zgt_ref_get(st, "y");
    CHECK_PTR(ddp);
    for (int s = 0; ddp && xs && ys && s < 20; s++) {
        const int64_t row = s * 16 + rank * 8;
        zg_tensor *x = zg_tensor_from_data(ZG_FLOAT32, zg_tensor_data(xs) + row * 12, (int64_t[]){8, 12}, 2);
        zg_tensor *y = zg_tensor_from_data(ZG_INT64, zg_tensor_data_i64(ys) + row, (int64_t[]){8}, 1);
        CHECK_OK(zg_backward(zg_cross_entropy(zg_ddp_forward(ddp, x), y, NULL), NULL));
        zg_tensor_free(x);
        zg_tensor_free(y);
        CHECK_OK(zg_optim_step(o));
        zg_optim_zero_grad(o, true);
        zg_arena_reset();
    }
    double worst = 0;
    for (int i = 0; i < zg_module_num_params(m); i++) {
        zg_tensor *p = zg_module_param(m, i), *want = zgt_ref_get(st, "final.%s", zg_module_param_name(m, i));
        if (!want) continue;
        CHECK_TENSOR_NEAR(p, want, 1e-6, 0);
        for (int64_t k = 0; k < zg_tensor_numel(p); k++) {
            double d = fabs((double)zg_tensor_get(p, k) - zg_tensor_get(want, k));
            worst = d > worst ? d : worst;
        }
    }
    if (rank == 0) fprintf(stderr, "# PyTorch DDP (gloo, 2 processes), 20 SGD steps: max |difference| %.3g\n", worst);
    zg_ddp_free(ddp);
    zg_optim_free(o);
    zg_module_free(m);
    zg_safetensors_free(st);
}

TEST(ddp_matches_pytorch_ddp_live) {
    /* The launching process makes the reference once; the ranks read it. */
    if (zg_dist_available() && !getenv("ZG_DIST_CASE") && !zgt_refs_ready(&ddp_refs)) return;
    if (on_rank("ddp_matches_pytorch_ddp_live", 2)) pytorch_parity_rank();
}

/* ---- out of memory --------------------------------------------------------- */

/* zg_ddp_new and the sampler with their 1st, 2nd, ... allocation failing
 * (alone, then with every later one): an error with a message, the module
 * without DDP's hooks (a backward gives the plain local gradient), and a
 * retry without the fault works. A world of one: the collectives pass
 * through. */
DIST_TEST(ddp_out_of_memory_leaves_the_module_as_it_was, 0) {
    zg_module *m = mlp(31), *plain = mlp(31);
    int points = 0;
    for (int persistent = 0; persistent < 2; persistent++)
        for (int64_t n = 1; n < 1000; n++) {
            zg__alloc_fail_after(n, persistent);
            zg_ddp *ddp = zg_ddp_new(m, NULL);
            const int64_t injected = zg__alloc_failed();
            zg__alloc_fail_after(0, false);
            if (!injected) {
                CHECK_PTR(ddp);
                zg_ddp_free(ddp);
                if (!persistent) points = (int)n - 1;
                else CHECK(n - 1 == points);
                break;
            }
            CHECK(ddp == NULL && strstr(zg_last_error(), "out of memory"));
            if (ddp) zg_ddp_free(ddp);
            zg_module_zero_grad(m, true);
            zg_module_zero_grad(plain, true);
            step_on(m, NULL, 0, 0, 4, 1.0f);
            step_on(plain, NULL, 0, 0, 4, 1.0f);
            bool bitwise = true;
            for (int i = 0; i < zg_module_num_params(m); i++)
                bitwise &= same_grads(zg_module_param(m, i), zg_module_param(plain, i));
            CHECK(bitwise);
            zg_arena_reset();
        }
    CHECK(points > 0);
    int64_t out[8];
    for (int64_t n = 1; n < 10; n++) {
        zg__alloc_fail_after(n, false);
        int rc = zg_dist_sampler_indices(20, 0, 3, 1, 0, true, false, out);
        const int64_t injected = zg__alloc_failed();
        zg__alloc_fail_after(0, false);
        if (!injected) {
            CHECK_OK(rc);
            break;
        }
        CHECK(rc == ZG_ERR_NOMEM);
    }
    zg_module_free(m);
    zg_module_free(plain);
}
