/* PNG and JPEG files for the tests, written with libpng and libjpeg
 * (tests/image_writer.c), so that the image tests make their own data. */
#ifndef ZGT_IMAGE_WRITER_H
#define ZGT_IMAGE_WRITER_H

#include <stdbool.h>
#include <stdint.h>

/* Pixels [h, w, k] (k = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA) as a PNG;
 * bit16: 16-bit samples (v * 257, so the high byte is v); interlaced:
 * Adam7. False (and a failed check) when it cannot be written. */
bool zgt_write_png(const char *path, const uint8_t *hwc, int w, int h, int k, bool bit16, bool interlaced);
/* Pixels [h, w, k] (k = 1 grey, 3 RGB, 4 CMYK) as a baseline JPEG. */
bool zgt_write_jpeg(const char *path, const uint8_t *hwc, int w, int h, int k, int quality);
/* A test pattern [h, w, k]: (31 y + 17 x + 89 c + 7 seed) mod 256. */
void zgt_pattern(uint8_t *hwc, int w, int h, int k, int seed);

#endif
