/* Optimizers: the spec's worked examples, None vs zero gradients,
 * zero_grad, parameter groups, validation errors, hyperparameter changes
 * between steps, every kind against PyTorch 1.13 over five steps, and the
 * state_dict round trip through a safetensors file. */
#include "harness.h"

#include <stdlib.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static zg_tensor *param_vals(const float *v, const int64_t *shape, int ndim) {
    zg_tensor *p = zg_tensor_from_data(ZG_FLOAT32, v, shape, ndim);
    zg_tensor_set_requires_grad(p, true);
    return p;
}

static zg_tensor *param1(float v) { return param_vals(&v, (const int64_t[]){1}, 1); }

/* Sets p.grad to the constant g (every element). */
static void set_grad_const(zg_tensor *p, float g) {
    zg_tensor *t = zg_full(zg_tensor_shape(p), zg_tensor_ndim(p), g);
    CHECK_OK(zg_tensor_set_grad(p, t));
    zg_tensor_free(t);
}

/* The reference problem: p0 below as a [2,3] parameter (or repeated over a
 * larger one), and at step t (0-based) the gradient of element i is
 * ((7i' + 3t) mod 11 - 5) / 4 + t / 8 with i' = i mod 6: exact in float32,
 * of both signs, sometimes zero, shrinking for some elements (amsgrad). */
static const float ref_p0[6] = {0.5f, -1.2f, 2.0f, 0.1f, -0.3f, 1.5f};

static float ref_grad(int64_t i, int t) {
    return (float)((int)((i % 6) * 7 + t * 3) % 11 - 5) * 0.25f + 0.125f * (float)t;
}

static zg_tensor *ref_param(int64_t numel) {
    zg_tensor *p = numel == 6 ? zg_tensor_new(ZG_FLOAT32, (const int64_t[]){2, 3}, 2)
                              : zg_tensor_new(ZG_FLOAT32, &numel, 1);
    for (int64_t i = 0; i < numel; i++) zg_tensor_data(p)[i] = ref_p0[i % 6];
    zg_tensor_set_requires_grad(p, true);
    return p;
}

static void set_ref_grad(zg_tensor *p, int t) {
    zg_tensor *g = zg_tensor_new(ZG_FLOAT32, zg_tensor_shape(p), zg_tensor_ndim(p));
    for (int64_t i = 0; i < zg_tensor_numel(p); i++) zg_tensor_data(g)[i] = ref_grad(i, t);
    CHECK_OK(zg_tensor_set_grad(p, g));
    zg_tensor_free(g);
}

/* |x - e| <= 1e-6 |e| + 1e-7 for each element (element i of t against
 * e[i mod n]): float32 rounding differences between two implementations
 * of the same arithmetic. */
static bool close_to(const zg_tensor *t, const float *e, int n) {
    if (!t) return false;
    for (int64_t i = 0; i < zg_tensor_numel(t); i++) {
        double x = zg_tensor_get(t, i), y = e[i % n];
        if (!(fabs(x - y) <= 1e-6 * fabs(y) + 1e-7)) {
            fprintf(stderr, "    element %lld: %.9g, expected %.9g\n", (long long)i, x, y);
            return false;
        }
    }
    return true;
}

static bool same_values(const zg_tensor *a, const zg_tensor *b) {
    if (!a || !b || zg_tensor_numel(a) != zg_tensor_numel(b)) return false;
    return memcmp(zg_tensor_data((zg_tensor *)a), zg_tensor_data((zg_tensor *)b),
                  (size_t)zg_tensor_numel(a) * sizeof(float)) == 0;
}

static char *tmp_path(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "/tmp/zg_test_optim_%ld_%s.safetensors", (long)getpid(), tag);
    return buf;
}

/* ---- PyTorch reference values -------------------------------------------
 * For each case: torch.optim.<Kind>([p], foreach=False, **options) on the
 * reference problem; the parameter after each of 5 steps and the state
 * buffers after the last. */
typedef struct {
    const char *name;
    zg_optim_kind kind;
    const zg_hp *hp;
    int n_hp;
    float steps[5][6];
    int n_bufs;
    const char *bufs[3];
    float buf_vals[3][6];
} ref_case;

/* Generated with torch 1.13.0a0 (single-tensor path, foreach=False). */
static const ref_case sgd_plain_ref = {
    "sgd_plain", ZG_SGD, (const zg_hp[]){{ZG_HP_LR, 0.1}}, 1,
    {{0.625, -1.25, 2.04999995, -0.0250000004, -0.325000018, 1.57500005},
     {0.662500024, -1.38750005, 2.01250005, 0.0375000015, -0.43750003, 1.5625},
     {0.612500012, -1.3375001, 1.88750005, 0.0125000011, -0.362500042, 1.46249998},
     {0.475000024, -1.37500012, 1.95000005, -0.100000001, -0.37500003, 1.54999995},
     {0.525000036, -1.50000012, 1.92500007, -0.0250000004, -0.475000024, 1.54999995}},
    0,
    {NULL},
    {{0}},
};
static const ref_case sgd_momentum_dampening_wd_ref = {
    "sgd_momentum_dampening_wd", ZG_SGD,
    (const zg_hp[]){{ZG_HP_LR, 0.05}, {ZG_HP_MOMENTUM, 0.9}, {ZG_HP_DAMPENING, 0.3}, {ZG_HP_WEIGHT_DECAY, 0.01}}, 4,
    {{0.562250018, -1.22440004, 2.02399993, 0.0374499969, -0.312350005, 1.53674996},
     {0.631203234, -1.29405653, 2.03176641, 0.00301688793, -0.362730682, 1.56491208},
     {0.675540209, -1.33879447, 1.99429524, -0.0367239639, -0.381696343, 1.55471027},
     {0.667082071, -1.39171505, 1.98174822, -0.111852869, -0.403006852, 1.57560945},
     {0.676736236, -1.48260641, 1.96101224, -0.153179735, -0.457045257, 1.5938673}},
    1,
    {"momentum_buffer"},
    {{-0.19308345, 1.81782734, 0.414719373, 0.826537371, 1.08076787, -0.365156949}},
};
static const ref_case sgd_nesterov_wd_maximize_ref = {
    "sgd_nesterov_wd_maximize", ZG_SGD,
    (const zg_hp[]){{ZG_HP_LR, 0.05}, {ZG_HP_MOMENTUM, 0.8}, {ZG_HP_NESTEROV, 1}, {ZG_HP_WEIGHT_DECAY, 0.02},
     {ZG_HP_MAXIMIZE, 1}}, 5,
    {{0.386600018, -1.15284002, 1.95140004, 0.212320015, -0.276960015, 1.42980003},
     {0.311834127, -1.01024687, 1.9643575, 0.195623845, -0.167019486, 1.4135164},
     {0.311769396, -0.995276213, 2.07024884, 0.229584634, -0.191487998, 1.48408902},
     {0.415155888, -0.928566396, 2.04655695, 0.347746521, -0.169601738, 1.4202565},
     {0.397367239, -0.776823342, 2.07307577, 0.329333752, -0.0669406429, 1.4028213}},
    1,
    {"momentum_buffer"},
    {{-0.190662324, -2.20786238, -0.401634812, -0.485874414, -1.31228733, 0.400372684}},
};
static const ref_case adam_default_ref = {
    "adam_default", ZG_ADAM, NULL, 0,
    {{0.500999987, -1.20100009, 2.00099993, 0.0989999995, -0.300999999, 1.50100005},
     {0.501855671, -1.20192838, 2.00108933, 0.0987336636, -0.301871717, 1.50153863},
     {0.502244532, -1.20240068, 2.00054884, 0.098418422, -0.302087843, 1.50128174},
     {0.502063572, -1.20291376, 2.00038195, 0.0978549197, -0.302316815, 1.50144148},
     {0.50205034, -1.20359182, 2.00015473, 0.0976238623, -0.302793741, 1.50157642}},
    2,
    {"exp_avg", "exp_avg_sq"},
    {{0.00490000844, 0.251292497, 0.0645325035, 0.0829499811, 0.148914993, -0.0378450043},
     {0.00408469792, 0.00408644509, 0.00240131607, 0.00383494818, 0.00290106749, 0.00233869185}},
};
static const ref_case adam_wd_betas_eps_ref = {
    "adam_wd_betas_eps", ZG_ADAM,
    (const zg_hp[]){{ZG_HP_LR, 0.01}, {ZG_HP_BETA1, 0.8}, {ZG_HP_BETA2, 0.95}, {ZG_HP_EPS, 1e-6},
     {ZG_HP_WEIGHT_DECAY, 0.1}}, 5,
    {{0.50999999, -1.21000004, 2.00999999, 0.090000011, -0.309999973, 1.50999999},
     {0.51820749, -1.21924388, 2.00596476, 0.0877865776, -0.318837792, 1.51244736},
     {0.52072835, -1.22229195, 1.9984386, 0.0848817602, -0.320048332, 1.5072366},
     {0.517155945, -1.22578549, 1.99456036, 0.0789382309, -0.321446419, 1.50694299},
     {0.515871286, -1.23195398, 1.98984075, 0.0771293342, -0.326158673, 1.50604868}},
    2,
    {"exp_avg", "exp_avg_sq"},
    {{0.0778262243, 0.345860511, 0.241948962, 0.106201336, 0.238417178, 0.0407243706},
     {0.183668926, 0.157335296, 0.131528005, 0.172508031, 0.128112763, 0.103786573}},
};
static const ref_case adam_amsgrad_maximize_ref = {
    "adam_amsgrad_maximize", ZG_ADAM,
    (const zg_hp[]){{ZG_HP_LR, 0.02}, {ZG_HP_AMSGRAD, 1}, {ZG_HP_MAXIMIZE, 1}, {ZG_HP_WEIGHT_DECAY, 0.05}}, 4,
    {{0.479999989, -1.18000007, 1.98000002, 0.119999997, -0.280000001, 1.48000002},
     {0.462764144, -1.16126323, 1.97404838, 0.125221476, -0.262468696, 1.46754313},
     {0.454516113, -1.15086973, 1.98284554, 0.131397143, -0.257818729, 1.47067523},
     {0.457654268, -1.1396178, 1.98360074, 0.142573059, -0.252873868, 1.46565378},
     {0.457401305, -1.12539387, 1.98531985, 0.147057697, -0.243065566, 1.46090257}},
    3,
    {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    {{0.00469763111, -0.275110304, -0.0239186939, -0.080373235, -0.154407308, 0.0680501983},
     {0.00410502218, 0.00445256429, 0.00230395072, 0.00382297114, 0.00294972141, 0.0024416002},
     {0.00410502218, 0.00445256429, 0.00230395072, 0.00382297114, 0.00294972141, 0.0024416002}},
};
static const ref_case adamw_default_ref = {
    "adamw_default", ZG_ADAMW, NULL, 0,
    {{0.50099498, -1.20098805, 2.0009799, 0.0989990011, -0.300996989, 1.50098503},
     {0.501845658, -1.2019043, 2.00104928, 0.0987316743, -0.301865697, 1.50150859},
     {0.502229512, -1.20236456, 2.00048876, 0.0984154418, -0.302078813, 1.50123668},
     {0.502043545, -1.2028656, 2.00030184, 0.097850956, -0.302304775, 1.5013814},
     {0.502025306, -1.20353162, 2.0000546, 0.0976189151, -0.302778661, 1.50150132}},
    2,
    {"exp_avg", "exp_avg_sq"},
    {{0.00490000844, 0.251292497, 0.0645325035, 0.0829499811, 0.148914993, -0.0378450043},
     {0.00408469792, 0.00408644509, 0.00240131607, 0.00383494818, 0.00290106749, 0.00233869185}},
};
static const ref_case adamw_wd_amsgrad_ref = {
    "adamw_wd_amsgrad", ZG_ADAMW,
    (const zg_hp[]){{ZG_HP_LR, 0.01}, {ZG_HP_WEIGHT_DECAY, 0.05}, {ZG_HP_BETA1, 0.85}, {ZG_HP_BETA2, 0.99},
     {ZG_HP_AMSGRAD, 1}}, 5,
    {{0.509750009, -1.20940006, 2.00900006, 0.0899499953, -0.309850007, 1.50924993},
     {0.51793319, -1.21818197, 2.00860763, 0.0875083283, -0.318546861, 1.51366007},
     {0.521163762, -1.22205806, 2.00180531, 0.0845042914, -0.320279479, 1.50988257},
     {0.518467486, -1.22638977, 1.9991622, 0.0787274018, -0.322183013, 1.51074541},
     {0.517769158, -1.23266149, 1.99586415, 0.0766690373, -0.326917738, 1.51130772}},
    3,
    {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    {{0.0220792964, 0.346938759, 0.0886753127, 0.0983332172, 0.207865089, -0.0503983609},
     {0.0400412306, 0.0402136408, 0.0235722214, 0.0375667885, 0.0285484679, 0.0229356494},
     {0.0400412306, 0.0402136408, 0.0235722214, 0.0375667885, 0.0285484679, 0.0231673215}},
};
static const ref_case rmsprop_default_ref = {
    "rmsprop_default", ZG_RMSPROP, NULL, 0,
    {{0.600000024, -1.30000007, 2.0999999, 7.4505806e-09, -0.399999976, 1.60000002},
     {0.628867507, -1.39403439, 2.03980708, 0.0449013263, -0.497641653, 1.58347952},
     {0.592788994, -1.36153352, 1.95021796, 0.0271374043, -0.442894578, 1.5035888},
     {0.522179008, -1.38532829, 1.99126983, -0.0354937539, -0.452026725, 1.56107581},
     {0.547166109, -1.447662, 1.97498667, 0.00320163369, -0.511211276, 1.56107581}},
    1,
    {"square_avg"},
    {{0.0400412306, 0.0402136408, 0.0235722214, 0.0375667885, 0.0285484679, 0.0229356494}},
};
static const ref_case rmsprop_centered_momentum_wd_ref = {
    "rmsprop_centered_momentum_wd", ZG_RMSPROP,
    (const zg_hp[]){{ZG_HP_LR, 0.01}, {ZG_HP_ALPHA, 0.9}, {ZG_HP_EPS, 1e-6}, {ZG_HP_WEIGHT_DECAY, 0.1},
     {ZG_HP_MOMENTUM, 0.5}, {ZG_HP_CENTERED, 1}}, 6,
    {{0.533333242, -1.23333311, 2.03333306, 0.0666667596, -0.333332837, 1.53333318},
     {0.559273958, -1.2829535, 2.02129626, 0.0646371692, -0.3833884, 1.53598869},
     {0.557979465, -1.29318273, 1.98420119, 0.0572970062, -0.389404267, 1.50854683},
     {0.532778323, -1.30426371, 1.97457051, 0.0309589542, -0.394598395, 1.51083422},
     {0.527947903, -1.33234513, 1.96012843, 0.0314056203, -0.417892784, 1.50847423}},
    3,
    {"square_avg", "grad_avg", "momentum_buffer"},
    {{0.331257343, 0.286436319, 0.237489939, 0.30821842, 0.233323127, 0.186538547},
     {0.0269482154, 0.199355081, 0.146453515, 0.0854409263, 0.133960634, 0.0243012737},
     {0.483041465, 2.80814648, 1.44421148, -0.0446666479, 2.3294394, 0.235996008}},
};
static const ref_case rmsprop_momentum_maximize_ref = {
    "rmsprop_momentum_maximize", ZG_RMSPROP,
    (const zg_hp[]){{ZG_HP_LR, 0.005}, {ZG_HP_MOMENTUM, 0.9}, {ZG_HP_MAXIMIZE, 1}}, 3,
    {{0.449999988, -1.1500001, 1.95000005, 0.150000006, -0.25000003, 1.45000005},
     {0.39056623, -1.05798292, 1.9350965, 0.172549337, -0.156179219, 1.41326022},
     {0.355115116, -0.991417944, 1.96647787, 0.201725706, -0.0991140231, 1.42013979},
     {0.3585141, -0.91961205, 1.97419524, 0.259300023, -0.0431892686, 1.3975879},
     {0.349079609, -0.823819876, 1.98928249, 0.291769207, 0.0367352925, 1.3772912}},
    2,
    {"square_avg", "momentum_buffer"},
    {{0.0400412306, 0.0402136408, 0.0235722214, 0.0375667885, 0.0285484679, 0.0229356494},
     {1.88689685, -19.158432, -3.01744366, -6.49383593, -15.9849129, 4.05934095}},
};
static const ref_case adagrad_default_ref = {
    "adagrad_default", ZG_ADAGRAD, NULL, 0,
    {{0.50999999, -1.21000004, 2.00999999, 0.0900000036, -0.310000002, 1.50999999},
     {0.512873471, -1.21939802, 2.00399995, 0.0944721401, -0.319761872, 1.50835598},
     {0.509295762, -1.21616423, 1.99505568, 0.0927112401, -0.314307332, 1.50039566},
     {0.502282441, -1.21852124, 1.99913812, 0.0865006521, -0.315212697, 1.50611115},
     {0.504753649, -1.22469926, 1.99752653, 0.0903261155, -0.321078569, 1.50611115}},
    1,
    {"sum"},
    {{4.09375, 4.09375, 2.40625, 3.84375, 2.90625, 2.34375}},
};
static const ref_case adagrad_decay_init_wd_ref = {
    "adagrad_decay_init_wd", ZG_ADAGRAD,
    (const zg_hp[]){{ZG_HP_LR, 0.1}, {ZG_HP_LR_DECAY, 0.05}, {ZG_HP_INITIAL_ACCUMULATOR_VALUE, 0.1},
     {ZG_HP_WEIGHT_DECAY, 0.05}}, 4,
    {{0.596825838, -1.28120351, 2.07844639, 0.00303096324, -0.359646797, 1.59055507},
     {0.621892452, -1.36921954, 2.01324463, 0.0444382653, -0.449371815, 1.56535459},
     {0.587767959, -1.33540249, 1.93252027, 0.0287239831, -0.399432957, 1.49146843},
     {0.526509166, -1.35259521, 1.96105385, -0.0244135316, -0.405909628, 1.53638899},
     {0.545773387, -1.40295315, 1.94344783, 0.00703601725, -0.453457385, 1.53226256}},
    1,
    {"sum"},
    {{4.19849539, 3.82831621, 2.71397495, 3.9622674, 2.94827247, 2.40670204}},
};
static const ref_case adagrad_maximize_eps_ref = {
    "adagrad_maximize_eps", ZG_ADAGRAD, (const zg_hp[]){{ZG_HP_LR, 0.05}, {ZG_HP_EPS, 1e-3}, {ZG_HP_MAXIMIZE, 1}}, 3,
    {{0.450039983, -1.15009987, 1.95009983, 0.149960026, -0.250199199, 1.45006657},
     {0.435683578, -1.10314226, 1.98005188, 0.127615333, -0.201432168, 1.45827568},
     {0.453559339, -1.11930084, 2.02474117, 0.136413649, -0.228685081, 1.49804556},
     {0.488608181, -1.10752308, 2.00434208, 0.167449459, -0.224161565, 1.46948683},
     {0.476258248, -1.07664824, 2.01239514, 0.14833191, -0.194849342, 1.46948683}},
    1,
    {"sum"},
    {{4.09375, 4.09375, 2.40625, 3.84375, 2.90625, 2.34375}},
};
static const ref_case *const ref_cases[] = {
    &sgd_plain_ref, &sgd_momentum_dampening_wd_ref, &sgd_nesterov_wd_maximize_ref, &adam_default_ref,
    &adam_wd_betas_eps_ref, &adam_amsgrad_maximize_ref, &adamw_default_ref, &adamw_wd_amsgrad_ref,
    &rmsprop_default_ref, &rmsprop_centered_momentum_wd_ref, &rmsprop_momentum_maximize_ref, &adagrad_default_ref,
    &adagrad_decay_init_wd_ref, &adagrad_maximize_eps_ref};

static const int n_ref_cases = (int)(sizeof ref_cases / sizeof ref_cases[0]);

static zg_optim *ref_optim(const ref_case *c, zg_tensor *p) {
    zg_param_group g = {&p, 1, c->hp, c->n_hp};
    return zg_optim_new_groups(c->kind, &g, 1, NULL);
}

/* ---- the spec's worked examples ----------------------------------------- */

TEST(sgd_spec_example) {
    zg_tensor *p = param1(1.0f);
    zg_optim_config cfg = zg_optim_defaults(ZG_SGD);
    cfg.lr = 0.1;
    cfg.momentum = 0.9;
    cfg.dampening = 0.5;
    cfg.weight_decay = 0.1;
    zg_optim *opt = zg_optim_new(ZG_SGD, &p, 1, &cfg);
    CHECK_PTR(opt);
    set_grad_const(p, 2.0f);
    CHECK_OK(zg_optim_step(opt));
    CHECK_NEAR(zg_tensor_get(p, 0), 0.79, 1e-6);
    CHECK_NEAR(zg_tensor_get(zg_optim_state_buffer(opt, 0, "momentum_buffer"), 0), 2.1, 1e-6);
    CHECK_OK(zg_optim_step(opt));
    CHECK_NEAR(zg_tensor_get(p, 0), 0.49705, 1e-6);
    CHECK_NEAR(zg_tensor_get(zg_optim_state_buffer(opt, 0, "momentum_buffer"), 0), 2.9295, 1e-6);
    CHECK(zg_optim_state_step(opt, 0) == 2);
    zg_optim_free(opt);
    zg_tensor_free(p);
}

TEST(adamw_zero_grad_still_decays) {
    zg_tensor *p = param1(1.0f);
    zg_optim_config cfg = zg_optim_defaults(ZG_ADAMW);
    cfg.lr = 0.1;
    cfg.weight_decay = 0.1;
    zg_optim *opt = zg_optim_new(ZG_ADAMW, &p, 1, &cfg);
    CHECK_PTR(opt);
    set_grad_const(p, 0.0f);
    CHECK_OK(zg_optim_step(opt));
    CHECK_NEAR(zg_tensor_get(p, 0), 0.99, 1e-7);
    zg_optim_free(opt);
    zg_tensor_free(p);
}

TEST(defaults_match_pytorch) {
    zg_optim_config c = zg_optim_defaults(ZG_SGD);
    CHECK(c.lr == 1e-3 && c.momentum == 0 && c.dampening == 0 && c.weight_decay == 0 && !c.nesterov && !c.maximize);
    c = zg_optim_defaults(ZG_ADAM);
    CHECK(c.lr == 1e-3 && c.beta1 == 0.9 && c.beta2 == 0.999 && c.eps == 1e-8 && c.weight_decay == 0 && !c.amsgrad);
    c = zg_optim_defaults(ZG_ADAMW);
    CHECK(c.lr == 1e-3 && c.beta1 == 0.9 && c.beta2 == 0.999 && c.eps == 1e-8 && c.weight_decay == 1e-2);
    c = zg_optim_defaults(ZG_RMSPROP);
    CHECK(c.lr == 1e-2 && c.alpha == 0.99 && c.eps == 1e-8 && c.momentum == 0 && !c.centered);
    c = zg_optim_defaults(ZG_ADAGRAD);
    CHECK(c.lr == 1e-2 && c.lr_decay == 0 && c.eps == 1e-10 && c.initial_accumulator_value == 0);
    /* config NULL means these defaults. */
    zg_tensor *p = param1(1.0f);
    zg_optim *opt = zg_optim_new(ZG_RMSPROP, &p, 1, NULL);
    CHECK_PTR(opt);
    CHECK(zg_optim_get_hparam(opt, 0, ZG_HP_LR) == 1e-2);
    CHECK(zg_optim_get_hparam(opt, 0, ZG_HP_ALPHA) == 0.99);
    CHECK(zg_optim_get_kind(opt) == ZG_RMSPROP);
    zg_optim_free(opt);
    zg_tensor_free(p);
}

/* ---- None vs zero gradients ----------------------------------------------- */

TEST(none_grad_skips_entirely) {
    zg_optim_kind kinds[] = {ZG_SGD, ZG_ADAM, ZG_ADAMW, ZG_RMSPROP, ZG_ADAGRAD};
    for (int k = 0; k < 5; k++) {
        zg_tensor *a = param1(1.0f), *b = param1(1.0f);
        zg_tensor *ps[2] = {a, b};
        zg_optim_config cfg = zg_optim_defaults(kinds[k]);
        cfg.weight_decay = 0.1;
        if (kinds[k] == ZG_SGD || kinds[k] == ZG_RMSPROP) cfg.momentum = 0.9;
        zg_optim *opt = zg_optim_new(kinds[k], ps, 2, &cfg);
        CHECK_PTR(opt);
        /* a has a gradient for one step only, b never. */
        set_grad_const(a, 0.5f);
        uint64_t vb = zg_tensor_version(b);
        CHECK_OK(zg_optim_step(opt));
        float a1 = zg_tensor_get(a, 0);
        CHECK(a1 != 1.0f);
        CHECK(zg_optim_state_step(opt, 0) == 1);
        zg_tensor_zero_grad(a, true);
        CHECK_OK(zg_optim_step(opt));
        CHECK_OK(zg_optim_step(opt));
        /* a: no update (not even momentum or decay), its step count stays. */
        CHECK(zg_tensor_get(a, 0) == a1);
        CHECK(zg_optim_state_step(opt, 0) == 1);
        /* b: no state was ever created, the data was never written. */
        CHECK(zg_tensor_get(b, 0) == 1.0f);
        CHECK(zg_tensor_version(b) == vb);
        CHECK(zg_optim_state_step(opt, 1) == -1);
        CHECK(zg_optim_state_buffer(opt, 1, kinds[k] == ZG_ADAGRAD ? "sum"
                                              : kinds[k] == ZG_RMSPROP ? "square_avg"
                                              : kinds[k] == ZG_SGD ? "momentum_buffer"
                                                                   : "exp_avg") == NULL);
        zg_optim_free(opt);
        zg_tensor_free(a);
        zg_tensor_free(b);
    }
}

TEST(zero_grad_still_updates) {
    /* SGD lr 0.1, momentum 0.9, wd 0.1. Step 1 with g = 1: d = 1 + 0.1 = 1.1,
     * buf = 1.1, p = 1 - 0.11 = 0.89. Step 2 with g = 0: d = 0.089,
     * buf = 0.99 + 0.089 = 1.079, p = 0.89 - 0.1079 = 0.7821. */
    zg_tensor *p = param1(1.0f);
    zg_optim_config cfg = zg_optim_defaults(ZG_SGD);
    cfg.lr = 0.1;
    cfg.momentum = 0.9;
    cfg.weight_decay = 0.1;
    zg_optim *opt = zg_optim_new(ZG_SGD, &p, 1, &cfg);
    set_grad_const(p, 1.0f);
    CHECK_OK(zg_optim_step(opt));
    CHECK_NEAR(zg_tensor_get(p, 0), 0.89, 1e-6);
    zg_optim_zero_grad(opt, false);
    CHECK(zg_tensor_grad(p) != NULL && zg_tensor_get(zg_tensor_grad(p), 0) == 0.0f);
    CHECK_OK(zg_optim_step(opt));
    CHECK_NEAR(zg_tensor_get(p, 0), 0.7821, 1e-6);
    CHECK_NEAR(zg_tensor_get(zg_optim_state_buffer(opt, 0, "momentum_buffer"), 0), 1.079, 1e-6);
    CHECK(zg_optim_state_step(opt, 0) == 2);
    zg_optim_free(opt);
    zg_tensor_free(p);
}

TEST(step_bumps_versions) {
    zg_tensor *p = param1(1.0f);
    zg_optim *opt = zg_optim_new(ZG_ADAM, &p, 1, NULL);
    set_grad_const(p, 1.0f);
    uint64_t v = zg_tensor_version(p);
    CHECK_OK(zg_optim_step(opt));
    CHECK(zg_tensor_version(p) > v);
    zg_optim_free(opt);
    zg_tensor_free(p);
}

/* ---- zero_grad ------------------------------------------------------------ */

TEST(zero_grad_touches_only_own_params) {
    zg_tensor *a = param1(1.0f), *b = param1(2.0f);
    zg_optim *oa = zg_optim_new(ZG_SGD, &a, 1, NULL);
    zg_optim *ob = zg_optim_new(ZG_SGD, &b, 1, NULL);
    set_grad_const(a, 3.0f);
    set_grad_const(b, 4.0f);
    zg_optim_zero_grad(oa, true);
    CHECK(zg_tensor_grad(a) == NULL);
    CHECK(zg_tensor_grad(b) != NULL && zg_tensor_get(zg_tensor_grad(b), 0) == 4.0f);
    /* set_to_none false: the same grad object, zero-filled. */
    zg_tensor *gb = zg_tensor_grad(b);
    zg_optim_zero_grad(ob, false);
    CHECK(zg_tensor_grad(b) == gb);
    CHECK(zg_tensor_get(gb, 0) == 0.0f);
    CHECK(zg_tensor_grad(a) == NULL);
    zg_optim_zero_grad(NULL, true);
    zg_optim_free(oa);
    zg_optim_free(ob);
    zg_tensor_free(a);
    zg_tensor_free(b);
}

/* ---- parameter groups ------------------------------------------------------ */

TEST(groups_defaults_and_per_group_lr) {
    zg_tensor *a = param1(1.0f), *b = param1(1.0f), *c = param1(1.0f);
    zg_tensor *g0[2] = {a, b};
    zg_hp ov1[] = {{ZG_HP_LR, 0.5}, {ZG_HP_MOMENTUM, 0.0}};
    zg_param_group groups[2] = {{g0, 2, NULL, 0}, {&c, 1, ov1, 2}};
    zg_optim_config cfg = zg_optim_defaults(ZG_SGD);
    cfg.lr = 0.1;
    cfg.momentum = 0.9;
    cfg.weight_decay = 0.01;
    zg_optim *opt = zg_optim_new_groups(ZG_SGD, groups, 2, &cfg);
    CHECK_PTR(opt);
    CHECK(zg_optim_num_groups(opt) == 2);
    CHECK(zg_optim_group_size(opt, 0) == 2 && zg_optim_group_size(opt, 1) == 1);
    CHECK(zg_optim_group_param(opt, 0, 1) == b && zg_optim_group_param(opt, 1, 0) == c);
    CHECK(zg_optim_get_hparam(opt, 0, ZG_HP_LR) == 0.1);
    CHECK(zg_optim_get_hparam(opt, 1, ZG_HP_LR) == 0.5);
    CHECK(zg_optim_get_hparam(opt, 1, ZG_HP_MOMENTUM) == 0.0);
    CHECK(zg_optim_get_hparam(opt, 1, ZG_HP_WEIGHT_DECAY) == 0.01); /* from the defaults */
    CHECK(zg_optim_get_hparam(opt, 0, ZG_HP_MOMENTUM) == 0.9);
    set_grad_const(a, 1.0f);
    set_grad_const(b, 1.0f);
    set_grad_const(c, 1.0f);
    CHECK_OK(zg_optim_step(opt));
    CHECK_NEAR(zg_tensor_get(a, 0), 1 - 0.1 * 1.01, 1e-6);
    CHECK_NEAR(zg_tensor_get(c, 0), 1 - 0.5 * 1.01, 1e-6);
    /* Global indices: a 0, b 1, c 2; only group 0 keeps a momentum buffer. */
    CHECK(zg_optim_state_buffer(opt, 1, "momentum_buffer") != NULL);
    CHECK(zg_optim_state_buffer(opt, 2, "momentum_buffer") == NULL);
    CHECK(zg_optim_state_step(opt, 2) == 1);
    zg_optim_free(opt);
    zg_tensor_free(a);
    zg_tensor_free(b);
    zg_tensor_free(c);
}

TEST(add_param_group) {
    zg_tensor *a = param1(1.0f), *b = param1(1.0f), *c = param1(1.0f);
    zg_optim_config cfg = zg_optim_defaults(ZG_ADAM);
    cfg.lr = 0.01;
    cfg.beta1 = 0.5;
    zg_optim *opt = zg_optim_new(ZG_ADAM, &a, 1, &cfg);
    CHECK_PTR(opt);
    zg_hp ov[] = {{ZG_HP_LR, 0.2}};
    zg_param_group g = {&b, 1, ov, 1};
    CHECK_OK(zg_optim_add_param_group(opt, &g));
    CHECK(zg_optim_num_groups(opt) == 2);
    CHECK(zg_optim_get_hparam(opt, 1, ZG_HP_LR) == 0.2);
    CHECK(zg_optim_get_hparam(opt, 1, ZG_HP_BETA1) == 0.5); /* the optimizer's defaults */
    /* a parameter already in a group, also mixed with a new one */
    zg_tensor *dup[2] = {c, a};
    zg_param_group gd = {dup, 2, NULL, 0};
    CHECK_ERR(zg_optim_add_param_group(opt, &gd), "appears in more than one group");
    CHECK(zg_optim_num_groups(opt) == 2);
    zg_hp bad[] = {{ZG_HP_MOMENTUM, 0.9}};
    zg_param_group gb = {&c, 1, bad, 1};
    CHECK_ERR(zg_optim_add_param_group(opt, &gb), "'momentum' is not a hyperparameter of Adam");
    CHECK(zg_optim_num_groups(opt) == 2);
    /* Adam's first step moves each element by lr (m / sqrt(v) = sign g). */
    set_grad_const(a, 3.0f);
    set_grad_const(b, -3.0f);
    CHECK_OK(zg_optim_step(opt));
    CHECK_NEAR(zg_tensor_get(a, 0), 0.99, 1e-6);
    CHECK_NEAR(zg_tensor_get(b, 0), 1.2, 1e-6);
    zg_param_group gc = {&c, 1, NULL, 0};
    CHECK_OK(zg_optim_add_param_group(opt, &gc));
    CHECK(zg_optim_state_step(opt, 2) == -1);
    set_grad_const(c, 1.0f);
    CHECK_OK(zg_optim_step(opt));
    CHECK(zg_optim_state_step(opt, 0) == 2 && zg_optim_state_step(opt, 2) == 1);
    CHECK_NEAR(zg_tensor_get(c, 0), 0.99, 1e-6);
    zg_optim_free(opt);
    zg_tensor_free(a);
    zg_tensor_free(b);
    zg_tensor_free(c);
}

/* ---- errors --------------------------------------------------------------- */

TEST(construction_errors) {
    zg_tensor *a = param1(1.0f), *b = param1(2.0f);
    zg_tensor *ps[3] = {a, b, a};
    CHECK_NULL_ERR(zg_optim_new(ZG_SGD, ps, 0, NULL), "zg_optim_new: optimizer got an empty parameter list");
    CHECK_NULL_ERR(zg_optim_new_groups(ZG_ADAM, NULL, 0, NULL), "empty parameter list");
    zg_param_group empty = {NULL, 0, NULL, 0};
    CHECK_NULL_ERR(zg_optim_new_groups(ZG_ADAM, &empty, 1, NULL), "empty parameter list");
    zg_param_group two[2] = {{&ps[0], 1, NULL, 0}, {&ps[1], 2, NULL, 0}};
    CHECK_NULL_ERR(zg_optim_new_groups(ZG_SGD, two, 2, NULL),
                   "parameter '' appears in more than one group (group 0 index 0 and group 1 index 1)");
    CHECK_NULL_ERR(zg_optim_new((zg_optim_kind)9, ps, 1, NULL), "unknown optimizer kind 9");
    CHECK_NULL_ERR(zg_optim_new(ZG_SGD, NULL, 1, NULL), "bad parameter list");

    zg_optim_config c = zg_optim_defaults(ZG_SGD);
    c.nesterov = true;
    CHECK_NULL_ERR(zg_optim_new(ZG_SGD, ps, 1, &c), "nesterov momentum requires a momentum > 0 and zero dampening");
    c.momentum = 0.9;
    c.dampening = 0.1;
    CHECK_NULL_ERR(zg_optim_new(ZG_SGD, ps, 1, &c), "nesterov momentum requires");
    c = zg_optim_defaults(ZG_SGD);
    c.lr = -0.1;
    CHECK_NULL_ERR(zg_optim_new(ZG_SGD, ps, 1, &c), "zg_optim_new: default invalid lr -0.1");
    c = zg_optim_defaults(ZG_SGD);
    c.momentum = -1;
    CHECK_NULL_ERR(zg_optim_new(ZG_SGD, ps, 1, &c), "invalid momentum -1");
    c = zg_optim_defaults(ZG_RMSPROP);
    c.weight_decay = -0.5;
    CHECK_NULL_ERR(zg_optim_new(ZG_RMSPROP, ps, 1, &c), "invalid weight_decay -0.5");
    c = zg_optim_defaults(ZG_ADAGRAD);
    c.eps = -1e-10;
    CHECK_NULL_ERR(zg_optim_new(ZG_ADAGRAD, ps, 1, &c), "invalid eps");
    c = zg_optim_defaults(ZG_ADAGRAD);
    c.initial_accumulator_value = -1;
    CHECK_NULL_ERR(zg_optim_new(ZG_ADAGRAD, ps, 1, &c), "invalid initial_accumulator_value");
    c = zg_optim_defaults(ZG_ADAM);
    c.beta1 = 1.0;
    CHECK_NULL_ERR(zg_optim_new(ZG_ADAM, ps, 1, &c), "invalid beta1 1 (must be in [0, 1))");
    c = zg_optim_defaults(ZG_ADAMW);
    c.beta2 = -0.1;
    CHECK_NULL_ERR(zg_optim_new(ZG_ADAMW, ps, 1, &c), "invalid beta2 -0.1");
    c = zg_optim_defaults(ZG_ADAM);
    c.lr = NAN;
    CHECK_NULL_ERR(zg_optim_new(ZG_ADAM, ps, 1, &c), "invalid lr");
    /* A field of another kind is ignored (Adam has no momentum). */
    c = zg_optim_defaults(ZG_ADAM);
    c.momentum = -5;
    zg_optim *ok = zg_optim_new(ZG_ADAM, ps, 1, &c);
    CHECK_PTR(ok);
    zg_optim_free(ok);

    /* Overrides: wrong key for the kind, invalid values, set twice. */
    zg_hp o1[] = {{ZG_HP_BETA1, 0.9}};
    zg_param_group g1 = {ps, 1, o1, 1};
    CHECK_NULL_ERR(zg_optim_new_groups(ZG_SGD, &g1, 1, NULL), "group 0: 'beta1' is not a hyperparameter of SGD");
    zg_hp o2[] = {{ZG_HP_LR, -1}};
    zg_param_group g2[2] = {{ps, 1, NULL, 0}, {ps + 1, 1, o2, 1}};
    CHECK_NULL_ERR(zg_optim_new_groups(ZG_ADAGRAD, g2, 2, NULL), "group 1: invalid lr -1");
    zg_hp o3[] = {{ZG_HP_BETA2, 1.5}};
    zg_param_group g3 = {ps, 1, o3, 1};
    CHECK_NULL_ERR(zg_optim_new_groups(ZG_ADAM, &g3, 1, NULL), "invalid beta2 1.5");
    zg_hp o4[] = {{ZG_HP_NESTEROV, 1}};
    zg_param_group g4 = {ps, 1, o4, 1};
    CHECK_NULL_ERR(zg_optim_new_groups(ZG_SGD, &g4, 1, NULL), "nesterov momentum requires");
    zg_hp o5[] = {{ZG_HP_LR, 0.1}, {ZG_HP_LR, 0.2}};
    zg_param_group g5 = {ps, 1, o5, 2};
    CHECK_NULL_ERR(zg_optim_new_groups(ZG_SGD, &g5, 1, NULL), "'lr' is set twice");
    zg_hp o6[] = {{(zg_hparam)99, 0.1}};
    zg_param_group g6 = {ps, 1, o6, 1};
    CHECK_NULL_ERR(zg_optim_new_groups(ZG_SGD, &g6, 1, NULL), "unknown hyperparameter key 99");
    zg_hp o7[] = {{ZG_HP_CENTERED, 2}};
    zg_param_group g7 = {ps, 1, o7, 1};
    CHECK_NULL_ERR(zg_optim_new_groups(ZG_RMSPROP, &g7, 1, NULL), "invalid centered 2 (must be 0 or 1)");

    /* Parameters: NULL, arena, non-leaf. */
    zg_tensor *nul[1] = {NULL};
    CHECK_NULL_ERR(zg_optim_new(ZG_SGD, nul, 1, NULL), "parameter 0 is NULL");
    zg_tensor *arena = zg_detach(a);
    zg_tensor_set_requires_grad(arena, true);
    CHECK_NULL_ERR(zg_optim_new(ZG_SGD, &arena, 1, NULL), "persistent");
    zg_tensor *y = zg_mul_scalar(a, 2.0f);
    CHECK(y && !zg_tensor_is_leaf(y));
    zg_tensor *mixed[2] = {b, y};
    CHECK_NULL_ERR(zg_optim_new(ZG_SGD, mixed, 2, NULL), "parameter 1");
    CHECK_NULL_ERR(zg_optim_new(ZG_SGD, mixed, 2, NULL), "can't optimize a non-leaf tensor");
    zg_tensor_free(a);
    zg_tensor_free(b);
}

TEST(hparam_access_errors) {
    zg_tensor *p = param1(1.0f);
    zg_optim_config cfg = zg_optim_defaults(ZG_SGD);
    cfg.momentum = 0.9;
    cfg.nesterov = true;
    zg_optim *opt = zg_optim_new(ZG_SGD, &p, 1, &cfg);
    CHECK_PTR(opt);
    CHECK_ERR(zg_optim_set_hparam(opt, 0, ZG_HP_LR, -0.5), "zg_optim_set_hparam: group 0: invalid lr -0.5");
    CHECK(zg_optim_get_hparam(opt, 0, ZG_HP_LR) == 1e-3);
    /* nesterov stays valid: momentum cannot drop to 0 nor dampening rise */
    CHECK_ERR(zg_optim_set_hparam(opt, 0, ZG_HP_MOMENTUM, 0), "nesterov momentum requires");
    CHECK_ERR(zg_optim_set_hparam(opt, 0, ZG_HP_DAMPENING, 0.5), "nesterov momentum requires");
    CHECK(zg_optim_get_hparam(opt, 0, ZG_HP_MOMENTUM) == 0.9);
    CHECK_ERR(zg_optim_set_hparam(opt, 0, ZG_HP_EPS, 1e-3), "'eps' is not a hyperparameter of SGD");
    CHECK_ERR(zg_optim_set_hparam(opt, 1, ZG_HP_LR, 0.1), "group 1 out of range (1 groups)");
    CHECK_ERR(zg_optim_set_hparam(NULL, 0, ZG_HP_LR, 0.1), "optimizer is NULL");
    zg_clear_error();
    CHECK(isnan(zg_optim_get_hparam(opt, 0, ZG_HP_BETA1)));
    CHECK(strstr(zg_last_error(), "'beta1' is not a hyperparameter of SGD") != NULL);
    CHECK(isnan(zg_optim_get_hparam(opt, 3, ZG_HP_LR)));
    CHECK_ERR(zg_optim_group_size(opt, -1), "group -1 out of range");
    CHECK_NULL_ERR(zg_optim_group_param(opt, 0, 1), "index 1 out of range");
    CHECK_ERR((int)zg_optim_state_step(opt, 1), "parameter index 1 out of range");
    CHECK_NULL_ERR(zg_optim_state_buffer(opt, 0, "exp_avg"), "SGD has no state buffer 'exp_avg'");
    CHECK_NULL_ERR(zg_optim_state_buffer(opt, 5, "momentum_buffer"), "out of range");
    CHECK_ERR(zg_optim_step(NULL), "zg_optim_step: optimizer is NULL");
    CHECK_ERR(zg_optim_add_param_group(opt, NULL), "group 1 is NULL");
    zg_optim_free(opt);
    zg_optim_free(NULL);
    zg_tensor_free(p);
}

/* ---- hyperparameters are re-read on every step ------------------------------ */

TEST(step_rereads_hparams) {
    zg_tensor *p = param1(1.0f);
    zg_optim_config cfg = zg_optim_defaults(ZG_SGD);
    cfg.lr = 0.1;
    zg_optim *opt = zg_optim_new(ZG_SGD, &p, 1, &cfg);
    set_grad_const(p, 1.0f);
    CHECK_OK(zg_optim_step(opt));
    CHECK_NEAR(zg_tensor_get(p, 0), 0.9, 1e-7);
    CHECK_OK(zg_optim_set_hparam(opt, 0, ZG_HP_LR, 0.01));
    CHECK(zg_optim_get_hparam(opt, 0, ZG_HP_LR) == 0.01);
    CHECK_OK(zg_optim_step(opt));
    CHECK_NEAR(zg_tensor_get(p, 0), 0.89, 1e-6);
    /* Turning momentum on later: the buffer starts as the gradient. */
    CHECK_OK(zg_optim_set_hparam(opt, 0, ZG_HP_MOMENTUM, 0.5));
    CHECK_OK(zg_optim_step(opt));
    CHECK_NEAR(zg_tensor_get(p, 0), 0.88, 1e-6);
    CHECK_OK(zg_optim_step(opt)); /* buf = 0.5 * 1 + 1 = 1.5 */
    CHECK_NEAR(zg_tensor_get(p, 0), 0.865, 1e-6);
    CHECK_OK(zg_optim_set_hparam(opt, 0, ZG_HP_MAXIMIZE, 1));
    CHECK_OK(zg_optim_step(opt)); /* buf = 0.75 - 1 = -0.25 */
    CHECK_NEAR(zg_tensor_get(p, 0), 0.8675, 1e-6);
    zg_optim_free(opt);
    zg_tensor_free(p);

    /* Adam: halving lr halves the next step (same state otherwise). */
    zg_tensor *a = param1(1.0f), *b = param1(1.0f);
    zg_optim *oa = zg_optim_new(ZG_ADAM, &a, 1, NULL), *ob = zg_optim_new(ZG_ADAM, &b, 1, NULL);
    for (int t = 0; t < 3; t++) {
        set_grad_const(a, 0.3f * (float)(t + 1));
        set_grad_const(b, 0.3f * (float)(t + 1));
        if (t == 2) CHECK_OK(zg_optim_set_hparam(ob, 0, ZG_HP_LR, 5e-4));
        float a0 = zg_tensor_get(a, 0), b0 = zg_tensor_get(b, 0);
        CHECK_OK(zg_optim_step(oa));
        CHECK_OK(zg_optim_step(ob));
        if (t == 2) CHECK_NEAR((zg_tensor_get(b, 0) - b0) / (zg_tensor_get(a, 0) - a0), 0.5, 1e-3);
    }
    zg_optim_free(oa);
    zg_optim_free(ob);
    zg_tensor_free(a);
    zg_tensor_free(b);
}

/* ---- every kind against PyTorch -------------------------------------------- */

static void run_ref_case(const ref_case *c, int64_t numel) {
    zg_tensor *p = ref_param(numel);
    zg_optim *opt = ref_optim(c, p);
    CHECK_PTR(opt);
    if (!opt) {
        zg_tensor_free(p);
        return;
    }
    for (int t = 0; t < 5; t++) {
        set_ref_grad(p, t);
        CHECK_OK(zg_optim_step(opt));
        if (!close_to(p, c->steps[t], 6)) {
            zgt_fail(__FILE__, __LINE__, "%s (%lld elements): parameter after step %d differs from PyTorch", c->name,
                     (long long)numel, t + 1);
            break;
        }
    }
    CHECK(zg_optim_state_step(opt, 0) == 5);
    for (int b = 0; b < c->n_bufs; b++) {
        zg_tensor *buf = zg_optim_state_buffer(opt, 0, c->bufs[b]);
        if (!close_to(buf, c->buf_vals[b], 6))
            zgt_fail(__FILE__, __LINE__, "%s: state '%s' differs from PyTorch", c->name, c->bufs[b]);
    }
    zg_optim_free(opt);
    zg_tensor_free(p);
}

TEST(matches_pytorch_five_steps) {
    for (int i = 0; i < n_ref_cases; i++) run_ref_case(ref_cases[i], 6);
}

/* Large enough for the parallel element loop: every element still follows
 * its own sequence exactly. */
TEST(matches_pytorch_large_parameter) {
    for (int i = 0; i < n_ref_cases; i++) run_ref_case(ref_cases[i], 6 * 40000 + 6);
}

/* ---- state_dict round trip ------------------------------------------------- */

static zg_tensor *clone_param(zg_tensor *p) {
    zg_tensor *c = zg_tensor_clone(p);
    zg_tensor_set_requires_grad(c, true);
    return c;
}

/* Two groups: {p, frozen} with the case's options, {q} with lr 0.02; frozen
 * never gets a gradient (so it has no state). */
static zg_optim *roundtrip_optim(const ref_case *c, zg_tensor **ps) {
    zg_param_group g[2] = {{ps, 2, c->hp, c->n_hp}, {ps + 2, 1, (const zg_hp[]){{ZG_HP_LR, 0.02}}, 1}};
    return zg_optim_new_groups(c->kind, g, 2, NULL);
}

TEST(save_load_round_trip) {
    char path[256];
    tmp_path(path, sizeof path, "roundtrip");
    for (int ci = 0; ci < n_ref_cases; ci++) {
        const ref_case *c = ref_cases[ci];
        zg_tensor *ps[3] = {ref_param(6), param1(4.0f), ref_param(6)};
        zg_optim *opt = roundtrip_optim(c, ps);
        CHECK_PTR(opt);
        for (int t = 0; t < 3; t++) {
            set_ref_grad(ps[0], t);
            set_ref_grad(ps[2], 4 - t);
            CHECK_OK(zg_optim_step(opt));
        }
        CHECK_OK(zg_optim_save(opt, path));

        /* A fresh optimizer over copies, built with other hyperparameters:
         * load restores them along with the state. */
        zg_tensor *qs[3] = {clone_param(ps[0]), clone_param(ps[1]), clone_param(ps[2])};
        zg_param_group g[2] = {{qs, 2, NULL, 0}, {qs + 2, 1, NULL, 0}};
        zg_optim *fresh = zg_optim_new_groups(c->kind, g, 2, NULL);
        CHECK_PTR(fresh);
        CHECK_OK(zg_optim_load(fresh, path));
        for (int gi = 0; gi < 2; gi++)
            for (int k = 0; k < ZG_HP_COUNT; k++) {
                zg_clear_error();
                double x = zg_optim_get_hparam(opt, gi, (zg_hparam)k), y = zg_optim_get_hparam(fresh, gi, (zg_hparam)k);
                CHECK((isnan(x) && isnan(y)) || x == y);
            }
        CHECK(zg_optim_state_step(fresh, 0) == 3 && zg_optim_state_step(fresh, 2) == 3);
        CHECK(zg_optim_state_step(fresh, 1) == -1);
        for (int t = 3; t < 5; t++) {
            for (int k = 0; k < 2; k++) {
                zg_tensor *x = k ? qs[0] : ps[0], *z = k ? qs[2] : ps[2];
                set_ref_grad(x, t);
                set_ref_grad(z, 4 - t);
            }
            CHECK_OK(zg_optim_step(opt));
            CHECK_OK(zg_optim_step(fresh));
        }
        for (int i = 0; i < 3; i++)
            if (!same_values(ps[i], qs[i]))
                zgt_fail(__FILE__, __LINE__, "%s: parameter %d differs after load", c->name, i);
        for (int b = 0; b < c->n_bufs; b++)
            for (int i = 0; i < 3; i += 2) {
                /* group 1 runs with the kind's defaults: maybe no such buffer */
                zg_tensor *x = zg_optim_state_buffer(opt, i, c->bufs[b]);
                zg_tensor *y = zg_optim_state_buffer(fresh, i, c->bufs[b]);
                if ((x || y || i == 0) && !same_values(x, y))
                    zgt_fail(__FILE__, __LINE__, "%s: state '%s' of parameter %d differs after load", c->name,
                             c->bufs[b], i);
            }
        /* The first group followed the PyTorch reference all along. */
        if (!close_to(qs[0], c->steps[4], 6))
            zgt_fail(__FILE__, __LINE__, "%s: not PyTorch's values after load", c->name);
        zg_optim_free(opt);
        zg_optim_free(fresh);
        for (int i = 0; i < 3; i++) {
            zg_tensor_free(ps[i]);
            zg_tensor_free(qs[i]);
        }
    }
    remove(path);
}

/* Everything observable about an optimizer with two parameters. */
typedef struct {
    int64_t steps[2];
    float buf[2][6];
    double hp[ZG_HP_COUNT];
} snapshot;

static snapshot snap(const zg_optim *opt, const char *bufname) {
    snapshot s;
    memset(&s, 0, sizeof s);
    for (int i = 0; i < 2; i++) {
        s.steps[i] = zg_optim_state_step(opt, i);
        zg_tensor *b = zg_optim_state_buffer(opt, i, bufname);
        for (int64_t j = 0; b && j < zg_tensor_numel(b); j++) s.buf[i][j] = zg_tensor_get(b, j);
    }
    for (int k = 0; k < ZG_HP_COUNT; k++) {
        double v = zg_optim_get_hparam(opt, 0, (zg_hparam)k);
        s.hp[k] = isnan(v) ? -1 : v;
    }
    zg_clear_error();
    return s;
}

static bool same_snapshot(const snapshot *a, const snapshot *b) { return memcmp(a, b, sizeof *a) == 0; }

/* Writes an optimizer-state-like file with the given entries. */
static void write_file(const char *path, zg_tensor **ts, const char **names, int n, const char **keys,
                       const char **vals, int n_meta) {
    CHECK_OK(zg_safetensors_write(path, ts, names, n, keys, vals, n_meta));
}

TEST(load_errors_leave_optimizer_unchanged) {
    char path[256], other[256];
    tmp_path(path, sizeof path, "loaderr");
    tmp_path(other, sizeof other, "loaderr_other");
    zg_tensor *p = ref_param(6), *q = param1(1.0f);
    zg_tensor *ps[2] = {p, q};
    zg_optim_config cfg = zg_optim_defaults(ZG_ADAM);
    cfg.lr = 0.05;
    zg_optim *opt = zg_optim_new(ZG_ADAM, ps, 2, &cfg);
    for (int t = 0; t < 2; t++) {
        set_ref_grad(p, t);
        set_grad_const(q, 1.0f);
        CHECK_OK(zg_optim_step(opt));
    }
    CHECK_OK(zg_optim_save(opt, path));
    snapshot before = snap(opt, "exp_avg");
    CHECK(before.steps[0] == 2 && before.buf[0][1] != 0);

    /* A different kind. */
    zg_tensor *sp[2] = {clone_param(p), clone_param(q)};
    zg_optim *sgd = zg_optim_new(ZG_SGD, sp, 2, NULL);
    set_grad_const(sp[0], 1.0f);
    CHECK_OK(zg_optim_step(sgd));
    CHECK_OK(zg_optim_save(sgd, other));
    CHECK_ERR(zg_optim_load(opt, other), "holds the state of a 'sgd' optimizer, this one is 'adam'");
    snapshot now = snap(opt, "exp_avg");
    CHECK(same_snapshot(&before, &now));
    CHECK_ERR(zg_optim_load(sgd, path), "holds the state of a 'adam' optimizer, this one is 'sgd'");

    /* Other group structures: sizes [1,1] instead of [2]; 1 group of 1. */
    zg_tensor *cp = clone_param(p), *cq = clone_param(q);
    zg_param_group g2[2] = {{&cp, 1, NULL, 0}, {&cq, 1, NULL, 0}};
    zg_optim *split = zg_optim_new_groups(ZG_ADAM, g2, 2, NULL);
    CHECK_OK(zg_optim_save(split, other));
    CHECK_ERR(zg_optim_load(opt, other), "has 2 parameter groups, the optimizer has 1");
    CHECK_ERR(zg_optim_load(split, path), "has 1 parameter groups, the optimizer has 2");
    zg_optim *single = zg_optim_new(ZG_ADAM, &cp, 1, NULL);
    CHECK_OK(zg_optim_save(single, other));
    CHECK_ERR(zg_optim_load(opt, other), "group 0 has 1 parameters in the file, 2 in the optimizer");
    /* Same sizes, other shapes: parameter 0 is [1] there, [2,3] here. */
    zg_tensor *swapped[2] = {clone_param(q), clone_param(p)};
    zg_optim *sw = zg_optim_new(ZG_ADAM, swapped, 2, NULL);
    set_grad_const(swapped[0], 1.0f);
    CHECK_OK(zg_optim_step(sw));
    CHECK_OK(zg_optim_save(sw, other));
    CHECK_ERR(zg_optim_load(opt, other), "entry 'state.0.exp_avg' is float32 [1], parameter 0 is float32 [2,3]");
    now = snap(opt, "exp_avg");
    CHECK(same_snapshot(&before, &now));

    /* Corrupt files: truncated, garbage, missing. */
    FILE *f = fopen(path, "rb");
    char bytes[4096];
    size_t nb = f ? fread(bytes, 1, sizeof bytes, f) : 0;
    if (f) fclose(f);
    CHECK(nb > 100);
    f = fopen(other, "wb");
    fwrite(bytes, 1, nb - 10, f);
    fclose(f);
    CHECK_ERR(zg_optim_load(opt, other), "zg_optim_load: zg_safetensors_read");
    f = fopen(other, "wb");
    fputs("this is not a safetensors file at all", f);
    fclose(f);
    CHECK_ERR(zg_optim_load(opt, other), "zg_optim_load: zg_safetensors_read");
    CHECK(zg_optim_load(opt, other) == ZG_ERR_FORMAT);
    remove(other);
    CHECK(zg_optim_load(opt, other) == ZG_ERR_IO);
    now = snap(opt, "exp_avg");
    CHECK(same_snapshot(&before, &now));

    /* Hand-made files: a weights file, a missing buffer, an extra entry, a
     * missing hyperparameter, an invalid one, a bad step. */
    zg_tensor *w = zg_zeros((const int64_t[]){2, 3}, 2), *w1 = zg_zeros((const int64_t[]){1}, 1);
    zg_tensor *step = zg_tensor_new(ZG_INT64, NULL, 0);
    zg_tensor_data_i64(step)[0] = 7;
    const char *keys[] = {"format", "kind", "num_groups", "param_groups.0.params", "param_groups.0.lr",
                          "param_groups.0.weight_decay", "param_groups.0.beta1", "param_groups.0.beta2",
                          "param_groups.0.eps", "param_groups.0.amsgrad", "param_groups.0.maximize"};
    const char *vals[] = {"zgrad.optim.v1", "adam", "1", "0,1", "0.5", "0", "0.9", "0.999", "1e-8", "0", "0"};
    zg_tensor *ts[4] = {step, w, w, w1};
    const char *full[] = {"state.0.step", "state.0.exp_avg", "state.0.exp_avg_sq", "state.0.max_exp_avg_sq"};
    /* The valid file first (a sanity check of the hand-made layout). */
    zg_tensor *vp[2] = {clone_param(p), clone_param(q)};
    zg_optim *valid = zg_optim_new(ZG_ADAM, vp, 2, NULL);
    ts[3] = w;
    write_file(other, ts, full, 4, keys, vals, 11);
    CHECK_OK(zg_optim_load(valid, other));
    CHECK(zg_optim_state_step(valid, 0) == 7 && zg_optim_state_step(valid, 1) == -1);
    CHECK(zg_optim_get_hparam(valid, 0, ZG_HP_LR) == 0.5);

    write_file(other, ts, full, 3, NULL, NULL, 0);
    CHECK_ERR(zg_optim_load(opt, other), "is not an optimizer state file");
    write_file(other, ts, full, 2, keys, vals, 11);
    CHECK_ERR(zg_optim_load(opt, other), "entry 'state.0.exp_avg_sq' is missing");
    const char *no_step[] = {"state.0.exp_avg", "state.0.exp_avg_sq"};
    write_file(other, ts + 1, no_step, 2, keys, vals, 11);
    CHECK_ERR(zg_optim_load(opt, other), "entry 'state.0.step' is missing");
    const char *extra[] = {"state.0.step", "state.0.exp_avg", "state.0.exp_avg_sq", "state.0.sum"};
    write_file(other, ts, extra, 4, keys, vals, 11);
    CHECK_ERR(zg_optim_load(opt, other), "unexpected entry 'state.0.sum' (Adam has no state 'sum')");
    const char *stray[] = {"state.0.step", "state.0.exp_avg", "state.0.exp_avg_sq", "weights"};
    write_file(other, ts, stray, 4, keys, vals, 11);
    CHECK_ERR(zg_optim_load(opt, other), "unexpected entry 'weights'");
    const char *far[] = {"state.0.step", "state.0.exp_avg", "state.0.exp_avg_sq", "state.5.step"};
    ts[3] = step;
    write_file(other, ts, far, 4, keys, vals, 11);
    CHECK_ERR(zg_optim_load(opt, other), "names parameter 5, which is in no group");
    write_file(other, ts, full, 3, keys, vals, 10);
    CHECK_ERR(zg_optim_load(opt, other), "metadata 'param_groups.0.maximize' is missing or not a number");
    vals[6] = "1.5";
    write_file(other, ts, full, 3, keys, vals, 11);
    CHECK_ERR(zg_optim_load(opt, other), "group 0: invalid beta1 1.5");
    vals[6] = "0.9";
    vals[3] = "0,0";
    write_file(other, ts, full, 3, keys, vals, 11);
    CHECK_ERR(zg_optim_load(opt, other), "parameter index 0 is out of range or repeated");
    vals[3] = "0,x";
    write_file(other, ts, full, 3, keys, vals, 11);
    CHECK_ERR(zg_optim_load(opt, other), "is not a list of indices");
    vals[3] = "0,1";
    zg_tensor *bad_step = zg_full(NULL, 0, 3.0f);
    zg_tensor *ts2[3] = {bad_step, w, w};
    write_file(other, ts2, full, 3, keys, vals, 11);
    CHECK_ERR(zg_optim_load(opt, other), "must be one non-negative int64 step count");
    now = snap(opt, "exp_avg");
    CHECK(same_snapshot(&before, &now));
    CHECK_ERR(zg_optim_load(NULL, path), "NULL argument");
    CHECK_ERR(zg_optim_save(opt, NULL), "NULL argument");
    CHECK_ERR(zg_optim_save(opt, "/nonexistent-zgrad-dir/opt.safetensors"), "zg_optim_save: zg_safetensors_write");
    CHECK(zg_optim_save(opt, "/nonexistent-zgrad-dir/opt.safetensors") == ZG_ERR_IO);

    /* And the original file still loads. */
    CHECK_OK(zg_optim_load(opt, path));
    now = snap(opt, "exp_avg");
    CHECK(same_snapshot(&before, &now));

    zg_tensor *all[] = {p, q, sp[0], sp[1], cp, cq, swapped[0], swapped[1], w, w1, step, vp[0], vp[1], bad_step};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) zg_tensor_free(all[i]);
    zg_optim *opts[] = {opt, sgd, split, single, sw, valid};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) zg_optim_free(opts[i]);
    remove(path);
    remove(other);
}

/* ---- PyTorch 2.x: frozen and repeated parameters --------------------------
 * tests/parity/optim_reference_torch2.py, run by PyTorch 2.x. */

static const char *const torch2_sources[] = {"tests/parity/optim_reference_torch2.py", "tests/parity/torch_reference.py"};
static const char *const torch2_files[] = {"optim_torch2"};
static zgt_refset torch2_refs = {torch2_sources, 2, torch2_files, 1, NULL, 0};

/* zgrad's optimizer of the reference's case (the group [a, b, a]). */
static zg_optim *dup_optim(const char *c, zg_tensor *const *ps) {
    zg_optim_kind kind = ZG_SGD;
    zg_optim_config cfg = zg_optim_defaults(ZG_SGD);
    if (!strncmp(c, "adam", 4)) kind = strcmp(c, "adamw") ? ZG_ADAM : ZG_ADAMW;
    else if (!strcmp(c, "rmsprop")) kind = ZG_RMSPROP;
    else if (!strcmp(c, "adagrad")) kind = ZG_ADAGRAD;
    cfg = zg_optim_defaults(kind);
    cfg.lr = kind == ZG_RMSPROP ? 0.01 : 0.1;
    if (!strcmp(c, "sgd_momentum")) cfg.momentum = 0.9, cfg.dampening = 0.2, cfg.weight_decay = 0.1;
    if (!strcmp(c, "sgd_nesterov")) cfg.momentum = 0.9, cfg.nesterov = true;
    if (!strcmp(c, "adam")) cfg.weight_decay = 0.1;
    if (!strcmp(c, "adam_amsgrad")) cfg.amsgrad = true;
    if (kind == ZG_RMSPROP) cfg.momentum = 0.5, cfg.centered = true;
    if (kind == ZG_ADAGRAD) cfg.lr_decay = 0.01, cfg.initial_accumulator_value = 0.1;
    return zg_optim_new(kind, ps, 3, &cfg);
}

static double worst_dup;

static void dup_case(const zg_safetensors *st, const char *c) {
    zg_tensor *a = zg_tensor_clone(zgt_ref_get(st, "dup.a0")), *b = zg_tensor_clone(zgt_ref_get(st, "dup.b0"));
    const zg_tensor *ga = zgt_ref_get(st, "dup.ga"), *gb = zgt_ref_get(st, "dup.gb");
    if (!a || !b || !ga || !gb) return;
    zg_tensor_set_requires_grad(a, true);
    zg_tensor_set_requires_grad(b, true);
    zg_tensor *ps[3] = {a, b, a};
    zg_optim *opt = dup_optim(c, ps);
    CHECK_PTR(opt);
    for (int s = 0; opt && s < 3; s++) {
        zg_tensor *g = zg_mul_scalar((zg_tensor *)ga, (float)(s + 1));
        CHECK_OK(zg_tensor_set_grad(a, g));
        CHECK_OK(zg_tensor_set_grad(b, gb));
        CHECK_OK(zg_optim_step(opt));
        char what[64];
        snprintf(what, sizeof what, "%s: a after step %d", c, s);
        CHECK_REF(what, a, zgt_ref_get(st, "dup.%s.a.%d", c, s), 1e-6, &worst_dup);
        snprintf(what, sizeof what, "%s: b after step %d", c, s);
        CHECK_REF(what, b, zgt_ref_get(st, "dup.%s.b.%d", c, s), 1e-6, &worst_dup);
        zg_arena_reset();
    }
    /* One state, at the first listing: the step count advanced twice a step. */
    const zg_tensor *step = zgt_ref_get(st, "dup.%s.step", c);
    if (opt && step && zg_tensor_get(step, 0) >= 0) {
        CHECK(zg_optim_state_step(opt, 0) == (int64_t)zg_tensor_get(step, 0));
        CHECK(zg_optim_state_step(opt, 2) == zg_optim_state_step(opt, 0));
    }
    zg_optim_free(opt);
    zg_tensor_free(a);
    zg_tensor_free(b);
}

/* A group listing a parameter twice: PyTorch 2.x warns and updates it
 * once per listing, one state shared (SGD's first step starts the
 * momentum from each listing's gradient). Every optimizer kind. */
TEST(repeated_parameter_matches_pytorch_2x) {
    zg_safetensors *st = zgt_refs_open(&torch2_refs, "optim_torch2");
    if (!st) return;
    const char *cases = zg_safetensors_metadata(st, "dup_cases");
    CHECK(cases != NULL);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", cases ? cases : "");
    int n = 0;
    char *save = NULL;
    for (char *c = strtok_r(buf, ",", &save); c; c = strtok_r(NULL, ",", &save), n++) dup_case(st, c);
    CHECK(n == 8);
    printf("repeated parameter vs PyTorch %s: %d optimizers, worst relative error %.3g\n",
           zg_safetensors_metadata(st, "torch"), n, worst_dup);
    zg_safetensors_free(st);
}

/* Its state saves under the first listing and loads back; a file with
 * state at a repeated listing is refused. */
TEST(repeated_parameter_state_round_trip) {
    zg_tensor *a = param1(1.0f), *b = param1(2.0f);
    zg_tensor *ps[3] = {a, b, a};
    zg_optim *opt = zg_optim_new(ZG_ADAM, ps, 3, NULL), *other = zg_optim_new(ZG_ADAM, ps, 3, NULL);
    zg_tensor *c = param1(0.0f);
    zg_tensor *qs[3] = {a, b, c};
    zg_optim *plain = zg_optim_new(ZG_ADAM, qs, 3, NULL);
    CHECK_PTR(opt);
    CHECK_PTR(plain);
    char path[256];
    tmp_path(path, sizeof path, "dup");
    if (opt && other && plain) {
        set_grad_const(a, 1.0f);
        set_grad_const(b, 1.0f);
        set_grad_const(c, 1.0f);
        CHECK_OK(zg_optim_step(opt));
        CHECK(zg_optim_state_step(opt, 0) == 2 && zg_optim_state_step(opt, 1) == 1);
        CHECK_OK(zg_optim_save(opt, path));
        CHECK_OK(zg_optim_load(other, path));
        CHECK(zg_optim_state_step(other, 2) == 2);
        CHECK(same_values(zg_optim_state_buffer(other, 2, "exp_avg"), zg_optim_state_buffer(opt, 0, "exp_avg")));
        CHECK_OK(zg_optim_step(plain));
        CHECK_OK(zg_optim_save(plain, path));
        CHECK_ERR(zg_optim_load(other, path), "entry 'state.2.step' is state of parameter 2, which its group lists again");
        CHECK(zg_optim_state_step(other, 0) == 2);
    }
    unlink(path);
    zg_optim_free(opt);
    zg_optim_free(other);
    zg_optim_free(plain);
    zg_tensor_free(a);
    zg_tensor_free(b);
    zg_tensor_free(c);
}

/* Linear(4, 3), tanh, Linear(3, 2), mse_loss, as the reference builds it. */
static zg_tensor *frozen_loss(zg_tensor *const *p, zg_tensor *x, zg_tensor *t) {
    zg_tensor *h = zg_tanh(zg_linear(x, p[0], p[1]));
    return zg_mse_loss(zg_linear(h, p[2], p[3]), t, ZG_REDUCTION_MEAN);
}

/* Adam over all of a model whose first layer is frozen (requires_grad
 * false): its grads stay None, so steps skip it; unfrozen, it trains from
 * a fresh state. PyTorch accepts frozen parameters; zgrad refused them. */
TEST(frozen_parameters_match_pytorch) {
    zg_safetensors *st = zgt_refs_open(&torch2_refs, "optim_torch2");
    if (!st) return;
    zg_tensor *p[4], *x = zgt_ref_get(st, "frozen.x"), *t = zgt_ref_get(st, "frozen.t");
    for (int j = 0; j < 4; j++) {
        p[j] = zg_tensor_clone(zgt_ref_get(st, "frozen.init.%d", j));
        CHECK_PTR(p[j]);
        if (p[j]) zg_tensor_set_requires_grad(p[j], j >= 2);
    }
    zg_optim_config cfg = zg_optim_defaults(ZG_ADAM);
    cfg.lr = 0.05;
    zg_optim *opt = p[0] && p[1] && p[2] && p[3] ? zg_optim_new(ZG_ADAM, p, 4, &cfg) : NULL;
    CHECK_PTR(opt);
    double worst = 0;
    for (int s = 0; opt && x && t && s < 6; s++) {
        if (s == 3) {
            zg_tensor_set_requires_grad(p[0], true);
            zg_tensor_set_requires_grad(p[1], true);
        }
        zg_optim_zero_grad(opt, true);
        CHECK_OK(zg_backward(frozen_loss(p, x, t), NULL));
        if (s < 3) CHECK(zg_tensor_grad(p[0]) == NULL && zg_tensor_grad(p[1]) == NULL);
        CHECK_OK(zg_optim_step(opt));
        zg_arena_reset();
        for (int j = 0; j < 4; j++) {
            char what[64];
            snprintf(what, sizeof what, "parameter %d after step %d", j, s);
            CHECK_REF(what, p[j], zgt_ref_get(st, "frozen.%d.%d", s, j), 1e-5, &worst);
        }
    }
    const zg_tensor *steps = zgt_ref_get(st, "frozen.steps");
    for (int j = 0; opt && steps && j < 4; j++) CHECK(zg_optim_state_step(opt, j) == (int64_t)zg_tensor_get(steps, j));
    printf("frozen then unfrozen vs PyTorch: worst relative error %.3g\n", worst);
    zg_optim_free(opt);
    for (int j = 0; j < 4; j++) zg_tensor_free(p[j]);
    zg_safetensors_free(st);
}

/* ---- initial_lr in the optimizer's state ----------------------------------- */

static double lambda_one(int64_t epoch, int group, void *user) {
    (void)epoch;
    (void)group;
    (void)user;
    return 1.0;
}

/* LambdaLR(1) sets each lr to its group's initial_lr: what it is. */
static double initial_lr_of(zg_optim *opt) {
    zg_sched *s = zg_sched_lambda(opt, lambda_one, NULL);
    double v = s ? zg_optim_get_hparam(opt, 0, ZG_HP_LR) : NAN;
    zg_sched_free(s);
    return v;
}

/* A scheduler's initial_lr is saved with the optimizer's state and loads
 * with it; a state without it (no scheduler, or an older file) leaves the
 * group's; a bad one is refused. */
TEST(initial_lr_saved_with_the_state) {
    zg_tensor *a = param1(1.0f);
    zg_optim_config cfg = zg_optim_defaults(ZG_SGD);
    cfg.lr = 0.1;
    zg_optim *opt = zg_optim_new(ZG_SGD, &a, 1, &cfg);
    cfg.lr = 0.7;
    zg_optim *fresh = zg_optim_new(ZG_SGD, &a, 1, &cfg);
    char path[256], plain[256];
    tmp_path(path, sizeof path, "initial_lr");
    tmp_path(plain, sizeof plain, "no_initial_lr");
    zg_sched *s = zg_sched_step_lr(opt, 1, 0.5);
    CHECK_OK(zg_sched_step(s));
    CHECK_OK(zg_sched_step(s));
    zg_sched_free(s);
    CHECK(zg_optim_get_hparam(opt, 0, ZG_HP_LR) == 0.025);
    CHECK_OK(zg_optim_save(opt, path));
    CHECK_OK(zg_optim_save(fresh, plain));
    zg_safetensors *st = zg_safetensors_read(path);
    CHECK(st && !strcmp(zg_safetensors_metadata(st, "param_groups.0.initial_lr"), "0.10000000000000001"));
    zg_safetensors_free(st);
    st = zg_safetensors_read(plain);
    CHECK(st && !zg_safetensors_metadata(st, "param_groups.0.initial_lr"));
    zg_safetensors_free(st);

    CHECK_OK(zg_optim_load(fresh, path));
    CHECK(zg_optim_get_hparam(fresh, 0, ZG_HP_LR) == 0.025);
    CHECK(initial_lr_of(fresh) == 0.1);
    /* Loading a state without initial_lr keeps the group's. */
    CHECK_OK(zg_optim_load(opt, plain));
    CHECK(zg_optim_get_hparam(opt, 0, ZG_HP_LR) == 0.7);
    CHECK(initial_lr_of(opt) == 0.1);
    /* An invalid one is refused before anything changes. */
    const char *keys[] = {"format", "kind", "num_groups", "param_groups.0.params", "param_groups.0.lr",
                          "param_groups.0.weight_decay", "param_groups.0.momentum", "param_groups.0.dampening",
                          "param_groups.0.nesterov", "param_groups.0.maximize", "param_groups.0.initial_lr"};
    const char *vals[] = {"zgrad.optim.v1", "sgd", "1", "0", "0.3", "0", "0", "0", "0", "0", "-1"};
    CHECK_OK(zg_safetensors_write(path, NULL, NULL, 0, keys, vals, 11));
    CHECK_ERR(zg_optim_load(opt, path), "'param_groups.0.initial_lr' is not a finite number >= 0");
    CHECK(zg_optim_get_hparam(opt, 0, ZG_HP_LR) == 0.1); /* initial_lr_of left it there */
    unlink(path);
    unlink(plain);
    zg_optim_free(opt);
    zg_optim_free(fresh);
    zg_tensor_free(a);
}
