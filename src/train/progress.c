/* Progress of an epoch on stderr: on a terminal one bar redrawn in place
 * (as PyTorch Lightning and Keras show it), elsewhere (a log file, CI) one
 * plain line every few seconds, so that logs stay readable. */
#include "train_internal.h"

#include <sys/ioctl.h>
#include <unistd.h>

#define BAR_REDRAW_S 0.1

static int term_width(void) {
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40) return ws.ws_col;
    return 80;
}

static void fmt_time(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 359999) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void zg__progress_begin(zg__progress *p, zg_progress_mode mode, double interval, int epoch, int epochs,
                        int64_t total, int64_t first_step, const char *unit) {
    if (mode == ZG_PROGRESS_AUTO) mode = isatty(STDERR_FILENO) ? ZG_PROGRESS_BAR : ZG_PROGRESS_LINES;
    *p = (zg__progress){.mode = mode, .interval = interval, .epoch = epoch, .epochs = epochs, .total = total,
                        .first_step = first_step, .unit = unit};
    p->t_begin = p->t_last = zg__now();
}

/* Samples per second and the estimated time left, from the steps run since
 * this epoch (re)started. */
static void rates(const zg__progress *p, int64_t step, double now, double *sps, double *eta) {
    double dt = now - p->t_begin;
    int64_t done = step - p->first_step;
    *sps = dt > 0 ? (double)p->samples / dt : 0;
    *eta = done > 0 && dt > 0 ? dt / (double)done * (double)(p->total - step) : -1;
}

static void draw_bar(zg__progress *p, int64_t step, double loss, double now, bool final) {
    double sps, eta;
    rates(p, step, now, &sps, &eta);
    char t[32], head[64], tail[160];
    fmt_time(t, sizeof t, final ? now - p->t_begin : eta);
    snprintf(head, sizeof head, "Epoch %d/%d ", p->epoch, p->epochs);
    /* Fixed-width fields keep the bar's length steady as numbers grow. */
    int digits = snprintf(NULL, 0, "%lld", (long long)p->total);
    snprintf(tail, sizeof tail, " %*lld/%lld  loss %.4f  %5.0f %s/s  %s %-5s", digits, (long long)step,
             (long long)p->total, loss, sps, p->unit, final ? "in" : "ETA", t);
    int width = term_width() - 1;
    int bar = width - (int)strlen(head) - (int)strlen(tail) - 2;
    if (bar > 30) bar = 30;
    char line[512];
    int k = snprintf(line, sizeof line, "\r%s", head);
    if (bar >= 5) {
        int fill = p->total > 0 ? (int)((double)bar * (double)step / (double)p->total) : bar;
        line[k++] = '[';
        for (int i = 0; i < bar; i++) line[k++] = i < fill ? '=' : (i == fill ? '>' : '.');
        line[k++] = ']';
    }
    snprintf(line + k, sizeof line - (size_t)k, "%s", tail);
    int len = (int)strlen(line) - 1;
    /* Pad over the rest of a longer previous draw. */
    fprintf(stderr, "%s%*s", line, p->drawn_width > len ? p->drawn_width - len : 0, "");
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
    p->drawn_width = final ? 0 : len;
}

static void print_line(zg__progress *p, int64_t step, double loss, double now, bool final) {
    double sps, eta;
    rates(p, step, now, &sps, &eta);
    char t[32];
    fmt_time(t, sizeof t, final ? now - p->t_begin : eta);
    fprintf(stderr, "epoch %d/%d  step %lld/%lld  loss %.4f  %.0f %s/s  %s %s\n", p->epoch, p->epochs,
            (long long)step, (long long)p->total, loss, sps, p->unit, final ? "time" : "eta", t);
    fflush(stderr);
}

void zg__progress_update(zg__progress *p, int64_t step, double loss, int64_t batch_samples) {
    p->samples += batch_samples;
    if (p->mode == ZG_PROGRESS_OFF) return;
    double now = zg__now();
    if (p->mode == ZG_PROGRESS_BAR) {
        if (now - p->t_last >= BAR_REDRAW_S || step == p->first_step + 1) {
            draw_bar(p, step, loss, now, false);
            p->t_last = now;
        }
    } else if (now - p->t_last >= p->interval) {
        print_line(p, step, loss, now, false);
        p->t_last = now;
    }
}

void zg__progress_end(zg__progress *p, int64_t step, double loss) {
    double now = zg__now();
    if (p->mode == ZG_PROGRESS_BAR)
        draw_bar(p, step, loss, now, true);
    else if (p->mode == ZG_PROGRESS_LINES)
        print_line(p, step, loss, now, true);
}

void zg__progress_clear(zg__progress *p) {
    if (p->mode != ZG_PROGRESS_BAR || p->drawn_width == 0) return;
    fprintf(stderr, "\r%*s\r", p->drawn_width, "");
    fflush(stderr);
    p->drawn_width = 0;
}
