/* Image folders as torchvision's ImageFolder reads them: the sub-folders
 * of the root, sorted, are the classes; the files under each class folder
 * (its sub-folders too, in the order of sorted(os.walk(...)), then the
 * sorted names in each) whose names end in .png, .jpg or .jpeg (any case)
 * are its samples, in that order, class after class. Files with another
 * image extension ImageFolder would take (.bmp, .webp, ...) are an error
 * naming them, since only PNG and JPEG are decoded; other files are
 * skipped as ImageFolder skips them. Every image is decoded once when the
 * folder is opened, on all threads: that checks every file before
 * training starts (the first bad one in the data set's order is the one
 * named) and records each image's pixel sums, from which
 * zg_dataset_compute_stats gets the statistics of any subset. */
#include "data_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

/* Deeper folders are not followed (a symlink loop would never end). */
#define MAX_DEPTH 32
/* Images decoded at a time: the buffers of one round. */
#define ROUND 64

typedef struct {
    char *dir, *name; /* the folder (as os.walk's root) and the file's name */
    int64_t label;
} entry;

typedef struct {
    const char *fn;
    entry *e;
    int64_t n, cap;
} listing;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int cmp_entry(const void *a, const void *b) {
    const entry *x = a, *y = b;
    int c = strcmp(x->dir, y->dir);
    return c ? c : strcmp(x->name, y->name);
}

static bool ends_with(const char *s, const char *ext) {
    size_t n = strlen(s), k = strlen(ext);
    if (n < k) return false;
    for (size_t i = 0; i < k; i++)
        if ((s[n - k + i] | 0x20) != ext[i]) return false;
    return true;
}

/* 1: PNG or JPEG by name, 0: skipped, -1: an image format not decoded. */
static int kind_of(const char *name) {
    static const char *const ours[] = {".png", ".jpg", ".jpeg"};
    static const char *const others[] = {".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif"};
    for (size_t i = 0; i < sizeof ours / sizeof *ours; i++)
        if (ends_with(name, ours[i])) return 1;
    for (size_t i = 0; i < sizeof others / sizeof *others; i++)
        if (ends_with(name, others[i])) return -1;
    return 0;
}

static int add_entry(listing *l, const char *dir, const char *name, int64_t label) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 64;
        entry *ne = zg__realloc(l->e, (size_t)cap * sizeof *ne);
        if (!ne) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", l->fn);
        l->e = ne;
        l->cap = cap;
    }
    entry *e = &l->e[l->n];
    e->dir = zg__strdup(dir);
    e->name = zg__strdup(name);
    e->label = label;
    if (!e->dir || !e->name) {
        free(e->dir);
        free(e->name);
        return zg__fail(ZG_ERR_NOMEM, "%s: out of memory", l->fn);
    }
    l->n++;
    return ZG_OK;
}

static void listing_free(listing *l) {
    for (int64_t i = 0; i < l->n; i++) {
        free(l->e[i].dir);
        free(l->e[i].name);
    }
    free(l->e);
}

/* The names in dir (not . and ..), sorted; *n of them. */
static char **read_names(const char *fn, const char *dir, int64_t *n) {
    DIR *d = opendir(dir);
    if (!d) return zg__fail_null("%s: '%s': cannot open the folder: %s", fn, dir, strerror(errno));
    char **names = zg__malloc(16 * sizeof *names);
    int64_t cap = 16;
    bool oom = !names;
    *n = 0;
    for (struct dirent *de; !oom && (de = readdir(d));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (*n == cap) {
            char **nn = zg__realloc(names, (size_t)(2 * cap) * sizeof *nn);
            if (!(oom = !nn)) {
                names = nn;
                cap *= 2;
            }
        }
        if (!oom && !(oom = !(names[*n] = zg__strdup(de->d_name)))) (*n)++;
    }
    closedir(d);
    if (oom) {
        zg__free_strings(names, *n);
        return zg__fail_null("%s: '%s': out of memory", fn, dir);
    }
    qsort(names, (size_t)*n, sizeof *names, cmp_str);
    return names;
}

/* The images under dir, depth first; files of an image format not decoded
 * are an error. */
static int walk(listing *l, const char *dir, int64_t label, int depth) {
    int64_t n;
    char **names = read_names(l->fn, dir, &n);
    if (!names) return ZG_ERR_IO;
    int rc = ZG_OK;
    char path[4200];
    for (int64_t i = 0; i < n && !rc; i++) {
        if (!zg__path_join(path, sizeof path, dir, names[i])) {
            rc = zg__fail(ZG_ERR_ARG, "%s: '%s/%s': path too long", l->fn, dir, names[i]);
            break;
        }
        struct stat st;
        if (stat(path, &st) != 0) continue; /* a dangling link, as os.walk skips it */
        if (S_ISDIR(st.st_mode)) {
            if (depth >= MAX_DEPTH)
                rc = zg__fail(ZG_ERR_FORMAT, "%s: '%s': folders nested deeper than %d (a symlink loop?)", l->fn, path,
                              MAX_DEPTH);
            else
                rc = walk(l, path, label, depth + 1);
        } else if (kind_of(names[i]) < 0) {
            rc = zg__fail(ZG_ERR_FORMAT, "%s: '%s': only PNG and JPEG images are read (convert this file, or move "
                          "it out of the folder)", l->fn, path);
        } else if (kind_of(names[i]) > 0) {
            rc = add_entry(l, dir, names[i], label);
        }
    }
    zg__free_strings(names, n);
    return rc;
}

/* The class of folder `name`: its index among the run's classes. */
static int64_t class_index(const char *fn, const char *root, const char *name, const zg_image_opts *o) {
    for (int64_t k = 0; k < o->n_classes; k++)
        if (!strcmp(o->classes[k], name)) return k;
    return zg__fail(ZG_ERR_FORMAT, "%s: '%s/%s': class '%s' is not one of the %lld classes the model was trained "
                    "on", fn, root, name, name, (long long)o->n_classes);
}

/* ImageFolder's classes and samples; *classes: the sub-folders' names
 * (moved out of the folder's listing). */
static int list_classes(listing *l, const char *root, const zg_image_opts *o, char ***classes, int64_t *n_classes) {
    int64_t n, k = 0;
    char **names = read_names(l->fn, root, &n);
    if (!names) return ZG_ERR_IO;
    char **dirs = zg__calloc((size_t)n + 1, sizeof *dirs), path[4200];
    int rc = dirs ? ZG_OK : zg__fail(ZG_ERR_NOMEM, "%s: out of memory", l->fn);
    for (int64_t i = 0; i < n && !rc; i++) {
        struct stat st;
        if (!zg__path_join(path, sizeof path, root, names[i]) || stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            continue; /* files beside the class folders are not samples */
        const int64_t before = l->n, label = o->classes ? class_index(l->fn, root, names[i], o) : k;
        rc = label < 0 ? (int)label : walk(l, path, label, 1);
        if (!rc && l->n == before)
            rc = zg__fail(ZG_ERR_FORMAT, "%s: '%s': the class folder holds no PNG or JPEG file", l->fn, path);
        dirs[k++] = names[i];
        names[i] = NULL;
    }
    zg__free_strings(names, n);
    if (!rc && k == 0)
        rc = zg__fail(ZG_ERR_FORMAT, "%s: '%s' has no class folders (the layout is %s/<class>/<image>.png, as "
                      "torchvision's ImageFolder reads)", l->fn, root, root);
    if (rc) {
        zg__free_strings(dirs, k);
        return rc;
    }
    *classes = dirs;
    *n_classes = k;
    return ZG_OK;
}

/* ---- the decoding pass ---------------------------------------------------------- */

typedef struct {
    int status, channels; /* the file's own channels (or want_c) */
    uint64_t sums[6];     /* sum of v per channel, then of v^2 */
    char err[600];
} decoded;

static void decode_one(const char *path, int want_c, int64_t h, int64_t w, bool resize, uint8_t *pix,
                       uint8_t **file, size_t *cap, decoded *r) {
    char why[400];
    zg__image_info info;
    int64_t len = zg__read_whole(path, file, cap, (size_t)1 << 28, why, sizeof why);
    r->status = len < 0 ? -1 : zg__image_decode(*file, (size_t)len, want_c, h, w, resize, pix, &info, why, sizeof why);
    if (r->status) {
        snprintf(r->err, sizeof r->err, "'%s': %s", path, why);
        return;
    }
    r->channels = want_c ? want_c : info.channels;
    const int64_t hw = h * w;
    for (int c = 0; c < r->channels; c++) {
        uint64_t s1 = 0, s2 = 0;
        for (int64_t p = 0; p < hw; p++) {
            const uint64_t v = pix[c * hw + p];
            s1 += v;
            s2 += v * v;
        }
        r->sums[c] = s1;
        r->sums[3 + c] = s2;
    }
}

/* Decodes every file, ROUND at a time on the OpenMP threads (fewer when
 * the images are large); res[i] per file. The first failure in order is
 * the error. */
static int decode_all(const char *fn, char *const *paths, int64_t n, int want_c, int64_t h, int64_t w, bool resize,
                      decoded *res) {
    const int64_t px = 3 * h * w, fit = ((int64_t)1 << 28) / px;
    const int64_t round = fit < 1 ? 1 : fit < ROUND ? fit : ROUND;
    uint8_t *pix = zg__malloc((size_t)(round * px)), *files[ROUND] = {0};
    size_t caps[ROUND] = {0};
    int rc = pix ? ZG_OK : zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    for (int64_t lo = 0; lo < n && !rc; lo += round) {
        const int64_t k = n - lo < round ? n - lo : round;
        ZG_PARALLEL_FOR(j, k, 2, { decode_one(paths[lo + j], want_c, h, w, resize, pix + j * px, &files[j], &caps[j], &res[lo + j]); });
        for (int64_t j = 0; j < k && !rc; j++)
            if (res[lo + j].status) rc = zg__fail(ZG_ERR_FORMAT, "%s: %s", fn, res[lo + j].err);
    }
    for (int j = 0; j < ROUND; j++) free(files[j]);
    free(pix);
    return rc;
}

/* The size of the first image (its header), or the one asked for (every
 * image is resized to it). */
static int first_size(const char *fn, const char *path, const zg_image_opts *o, int64_t *h, int64_t *w) {
    uint8_t *file = NULL;
    size_t cap = 0;
    char why[400];
    zg__image_info info;
    int64_t len = zg__read_whole(path, &file, &cap, (size_t)1 << 28, why, sizeof why);
    int rc = len < 0 ? -1 : zg__image_decode(file, (size_t)len, 0, o->height, o->width, true, NULL, &info, why, sizeof why);
    free(file);
    if (rc) return zg__fail(ZG_ERR_FORMAT, "%s: '%s': %s", fn, path, why);
    *h = o->height > 0 ? o->height : info.height;
    *w = o->width > 0 ? o->width : info.width;
    return ZG_OK;
}

/* ---- the data set ---------------------------------------------------------------- */

static int check_opts(const char *fn, const char *path, const zg_image_opts *o) {
    if (!path || !o) return zg__fail(ZG_ERR_ARG, "%s: %s is NULL", fn, path ? "opts" : "path");
    if (o->height < 0 || o->width < 0 || (o->height > 0) != (o->width > 0) ||
        o->height * o->width > ZG__IMAGE_MAX_PIXELS)
        return zg__fail(ZG_ERR_ARG, "%s: height and width must both be 0 or both >= 1 (at most %lld pixels)", fn,
                        (long long)ZG__IMAGE_MAX_PIXELS);
    if (o->channels != 0 && o->channels != 1 && o->channels != 3)
        return zg__fail(ZG_ERR_ARG, "%s: channels must be 0 (from the images), 1 or 3 (got %d)", fn, o->channels);
    if (o->classes && o->n_classes < 1) return zg__fail(ZG_ERR_ARG, "%s: n_classes must be >= 1", fn);
    for (int64_t k = 0; o->classes && k < o->n_classes; k++)
        if (!o->classes[k]) return zg__fail(ZG_ERR_ARG, "%s: class name %lld is NULL", fn, (long long)k);
    return ZG_OK;
}

/* The files to read: a class folder layout, or (unlabelled) every image
 * under path, or path itself. */
static int list_files(listing *l, const char *path, const zg_image_opts *o, char ***classes, int64_t *n_classes) {
    struct stat st;
    if (stat(path, &st) != 0)
        return zg__fail(ZG_ERR_IO, "%s: '%s': cannot open: %s", l->fn, path, strerror(errno));
    if (o->unlabelled && !S_ISDIR(st.st_mode)) return add_entry(l, "", path, 0);
    if (!S_ISDIR(st.st_mode))
        return zg__fail(ZG_ERR_ARG, "%s: '%s' is not a folder (the layout is DIR/<class>/<image>.png)", l->fn, path);
    int rc = o->unlabelled ? walk(l, path, 0, 0) : list_classes(l, path, o, classes, n_classes);
    if (!rc && l->n == 0) rc = zg__fail(ZG_ERR_FORMAT, "%s: '%s' holds no PNG or JPEG file", l->fn, path);
    /* Within a class, the sorted (folder, name) pairs: os.walk's order. */
    for (int64_t i = 0, j; !rc && i < l->n; i = j) {
        for (j = i; j < l->n && l->e[j].label == l->e[i].label; j++) {}
        qsort(l->e + i, (size_t)(j - i), sizeof *l->e, cmp_entry);
    }
    return rc;
}

/* The data set over the files (paths, taken over; labels from the
 * listing): each image's sums in C channels (a grey image's repeated into
 * colour). Takes over classes too, also on failure. */
static zg_dataset *assemble(const listing *l, char **paths, const decoded *res, int64_t h, int64_t w, int c_want,
                            char **classes, int64_t n_classes, bool unlabelled) {
    const int64_t n = l->n;
    int C = c_want;
    for (int64_t i = 0; !C && i < n; i++)
        if (res[i].channels == 3) C = 3;
    if (!C) C = 1;
    int64_t *labels = unlabelled ? NULL : zg__malloc((size_t)n * sizeof *labels);
    uint64_t *sums = zg__malloc((size_t)(n * 2 * C) * sizeof *sums);
    const bool ok = (labels || unlabelled) && sums;
    for (int64_t i = 0; ok && i < n; i++) {
        for (int c = 0; c < C; c++) {
            const int s = res[i].channels == 1 ? 0 : c;
            sums[i * 2 * C + c] = res[i].sums[s];
            sums[i * 2 * C + C + c] = res[i].sums[3 + s];
        }
        if (labels) labels[i] = l->e[i].label;
    }
    const int64_t shape[3] = {C, h, w};
    zg_dataset *ds = ok ? zg__dataset_new(l->fn, false, NULL, labels, n, shape, 3) : NULL;
    if (!ds) {
        if (!ok) free(labels);
        free(sums);
        zg__free_strings(paths, n);
        zg__free_strings(classes, n_classes);
        return ok ? NULL : zg__fail_null("%s: out of memory", l->fn);
    }
    ds->buf->paths = paths;
    ds->buf->n_paths = n;
    ds->buf->pixel_sums = sums;
    ds->buf->class_names = classes;
    ds->buf->n_class_names = n_classes;
    if (classes) ds->num_classes = n_classes;
    return ds;
}

zg_dataset *zg_dataset_load_image_folder(const char *path, const zg_image_opts *opts) {
    const char *fn = "zg_dataset_load_image_folder";
    if (check_opts(fn, path, opts)) return NULL;
    listing l = {fn, NULL, 0, 0};
    char **classes = NULL, **paths = NULL;
    int64_t n_classes = 0, h = 0, w = 0;
    decoded *res = NULL;
    int rc = list_files(&l, path, opts, &classes, &n_classes);
    if (!rc && opts->classes) {
        zg__free_strings(classes, n_classes);
        n_classes = opts->n_classes;
        if (!(classes = zg__copy_strings(opts->classes, n_classes))) rc = zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
    }
    if (!rc) {
        paths = zg__calloc((size_t)l.n, sizeof *paths);
        res = zg__calloc((size_t)l.n, sizeof *res);
        rc = paths && res ? ZG_OK : zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
        char full[4300];
        for (int64_t i = 0; !rc && i < l.n; i++) {
            if (l.e[i].dir[0]) snprintf(full, sizeof full, "%s/%s", l.e[i].dir, l.e[i].name);
            else snprintf(full, sizeof full, "%s", l.e[i].name);
            if (!(paths[i] = zg__strdup(full))) rc = zg__fail(ZG_ERR_NOMEM, "%s: out of memory", fn);
        }
    }
    if (!rc) rc = first_size(fn, paths[0], opts, &h, &w);
    if (!rc) rc = decode_all(fn, paths, l.n, opts->channels, h, w, opts->height > 0, res);
    zg_dataset *ds = NULL;
    if (!rc) {
        ds = assemble(&l, paths, res, h, w, opts->channels, classes, n_classes, opts->unlabelled);
        if (ds) ds->buf->image_resize = opts->height > 0;
    } else {
        zg__free_strings(paths, paths ? l.n : 0);
        zg__free_strings(classes, n_classes);
    }
    free(res);
    listing_free(&l);
    return ds;
}
