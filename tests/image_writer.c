/* PNG and JPEG writers for the tests (tests/image_writer.h). */
#include "image_writer.h"

#include <stdio.h> /* before jpeglib.h, which uses FILE and size_t */
#include <stdlib.h>

#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>

#include "harness.h"

void zgt_pattern(uint8_t *hwc, int w, int h, int k, int seed) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < k; c++) hwc[(y * w + x) * k + c] = (uint8_t)((31 * y + 17 * x + 89 * c + 7 * seed) % 256);
}

bool zgt_write_png(const char *path, const uint8_t *hwc, int w, int h, int k, bool bit16, bool interlaced) {
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                 PNG_COLOR_TYPE_RGB_ALPHA};
    FILE *f = fopen(path, "wb");
    png_structp p = f ? png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL) : NULL;
    png_infop in = p ? png_create_info_struct(p) : NULL;
    const int bytes = bit16 ? 2 : 1;
    uint8_t *row = malloc((size_t)w * (size_t)k * (size_t)bytes);
    bool ok = in && row && k >= 1 && k <= 4;
    if (ok && setjmp(png_jmpbuf(p))) ok = false;
    else if (ok) {
        png_init_io(p, f);
        png_set_IHDR(p, in, (png_uint_32)w, (png_uint_32)h, bit16 ? 16 : 8, types[k],
                     interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                     PNG_FILTER_TYPE_DEFAULT);
        png_write_info(p, in);
        const int passes = interlaced ? png_set_interlace_handling(p) : 1;
        for (int pass = 0; pass < passes; pass++)
            for (int y = 0; y < h; y++) {
                for (int i = 0; i < w * k; i++) {
                    const uint8_t v = hwc[(size_t)y * (size_t)w * (size_t)k + (size_t)i];
                    if (bit16) {
                        row[2 * i] = v; /* big-endian v * 257 */
                        row[2 * i + 1] = v;
                    } else {
                        row[i] = v;
                    }
                }
                png_write_row(p, row);
            }
        png_write_end(p, NULL);
    }
    if (p) png_destroy_write_struct(&p, in ? &in : NULL);
    free(row);
    if (f && fclose(f) != 0) ok = false;
    if (!ok) zgt_fail(__FILE__, __LINE__, "cannot write the PNG %s", path);
    return ok;
}

bool zgt_write_jpeg(const char *path, const uint8_t *hwc, int w, int h, int k, int quality) {
    FILE *f = fopen(path, "wb");
    if (!f || (k != 1 && k != 3 && k != 4)) {
        if (f) fclose(f);
        zgt_fail(__FILE__, __LINE__, "cannot write the JPEG %s", path);
        return false;
    }
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = k;
    c.in_color_space = k == 1 ? JCS_GRAYSCALE : k == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    c.comp_info[0].h_samp_factor = c.comp_info[0].v_samp_factor = 1; /* no chroma subsampling */
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = (JSAMPROW)(hwc + (size_t)c.next_scanline * (size_t)w * (size_t)k);
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return fclose(f) == 0;
}
