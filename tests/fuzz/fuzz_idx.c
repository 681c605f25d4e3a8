/* libFuzzer target for the IDX reader (scripts/fuzz builds and runs it).
 *
 * Input: byte 0 chooses options, bytes 1-2 (big-endian) split the rest
 * into an images file and a labels file. Both are parsed from memory and,
 * when they pass, paired into a data set that a loader then walks; the
 * whole rest is also read as a file (gzip members or plain bytes, from a
 * memory file) as the file reader does, as images or labels by bit 0 of
 * byte 0.
 * Besides crashes, leaks and undefined behaviour, it aborts when a failed
 * read leaves no error text or a text of more than one line, or when a data
 * set it accepted breaks its invariants. */
#define _GNU_SOURCE
#include "data/data_internal.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

static void check_error(void) {
    const char *e = zg_last_error();
    if (!e[0] || strchr(e, '\n')) {
        fprintf(stderr, "bad error text: \"%s\"\n", e);
        abort();
    }
}

static void walk(zg_dataset *ds, uint8_t opt) {
    int64_t shape[ZG_MAX_DIMS];
    int nd = zg_dataset_sample_shape(ds, shape);
    if (nd != 3 || shape[0] != 1 || zg_dataset_size(ds) < 1 || zg_dataset_num_classes(ds) < 1 ||
        zg_dataset_num_classes(ds) > 256)
        abort();
    zg_loader_opts o = {.batch_size = 1 + opt % 5, .shuffle = (opt & 2) != 0, .drop_last = (opt & 4) != 0,
                        .seed = opt, .mean = 0.5f, .std = 0.25f, .prefetch = false};
    zg_dataset *h = zg_dataset_head(ds, 1 + (zg_dataset_size(ds) - 1) / 2);
    zg_loader *ld = zg_loader_new((opt & 8) ? h : ds, &o);
    if (!ld || !h) abort();
    zg_tensor *x, *y;
    int64_t seen = 0;
    while (zg_loader_next(ld, &x, &y) == 1) {
        const float *xv = zg_tensor_data(x);
        for (int64_t i = 0; i < zg_tensor_numel(x); i++)
            if (!(xv[i] >= -2.0f && xv[i] <= 2.0f)) abort();
        for (int64_t i = 0; i < zg_tensor_numel(y); i++)
            if (zg_tensor_data_i64(y)[i] < 0 || zg_tensor_data_i64(y)[i] >= zg_dataset_num_classes(ds)) abort();
        seen += zg_tensor_size(x, 0);
    }
    if (seen > zg_dataset_size((opt & 8) ? h : ds)) abort();
    zg_loader_free(ld);
    zg_dataset_free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    uint8_t opt = data[0];
    size_t split = (size_t)data[1] << 8 | data[2];
    data += 3;
    size -= 3;
    if (split > size) split = size;

    zg__data_src a, b;
    zg__idx_array img, lab;
    zg__src_mem(&a, data, split);
    if (zg__idx_read(&a, "fuzz", "images", 3, &img) == 0) {
        zg__src_mem(&b, data + split, size - split);
        if (zg__idx_read(&b, "fuzz", "labels", 1, &lab) == 0) {
            zg_dataset *ds = zg__idx_dataset("fuzz", &img, "images", &lab, "labels");
            if (ds) {
                walk(ds, opt);
                zg_dataset_free(ds);
            } else {
                check_error();
            }
        } else {
            check_error();
            free(img.data);
        }
    } else {
        check_error();
    }

    int fd = memfd_create("fuzz_idx", 0);
    if (fd < 0) return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    lseek(fd, 0, SEEK_SET);
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return 0;
    }
    if (zg__src_file(&a, f) == 0) {
        if (zg__idx_read(&a, "fuzz", "file", (opt & 1) ? 1 : 3, &img) == 0)
            free(img.data);
        else
            check_error();
    }
    zg__src_close(&a);
    fclose(f);
    return 0;
}
