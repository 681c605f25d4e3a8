/* Fashion-MNIST (or MNIST) from a directory: the four files keep their
 * published names, gzipped (as Debian's dataset-fashion-mnist installs
 * them) or not. */
#include "data_internal.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#define HOW_TO_GET                                                                                          \
    "install them with `sudo apt-get install dataset-fashion-mnist` (scripts/setup does this) or pass "   \
    "--data DIR"

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* dir/base.gz, else dir/base, into path; false if neither exists. */
static bool find(const char *dir, const char *base, char *path, size_t n) {
    snprintf(path, n, "%s/%s.gz", dir, base);
    if (is_file(path)) return true;
    snprintf(path, n, "%s/%s", dir, base);
    return is_file(path);
}

zg_dataset *zg_dataset_load_mnist_dir(const char *dir, bool train) {
    const char *fn = "zg_dataset_load_mnist_dir";
    if (!dir) return zg__fail_null("%s: dir is NULL", fn);
    const char *split = train ? "train" : "t10k";
    char img_base[64], lab_base[64];
    snprintf(img_base, sizeof img_base, "%s-images-idx3-ubyte", split);
    snprintf(lab_base, sizeof lab_base, "%s-labels-idx1-ubyte", split);

    struct stat st;
    int st_err = stat(dir, &st) != 0 ? errno : 0;
    if (st_err || !S_ISDIR(st.st_mode))
        return zg__fail_null("%s: no Fashion-MNIST files in '%s' (%s; expected %s[.gz] and %s[.gz]): " HOW_TO_GET,
                             fn, dir, st_err ? strerror(st_err) : "not a directory", img_base, lab_base);
    size_t n = strlen(dir) + 64;
    char *img = zg__malloc(n), *lab = zg__malloc(n);
    if (!img || !lab) {
        free(img);
        free(lab);
        return zg__fail_null("%s: out of memory", fn);
    }
    bool has_img = find(dir, img_base, img, n), has_lab = find(dir, lab_base, lab, n);
    zg_dataset *ds = NULL;
    if (!has_img && !has_lab)
        zg__fail_null("%s: no Fashion-MNIST files in '%s' (expected %s[.gz] and %s[.gz]): " HOW_TO_GET, fn, dir,
                      img_base, lab_base);
    else if (!has_img || !has_lab)
        zg__fail_null("%s: '%s' has %s[.gz] but not %s[.gz]: " HOW_TO_GET, fn, dir,
                      has_img ? img_base : lab_base, has_img ? lab_base : img_base);
    else
        ds = zg_dataset_load_idx(img, lab);
    free(img);
    free(lab);
    return ds;
}
