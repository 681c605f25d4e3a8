/* Per-epoch metrics: the JSON form (metrics.jsonl and the checkpoint's
 * history) and the curves as a hand-written SVG chart. */
#include "train_internal.h"

#include "../util/json.h"

#include <math.h>

/* Numbers use %.17g, which round-trips every double exactly; JSON has no
 * NaN or infinity, so a non-finite value is written as null. */
static void json_num(zg__strbuf *b, const char *key, double v) {
    if (isfinite(v))
        zg__sb_printf(b, "\"%s\": %.17g", key, v);
    else
        zg__sb_printf(b, "\"%s\": null", key);
}

void zg__metrics_json(zg__strbuf *b, const zg__epoch_metrics *m) {
    zg__sb_printf(b, "{\"epoch\": %d, ", m->epoch);
    json_num(b, "train_loss", m->train_loss);
    zg__sb_printf(b, ", ");
    json_num(b, "test_loss", m->test_loss);
    zg__sb_printf(b, ", ");
    json_num(b, m->r2 ? "test_r2" : "test_acc", m->test_acc); /* a regression's second number is R^2 */
    zg__sb_printf(b, ", ");
    json_num(b, "seconds", m->seconds);
    zg__sb_printf(b, ", \"steps\": %lld, ", (long long)m->steps);
    json_num(b, "lr", m->lr);
    zg__sb_printf(b, ", \"samples\": %lld, ", (long long)m->samples);
    json_num(b, "grad_norm", m->grad_norm);
    zg__sb_printf(b, ", ");
    json_num(b, "data_wait_seconds", m->data_wait);
    if (m->ddp) {
        zg__sb_printf(b, ", \"ddp_allreduces\": %lld, ", (long long)m->allreduces);
        json_num(b, "ddp_comm_seconds", m->comm_seconds);
        zg__sb_printf(b, ", ");
        json_num(b, "ddp_overlap_seconds", m->overlap_seconds);
        zg__sb_printf(b, ", ");
        json_num(b, "ddp_wait_seconds", m->wait_seconds);
    }
    zg__sb_printf(b, "}");
}

static const zg__json *member(const zg__json *o, const char *key) {
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->keys[i], key)) return &o->items[i];
    return NULL;
}

static bool get_num(const zg__json *o, const char *key, double *v) {
    const zg__json *x = member(o, key);
    if (!x) return false;
    if (x->type == ZG_JSON_NULL) {
        *v = NAN;
        return true;
    }
    if (x->type != ZG_JSON_NUMBER || x->num_len >= 64) return false;
    char buf[64];
    memcpy(buf, x->num_text, x->num_len);
    buf[x->num_len] = '\0';
    char *end;
    *v = strtod(buf, &end);
    return *end == '\0';
}

static bool get_int(const zg__json *o, const char *key, int64_t lo, int64_t hi, int64_t *v) {
    const zg__json *x = member(o, key);
    if (!x || x->type != ZG_JSON_NUMBER || !x->fits_int64 || x->integer < lo || x->integer > hi) return false;
    *v = x->integer;
    return true;
}

/* An entry is an object of 9 numbers, 13 with --ddp: 14 JSON values. The
 * tree of a history is allowed 16 per entry, and no more. */
#define NODES_PER_ENTRY 16

int zg__metrics_parse(const char *fn, const char *text, int max_entries, zg__epoch_metrics **out, int *n) {
    *out = NULL;
    *n = 0;
    zg__json *root = NULL;
    char err[160];
    size_t budget = (size_t)max_entries * NODES_PER_ENTRY;
    if (zg__json_parse(text, strlen(text), budget, &root, err, sizeof err) != 0)
        return zg__fail(ZG_ERR_FORMAT, "%s: metrics history is not valid JSON (%s)", fn, err);
    if (root->type != ZG_JSON_ARRAY) {
        zg__json_free(root);
        return zg__fail(ZG_ERR_FORMAT, "%s: metrics history is not a JSON array", fn);
    }
    zg__epoch_metrics *m = zg__calloc((size_t)root->n + 1, sizeof *m);
    if (!m) {
        zg__json_free(root);
        return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    }
    for (int i = 0; i < root->n; i++) {
        const zg__json *o = &root->items[i];
        int64_t epoch, steps;
        const char *dup = NULL;
        bool ok = o->type == ZG_JSON_OBJECT && zg__json_duplicate_key(o, &dup) == 0 && !dup &&
                  get_int(o, "epoch", i + 1, i + 1, &epoch) && get_int(o, "steps", 0, ZG__MAX_COUNT, &steps) &&
                  get_num(o, "train_loss", &m[i].train_loss) && get_num(o, "test_loss", &m[i].test_loss) &&
                  (get_num(o, "test_acc", &m[i].test_acc) || (m[i].r2 = get_num(o, "test_r2", &m[i].test_acc))) &&
                  get_num(o, "seconds", &m[i].seconds) && get_num(o, "lr", &m[i].lr);
        /* samples, grad_norm and data_wait_seconds came later: a history
         * without them is read as not knowing them. */
        m[i].samples = -1;
        m[i].grad_norm = NAN;
        m[i].data_wait = NAN;
        if (ok && member(o, "samples")) ok = get_int(o, "samples", -1, ZG__MAX_COUNT, &m[i].samples);
        if (ok && member(o, "grad_norm")) ok = get_num(o, "grad_norm", &m[i].grad_norm);
        if (ok && member(o, "data_wait_seconds")) ok = get_num(o, "data_wait_seconds", &m[i].data_wait);
        if (ok && member(o, "ddp_allreduces"))
            ok = (m[i].ddp = get_int(o, "ddp_allreduces", 0, ZG__MAX_COUNT, &m[i].allreduces)) &&
                 get_num(o, "ddp_comm_seconds", &m[i].comm_seconds) &&
                 get_num(o, "ddp_overlap_seconds", &m[i].overlap_seconds) &&
                 get_num(o, "ddp_wait_seconds", &m[i].wait_seconds);
        if (!ok) {
            free(m);
            zg__json_free(root);
            return zg__fail(ZG_ERR_FORMAT, "%s: metrics history entry %d is malformed", fn, i + 1);
        }
        m[i].epoch = (int)epoch;
        m[i].steps = steps;
    }
    *n = root->n;
    *out = m;
    zg__json_free(root);
    return ZG_OK;
}

static int write_buf(const char *fn, const char *dir, const char *file, zg__strbuf *b) {
    char path[4200];
    if (b->failed) {
        zg__sb_free(b);
        return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    }
    zg__path_join(path, sizeof path, dir, file);
    int rc = zg__write_atomic(fn, path, b->s ? b->s : "", b->n);
    zg__sb_free(b);
    return rc;
}

int zg__write_metrics_jsonl(const char *dir, const zg__epoch_metrics *m, int n) {
    zg__strbuf b = {0};
    for (int i = 0; i < n; i++) {
        zg__metrics_json(&b, &m[i]);
        zg__sb_printf(&b, "\n");
    }
    return write_buf("zg_train_run: metrics.jsonl", dir, "metrics.jsonl", &b);
}

/* ---- curves.svg ---------------------------------------------------------- */

/* A "nice" number near x (1, 2, 5 times a power of ten), as axis ticks use. */
static double nice_num(double x, bool round_it) {
    double e = floor(log10(x));
    double f = x / pow(10, e), nf;
    if (round_it)
        nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    else
        nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nf * pow(10, e);
}

typedef struct {
    double lo, hi, step;
} axis;

/* Ticks covering [lo, hi] with about `target` intervals, with a margin so
 * that no point sits on the frame. */
static axis make_axis(double lo, double hi, int target) {
    if (!(hi > lo)) {
        double pad = fabs(lo) > 0 ? fabs(lo) * 0.1 : 0.5;
        lo -= pad;
        hi += pad;
    } else {
        double pad = (hi - lo) * 0.05;
        lo -= pad;
        hi += pad;
    }
    double step = nice_num(nice_num(hi - lo, false) / target, true);
    return (axis){floor(lo / step) * step, ceil(hi / step) * step, step};
}

/* Tick label with as many decimals as the step needs. */
static void tick_label(char *buf, size_t n, double v, double step) {
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 6) dec = 6;
    if (fabs(v) < step * 1e-6) v = 0;
    snprintf(buf, n, "%.*f", dec, v);
}

typedef struct {
    double x0, y0, w, h; /* plot area in SVG pixels */
    axis ax, ay;
} panel;

static double px(const panel *p, double x) { return p->x0 + (x - p->ax.lo) / (p->ax.hi - p->ax.lo) * p->w; }
static double py(const panel *p, double y) { return p->y0 + p->h - (y - p->ay.lo) / (p->ay.hi - p->ay.lo) * p->h; }

static void draw_frame(zg__strbuf *b, const panel *p, const char *title, const char *ylabel) {
    zg__sb_printf(b, "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"15\" font-weight=\"bold\">%s</text>\n", p->x0,
                  p->y0 - 30, title);
    zg__sb_printf(b, "  <rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n",
                  p->x0, p->y0, p->w, p->h);
    char lab[32];
    int guard = 0;
    for (double v = p->ay.lo; v <= p->ay.hi + p->ay.step * 1e-6 && guard < 100; v += p->ay.step, guard++) {
        double y = py(p, v);
        tick_label(lab, sizeof lab, v, p->ay.step);
        zg__sb_printf(b,
                      "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n"
                      "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n"
                      "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"12\">%s</text>\n",
                      p->x0, y, p->x0 + p->w, y, p->x0 - 5, y, p->x0, y, p->x0 - 8, y + 4, lab);
    }
    guard = 0;
    /* Epoch ticks start at 1 (there is no epoch 0). */
    double first = ceil(fmax(p->ax.lo, 1) / p->ax.step) * p->ax.step;
    for (double v = first; v <= p->ax.hi + 1e-9 && guard < 100;
         v += p->ax.step, guard++) {
        double x = px(p, v);
        tick_label(lab, sizeof lab, v, p->ax.step);
        zg__sb_printf(b,
                      "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>\n"
                      "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">%s</text>\n",
                      x, p->y0 + p->h, x, p->y0 + p->h + 5, x, p->y0 + p->h + 19, lab);
    }
    zg__sb_printf(b, "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\">epoch</text>\n",
                  p->x0 + p->w / 2, p->y0 + p->h + 38);
    double lx = p->x0 - 48, ly = p->y0 + p->h / 2;
    zg__sb_printf(b,
                  "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\" "
                  "transform=\"rotate(-90 %.1f %.1f)\">%s</text>\n",
                  lx, ly, lx, ly, ylabel);
}

/* A series as a polyline through its finite points, with a dot on each. */
static void draw_series(zg__strbuf *b, const panel *p, const zg__epoch_metrics *m, int n, size_t off, double scale,
                        const char *color) {
    zg__sb_printf(b, "  <polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
    for (int i = 0; i < n; i++) {
        double v = *(const double *)((const char *)&m[i] + off) * scale;
        if (isfinite(v)) zg__sb_printf(b, "%.1f,%.1f ", px(p, m[i].epoch), py(p, v));
    }
    zg__sb_printf(b, "\"/>\n");
    for (int i = 0; i < n; i++) {
        double v = *(const double *)((const char *)&m[i] + off) * scale;
        if (isfinite(v))
            zg__sb_printf(b, "  <circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", px(p, m[i].epoch), py(p, v),
                          color);
    }
}

/* The legend sits in a row above the plot area, right-aligned, so that it
 * never hides a curve. Text widths are estimated (about 0.6 em per
 * character in a sans-serif font). */
static void draw_legend(zg__strbuf *b, const panel *p, const char *const *names, const char *const *colors, int k) {
    double w = 0;
    for (int i = 0; i < k; i++) w += 30 + 7.2 * (double)strlen(names[i]) + 14;
    double x = p->x0 + p->w - w, y = p->y0 - 10;
    for (int i = 0; i < k; i++) {
        zg__sb_printf(b,
                      "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n"
                      "  <circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n"
                      "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">%s</text>\n",
                      x, y - 4, x + 24, y - 4, colors[i], x + 12, y - 4, colors[i], x + 30, y, names[i]);
        x += 30 + 7.2 * (double)strlen(names[i]) + 14;
    }
}

static void series_range(const zg__epoch_metrics *m, int n, size_t off, double scale, double *lo, double *hi) {
    for (int i = 0; i < n; i++) {
        double v = *(const double *)((const char *)&m[i] + off) * scale;
        if (!isfinite(v)) continue;
        if (v < *lo) *lo = v;
        if (v > *hi) *hi = v;
    }
}

int zg__write_curves_svg(const char *dir, const zg__epoch_metrics *m, int n) {
    const double W = 960, H = 420, ml = 70, mr = 20, mt = 62, mb = 55, pw = W / 2;
    zg__strbuf b = {0};
    zg__sb_printf(&b,
                  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                  "font-family=\"sans-serif\">\n"
                  "  <title>zgrad training curves</title>\n"
                  "  <rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                  W, H, W, H);

    /* x: epochs 1..n with integer ticks; a single epoch gets room on both
     * sides so that its dot is not on the frame. */
    int last = n > 0 ? m[n - 1].epoch : 1;
    axis ax;
    ax.step = last <= 10 ? 1 : nice_num((double)last / 8, true);
    if (ax.step < 1) ax.step = 1;
    double xpad = last > 1 ? (last - 1) * 0.04 : 0.5;
    ax.lo = 1 - xpad;
    ax.hi = last + xpad;

    size_t o_train = offsetof(zg__epoch_metrics, train_loss), o_test = offsetof(zg__epoch_metrics, test_loss),
           o_acc = offsetof(zg__epoch_metrics, test_acc);
    double lo = INFINITY, hi = -INFINITY;
    series_range(m, n, o_train, 1, &lo, &hi);
    series_range(m, n, o_test, 1, &lo, &hi);
    if (!(lo <= hi)) lo = 0, hi = 1;
    panel loss = {ml, mt, pw - ml - mr, H - mt - mb, ax, make_axis(lo, hi, 5)};
    /* A regression's right panel is R^2 (at most 1, maybe negative). */
    const bool r2 = n > 0 && m[n - 1].r2;
    const double scale = r2 ? 1 : 100;
    lo = INFINITY, hi = -INFINITY;
    series_range(m, n, o_acc, scale, &lo, &hi);
    if (!(lo <= hi)) lo = 0, hi = scale;
    panel acc = {pw + ml, mt, pw - ml - mr, H - mt - mb, ax, make_axis(lo, hi, 5)};
    if (acc.ay.hi > scale) acc.ay.hi = scale;
    if (acc.ay.lo < 0 && !r2) acc.ay.lo = 0;

    draw_frame(&b, &loss, "Loss", r2 ? "MSE loss" : "cross-entropy loss");
    draw_series(&b, &loss, m, n, o_train, 1, "#1f77b4");
    draw_series(&b, &loss, m, n, o_test, 1, "#ff7f0e");
    static const char *const loss_names[] = {"train loss", "test loss"};
    static const char *const loss_colors[] = {"#1f77b4", "#ff7f0e"};
    draw_legend(&b, &loss, loss_names, loss_colors, 2);

    draw_frame(&b, &acc, r2 ? "Test R\xc2\xb2" : "Test accuracy", r2 ? "R\xc2\xb2" : "accuracy (%)");
    draw_series(&b, &acc, m, n, o_acc, scale, "#2ca02c");
    const char *const acc_names[] = {r2 ? "test R\xc2\xb2" : "test accuracy"};
    static const char *const acc_colors[] = {"#2ca02c"};
    draw_legend(&b, &acc, acc_names, acc_colors, 1);
    zg__sb_printf(&b, "</svg>\n");
    return write_buf("zg_train_run: curves.svg", dir, "curves.svg", &b);
}
