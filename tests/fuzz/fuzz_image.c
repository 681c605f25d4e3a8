/* libFuzzer target for the PNG and JPEG decoding (src/data/image.c, over
 * libpng and libjpeg-turbo; scripts/fuzz builds and runs it).
 *
 * Input: the file's bytes; their length mod 3 picks the channels asked
 * for (0: the file's own, 1, 3). The header is read first; an image of at
 * most 2^16 pixels is then decoded. A refused file gives one line of error
 * text; an accepted one a size within the limits and the channels asked
 * for (1 or 3 of its own), and the header alone agrees with the decode. */
#include "data/data_internal.h"

#include <stdio.h>

static void check_error(const char *err) {
    if (!err[0] || strchr(err, '\n')) {
        fprintf(stderr, "bad error text: \"%s\"\n", err);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int want[3] = {0, 1, 3};
    const int c = want[size % 3];
    char err[400] = "";
    zg__image_info head, full;
    if (zg__image_decode(data, size, c, 0, 0, false, NULL, &head, err, sizeof err)) {
        check_error(err);
        return 0;
    }
    if (head.height < 1 || head.width < 1 || head.height * head.width > ZG__IMAGE_MAX_PIXELS ||
        (head.channels != 1 && head.channels != 3))
        abort();
    if (head.height * head.width > (1 << 16)) return 0;
    uint8_t *out = malloc((size_t)(3 * head.height * head.width));
    if (!out) return 0;
    err[0] = '\0';
    if (zg__image_decode(data, size, c, head.height, head.width, false, out, &full, err, sizeof err)) check_error(err);
    else if (full.height != head.height || full.width != head.width || full.channels != head.channels) abort();
    free(out);
    return 0;
}
