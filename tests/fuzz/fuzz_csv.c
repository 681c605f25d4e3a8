/* libFuzzer target for the CSV reader (scripts/fuzz builds and runs it).
 *
 * Input: byte 0 bit 0 says whether the first line is a header, byte 1 (as
 * a signed number mod 6) picks the label column, counted from the end
 * when negative; the rest is the CSV text, parsed straight from the
 * fuzzer's buffer, which has no terminating NUL. An accepted file must
 * give finite features, labels in 0..num_classes-1 and one sample per
 * data row through a loader; a refused one one line of error text. The
 * same text is then read as a table with a header (zg_dataset_load_table):
 * the target named "y" or given as index 1 (byte 0 bit 2), the task from
 * byte 0 bits 3-4; regression targets must be finite. */
#include "data/data_internal.h"

#include <math.h>
#include <stdio.h>

static void check_error(void) {
    const char *e = zg_last_error();
    if (!e[0] || strchr(e, '\n')) {
        fprintf(stderr, "bad error text: \"%s\"\n", e);
        abort();
    }
}

static void fuzz_table(const uint8_t *data, size_t size) {
    zg_csv_opts o = {.target = data[0] & 4 ? "1" : "y", .task = (zg_task)((data[0] >> 3) % 3)};
    zg_dataset *ds = zg__csv_parse_table("fuzz", "input", (const char *)data + 2, size - 2, &o);
    if (!ds) {
        check_error();
        return;
    }
    zg_loader_opts lo = {.batch_size = 3, .mean = 0.0f, .std = 1.0f};
    zg_loader *ld = zg_loader_new(ds, &lo);
    if (!ld) abort();
    zg_tensor *x, *y;
    while (zg_loader_next(ld, &x, &y) == 1)
        for (int64_t i = 0; zg_dataset_task(ds) == ZG_TASK_REGRESS && i < zg_tensor_numel(y); i++)
            if (!isfinite(zg_tensor_data(y)[i])) abort();
    zg_loader_free(ld);
    zg_dataset_free(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    bool header = data[0] & 1;
    int label_column = (int8_t)data[1] % 6;
    fuzz_table(data, size);
    zg_dataset *ds = zg__csv_parse("fuzz", "input", (const char *)data + 2, size - 2, label_column, header);
    if (!ds) {
        check_error();
        return 0;
    }
    int64_t shape[ZG_MAX_DIMS];
    if (zg_dataset_sample_shape(ds, shape) != 1 || shape[0] < 1 || zg_dataset_size(ds) < 1) abort();
    zg_loader_opts o = {.batch_size = 1 + data[0] % 4, .shuffle = (data[0] & 2) != 0, .drop_last = false,
                        .seed = data[0], .mean = 0.0f, .std = 1.0f, .prefetch = false};
    zg_loader *ld = zg_loader_new(ds, &o);
    if (!ld) abort();
    zg_tensor *x, *y;
    int64_t seen = 0;
    while (zg_loader_next(ld, &x, &y) == 1) {
        for (int64_t i = 0; i < zg_tensor_numel(x); i++)
            if (!isfinite(zg_tensor_data(x)[i])) abort();
        for (int64_t i = 0; i < zg_tensor_numel(y); i++)
            if (zg_tensor_data_i64(y)[i] < 0 || zg_tensor_data_i64(y)[i] >= zg_dataset_num_classes(ds)) abort();
        seen += zg_tensor_size(x, 0);
    }
    if (seen != zg_dataset_size(ds)) abort();
    zg_loader_free(ld);
    zg_dataset_free(ds);
    return 0;
}
