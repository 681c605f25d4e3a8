/* Gradient clipping and learning-rate schedulers.
 *
 * Known values by hand (the values PyTorch 1.13 gives, noted where they
 * come from), and live parity: tests/parity/sched_reference.py runs
 * torch's schedulers and clip_grad_norm_ and writes their exact values to
 * build/parity-ref/sched_reference.txt (or $ZG_PARITY_DIR), remade when
 * missing or older than the script. Every scheduler sequence must agree
 * to 1e-7 relative (in practice bit for bit: the formulas run in the same
 * order of double operations); clipping to 1e-6 relative (torch computes
 * the norm and the factor in float32, zgrad in double). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define SCRIPT "tests/parity/sched_reference.py"
#define REF_NAME "sched_reference.txt"
#define SCHED_RTOL 1e-7
#define CLIP_RTOL 1e-6

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

static zg_tensor *param_with_grad(const float *g, const int64_t *shape, int ndim) {
    zg_tensor *p = zg_zeros(shape, ndim);
    zg_tensor_set_requires_grad(p, true);
    if (g) {
        zg_tensor *gt = zg_tensor_from_data(ZG_FLOAT32, g, shape, ndim);
        zg_tensor_set_grad(p, gt);
        zg_tensor_free(gt);
    }
    return p;
}

static float grad_at(const zg_tensor *p, int64_t i) { return zg_tensor_get(zg_tensor_grad(p), i); }

/* |a - b| <= rtol * |b|, reported with the relative error. */
#define CHECK_REL(a, b, rtol)                                                                              \
    do {                                                                                                   \
        double zr_a = (double)(a), zr_b = (double)(b);                                                     \
        if (!(fabs(zr_a - zr_b) <= (rtol) * fabs(zr_b)))                                                   \
            zgt_fail(__FILE__, __LINE__, "%s = %.17g, expected %.17g (relative error %.3g > %g)", #a, zr_a,  \
                     zr_b, fabs(zr_a - zr_b) / fabs(zr_b), (double)(rtol));                                 \
    } while (0)

/* ------------------------------------------------------------------ */
/* Clipping by norm: known values                                       */
/* ------------------------------------------------------------------ */

/* grads a = [3, 4], (a parameter without grad), b = [-12]: norms 13 (2),
 * 19 (1), 12 (inf). Expected values from torch.nn.utils.clip_grad_norm_. */
typedef struct {
    zg_tensor *a, *none, *b;
    zg_tensor *list[3];
} abc;

static void abc_make(abc *t) {
    t->a = param_with_grad((const float[]){3, 4}, (const int64_t[]){2}, 1);
    t->none = param_with_grad(NULL, (const int64_t[]){1}, 1);
    t->b = param_with_grad((const float[]){-12}, (const int64_t[]){1}, 1);
    t->list[0] = t->a;
    t->list[1] = t->none;
    t->list[2] = t->b;
}

static void abc_free(abc *t) {
    zg_tensor_free(t->a);
    zg_tensor_free(t->none);
    zg_tensor_free(t->b);
}

TEST(clip_norm_two_known) {
    abc t;
    abc_make(&t);
    double total = 0;
    uint64_t v0 = zg_tensor_version(zg_tensor_grad(t.a));
    CHECK_OK(zg_clip_grad_norm(t.list, 3, 6.5, 2, false, &total));
    CHECK(total == 13.0);
    /* torch: 1.4999998807907104, 1.9999998807907104, -5.999999523162842 */
    CHECK_REL(grad_at(t.a, 0), 1.4999998807907104, 1e-7);
    CHECK_REL(grad_at(t.a, 1), 1.9999998807907104, 1e-7);
    CHECK_REL(grad_at(t.b, 0), -5.999999523162842, 1e-7);
    CHECK(zg_tensor_grad(t.none) == NULL);
    CHECK(zg_tensor_version(zg_tensor_grad(t.a)) > v0);
    abc_free(&t);
}

TEST(clip_norm_one_and_inf_known) {
    abc t;
    abc_make(&t);
    double total = 0;
    CHECK_OK(zg_clip_grad_norm(t.list, 3, 9.5, 1, false, &total));
    CHECK(total == 19.0);
    /* torch: 1.499999761581421, 1.999999761581421, -5.999999046325684 */
    CHECK_REL(grad_at(t.a, 0), 1.499999761581421, 1e-7);
    CHECK_REL(grad_at(t.a, 1), 1.999999761581421, 1e-7);
    CHECK_REL(grad_at(t.b, 0), -5.999999046325684, 1e-7);
    abc_free(&t);

    abc_make(&t);
    CHECK_OK(zg_clip_grad_norm(t.list, 3, 6.0, INFINITY, false, &total));
    CHECK(total == 12.0);
    CHECK_REL(grad_at(t.a, 0), 1.4999998807907104, 1e-7);
    CHECK_REL(grad_at(t.b, 0), -5.999999523162842, 1e-7);
    abc_free(&t);
}

TEST(clip_norm_p_three) {
    abc t;
    abc_make(&t);
    double total = 0;
    /* (27 + 64 + 1728)^(1/3) */
    double expect = cbrt(1819.0);
    CHECK_OK(zg_clip_grad_norm(t.list, 3, 1.0, 3, false, &total));
    CHECK_REL(total, expect, 1e-14);
    double coef = 1.0 / (expect + 1e-6);
    CHECK_REL(grad_at(t.a, 1), 4 * coef, 1e-7);
    CHECK_REL(grad_at(t.b, 0), -12 * coef, 1e-7);
    abc_free(&t);
}

TEST(clip_norm_under_max_and_epsilon) {
    abc t;
    abc_make(&t);
    double total = 0;
    uint64_t v0 = zg_tensor_version(zg_tensor_grad(t.a));
    CHECK_OK(zg_clip_grad_norm(t.list, 3, 100, 2, false, &total));
    CHECK(total == 13.0);
    CHECK(grad_at(t.a, 0) == 3 && grad_at(t.a, 1) == 4 && grad_at(t.b, 0) == -12);
    CHECK(zg_tensor_version(zg_tensor_grad(t.a)) == v0);
    /* max_norm == total still clips: 13 / (13 + 1e-6) < 1 (torch:
     * 2.999999761581421, 3.999999761581421, -11.999999046325684). */
    CHECK_OK(zg_clip_grad_norm(t.list, 3, 13, 2, false, &total));
    CHECK_REL(grad_at(t.a, 0), 2.999999761581421, 1e-7);
    CHECK_REL(grad_at(t.b, 0), -11.999999046325684, 1e-7);
    CHECK(grad_at(t.a, 0) < 3);
    abc_free(&t);

    /* Tiny grads show the 1e-6: total 5e-6, max 4e-6 -> coef = 4e-6 /
     * 6e-6 = 2/3 (0.8 without the epsilon). */
    zg_tensor *p = param_with_grad((const float[]){3e-6f, 4e-6f}, (const int64_t[]){2}, 1);
    CHECK_OK(zg_clip_grad_norm(&p, 1, 4e-6, 2, false, &total));
    CHECK_REL(total, 5e-6, 1e-6);
    CHECK_REL(grad_at(p, 0), 3e-6 * (4e-6 / (total + 1e-6)), 1e-6);
    CHECK_NEAR(grad_at(p, 1) / 4e-6, 2.0 / 3.0, 1e-5);
    zg_tensor_free(p);
}

TEST(clip_norm_no_grads_and_null_entries) {
    zg_tensor *p = param_with_grad(NULL, (const int64_t[]){3}, 1);
    zg_tensor *list[] = {NULL, p};
    double total = -1;
    CHECK_OK(zg_clip_grad_norm(list, 2, 1.0, 2, true, &total));
    CHECK(total == 0);
    CHECK_OK(zg_clip_grad_norm(NULL, 0, 1.0, 2, true, &total));
    CHECK(total == 0);
    CHECK_OK(zg_clip_grad_norm(list, 2, 1.0, 2, true, NULL));
    zg_tensor_free(p);
}

TEST(clip_norm_nonfinite) {
    zg_tensor *a = param_with_grad((const float[]){1, NAN, 2}, (const int64_t[]){3}, 1);
    zg_tensor *b = param_with_grad((const float[]){5}, (const int64_t[]){1}, 1);
    zg_tensor_set_name(a, "layer.weight");
    zg_tensor *list[] = {b, a};
    double total = 0;
    CHECK_ERR(zg_clip_grad_norm(list, 2, 1.0, 2, true, &total), "non-finite");
    CHECK(strstr(zg_last_error(), "order 2") && strstr(zg_last_error(), "layer.weight"));
    CHECK(isnan(total));
    CHECK(grad_at(b, 0) == 5 && grad_at(a, 0) == 1); /* untouched */
    CHECK_ERR(zg_clip_grad_norm(list, 2, 1.0, INFINITY, true, &total), "order inf");
    /* Without the error, torch scales by the NaN coefficient: all NaN. */
    CHECK_OK(zg_clip_grad_norm(list, 2, 1.0, INFINITY, false, &total));
    CHECK(isnan(total) && isnan(grad_at(b, 0)) && isnan(grad_at(a, 0)) && isnan(grad_at(a, 2)));
    zg_tensor_free(a);
    zg_tensor_free(b);

    /* inf: coef 0, so finite grads become 0 and the inf NaN (torch:
     * [0., nan, 0.]). */
    a = param_with_grad((const float[]){1, INFINITY, 2}, (const int64_t[]){3}, 1);
    CHECK_ERR(zg_clip_grad_norm(&a, 1, 1.0, 1, true, &total), "order 1");
    CHECK(isinf(total) && grad_at(a, 1) == INFINITY);
    CHECK_OK(zg_clip_grad_norm(&a, 1, 1.0, 2, false, &total));
    CHECK(isinf(total));
    CHECK(grad_at(a, 0) == 0 && isnan(grad_at(a, 1)) && grad_at(a, 2) == 0);
    zg_tensor_free(a);
}

TEST(clip_norm_bad_arguments) {
    abc t;
    abc_make(&t);
    CHECK_ERR(zg_clip_grad_norm(t.list, 3, -1, 2, false, NULL), "max_norm");
    CHECK_ERR(zg_clip_grad_norm(t.list, 3, NAN, 2, false, NULL), "max_norm");
    CHECK_ERR(zg_clip_grad_norm(t.list, 3, 1, 0, false, NULL), "norm_type");
    CHECK_ERR(zg_clip_grad_norm(t.list, 3, 1, -2, false, NULL), "norm_type");
    CHECK_ERR(zg_clip_grad_norm(t.list, 3, 1, NAN, false, NULL), "norm_type");
    CHECK_ERR(zg_clip_grad_norm(NULL, 3, 1, 2, false, NULL), "zg_clip_grad_norm");
    CHECK_ERR(zg_clip_grad_norm(t.list, -1, 1, 2, false, NULL), "negative");
    CHECK(grad_at(t.a, 0) == 3); /* nothing changed */
    /* max_norm 0 zeroes the grads; inf never clips. */
    CHECK_OK(zg_clip_grad_norm(t.list, 3, INFINITY, 2, false, NULL));
    CHECK(grad_at(t.a, 0) == 3);
    CHECK_OK(zg_clip_grad_norm(t.list, 3, 0, 2, false, NULL));
    CHECK(grad_at(t.a, 0) == 0 && grad_at(t.b, 0) == 0);
    abc_free(&t);
}

/* Above 65536 elements the sum runs in fixed blocks (in parallel). */
TEST(clip_norm_large_blocks) {
    int64_t n = 300007;
    float *g = malloc((size_t)n * sizeof *g);
    double ss = 0, s1 = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        g[i] = (float)sin((double)i * 0.37) * (float)(1 + i % 7);
        ss += (double)g[i] * g[i];
        s1 += fabs(g[i]);
        if (fabs(g[i]) > mx) mx = fabs(g[i]);
    }
    zg_tensor *p = param_with_grad(g, &n, 1);
    double t2 = 0, t1 = 0, ti = 0, t2b = 0;
    CHECK_OK(zg_clip_grad_norm(&p, 1, INFINITY, 2, false, &t2));
    CHECK_OK(zg_clip_grad_norm(&p, 1, INFINITY, 2, false, &t2b));
    CHECK(t2 == t2b); /* deterministic */
    CHECK_OK(zg_clip_grad_norm(&p, 1, INFINITY, 1, false, &t1));
    CHECK_OK(zg_clip_grad_norm(&p, 1, INFINITY, INFINITY, false, &ti));
    CHECK_REL(t2, sqrt(ss), 1e-12);
    CHECK_REL(t1, s1, 1e-12);
    CHECK(ti == mx);
    CHECK_OK(zg_clip_grad_norm(&p, 1, 1.0, 2, false, &t2));
    double coef = 1.0 / (t2 + 1e-6);
    CHECK_REL(grad_at(p, 123457), g[123457] * coef, 1e-7);
    CHECK_REL(grad_at(p, n - 1), g[n - 1] * coef, 1e-7);
    double after = 0;
    CHECK_OK(zg_clip_grad_norm(&p, 1, INFINITY, 2, false, &after));
    CHECK_NEAR(after, 1.0, 1e-6);
    free(g);
    zg_tensor_free(p);
}

/* ------------------------------------------------------------------ */
/* Clipping by value, and the optimizer / module forms                  */
/* ------------------------------------------------------------------ */

TEST(clip_value) {
    zg_tensor *a = param_with_grad((const float[]){-3, -0.5f, 0, 0.25f, 2, NAN}, (const int64_t[]){2, 3}, 2);
    zg_tensor *none = param_with_grad(NULL, (const int64_t[]){1}, 1);
    zg_tensor *list[] = {a, none};
    uint64_t v0 = zg_tensor_version(zg_tensor_grad(a));
    CHECK_OK(zg_clip_grad_value(list, 2, 1.0));
    const float want[] = {-1, -0.5f, 0, 0.25f, 1};
    for (int i = 0; i < 5; i++) CHECK(grad_at(a, i) == want[i]);
    CHECK(isnan(grad_at(a, 5)));
    CHECK(zg_tensor_grad(none) == NULL);
    CHECK(zg_tensor_version(zg_tensor_grad(a)) > v0);
    CHECK_OK(zg_clip_grad_value(list, 2, 0));
    for (int i = 0; i < 5; i++) CHECK(grad_at(a, i) == 0);
    CHECK_ERR(zg_clip_grad_value(list, 2, -1), "clip_value");
    CHECK_ERR(zg_clip_grad_value(list, 2, NAN), "clip_value");
    CHECK_ERR(zg_clip_grad_value(NULL, 1, 1), "zg_clip_grad_value");
    zg_tensor_free(a);
    zg_tensor_free(none);
}

TEST(clip_optimizer_and_module) {
    abc t;
    abc_make(&t);
    zg_tensor *g0[] = {t.a, t.none}, *g1[] = {t.b};
    zg_hp hp = {ZG_HP_LR, 0.5};
    zg_param_group groups[] = {{g0, 2, NULL, 0}, {g1, 1, &hp, 1}};
    zg_optim *opt = zg_optim_new_groups(ZG_SGD, groups, 2, NULL);
    CHECK_PTR(opt);
    double total = 0;
    CHECK_OK(zg_optim_clip_grad_norm(opt, 6.5, 2, false, &total));
    CHECK(total == 13.0);
    CHECK_REL(grad_at(t.b, 0), -5.999999523162842, 1e-7);
    CHECK_OK(zg_optim_clip_grad_value(opt, 1.0));
    CHECK(grad_at(t.a, 0) == 1 && grad_at(t.b, 0) == -1);
    CHECK_ERR(zg_optim_clip_grad_norm(opt, -1, 2, false, &total), "zg_optim_clip_grad_norm: max_norm");
    CHECK_ERR(zg_optim_clip_grad_norm(NULL, 1, 2, false, &total), "zg_optim_clip_grad_norm");
    CHECK_ERR(zg_optim_clip_grad_value(opt, -1), "zg_optim_clip_grad_value: clip_value");
    zg_optim_free(opt);
    abc_free(&t);

    zg_module *lin = zg_nn_linear(3, 2, true);
    zg_tensor *w = zg_module_param_by_name(lin, "weight"), *b = zg_module_param_by_name(lin, "bias");
    zg_tensor *gw = zg_full((const int64_t[]){2, 3}, 2, 2.0f);
    zg_tensor *gb = zg_full((const int64_t[]){2}, 1, -3.0f);
    zg_tensor_set_grad(w, gw);
    zg_tensor_set_grad(b, gb);
    /* sqrt(6 * 4 + 2 * 9) = sqrt(42) */
    CHECK_OK(zg_module_clip_grad_norm(lin, 1.0, 2, false, &total));
    CHECK_REL(total, sqrt(42.0), 1e-12);
    CHECK_REL(grad_at(w, 4), 2 / (sqrt(42.0) + 1e-6), 1e-7);
    CHECK_REL(grad_at(b, 1), -3 / (sqrt(42.0) + 1e-6), 1e-7);
    CHECK_OK(zg_module_clip_grad_value(lin, 0.1));
    CHECK_REL(grad_at(w, 0), 0.1f, 1e-7);
    CHECK_REL(grad_at(b, 0), -0.1f, 1e-7);
    CHECK_ERR(zg_module_clip_grad_norm(NULL, 1, 2, false, NULL), "zg_module_clip_grad_norm");
    CHECK_ERR(zg_module_clip_grad_value(lin, -2), "zg_module_clip_grad_value: clip_value");
    zg_tensor_free(gw);
    zg_tensor_free(gb);
    zg_module_free(lin);
}

/* ------------------------------------------------------------------ */
/* The PyTorch reference file                                           */
/* ------------------------------------------------------------------ */

#define MAX_REF 64
#define MAX_CLIP_PARAMS 8

typedef struct {
    char name[64];
    char desc[512];
    int groups, steps, cols;
    int mom; /* 0 none, 1 momentum, 2 beta1 */
    double *v; /* (steps + 1) rows of cols values */
} sched_ref;

typedef struct {
    bool none;
    int ndim;
    int64_t shape[ZG_MAX_DIMS];
    int64_t numel;
    float *g, *c;
} clip_param;

typedef struct {
    char name[32];
    double norm_type, max_norm, total;
    int np;
    clip_param p[MAX_CLIP_PARAMS];
} clip_ref;

static sched_ref scheds[MAX_REF];
static int n_scheds;
static clip_ref clips[MAX_REF];
static int n_clips;

/* n floats (or doubles) after a line's tag. */
static bool parse_values(char *s, double *out, int n) {
    for (int i = 0; i < n; i++) {
        char *end;
        out[i] = strtod(s, &end);
        if (end == s) return false;
        s = end;
    }
    while (*s == ' ' || *s == '\n') s++;
    return *s == '\0';
}

static bool parse_floats(char *s, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        char *end;
        out[i] = (float)strtod(s, &end);
        if (end == s) return false;
        s = end;
    }
    while (*s == ' ' || *s == '\n') s++;
    return *s == '\0';
}

static bool load_refs(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char *line = NULL;
    size_t cap = 0;
    bool ok = true;
    while (ok && getline(&line, &cap, f) > 0) {
        if (line[0] == '#' || line[0] == '\n') continue;
        if (!strncmp(line, "scenario ", 9)) {
            if (n_scheds == MAX_REF) {
                ok = false;
                break;
            }
            sched_ref *r = &scheds[n_scheds];
            char mom[16];
            if (sscanf(line, "scenario %63s groups %d steps %d mom %15s", r->name, &r->groups, &r->steps, mom) != 4 ||
                r->groups <= 0 || r->steps < 0) {
                ok = false;
                break;
            }
            r->mom = !strcmp(mom, "momentum") ? 1 : !strcmp(mom, "beta1") ? 2 : 0;
            r->cols = r->groups * (r->mom ? 2 : 1);
            r->v = calloc((size_t)(r->steps + 1) * (size_t)r->cols, sizeof *r->v);
            ok = r->v && getline(&line, &cap, f) > 0 && !strncmp(line, "desc ", 5);
            if (!ok) break;
            line[strcspn(line, "\n")] = '\0';
            snprintf(r->desc, sizeof r->desc, "%s", line + 5);
            for (int i = 0; ok && i <= r->steps; i++)
                ok = getline(&line, &cap, f) > 0 && parse_values(line, r->v + (size_t)i * (size_t)r->cols, r->cols);
            ok = ok && getline(&line, &cap, f) > 0 && !strncmp(line, "end", 3);
            n_scheds++;
        } else if (!strncmp(line, "clip ", 5)) {
            if (n_clips == MAX_REF) {
                ok = false;
                break;
            }
            clip_ref *c = &clips[n_clips++];
            ok = sscanf(line, "clip %31s norm_type %lf max_norm %lf params %d", c->name, &c->norm_type, &c->max_norm,
                        &c->np) == 4 &&
                 c->np > 0 && c->np <= MAX_CLIP_PARAMS;
            ok = ok && getline(&line, &cap, f) > 0 && sscanf(line, "total %lf", &c->total) == 1;
            for (int i = 0; ok && i < c->np; i++) {
                clip_param *p = &c->p[i];
                ok = getline(&line, &cap, f) > 0 && !strncmp(line, "param ", 6);
                if (!ok) break;
                if (!strncmp(line + 6, "none", 4)) {
                    p->none = true;
                    continue;
                }
                char *s = line + 6, *end;
                p->numel = 1;
                while (p->ndim < ZG_MAX_DIMS) {
                    long long d = strtoll(s, &end, 10);
                    if (end == s) break;
                    p->shape[p->ndim++] = d;
                    p->numel *= d;
                    s = end;
                }
                p->g = malloc((size_t)p->numel * sizeof *p->g);
                p->c = malloc((size_t)p->numel * sizeof *p->c);
                ok = p->g && p->c && p->ndim > 0 && getline(&line, &cap, f) > 0 && !strncmp(line, "g ", 2) &&
                     parse_floats(line + 2, p->g, p->numel) && getline(&line, &cap, f) > 0 &&
                     !strncmp(line, "c ", 2) && parse_floats(line + 2, p->c, p->numel);
            }
            ok = ok && getline(&line, &cap, f) > 0 && !strncmp(line, "end", 3);
        } else {
            ok = false;
        }
    }
    free(line);
    fclose(f);
    return ok;
}

/* Makes sure the reference exists and is newer than the script (running
 * it once if not), then reads it. Fails the running case otherwise. */
static bool refs_ready(void) {
    static int state; /* 0: unchecked, 1: ready, -1: failed */
    if (!state) {
        const char *const sources[] = {SCRIPT};
        const char *const files[] = {REF_NAME};
        char path[512];
        snprintf(path, sizeof path, "%s/%s", zgt_reference_dir(), REF_NAME);
        state = -1;
        if (zgt_reference_ready(sources, 1, files, 1, "")) {
            if (load_refs(path))
                state = 1;
            else
                zgt_fail(__FILE__, __LINE__, "%s is missing or malformed", path);
        }
    } else if (state < 0) {
        zgt_fail(__FILE__, __LINE__, "the PyTorch reference is not available (see above)");
    }
    return state > 0;
}

static const sched_ref *find_sched(const char *name, const char *desc) {
    if (!refs_ready()) return NULL;
    for (int i = 0; i < n_scheds; i++) {
        if (strcmp(scheds[i].name, name) != 0) continue;
        if (strcmp(scheds[i].desc, desc) != 0) {
            zgt_fail(__FILE__, __LINE__, "scenario %s: the script ran \"%s\", this test runs \"%s\"", name,
                     scheds[i].desc, desc);
            return NULL;
        }
        return &scheds[i];
    }
    zgt_fail(__FILE__, __LINE__, "scenario %s is not in the reference", name);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Clipping parity                                                      */
/* ------------------------------------------------------------------ */

TEST(clip_norm_parity) {
    if (!refs_ready()) return;
    CHECK(n_clips >= 5);
    double worst = 0;
    for (int k = 0; k < n_clips; k++) {
        const clip_ref *c = &clips[k];
        zg_tensor *ps[MAX_CLIP_PARAMS];
        for (int i = 0; i < c->np; i++) {
            const clip_param *p = &c->p[i];
            ps[i] = p->none ? param_with_grad(NULL, (const int64_t[]){2}, 1) : param_with_grad(p->g, p->shape, p->ndim);
        }
        double total = 0;
        CHECK_OK(zg_clip_grad_norm(ps, c->np, c->max_norm, c->norm_type, true, &total));
        CHECK_REL(total, c->total, CLIP_RTOL);
        worst = fmax(worst, fabs(total - c->total) / c->total);
        for (int i = 0; i < c->np; i++) {
            const clip_param *p = &c->p[i];
            if (p->none) {
                CHECK(zg_tensor_grad(ps[i]) == NULL);
                continue;
            }
            for (int64_t e = 0; e < p->numel; e++) {
                double got = grad_at(ps[i], e), want = p->c[e];
                if (!(fabs(got - want) <= CLIP_RTOL * fabs(want)))
                    zgt_fail(__FILE__, __LINE__, "clip %s: param %d element %lld = %.9g, torch %.9g", c->name, i,
                             (long long)e, got, want);
                if (want != 0) worst = fmax(worst, fabs(got - want) / fabs(want));
            }
            zg_tensor_free(ps[i]);
        }
        for (int i = 0; i < c->np; i++)
            if (c->p[i].none) zg_tensor_free(ps[i]);
    }
    printf("clip parity: %d cases, worst relative error %.3g\n", n_clips, worst);
}

/* ------------------------------------------------------------------ */
/* Scheduler rigs                                                       */
/* ------------------------------------------------------------------ */

typedef struct {
    zg_tensor *params[4];
    int np;
    zg_optim *opt;
    zg_sched *s[3];
    int ns;
    const double *metrics; /* ReduceLROnPlateau's, one per step */
    int t;                 /* steps taken */
} rig;

static void rig_free(rig *r) {
    for (int i = r->ns - 1; i >= 0; i--) zg_sched_free(r->s[i]);
    zg_optim_free(r->opt);
    for (int i = 0; i < r->np; i++) zg_tensor_free(r->params[i]);
    memset(r, 0, sizeof *r);
}

/* One parameter [2] per group, group g with lr lrs[g]; momentum > 0 sets
 * the default momentum. */
static bool rig_opt(rig *r, zg_optim_kind kind, int ng, const double *lrs, double momentum) {
    memset(r, 0, sizeof *r);
    zg_optim_config cfg = zg_optim_defaults(kind);
    cfg.lr = lrs[0];
    if (momentum > 0) cfg.momentum = momentum;
    zg_hp hp[4];
    zg_param_group groups[4];
    for (int g = 0; g < ng; g++) {
        r->params[g] = zg_zeros((const int64_t[]){2}, 1);
        zg_tensor_set_requires_grad(r->params[g], true);
        hp[g] = (zg_hp){ZG_HP_LR, lrs[g]};
        groups[g] = (zg_param_group){&r->params[g], 1, &hp[g], 1};
    }
    r->np = ng;
    r->opt = zg_optim_new_groups(kind, groups, ng, &cfg);
    CHECK_PTR(r->opt);
    return r->opt != NULL;
}

static bool rig_add(rig *r, zg_sched *s) {
    CHECK_PTR(s);
    if (!s) return false;
    r->s[r->ns++] = s;
    return true;
}

typedef bool (*rig_build)(rig *r);

static bool b_step(rig *r) {
    return rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0) && rig_add(r, zg_sched_step_lr(r->opt, 7, 0.5));
}
static bool b_step_groups(rig *r) {
    return rig_opt(r, ZG_SGD, 2, (const double[]){0.1, 0.03}, 0) && rig_add(r, zg_sched_step_lr(r->opt, 3, 0.1));
}
static bool b_cosine(rig *r) {
    return rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0) && rig_add(r, zg_sched_cosine(r->opt, 4, 0.01));
}
static bool b_cosine_groups(rig *r) {
    return rig_opt(r, ZG_SGD, 2, (const double[]){0.1, 0.03}, 0) && rig_add(r, zg_sched_cosine(r->opt, 10, 0.0));
}
static bool b_linear(rig *r) {
    return rig_opt(r, ZG_SGD, 2, (const double[]){0.1, 0.02}, 0) &&
           rig_add(r, zg_sched_linear(r->opt, 0.25, 1.0, 8));
}
static bool b_linear_decay(rig *r) {
    return rig_opt(r, ZG_ADAM, 1, (const double[]){0.001}, 0) && rig_add(r, zg_sched_linear(r->opt, 1.0, 0.1, 10));
}
static bool b_onecycle_sgd(rig *r) {
    zg_onecycle_opts o = zg_onecycle_defaults(30);
    return rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0.9) && rig_add(r, zg_sched_onecycle(r->opt, 0.5, &o));
}
static bool b_onecycle_adam_three(rig *r) {
    zg_onecycle_opts o = zg_onecycle_defaults(40);
    o.max_lrs = (const double[]){0.01, 0.02};
    o.pct_start = 0.25;
    o.anneal_linear = true;
    o.div_factor = 10;
    o.final_div_factor = 100;
    o.three_phase = true;
    o.base_momentum = 0.8;
    o.max_momentum = 0.9;
    return rig_opt(r, ZG_ADAM, 2, (const double[]){0.001, 0.002}, 0) &&
           rig_add(r, zg_sched_onecycle(r->opt, 0.0, &o));
}
static bool b_onecycle_rmsprop(rig *r) {
    zg_onecycle_opts o = zg_onecycle_defaults(25);
    o.three_phase = true;
    return rig_opt(r, ZG_RMSPROP, 1, (const double[]){0.01}, 0.5) &&
           rig_add(r, zg_sched_onecycle(r->opt, 0.05, &o));
}
static bool b_onecycle_adagrad(rig *r) {
    zg_onecycle_opts o = zg_onecycle_defaults(20);
    o.cycle_momentum = false;
    return rig_opt(r, ZG_ADAGRAD, 1, (const double[]){0.01}, 0) && rig_add(r, zg_sched_onecycle(r->opt, 0.1, &o));
}
static bool b_seq_warmup_cosine(rig *r) {
    if (!rig_opt(r, ZG_SGD, 2, (const double[]){0.1, 0.05}, 0)) return false;
    zg_sched *w = zg_sched_linear(r->opt, 0.1, 1.0, 5);
    zg_sched *c = zg_sched_cosine(r->opt, 25, 0.001);
    return rig_add(r, zg_sched_sequential(r->opt, (zg_sched *const[]){w, c}, 2, (const int64_t[]){5}, 1));
}
static bool b_seq_warmup_cosine_helper(rig *r) {
    return rig_opt(r, ZG_SGD, 2, (const double[]){0.1, 0.05}, 0) &&
           rig_add(r, zg_sched_warmup_cosine(r->opt, 5, 0.1, 30, 0.001));
}
static bool b_seq_spec(rig *r) {
    return rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0) &&
           rig_add(r, zg_sched_from_spec(r->opt, "warmup-cosine:6", 40));
}
static bool b_seq_three(rig *r) {
    if (!rig_opt(r, ZG_SGD, 1, (const double[]){0.2}, 0)) return false;
    zg_sched *a = zg_sched_linear(r->opt, 0.5, 1.0, 3);
    zg_sched *b = zg_sched_step_lr(r->opt, 4, 0.5);
    zg_sched *c = zg_sched_cosine(r->opt, 10, 0.0);
    return rig_add(r, zg_sched_sequential(r->opt, (zg_sched *const[]){a, b, c}, 3, (const int64_t[]){3, 12}, 2));
}
static bool b_seq_onecycle(rig *r) {
    if (!rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0.9)) return false;
    zg_onecycle_opts o = zg_onecycle_defaults(20);
    zg_sched *a = zg_sched_linear(r->opt, 0.5, 1.0, 4);
    zg_sched *b = zg_sched_onecycle(r->opt, 0.2, &o);
    return rig_add(r, zg_sched_sequential(r->opt, (zg_sched *const[]){a, b}, 2, (const int64_t[]){4}, 1));
}
static bool b_chained(rig *r) {
    return rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0) && rig_add(r, zg_sched_linear(r->opt, 0.2, 1.0, 5)) &&
           rig_add(r, zg_sched_cosine(r->opt, 20, 0.0));
}
/* The same schedules from CLI specs. */
static bool b_spec_step(rig *r) {
    return rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0) && rig_add(r, zg_sched_from_spec(r->opt, "step:7,gamma=0.5", 30));
}
static bool b_spec_cosine(rig *r) {
    return rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0) &&
           rig_add(r, zg_sched_from_spec(r->opt, "cosine:t_max=4,eta_min=0.01", 30));
}
static bool b_spec_cosine_default(rig *r) {
    return rig_opt(r, ZG_SGD, 2, (const double[]){0.1, 0.03}, 0) && rig_add(r, zg_sched_from_spec(r->opt, "cosine", 10));
}
static bool b_spec_linear(rig *r) {
    return rig_opt(r, ZG_SGD, 2, (const double[]){0.1, 0.02}, 0) &&
           rig_add(r, zg_sched_from_spec(r->opt, "linear:8,start_factor=0.25", 100));
}
static bool b_spec_onecycle(rig *r) {
    return rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0.9) && rig_add(r, zg_sched_from_spec(r->opt, "onecycle:0.5", 30));
}
static bool b_spec_onecycle_rms(rig *r) {
    return rig_opt(r, ZG_RMSPROP, 1, (const double[]){0.01}, 0.5) &&
           rig_add(r, zg_sched_from_spec(r->opt, "onecycle:max_lr=0.05,three_phase=1,total_steps=25", 1000));
}

/* The schedulers added after those above (the same scenarios of
 * tests/parity/sched_reference.py). */
static double lambda_two(int64_t e, int group, void *user) {
    (void)user;
    return group == 0 ? pow(0.95, (double)e) : 1.0 / (1.0 + (double)e);
}
static double lambda_mult(int64_t e, int group, void *user) {
    (void)group;
    (void)user;
    return e % 3 == 0 ? 0.9 : 0.99;
}
static const double plateau_min_metrics[] = {1.0, 0.9, 0.95, 0.95, 0.899, 0.9, 0.9,  0.9,  0.7, 0.71, 0.72, 0.73,
                                             0.74, 0.75, 0.69, 0.7, 0.7, 0.7, 0.7, 0.7, NAN, 0.7,  0.7,  0.7};
static const double plateau_max_metrics[] = {0.1, 0.2, 0.22, 0.3, 0.3, 0.3, 0.36, 0.4,
                                             0.41, 0.41, 0.41, 0.41, 0.41, 0.41, 0.41, 0.41};
static const double plateau_flat_metrics[25] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                                1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

static bool b_exponential(rig *r) {
    return rig_opt(r, ZG_SGD, 2, (const double[]){0.1, 0.05}, 0) && rig_add(r, zg_sched_exponential(r->opt, 0.9));
}
static bool b_multistep(rig *r) {
    return rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0) &&
           rig_add(r, zg_sched_multistep(r->opt, (const int64_t[]){7, 3, 12, 7}, 4, 0.5));
}
static bool b_multistep_zero(rig *r) {
    return rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0) &&
           rig_add(r, zg_sched_multistep(r->opt, (const int64_t[]){0, 4}, 2, 0.1));
}
static bool b_constant(rig *r) {
    return rig_opt(r, ZG_SGD, 2, (const double[]){0.1, 0.02}, 0) && rig_add(r, zg_sched_constant(r->opt, 0.25, 4));
}
static bool b_polynomial(rig *r) {
    return rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0) && rig_add(r, zg_sched_polynomial(r->opt, 8, 2.0));
}
static bool b_polynomial_09(rig *r) {
    return rig_opt(r, ZG_ADAM, 1, (const double[]){0.01}, 0) && rig_add(r, zg_sched_polynomial(r->opt, 10, 0.9));
}
static bool b_lambda(rig *r) {
    return rig_opt(r, ZG_SGD, 2, (const double[]){0.1, 0.05}, 0) &&
           rig_add(r, zg_sched_lambda(r->opt, lambda_two, NULL));
}
static bool b_multiplicative(rig *r) {
    return rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0) &&
           rig_add(r, zg_sched_multiplicative(r->opt, lambda_mult, NULL));
}
static bool b_warm_restarts(rig *r) {
    return rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0) &&
           rig_add(r, zg_sched_cosine_warm_restarts(r->opt, 3, 2, 0.001));
}
static bool b_warm_restarts_one(rig *r) {
    return rig_opt(r, ZG_SGD, 2, (const double[]){0.1, 0.05}, 0) &&
           rig_add(r, zg_sched_cosine_warm_restarts(r->opt, 4, 1, 0.0));
}
static bool b_chained_new(rig *r) {
    if (!rig_opt(r, ZG_SGD, 1, (const double[]){1.0}, 0)) return false;
    zg_sched *a = zg_sched_constant(r->opt, 0.1, 2), *b = zg_sched_exponential(r->opt, 0.9);
    return rig_add(r, zg_sched_chained(r->opt, (zg_sched *const[]){a, b}, 2));
}
static bool b_chained_three(rig *r) {
    if (!rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0.9)) return false;
    zg_onecycle_opts o = zg_onecycle_defaults(14);
    zg_sched *a = zg_sched_linear(r->opt, 0.5, 1.0, 4), *b = zg_sched_cosine_warm_restarts(r->opt, 5, 1, 0.0);
    zg_sched *c = zg_sched_multistep(r->opt, (const int64_t[]){6}, 1, 0.5), *d = zg_sched_onecycle(r->opt, 0.3, &o);
    return rig_add(r, zg_sched_chained(r->opt, (zg_sched *const[]){a, b, c, d}, 4));
}
static bool b_seq_new(rig *r) {
    if (!rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0)) return false;
    zg_sched *a = zg_sched_constant(r->opt, 0.1, 3), *b = zg_sched_exponential(r->opt, 0.9);
    return rig_add(r, zg_sched_sequential(r->opt, (zg_sched *const[]){a, b}, 2, (const int64_t[]){3}, 1));
}
static bool b_seq_poly_restarts(rig *r) {
    if (!rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0)) return false;
    zg_sched *a = zg_sched_polynomial(r->opt, 4, 1.0), *b = zg_sched_cosine_warm_restarts(r->opt, 3, 2, 0.0);
    return rig_add(r, zg_sched_sequential(r->opt, (zg_sched *const[]){a, b}, 2, (const int64_t[]){4}, 1));
}
static bool b_plateau_min(rig *r) {
    if (!rig_opt(r, ZG_SGD, 2, (const double[]){0.1, 0.05}, 0)) return false;
    zg_plateau_opts o = zg_plateau_defaults();
    o.factor = 0.5;
    o.patience = 2;
    o.threshold = 0.01;
    o.cooldown = 1;
    o.min_lrs = (const double[]){0.01, 0.02};
    r->metrics = plateau_min_metrics;
    return rig_add(r, zg_sched_plateau(r->opt, &o));
}
static bool b_plateau_max_abs(rig *r) {
    if (!rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0)) return false;
    zg_plateau_opts o = zg_plateau_defaults();
    o.mode_max = true;
    o.factor = 0.3;
    o.patience = 1;
    o.threshold = 0.05;
    o.threshold_abs = true;
    o.min_lr = 0.001;
    o.eps = 1e-3;
    r->metrics = plateau_max_metrics;
    return rig_add(r, zg_sched_plateau(r->opt, &o));
}
static bool b_plateau_defaults(rig *r) {
    zg_plateau_opts o = zg_plateau_defaults();
    if (!rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0)) return false;
    r->metrics = plateau_flat_metrics;
    return rig_add(r, zg_sched_plateau(r->opt, &o));
}
/* The same from specs. */
#define SPEC_RIG(fn, lrs, n, spec)                                                                                     \
    static bool fn(rig *r) {                                                                                           \
        return rig_opt(r, ZG_SGD, n, (const double[])lrs, 0) && rig_add(r, zg_sched_from_spec(r->opt, spec, 100));     \
    }
#define LRS(...) {__VA_ARGS__}
SPEC_RIG(b_spec_exponential, LRS(0.1, 0.05), 2, "exponential:0.9")
SPEC_RIG(b_spec_multistep, LRS(0.1), 1, "multistep:7,3,12,7,gamma=0.5")
SPEC_RIG(b_spec_constant, LRS(0.1, 0.02), 2, "constant:4,factor=0.25")
SPEC_RIG(b_spec_polynomial, LRS(0.1), 1, "polynomial:8,power=2")
SPEC_RIG(b_spec_restarts, LRS(0.1), 1, "cosine-restarts:3,t_mult=2,eta_min=0.001")
SPEC_RIG(b_spec_chained, LRS(1.0), 1, "chained:constant:2,factor=0.1|exponential:gamma=0.9")
static bool b_spec_plateau(rig *r) {
    if (!rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0)) return false;
    r->metrics = plateau_max_metrics;
    return rig_add(r, zg_sched_from_spec(r->opt,
                                         "plateau:1,mode=max,factor=0.3,threshold=0.05,threshold_mode=abs,"
                                         "min_lr=0.001,eps=0.001",
                                         100));
}
static bool b_spec_plateau_defaults(rig *r) {
    if (!rig_opt(r, ZG_SGD, 1, (const double[]){0.1}, 0)) return false;
    r->metrics = plateau_flat_metrics;
    return rig_add(r, zg_sched_from_spec(r->opt, "plateau", 100));
}

static double worst_sched;

/* Row `row` of ref against the optimizer's groups and, unless last is
 * NULL, the scheduler's get_last_lr (which must agree with the groups
 * exactly). */
static bool check_lrs(const sched_ref *ref, int row, const zg_optim *opt, const zg_sched *last) {
    const double *want = ref->v + (size_t)row * (size_t)ref->cols;
    bool ok = true;
    for (int g = 0; g < ref->groups; g++) {
        double lr = zg_optim_get_hparam(opt, g, ZG_HP_LR);
        double err = want[g] == 0 ? fabs(lr) : fabs(lr - want[g]) / fabs(want[g]);
        worst_sched = fmax(worst_sched, err);
        if (!(err <= SCHED_RTOL)) {
            zgt_fail(__FILE__, __LINE__, "%s: step %d group %d: lr %.17g, torch %.17g", ref->name, row, g, lr, want[g]);
            ok = false;
        }
        if (last && zg_sched_get_last_lr(last, g) != lr) {
            zgt_fail(__FILE__, __LINE__, "%s: step %d group %d: get_last_lr %.17g != the group's lr %.17g", ref->name,
                     row, g, zg_sched_get_last_lr(last, g), lr);
            ok = false;
        }
        if (ref->mom) {
            double m = zg_optim_get_hparam(opt, g, ref->mom == 2 ? ZG_HP_BETA1 : ZG_HP_MOMENTUM);
            double w = want[ref->groups + g];
            double e = fabs(m - w) / fabs(w);
            worst_sched = fmax(worst_sched, e);
            if (!(e <= SCHED_RTOL)) {
                zgt_fail(__FILE__, __LINE__, "%s: step %d group %d: %s %.17g, torch %.17g", ref->name, row, g,
                         ref->mom == 2 ? "beta1" : "momentum", m, w);
                ok = false;
            }
        }
    }
    return ok;
}

static bool check_row(const sched_ref *ref, int row, const rig *r) {
    return check_lrs(ref, row, r->opt, r->s[r->ns - 1]);
}

static bool rig_step(rig *r) {
    if (zg_optim_step(r->opt) != ZG_OK) return false;
    for (int i = 0; i < r->ns; i++) {
        int rc = r->metrics ? zg_sched_step_metric(r->s[i], r->metrics[r->t]) : zg_sched_step(r->s[i]);
        CHECK_OK(rc);
        if (rc) return false;
    }
    r->t++;
    return true;
}

/* Steps to row i of ref and compares. Where torch computed a negative lr
 * (OneCycleLR's linear anneal one step past total_steps) zgrad refuses the
 * step instead, with the lrs unchanged: then the sequence ends there
 * (*end set). */
static bool step_row(const sched_ref *ref, int i, rig *r, bool *end) {
    const double *want = ref->v + (size_t)i * (size_t)ref->cols;
    bool negative = false;
    for (int g = 0; g < ref->groups; g++) negative |= want[g] < 0;
    if (!negative) return rig_step(r) && check_row(ref, i, r);
    *end = true;
    if (zg_optim_step(r->opt) != ZG_OK) return false;
    const zg_sched *s = r->s[r->ns - 1];
    double before = zg_optim_get_hparam(r->opt, 0, ZG_HP_LR);
    int64_t epoch = zg_sched_last_epoch(s);
    CHECK_ERR(zg_sched_step(r->s[r->ns - 1]), "computed an invalid lr");
    CHECK(zg_optim_get_hparam(r->opt, 0, ZG_HP_LR) == before && zg_sched_last_epoch(s) == epoch);
    return check_row(ref, i - 1, r);
}

/* Compares rows from..steps (stepping r before each). */
static bool run_rows(const sched_ref *ref, int from, int to, rig *r) {
    bool ok = true, end = false;
    for (int i = from; ok && !end && i <= to; i++) ok = step_row(ref, i, r, &end);
    return ok;
}

/* Builds the rig and compares its whole sequence with the reference. */
static void run_parity(const char *name, const char *desc, rig_build build) {
    const sched_ref *ref = find_sched(name, desc);
    if (!ref) return;
    rig r;
    if (!build(&r)) {
        rig_free(&r);
        return;
    }
    bool ok = check_row(ref, 0, &r) && run_rows(ref, 1, ref->steps, &r);
    CHECK(ok);
    rig_free(&r);
}

#define D_STEP "SGD lr 0.1; StepLR(step_size=7, gamma=0.5)"
#define D_STEP_GROUPS "SGD lrs 0.1 0.03; StepLR(step_size=3, gamma=0.1)"
#define D_COSINE "SGD lr 0.1; CosineAnnealingLR(T_max=4, eta_min=0.01)"
#define D_COSINE_GROUPS "SGD lrs 0.1 0.03; CosineAnnealingLR(T_max=10, eta_min=0)"
#define D_LINEAR "SGD lrs 0.1 0.02; LinearLR(start_factor=0.25, end_factor=1, total_iters=8)"
#define D_LINEAR_DECAY "Adam lr 0.001; LinearLR(start_factor=1, end_factor=0.1, total_iters=10)"
#define D_ONECYCLE_SGD "SGD lr 0.1 momentum 0.9; OneCycleLR(max_lr=0.5, total_steps=30)"
#define D_ONECYCLE_ADAM                                                                                    \
    "Adam lrs 0.001 0.002; OneCycleLR(max_lr=[0.01, 0.02], total_steps=40, pct_start=0.25, "               \
    "anneal_strategy=linear, div_factor=10, final_div_factor=100, three_phase=True, base_momentum=0.8, "   \
    "max_momentum=0.9)"
#define D_ONECYCLE_RMS "RMSprop lr 0.01 momentum 0.5; OneCycleLR(max_lr=0.05, total_steps=25, three_phase=True)"
#define D_ONECYCLE_ADAGRAD "Adagrad lr 0.01; OneCycleLR(max_lr=0.1, total_steps=20, cycle_momentum=False)"
#define D_SEQ_WC                                                                                           \
    "SGD lrs 0.1 0.05; SequentialLR([LinearLR(0.1, 1, 5), CosineAnnealingLR(T_max=25, eta_min=0.001)], "    \
    "milestones=[5])"
#define D_SEQ_SPEC "SGD lr 0.1; SequentialLR([LinearLR(1/3, 1, 6), CosineAnnealingLR(T_max=34)], milestones=[6])"
#define D_SEQ_THREE                                                                                        \
    "SGD lr 0.2; SequentialLR([LinearLR(0.5, 1, 3), StepLR(4, 0.5), CosineAnnealingLR(T_max=10)], "         \
    "milestones=[3, 12])"
#define D_SEQ_ONECYCLE                                                                                     \
    "SGD lr 0.1 momentum 0.9; SequentialLR([LinearLR(0.5, 1, 4), OneCycleLR(max_lr=0.2, total_steps=20)], " \
    "milestones=[4])"
#define D_CHAINED "SGD lr 0.1; LinearLR(0.2, 1, 5) and CosineAnnealingLR(T_max=20) both stepped"

TEST(sched_parity_step) {
    run_parity("step", D_STEP, b_step);
    run_parity("step_groups", D_STEP_GROUPS, b_step_groups);
}
TEST(sched_parity_cosine) {
    run_parity("cosine", D_COSINE, b_cosine);
    run_parity("cosine_groups", D_COSINE_GROUPS, b_cosine_groups);
}
TEST(sched_parity_linear) {
    run_parity("linear", D_LINEAR, b_linear);
    run_parity("linear_decay", D_LINEAR_DECAY, b_linear_decay);
}
TEST(sched_parity_onecycle) {
    run_parity("onecycle_sgd", D_ONECYCLE_SGD, b_onecycle_sgd);
    run_parity("onecycle_adam_three", D_ONECYCLE_ADAM, b_onecycle_adam_three);
    run_parity("onecycle_rmsprop", D_ONECYCLE_RMS, b_onecycle_rmsprop);
    run_parity("onecycle_adagrad", D_ONECYCLE_ADAGRAD, b_onecycle_adagrad);
}
TEST(sched_parity_sequential) {
    run_parity("seq_warmup_cosine", D_SEQ_WC, b_seq_warmup_cosine);
    run_parity("seq_warmup_cosine", D_SEQ_WC, b_seq_warmup_cosine_helper);
    run_parity("seq_three", D_SEQ_THREE, b_seq_three);
    run_parity("seq_onecycle", D_SEQ_ONECYCLE, b_seq_onecycle);
}
TEST(sched_parity_chained) { run_parity("chained", D_CHAINED, b_chained); }
TEST(sched_parity_from_spec) {
    run_parity("seq_spec", D_SEQ_SPEC, b_seq_spec);
    run_parity("step", D_STEP, b_spec_step);
    run_parity("cosine", D_COSINE, b_spec_cosine);
    run_parity("linear", D_LINEAR, b_spec_linear);
    run_parity("onecycle_sgd", D_ONECYCLE_SGD, b_spec_onecycle);
    run_parity("onecycle_rmsprop", D_ONECYCLE_RMS, b_spec_onecycle_rms);
    /* "cosine" alone: T_max = the run's 10 steps. */
    rig r;
    if (b_spec_cosine_default(&r)) {
        for (int i = 0; i < 10; i++) rig_step(&r);
        CHECK(zg_sched_get_last_lr(r.s[0], 0) == 0.0 && zg_sched_get_last_lr(r.s[0], 1) == 0.0);
    }
    rig_free(&r);
    printf("scheduler parity: worst relative error %.3g\n", worst_sched);
}

/* The spec's example, by hand. */
TEST(sched_cosine_known_values) {
    rig r;
    if (b_cosine(&r)) {
        const double want[] = {0.1, 0.08682, 0.055, 0.02318, 0.01, 0.02318};
        for (int i = 0; i < 6; i++) {
            CHECK_NEAR(zg_sched_get_last_lr(r.s[0], 0), want[i], 5e-6);
            CHECK(zg_sched_last_epoch(r.s[0]) == i);
            rig_step(&r);
        }
        CHECK(!strcmp(zg_sched_name(r.s[0]), "CosineAnnealingLR"));
        CHECK(zg_sched_optimizer(r.s[0]) == r.opt);
    }
    rig_free(&r);
    /* LinearLR applies start_factor at construction; StepLR leaves lr. */
    if (rig_opt(&r, ZG_SGD, 1, (const double[]){0.05}, 0) && rig_add(&r, zg_sched_linear(r.opt, 0.5, 1.0, 4))) {
        CHECK(zg_optim_get_hparam(r.opt, 0, ZG_HP_LR) == 0.025);
        const double want[] = {0.025, 0.03125, 0.0375, 0.04375, 0.05, 0.05};
        for (int i = 0; i < 6; i++) {
            CHECK_NEAR(zg_sched_get_last_lr(r.s[0], 0), want[i], 1e-15);
            rig_step(&r);
        }
    }
    rig_free(&r);
    /* OneCycle starts at max_lr / div_factor and momentum max_momentum. */
    if (rig_opt(&r, ZG_ADAMW, 1, (const double[]){0.3}, 0)) {
        zg_onecycle_opts o = zg_onecycle_defaults(10);
        if (rig_add(&r, zg_sched_onecycle(r.opt, 0.25, &o))) {
            CHECK_NEAR(zg_optim_get_hparam(r.opt, 0, ZG_HP_LR), 0.01, 1e-15);
            CHECK(zg_optim_get_hparam(r.opt, 0, ZG_HP_BETA1) == 0.95);
            CHECK(!strcmp(zg_sched_name(r.s[0]), "OneCycleLR"));
        }
    }
    rig_free(&r);
}

/* ------------------------------------------------------------------ */
/* Save / restore mid-sequence                                          */
/* ------------------------------------------------------------------ */

static void tmp_path(char *buf, size_t n, const char *what) {
    snprintf(buf, n, "/tmp/zg_test_clip_sched_%d_%s.safetensors", (int)getpid(), what);
}

/* Runs k steps, saves the optimizer and scheduler(s), builds a fresh rig,
 * loads both and checks that the rest of the sequence is torch's. */
static void run_resume(const char *name, const char *desc, rig_build build, int k, bool via_file) {
    const sched_ref *ref = find_sched(name, desc);
    if (!ref) return;
    rig a, b;
    if (!build(&a)) {
        rig_free(&a);
        return;
    }
    bool ok = run_rows(ref, 1, k, &a);
    char opt_path[256], sched_path[3][256];
    char *json[3] = {NULL, NULL, NULL};
    tmp_path(opt_path, sizeof opt_path, "opt");
    CHECK_OK(zg_optim_save(a.opt, opt_path));
    for (int i = 0; i < a.ns; i++) {
        char what[24];
        snprintf(what, sizeof what, "sched%d", i);
        tmp_path(sched_path[i], sizeof sched_path[i], what);
        if (via_file) CHECK_OK(zg_sched_save(a.s[i], sched_path[i]));
        else CHECK_PTR(json[i] = zg_sched_state_json(a.s[i]));
    }
    int64_t epoch = zg_sched_last_epoch(a.s[a.ns - 1]);
    rig_free(&a);
    if (!build(&b)) {
        rig_free(&b);
        for (int i = 0; i < 3; i++) free(json[i]);
        return;
    }
    b.t = k;
    CHECK_OK(zg_optim_load(b.opt, opt_path));
    for (int i = 0; i < b.ns; i++) {
        if (via_file) {
            CHECK_OK(zg_sched_load(b.s[i], sched_path[i]));
            unlink(sched_path[i]);
        } else {
            CHECK_OK(zg_sched_load_state_json(b.s[i], json[i]));
        }
    }
    unlink(opt_path);
    CHECK(zg_sched_last_epoch(b.s[b.ns - 1]) == epoch);
    ok = ok && check_row(ref, k, &b) && run_rows(ref, k + 1, ref->steps, &b);
    CHECK(ok);
    rig_free(&b);
    for (int i = 0; i < 3; i++) free(json[i]);
}

TEST(sched_resume_mid_sequence) {
    run_resume("cosine", D_COSINE, b_cosine, 6, false);
    run_resume("cosine_groups", D_COSINE_GROUPS, b_cosine_groups, 13, true);
    run_resume("step", D_STEP, b_step, 9, true);
    run_resume("linear", D_LINEAR, b_linear, 3, false);
    run_resume("onecycle_sgd", D_ONECYCLE_SGD, b_onecycle_sgd, 11, true);
    run_resume("onecycle_adam_three", D_ONECYCLE_ADAM, b_onecycle_adam_three, 17, false);
    run_resume("seq_warmup_cosine", D_SEQ_WC, b_seq_warmup_cosine, 3, true);
    run_resume("seq_warmup_cosine", D_SEQ_WC, b_seq_warmup_cosine, 12, false);
    run_resume("seq_three", D_SEQ_THREE, b_seq_three, 12, true);
    run_resume("seq_onecycle", D_SEQ_ONECYCLE, b_seq_onecycle, 9, false);
    run_resume("chained", D_CHAINED, b_chained, 7, true);
}

/* A state holds the hyperparameters too (PyTorch's load_state_dict adopts
 * them); loading checks everything before it changes anything. */
TEST(sched_state_load_checks) {
    rig r, q;
    if (!b_cosine(&r)) {
        rig_free(&r);
        return;
    }
    rig_step(&r);
    rig_step(&r);
    char *js = zg_sched_state_json(r.s[0]);
    CHECK_PTR(js);
    if (js) {
        CHECK(strstr(js, "\"kind\":\"CosineAnnealingLR\"") && strstr(js, "\"last_epoch\":2") &&
              strstr(js, "\"T_max\":4"));
    }
    /* A cosine with other hyperparameters adopts the saved ones. */
    if (rig_opt(&q, ZG_SGD, 1, (const double[]){0.1}, 0) && rig_add(&q, zg_sched_cosine(q.opt, 100, 0.0))) {
        CHECK_OK(zg_sched_load_state_json(q.s[0], js));
        CHECK(zg_sched_last_epoch(q.s[0]) == 2);
        zg_optim_set_hparam(q.opt, 0, ZG_HP_LR, zg_optim_get_hparam(r.opt, 0, ZG_HP_LR));
        rig_step(&q);
        rig_step(&r);
        CHECK(zg_sched_get_last_lr(q.s[0], 0) == zg_sched_get_last_lr(r.s[0], 0));
        CHECK_NEAR(zg_sched_get_last_lr(q.s[0], 0), 0.02318, 5e-6);

        /* Bad states: nothing changes. */
        int64_t e = zg_sched_last_epoch(q.s[0]);
        CHECK_ERR(zg_sched_load_state_json(q.s[0], "{"), "not valid JSON");
        CHECK_ERR(zg_sched_load_state_json(q.s[0], "{\"format\":\"other\"}"), "not a scheduler state");
        char *bad = malloc(strlen(js) + 64);
        const char *tmax = strstr(js, "\"T_max\":4");
        if (bad && tmax) {
            /* T_max 0 */
            size_t at = (size_t)(tmax - js) + 8;
            memcpy(bad, js, at);
            bad[at] = '0';
            strcpy(bad + at + 1, js + at + 1);
            CHECK_ERR(zg_sched_load_state_json(q.s[0], bad), "T_max must be > 0");
        }
        free(bad);
        zg_sched *st = zg_sched_step_lr(q.opt, 3, 0.5);
        CHECK_PTR(st);
        CHECK_ERR(zg_sched_load_state_json(st, js), "this scheduler is a StepLR");
        zg_sched_free(st);
        CHECK(zg_sched_last_epoch(q.s[0]) == e);
        CHECK_ERR(zg_sched_load_state_json(NULL, js), "NULL");
    }
    rig_free(&q);
    /* Group count must match. */
    if (rig_opt(&q, ZG_SGD, 2, (const double[]){0.1, 0.2}, 0) && rig_add(&q, zg_sched_cosine(q.opt, 4, 0.01)))
        CHECK_ERR(zg_sched_load_state_json(q.s[0], js), "parameter groups");
    rig_free(&q);
    /* A file that is no scheduler state. */
    char path[256];
    tmp_path(path, sizeof path, "notsched");
    CHECK_OK(zg_optim_save(r.opt, path));
    CHECK_ERR(zg_sched_load(r.s[0], path), "not a scheduler state file");
    unlink(path);
    CHECK_ERR(zg_sched_load(r.s[0], "/nonexistent/dir/x.safetensors"), "zg_sched_load");
    CHECK_ERR(zg_sched_save(r.s[0], "/nonexistent/dir/x.safetensors"), "zg_sched_save");
    free(js);
    rig_free(&r);

    /* A SequentialLR's state must have the same schedulers. */
    rig s1, s2;
    if (b_seq_warmup_cosine(&s1) && b_seq_three(&s2)) {
        char *sj = zg_sched_state_json(s1.s[0]);
        CHECK_ERR(zg_sched_load_state_json(s2.s[0], sj), "");
        free(sj);
    }
    rig_free(&s1);
    rig_free(&s2);
}

/* ------------------------------------------------------------------ */
/* Errors                                                               */
/* ------------------------------------------------------------------ */

TEST(sched_invalid_arguments) {
    rig r;
    if (!rig_opt(&r, ZG_SGD, 1, (const double[]){0.1}, 0.9)) {
        rig_free(&r);
        return;
    }
    zg_optim *o = r.opt;
    CHECK_NULL_ERR(zg_sched_step_lr(o, 0, 0.1), "step_size must be > 0");
    CHECK_NULL_ERR(zg_sched_step_lr(o, -3, 0.1), "step_size");
    CHECK_NULL_ERR(zg_sched_step_lr(o, 3, -0.1), "gamma");
    CHECK_NULL_ERR(zg_sched_step_lr(NULL, 3, 0.1), "optimizer is NULL");
    CHECK_NULL_ERR(zg_sched_cosine(o, 0, 0), "T_max must be > 0");
    CHECK_NULL_ERR(zg_sched_cosine(o, 5, -1), "eta_min");
    CHECK_NULL_ERR(zg_sched_cosine(o, 5, NAN), "eta_min");
    CHECK_NULL_ERR(zg_sched_linear(o, 0, 1, 5), "start_factor");
    CHECK_NULL_ERR(zg_sched_linear(o, 1.5, 1, 5), "start_factor");
    CHECK_NULL_ERR(zg_sched_linear(o, 0.5, 1.5, 5), "end_factor");
    CHECK_NULL_ERR(zg_sched_linear(o, 0.5, -0.1, 5), "end_factor");
    CHECK_NULL_ERR(zg_sched_linear(o, 0.5, 1, 0), "total_iters");
    zg_onecycle_opts oc = zg_onecycle_defaults(0);
    CHECK_NULL_ERR(zg_sched_onecycle(o, 0.1, &oc), "total_steps must be > 0");
    oc = zg_onecycle_defaults(10);
    oc.pct_start = 1.5;
    CHECK_NULL_ERR(zg_sched_onecycle(o, 0.1, &oc), "pct_start");
    oc = zg_onecycle_defaults(10);
    oc.div_factor = 0;
    CHECK_NULL_ERR(zg_sched_onecycle(o, 0.1, &oc), "div_factor");
    oc = zg_onecycle_defaults(10);
    CHECK_NULL_ERR(zg_sched_onecycle(o, -0.1, &oc), "lrs must be finite");
    CHECK_NULL_ERR(zg_sched_onecycle(o, 0.1, NULL), "opts is NULL");
    /* PyTorch: ZeroDivisionError when pct_start * total_steps == 1. */
    oc.pct_start = 0.1;
    CHECK_NULL_ERR(zg_sched_onecycle(o, 0.1, &oc), "zero length");
    /* Nothing above changed the group. */
    CHECK(zg_optim_get_hparam(o, 0, ZG_HP_LR) == 0.1);
    CHECK(zg_optim_get_hparam(o, 0, ZG_HP_MOMENTUM) == 0.9);
    rig_free(&r);

    /* OneCycle needs momentum or beta1 to cycle. */
    if (rig_opt(&r, ZG_ADAGRAD, 1, (const double[]){0.1}, 0)) {
        oc = zg_onecycle_defaults(10);
        CHECK_NULL_ERR(zg_sched_onecycle(r.opt, 0.1, &oc), "must support momentum");
    }
    rig_free(&r);
    if (rig_opt(&r, ZG_ADAM, 1, (const double[]){0.1}, 0)) {
        oc = zg_onecycle_defaults(10);
        oc.max_momentum = 1.0; /* beta1 must stay below 1 */
        CHECK_NULL_ERR(zg_sched_onecycle(r.opt, 0.1, &oc), "max_momentum");
        CHECK(zg_optim_get_hparam(r.opt, 0, ZG_HP_BETA1) == 0.9);
    }
    rig_free(&r);
}

TEST(sched_step_errors) {
    rig r;
    /* OneCycle past total_steps: torch's "Tried to step 5 times. The
     * specified number of total steps is 3"; nothing changes. */
    if (rig_opt(&r, ZG_SGD, 1, (const double[]){0.1}, 0.9)) {
        zg_onecycle_opts oc = zg_onecycle_defaults(3);
        if (rig_add(&r, zg_sched_onecycle(r.opt, 0.5, &oc))) {
            for (int i = 0; i < 3; i++) CHECK_OK(zg_sched_step(r.s[0]));
            /* torch: step 3 (== total_steps) gives 0.23131855133348764 */
            CHECK_REL(zg_sched_get_last_lr(r.s[0], 0), 0.23131855133348764, 1e-7);
            double lr = zg_optim_get_hparam(r.opt, 0, ZG_HP_LR);
            CHECK_ERR(zg_sched_step(r.s[0]), "tried to step 5 times; the specified number of total steps is 3");
            CHECK(zg_sched_last_epoch(r.s[0]) == 3);
            CHECK(zg_optim_get_hparam(r.opt, 0, ZG_HP_LR) == lr);
        }
    }
    rig_free(&r);
    /* The optimizer grew a group after the scheduler was made. */
    if (b_cosine(&r)) {
        zg_tensor *extra = zg_zeros((const int64_t[]){1}, 1);
        zg_tensor_set_requires_grad(extra, true);
        zg_param_group g = {&extra, 1, NULL, 0};
        CHECK_OK(zg_optim_add_param_group(r.opt, &g));
        CHECK_ERR(zg_sched_step(r.s[0]), "2 parameter groups");
        CHECK(isnan(zg_sched_get_last_lr(r.s[0], 1)));
        CHECK(strstr(zg_last_error(), "out of range"));
        CHECK(isnan(zg_sched_get_last_lr(NULL, 0)));
        rig_free(&r);
        zg_tensor_free(extra);
    } else {
        rig_free(&r);
    }
    CHECK_ERR(zg_sched_step(NULL), "NULL");
    zg_sched_free(NULL);
}

TEST(sched_sequential_errors) {
    rig r, q;
    if (!rig_opt(&r, ZG_SGD, 1, (const double[]){0.1}, 0) || !rig_opt(&q, ZG_SGD, 1, (const double[]){0.1}, 0)) {
        rig_free(&r);
        return;
    }
    zg_optim *o = r.opt;
    /* Each failure frees the schedulers it was given (LSan checks). */
    zg_sched *a = zg_sched_linear(o, 0.5, 1, 3), *b = zg_sched_cosine(o, 5, 0);
    CHECK_NULL_ERR(zg_sched_sequential(o, (zg_sched *const[]){a, b}, 2, (const int64_t[]){3, 4}, 2),
                   "one more than the number of milestone points");
    a = zg_sched_linear(o, 0.5, 1, 3), b = zg_sched_cosine(o, 5, 0);
    CHECK_NULL_ERR(zg_sched_sequential(o, (zg_sched *const[]){a, b}, 2, NULL, 0), "milestone");
    a = zg_sched_linear(o, 0.5, 1, 3), b = zg_sched_cosine(o, 5, 0);
    zg_sched *c = zg_sched_step_lr(o, 2, 0.5);
    CHECK_NULL_ERR(zg_sched_sequential(o, (zg_sched *const[]){a, b, c}, 3, (const int64_t[]){4, 4}, 2),
                   "increasing");
    a = zg_sched_linear(o, 0.5, 1, 3), b = zg_sched_cosine(q.opt, 5, 0);
    CHECK_NULL_ERR(zg_sched_sequential(o, (zg_sched *const[]){a, b}, 2, (const int64_t[]){3}, 1),
                   "same optimizer");
    a = zg_sched_linear(o, 0.5, 1, 3);
    CHECK_NULL_ERR(zg_sched_sequential(o, (zg_sched *const[]){a, a}, 2, (const int64_t[]){3}, 1), "twice");
    a = zg_sched_linear(o, 0.5, 1, 3);
    CHECK_NULL_ERR(zg_sched_sequential(o, (zg_sched *const[]){a, NULL}, 2, (const int64_t[]){3}, 1), "NULL");
    CHECK_NULL_ERR(zg_sched_sequential(o, NULL, 0, NULL, 0), "no schedulers");
    a = zg_sched_linear(o, 0.5, 1, 3);
    CHECK_NULL_ERR(zg_sched_sequential(NULL, (zg_sched *const[]){a}, 1, NULL, 0), "optimizer is NULL");

    /* A child is stepped through its SequentialLR only, and cannot join a
     * second one; nesting is refused. */
    a = zg_sched_linear(o, 0.5, 1, 3), b = zg_sched_cosine(o, 5, 0);
    zg_sched *s = zg_sched_sequential(o, (zg_sched *const[]){a, b}, 2, (const int64_t[]){3}, 1);
    CHECK_PTR(s);
    if (s) {
        CHECK(!strcmp(zg_sched_name(s), "SequentialLR"));
        CHECK_ERR(zg_sched_step(a), "belongs to a SequentialLR");
        CHECK_NULL_ERR(zg_sched_sequential(o, (zg_sched *const[]){a}, 1, NULL, 0), "already belongs");
        zg_sched *d = zg_sched_step_lr(o, 2, 0.5);
        CHECK_NULL_ERR(zg_sched_sequential(o, (zg_sched *const[]){s, d}, 2, (const int64_t[]){3}, 1), "nesting");
        /* s was freed by that failure; a single-scheduler sequential works. */
        zg_sched *e = zg_sched_step_lr(o, 2, 0.5);
        zg_sched *one = zg_sched_sequential(o, (zg_sched *const[]){e}, 1, NULL, 0);
        CHECK_PTR(one);
        CHECK_OK(zg_sched_step(one));
        CHECK(zg_sched_last_epoch(one) == 1);
        zg_sched_free(one);
    }
    rig_free(&r);
    rig_free(&q);
}

TEST(sched_spec_errors) {
    rig r;
    if (!rig_opt(&r, ZG_SGD, 1, (const double[]){0.1}, 0.9)) {
        rig_free(&r);
        return;
    }
    zg_optim *o = r.opt;
    CHECK_NULL_ERR(zg_sched_from_spec(o, "exponentiel:0.9", 10), "unknown schedule (step, cosine");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "step", 10), "step needs a step size");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "step:abc", 10), "invalid value 'abc' for 'step_size'");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "step:5,gama=0.5", 10), "unknown key 'gama'");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "step:5,0.5", 10), "needs a key");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "step:5,step_size=4", 10), "given twice");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "step:0", 10), "step_size must be > 0");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "cosine", 0), "T_max must be > 0");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "cosine:eta_min=", 10), "invalid value");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "onecycle", 10), "needs max_lr");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "onecycle:0.1,anneal=exp", 10), "anneal");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "onecycle:0.1,three_phase=maybe", 10), "three_phase");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "warmup-cosine:10", 10), "warmup < total_steps");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "warmup-cosine", 10), "needs the warm-up steps");
    CHECK_NULL_ERR(zg_sched_from_spec(o, NULL, 10), "NULL");
    CHECK(zg_optim_get_hparam(o, 0, ZG_HP_LR) == 0.1);
    zg_sched *s = zg_sched_from_spec(o, "linear", 10); /* PyTorch's defaults: 1/3, 1, 5 */
    CHECK_PTR(s);
    if (s) CHECK_REL(zg_sched_get_last_lr(s, 0), 0.1 / 3, 1e-15);
    zg_sched_free(s);
    s = zg_sched_from_spec(o, "onecycle:0.5,cycle_momentum=0,anneal=linear", 10);
    CHECK_PTR(s);
    zg_sched_free(s);
    /* The kinds added with ReduceLROnPlateau. A failed spec leaves the
     * lrs, also after building a part of a chain. */
    const double lr = zg_optim_get_hparam(o, 0, ZG_HP_LR);
    CHECK_NULL_ERR(zg_sched_from_spec(o, "exponential", 10), "exponential needs gamma");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "exponential:-0.5", 10), "gamma must be finite and >= 0");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "multistep", 10), "multistep needs milestones");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "multistep:3,x", 10), "invalid value '3,x' for 'milestones'");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "multistep:3,gamma=0.5,6", 10), "'6' needs a key");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "multistep:-3", 10), "a milestone must be >= 0");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "constant:0", 10), "total_iters must be > 0");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "constant:factor=0", 10), "factor must be in (0, 1]");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "polynomial:power=-1", 10), "power must be finite and >= 0");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "cosine-restarts", 10), "needs the first cycle's length");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "cosine-restarts:4,t_mult=0", 10), "T_mult must be > 0");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "plateau:2,mode=up", 10), "invalid value 'up' for 'mode'");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "plateau:threshold_mode=pct", 10), "'threshold_mode'");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "plateau:factor=1", 10), "factor must be in [0, 1)");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "chained:step:0|cosine", 10), "'chained:step:0|cosine': zg_sched_from_spec: 'step:0'");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "chained:cosine|plateau", 10), "does not support ReduceLROnPlateau");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "chained:cosine||step:3", 10), "SPEC|SPEC");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "chained:warmup-cosine:2|step:3", 10), "is a SequentialLR (no nesting)");
    CHECK_NULL_ERR(zg_sched_from_spec(o, "chained:linear|step:0", 10), "step_size must be > 0");
    CHECK(zg_optim_get_hparam(o, 0, ZG_HP_LR) == lr);
    s = zg_sched_from_spec(o, "polynomial", 10); /* total_iters: the run's steps */
    CHECK_PTR(s);
    for (int i = 0; s && i < 10; i++) CHECK_OK(zg_sched_step(s));
    if (s) CHECK(zg_sched_get_last_lr(s, 0) == 0.0);
    zg_sched_free(s);
    rig_free(&r);
}

/* ------------------------------------------------------------------ */
/* initial_lr lives in the optimizer's groups                          */
/* ------------------------------------------------------------------ */

#define D_AFTER_FREE "SGD lr 0.1; StepLR(2, 0.5) 4 steps, freed; CosineAnnealingLR(T_max=6, eta_min=0.001) 8 steps"
#define D_SEQ_AFTER_FREE                                                                                   \
    "SGD lrs 0.1 0.05; StepLR(2, 0.5) 4 steps, freed; SequentialLR([LinearLR(0.5, 1, 3), "                \
    "CosineAnnealingLR(T_max=8)], milestones=[3]) 12 steps"
#define D_RESUME_OPT                                                                                       \
    "SGD lrs 0.1 0.05; StepLR(2, 0.5) 4 steps; a new SGD loads the optimizer's state_dict; "               \
    "CosineAnnealingLR(T_max=6, eta_min=0.001) 8 steps"
#define D_ONECYCLE_THEN                                                                                    \
    "SGD lr 0.1 momentum 0.9; OneCycleLR(max_lr=0.5, total_steps=10) 5 steps, freed; "                    \
    "CosineAnnealingLR(T_max=6) 8 steps"

/* Row *row + 1 after construction, then n steps of opt and s, each
 * compared; *row ends at the last row compared. */
static bool lr_rows(const sched_ref *ref, int *row, zg_optim *opt, zg_sched *s, int n) {
    CHECK_PTR(s);
    bool ok = s && check_lrs(ref, ++*row, opt, s);
    for (int i = 0; ok && i < n; i++)
        ok = zg_optim_step(opt) == ZG_OK && zg_sched_step(s) == ZG_OK && check_lrs(ref, ++*row, opt, s);
    zg_sched_free(s);
    return ok;
}

/* A scheduler made after another was freed starts from the groups'
 * initial_lr (PyTorch keeps it in param_groups), also a new SequentialLR
 * (which resets the lrs to it) and one after OneCycleLR (which set it to
 * max_lr / div_factor). */
TEST(sched_initial_lr_outlives_its_scheduler) {
    const sched_ref *ref = find_sched("after_free", D_AFTER_FREE);
    rig r;
    int row = -1;
    if (ref && rig_opt(&r, ZG_SGD, 1, (const double[]){0.1}, 0)) {
        bool ok = lr_rows(ref, &row, r.opt, zg_sched_step_lr(r.opt, 2, 0.5), 4) &&
                  lr_rows(ref, &row, r.opt, zg_sched_cosine(r.opt, 6, 0.001), 8);
        CHECK(ok && row == ref->steps);
        rig_free(&r);
    }
    ref = find_sched("seq_after_free", D_SEQ_AFTER_FREE);
    row = -1;
    if (ref && rig_opt(&r, ZG_SGD, 2, (const double[]){0.1, 0.05}, 0)) {
        bool ok = lr_rows(ref, &row, r.opt, zg_sched_step_lr(r.opt, 2, 0.5), 4);
        zg_sched *w = zg_sched_linear(r.opt, 0.5, 1.0, 3), *c = zg_sched_cosine(r.opt, 8, 0.0);
        zg_sched *q = zg_sched_sequential(r.opt, (zg_sched *const[]){w, c}, 2, (const int64_t[]){3}, 1);
        ok = ok && lr_rows(ref, &row, r.opt, q, 12);
        CHECK(ok && row == ref->steps);
        rig_free(&r);
    }
    ref = find_sched("onecycle_then_cosine", D_ONECYCLE_THEN);
    row = -1;
    if (ref && rig_opt(&r, ZG_SGD, 1, (const double[]){0.1}, 0.9)) {
        zg_onecycle_opts o = zg_onecycle_defaults(10);
        bool ok = lr_rows(ref, &row, r.opt, zg_sched_onecycle(r.opt, 0.5, &o), 5) &&
                  lr_rows(ref, &row, r.opt, zg_sched_cosine(r.opt, 6, 0.0), 8);
        CHECK(ok && row == ref->steps);
        rig_free(&r);
    }
}

/* The optimizer's state holds initial_lr: a scheduler made after loading
 * it into a new optimizer starts from it, as after PyTorch's
 * load_state_dict. */
TEST(sched_initial_lr_resumes_with_the_optimizer) {
    const sched_ref *ref = find_sched("resume_opt_state", D_RESUME_OPT);
    rig a, b;
    int row = -1;
    if (!ref || !rig_opt(&a, ZG_SGD, 2, (const double[]){0.1, 0.05}, 0)) return;
    char path[256];
    tmp_path(path, sizeof path, "initial_lr");
    bool ok = lr_rows(ref, &row, a.opt, zg_sched_step_lr(a.opt, 2, 0.5), 4);
    CHECK_OK(zg_optim_save(a.opt, path));
    rig_free(&a);
    if (rig_opt(&b, ZG_SGD, 2, (const double[]){0.1, 0.05}, 0)) {
        CHECK_OK(zg_optim_load(b.opt, path));
        ok = ok && lr_rows(ref, &row, b.opt, zg_sched_cosine(b.opt, 6, 0.001), 8);
        CHECK(ok && row == ref->steps);
    }
    rig_free(&b);
    unlink(path);
}

/* ------------------------------------------------------------------ */
/* The other schedulers                                                 */
/* ------------------------------------------------------------------ */

#define D_EXPONENTIAL "SGD lrs 0.1 0.05; ExponentialLR(gamma=0.9)"
#define D_MULTISTEP "SGD lr 0.1; MultiStepLR(milestones=[7, 3, 12, 7], gamma=0.5)"
#define D_MULTISTEP_ZERO "SGD lr 0.1; MultiStepLR(milestones=[0, 4], gamma=0.1)"
#define D_CONSTANT "SGD lrs 0.1 0.02; ConstantLR(factor=0.25, total_iters=4)"
#define D_POLY "SGD lr 0.1; PolynomialLR(total_iters=8, power=2)"
#define D_POLY09 "Adam lr 0.01; PolynomialLR(total_iters=10, power=0.9)"
#define D_LAMBDA "SGD lrs 0.1 0.05; LambdaLR([0.95 ** e, 1 / (1 + e)])"
#define D_MULT "SGD lr 0.1; MultiplicativeLR(0.9 if e % 3 == 0 else 0.99)"
#define D_RESTARTS "SGD lr 0.1; CosineAnnealingWarmRestarts(T_0=3, T_mult=2, eta_min=0.001)"
#define D_RESTARTS_ONE "SGD lrs 0.1 0.05; CosineAnnealingWarmRestarts(T_0=4)"
#define D_CHAINED_NEW                                                                                      \
    "SGD lr 1.0; ChainedScheduler([ConstantLR(factor=0.1, total_iters=2), ExponentialLR(gamma=0.9)])"
#define D_CHAINED_THREE                                                                                    \
    "SGD lr 0.1 momentum 0.9; ChainedScheduler([LinearLR(0.5, 1, 4), CosineAnnealingWarmRestarts(T_0=5), " \
    "MultiStepLR([6], 0.5), OneCycleLR(max_lr=0.3, total_steps=14)])"
#define D_SEQ_NEW "SGD lr 0.1; SequentialLR([ConstantLR(0.1, 3), ExponentialLR(0.9)], milestones=[3])"
#define D_SEQ_POLY                                                                                         \
    "SGD lr 0.1; SequentialLR([PolynomialLR(4, 1), CosineAnnealingWarmRestarts(T_0=3, T_mult=2)], "        \
    "milestones=[4])"
#define D_PLATEAU_MIN                                                                                      \
    "SGD lrs 0.1 0.05; ReduceLROnPlateau(mode=min, factor=0.5, patience=2, threshold=0.01, "               \
    "threshold_mode=rel, cooldown=1, min_lr=[0.01, 0.02]) fed 1.0 0.9 0.95 0.95 0.899 0.9 0.9 0.9 0.7 "     \
    "0.71 0.72 0.73 0.74 0.75 0.69 0.7 0.7 0.7 0.7 0.7 nan 0.7 0.7 0.7"
#define D_PLATEAU_MAX                                                                                      \
    "SGD lr 0.1; ReduceLROnPlateau(mode=max, factor=0.3, patience=1, threshold=0.05, threshold_mode=abs, "  \
    "min_lr=0.001, eps=0.001) fed 0.1 0.2 0.22 0.3 0.3 0.3 0.36 0.4 0.41 0.41 0.41 0.41 0.41 0.41 0.41 "    \
    "0.41"
#define D_PLATEAU_DEF "SGD lr 0.1; ReduceLROnPlateau() fed 1.0 25 times"

TEST(sched_parity_exponential_multistep_constant) {
    run_parity("exponential", D_EXPONENTIAL, b_exponential);
    run_parity("multistep", D_MULTISTEP, b_multistep);
    run_parity("multistep_zero", D_MULTISTEP_ZERO, b_multistep_zero);
    run_parity("constant", D_CONSTANT, b_constant);
}
TEST(sched_parity_polynomial) {
    run_parity("polynomial", D_POLY, b_polynomial);
    run_parity("polynomial_09", D_POLY09, b_polynomial_09);
}
TEST(sched_parity_lambda_multiplicative) {
    run_parity("lambda", D_LAMBDA, b_lambda);
    run_parity("multiplicative", D_MULT, b_multiplicative);
}
TEST(sched_parity_warm_restarts) {
    run_parity("warm_restarts", D_RESTARTS, b_warm_restarts);
    run_parity("warm_restarts_one", D_RESTARTS_ONE, b_warm_restarts_one);
}
TEST(sched_parity_chained_scheduler) {
    run_parity("chained_new", D_CHAINED_NEW, b_chained_new);
    run_parity("chained_three", D_CHAINED_THREE, b_chained_three);
}
TEST(sched_parity_sequential_new_kinds) {
    run_parity("seq_new", D_SEQ_NEW, b_seq_new);
    run_parity("seq_poly_restarts", D_SEQ_POLY, b_seq_poly_restarts);
}
TEST(sched_parity_plateau) {
    run_parity("plateau_min", D_PLATEAU_MIN, b_plateau_min);
    run_parity("plateau_max_abs", D_PLATEAU_MAX, b_plateau_max_abs);
    run_parity("plateau_defaults", D_PLATEAU_DEF, b_plateau_defaults);
}
TEST(sched_parity_new_from_spec) {
    run_parity("exponential", D_EXPONENTIAL, b_spec_exponential);
    run_parity("multistep", D_MULTISTEP, b_spec_multistep);
    run_parity("constant", D_CONSTANT, b_spec_constant);
    run_parity("polynomial", D_POLY, b_spec_polynomial);
    run_parity("warm_restarts", D_RESTARTS, b_spec_restarts);
    run_parity("chained_new", D_CHAINED_NEW, b_spec_chained);
    run_parity("plateau_max_abs", D_PLATEAU_MAX, b_spec_plateau);
    run_parity("plateau_defaults", D_PLATEAU_DEF, b_spec_plateau_defaults);
    printf("scheduler parity (all so far): worst relative error %.3g\n", worst_sched);
}

/* Saved mid-sequence (JSON or file), loaded into a new scheduler with the
 * optimizer's state: the rest of the sequence is PyTorch's. */
TEST(sched_resume_new_kinds) {
    run_resume("exponential", D_EXPONENTIAL, b_exponential, 7, true);
    run_resume("multistep", D_MULTISTEP, b_multistep, 5, false);
    run_resume("constant", D_CONSTANT, b_constant, 2, true);
    run_resume("polynomial", D_POLY, b_polynomial, 5, false);
    run_resume("lambda", D_LAMBDA, b_lambda, 6, true);
    run_resume("multiplicative", D_MULT, b_multiplicative, 4, false);
    run_resume("warm_restarts", D_RESTARTS, b_warm_restarts, 10, true);
    run_resume("warm_restarts", D_RESTARTS, b_warm_restarts, 2, false);
    run_resume("chained_new", D_CHAINED_NEW, b_chained_new, 1, false);
    run_resume("chained_three", D_CHAINED_THREE, b_chained_three, 7, true);
    run_resume("seq_poly_restarts", D_SEQ_POLY, b_seq_poly_restarts, 6, true);
    run_resume("plateau_min", D_PLATEAU_MIN, b_plateau_min, 9, true);
    run_resume("plateau_min", D_PLATEAU_MIN, b_plateau_min, 21, false);
    run_resume("plateau_max_abs", D_PLATEAU_MAX, b_plateau_max_abs, 3, false);
}

static double lambda_nan_at_3(int64_t e, int group, void *user) {
    (void)group;
    (void)user;
    return e == 3 ? NAN : 0.5;
}

TEST(sched_new_kinds_invalid_arguments) {
    rig r;
    if (!rig_opt(&r, ZG_SGD, 1, (const double[]){0.1}, 0.9)) {
        rig_free(&r);
        return;
    }
    zg_optim *o = r.opt;
    CHECK_NULL_ERR(zg_sched_exponential(o, NAN), "zg_sched_exponential: gamma must be finite");
    CHECK_NULL_ERR(zg_sched_exponential(NULL, 0.5), "optimizer is NULL");
    CHECK_NULL_ERR(zg_sched_multistep(o, NULL, 2, 0.5), "milestones is NULL");
    CHECK_NULL_ERR(zg_sched_multistep(o, (const int64_t[]){3, -1}, 2, 0.5), "a milestone must be >= 0");
    CHECK_NULL_ERR(zg_sched_multistep(o, (const int64_t[]){3}, 1, -0.5), "gamma");
    CHECK_NULL_ERR(zg_sched_constant(o, 0, 3), "factor must be in (0, 1]");
    CHECK_NULL_ERR(zg_sched_constant(o, 1.5, 3), "factor must be in (0, 1]");
    CHECK_NULL_ERR(zg_sched_constant(o, 0.5, 0), "total_iters must be > 0");
    CHECK_NULL_ERR(zg_sched_polynomial(o, 0, 1), "total_iters must be > 0");
    CHECK_NULL_ERR(zg_sched_polynomial(o, 5, INFINITY), "power must be finite");
    CHECK_NULL_ERR(zg_sched_cosine_warm_restarts(o, 0, 1, 0), "T_0 must be > 0");
    CHECK_NULL_ERR(zg_sched_cosine_warm_restarts(o, 3, 0, 0), "T_mult must be > 0");
    CHECK_NULL_ERR(zg_sched_cosine_warm_restarts(o, 3, 1, -1), "eta_min must be finite and >= 0");
    CHECK_NULL_ERR(zg_sched_lambda(o, NULL, NULL), "zg_sched_lambda: the lr function is NULL");
    CHECK_NULL_ERR(zg_sched_multiplicative(o, NULL, NULL), "zg_sched_multiplicative: the lr function is NULL");
    zg_plateau_opts p = zg_plateau_defaults();
    CHECK_NULL_ERR(zg_sched_plateau(o, NULL), "opts is NULL");
    p.factor = 1.0;
    CHECK_NULL_ERR(zg_sched_plateau(o, &p), "factor must be in [0, 1)");
    p = zg_plateau_defaults();
    p.patience = -1;
    CHECK_NULL_ERR(zg_sched_plateau(o, &p), "patience must be >= 0");
    p = zg_plateau_defaults();
    p.min_lrs = (const double[]){-0.1};
    CHECK_NULL_ERR(zg_sched_plateau(o, &p), "min_lr must be finite and >= 0");
    p = zg_plateau_defaults();
    p.threshold = NAN;
    CHECK_NULL_ERR(zg_sched_plateau(o, &p), "threshold");
    /* Nothing above changed the group. */
    CHECK(zg_optim_get_hparam(o, 0, ZG_HP_LR) == 0.1);

    /* A lambda that gives NaN fails the step, which changes nothing. */
    zg_sched *l = zg_sched_multiplicative(o, lambda_nan_at_3, NULL);
    CHECK_PTR(l);
    if (l) {
        CHECK_OK(zg_sched_step(l));
        CHECK_OK(zg_sched_step(l));
        double lr = zg_optim_get_hparam(o, 0, ZG_HP_LR);
        CHECK(lr == 0.025);
        CHECK_ERR(zg_sched_step(l), "MultiplicativeLR computed an invalid lr nan for group 0 at epoch 3");
        CHECK(zg_sched_last_epoch(l) == 2 && zg_optim_get_hparam(o, 0, ZG_HP_LR) == lr);
        CHECK(!strcmp(zg_sched_name(l), "MultiplicativeLR"));
    }
    zg_sched_free(l);
    rig_free(&r);
}

/* A ChainedScheduler steps all of its schedulers or none; its children
 * are stepped through it only; ReduceLROnPlateau steps on a metric
 * only, and is refused by the composites. */
TEST(sched_chained_and_plateau_rules) {
    rig r;
    if (!rig_opt(&r, ZG_SGD, 1, (const double[]){0.1}, 0.9)) {
        rig_free(&r);
        return;
    }
    zg_optim *o = r.opt;
    zg_onecycle_opts oc = zg_onecycle_defaults(2);
    zg_sched *e = zg_sched_exponential(o, 0.5), *c1 = zg_sched_onecycle(o, 0.4, &oc);
    zg_sched *ch = zg_sched_chained(o, (zg_sched *const[]){e, c1}, 2);
    CHECK_PTR(ch);
    if (ch) {
        CHECK(!strcmp(zg_sched_name(ch), "ChainedScheduler"));
        CHECK_ERR(zg_sched_step(e), "this ExponentialLR belongs to a ChainedScheduler; step that one");
        CHECK_OK(zg_sched_step(ch));
        CHECK_OK(zg_sched_step(ch));
        double lr = zg_optim_get_hparam(o, 0, ZG_HP_LR), m = zg_optim_get_hparam(o, 0, ZG_HP_MOMENTUM);
        char *before = zg_sched_state_json(ch);
        /* OneCycleLR past its total steps: the ExponentialLR before it
         * does not move either. */
        CHECK_ERR(zg_sched_step(ch), "OneCycleLR: tried to step 4 times");
        char *after = zg_sched_state_json(ch);
        CHECK(before && after && !strcmp(before, after));
        CHECK(zg_optim_get_hparam(o, 0, ZG_HP_LR) == lr && zg_optim_get_hparam(o, 0, ZG_HP_MOMENTUM) == m);
        CHECK(zg_sched_last_epoch(ch) == 2 && zg_sched_get_last_lr(ch, 0) == lr);
        free(before);
        free(after);
    }
    zg_sched_free(ch);

    zg_plateau_opts po = zg_plateau_defaults();
    zg_sched *pl = zg_sched_plateau(o, &po);
    CHECK_PTR(pl);
    if (pl) {
        CHECK(zg_sched_needs_metric(pl) && !zg_sched_needs_metric(NULL));
        CHECK_ERR(zg_sched_step(pl), "ReduceLROnPlateau steps on a metric: call zg_sched_step_metric");
        CHECK_NULL_ERR(zg_sched_chained(o, (zg_sched *const[]){pl}, 1),
                       "ChainedScheduler does not support ReduceLROnPlateau (scheduler 0)");
    }
    pl = zg_sched_plateau(o, &po);
    zg_sched *w = zg_sched_linear(o, 0.5, 1, 2);
    CHECK_NULL_ERR(zg_sched_sequential(o, (zg_sched *const[]){w, pl}, 2, (const int64_t[]){2}, 1),
                   "SequentialLR does not support ReduceLROnPlateau (scheduler 1)");
    zg_sched *x = zg_sched_exponential(o, 0.9);
    CHECK(!zg_sched_needs_metric(x));
    CHECK_ERR(zg_sched_step_metric(x, 1.0), "a ExponentialLR does not step on a metric; call zg_sched_step");
    CHECK_ERR(zg_sched_step_metric(NULL, 1.0), "NULL");
    zg_sched *y = zg_sched_exponential(o, 0.9);
    zg_sched *inner = zg_sched_chained(o, (zg_sched *const[]){y}, 1);
    CHECK_NULL_ERR(zg_sched_chained(o, (zg_sched *const[]){x, inner}, 2), "is a ChainedScheduler (no nesting)");
    CHECK_NULL_ERR(zg_sched_chained(o, NULL, 0), "no schedulers");
    rig_free(&r);
}

/* ReduceLROnPlateau on an optimizer that gains a group: one min_lr for
 * all covers the new group (PyTorch 2.x); a list does not. */
TEST(sched_plateau_new_groups) {
    rig r;
    if (!rig_opt(&r, ZG_SGD, 1, (const double[]){0.1}, 0)) {
        rig_free(&r);
        return;
    }
    zg_plateau_opts po = zg_plateau_defaults();
    po.patience = 0;
    po.min_lr = 0.02;
    zg_sched *a = zg_sched_plateau(r.opt, &po);
    po.min_lrs = (const double[]){0.0};
    zg_sched *b = zg_sched_plateau(r.opt, &po);
    zg_tensor *extra = zg_zeros((const int64_t[]){1}, 1);
    zg_param_group g = {&extra, 1, (const zg_hp[]){{ZG_HP_LR, 0.5}}, 1};
    CHECK_OK(zg_optim_add_param_group(r.opt, &g));
    CHECK_OK(zg_sched_step_metric(a, 1.0)); /* the first metric is an improvement */
    CHECK_OK(zg_sched_step_metric(a, 1.0));
    CHECK(zg_optim_get_hparam(r.opt, 0, ZG_HP_LR) == 0.02); /* max(0.1 * 0.1, min_lr) */
    CHECK_REL(zg_optim_get_hparam(r.opt, 1, ZG_HP_LR), 0.05, 1e-15);
    CHECK_OK(zg_sched_step_metric(a, 1.0));
    CHECK(zg_optim_get_hparam(r.opt, 1, ZG_HP_LR) == 0.02 && zg_sched_get_last_lr(a, 1) == 0.02);
    CHECK_ERR(zg_sched_step_metric(b, 1.0), "the number of param groups in the optimizer (2) differs");
    zg_sched_free(a);
    zg_sched_free(b);
    rig_free(&r);
    zg_tensor_free(extra);
}

/* ------------------------------------------------------------------ */
/* Where PyTorch 2.x differs from 1.13                                  */
/* ------------------------------------------------------------------ */

static const char *const torch2_sources[] = {"tests/parity/optim_reference_torch2.py", "tests/parity/torch_reference.py"};
static const char *const torch2_files[] = {"optim_torch2"};
static zgt_refset torch2_refs = {torch2_sources, 2, torch2_files, 1, NULL, 0};

static double lambda_alternate(int64_t e, int group, void *user) {
    (void)group;
    (void)user;
    return e % 2 ? 0.9 : 0.8;
}

/* At a SequentialLR's milestone 2.x calls _update_lr(0): a
 * MultiplicativeLR (no closed form) multiplies by lambda(0) there (1.13's
 * step(0) left the lr). */
TEST(sched_sequential_milestone_is_torch2s) {
    zg_safetensors *st = zgt_refs_open(&torch2_refs, "optim_torch2");
    if (!st) return;
    const char *want = zg_safetensors_metadata(st, "seq_mult");
    rig r = {0};
    if (want && rig_opt(&r, ZG_SGD, 1, (const double[]){0.1}, 0)) {
        zg_sched *a = zg_sched_constant(r.opt, 0.5, 3), *b = zg_sched_multiplicative(r.opt, lambda_alternate, NULL);
        zg_sched *q = zg_sched_sequential(r.opt, (zg_sched *const[]){a, b}, 2, (const int64_t[]){3}, 1);
        CHECK_PTR(q);
        const char *p = want;
        for (int i = 0; q && i <= 8; i++) {
            char *end;
            double w = strtod(p, &end);
            CHECK(end != p);
            p = end;
            CHECK_REL(zg_optim_get_hparam(r.opt, 0, ZG_HP_LR), w, SCHED_RTOL);
            if (i < 8) CHECK_OK(zg_sched_step(q));
        }
        zg_sched_free(q);
    }
    CHECK(want != NULL);
    rig_free(&r);
    zg_safetensors_free(st);
}
