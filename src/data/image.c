/* PNG and JPEG files decoded from memory with Debian's libpng and
 * libjpeg-turbo (memory, so that the file readers and a fuzzer run the
 * same code), into bytes [C, H, W] as torchvision's loader and ToTensor
 * give them: palette and low bit depths expanded, 16-bit samples reduced
 * to 8 (libpng's strip), alpha dropped (as PIL's convert("RGB") drops
 * it), grey repeated into colour, colour turned grey as PIL's
 * convert("L") (ITU-R 601-2 luma, rounded). A file that is damaged or cut
 * short is an error, as PIL refuses a truncated image: libjpeg's warnings
 * (corrupt data, a premature end) are errors here. */
#include "data_internal.h"

#include <errno.h>
#include <math.h>
#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <sys/stat.h>

/* The header's size against the limits and the size asked for. */
static int check_size(const zg__image_info *info, int64_t want_h, int64_t want_w, char *err, size_t n) {
    if (info->height < 1 || info->width < 1 || info->height * info->width > ZG__IMAGE_MAX_PIXELS) {
        snprintf(err, n, "%lldx%lld pixels (at most %lld pixels are accepted)", (long long)info->width,
                 (long long)info->height, (long long)ZG__IMAGE_MAX_PIXELS);
        return -1;
    }
    if (want_h > 0 && (info->height != want_h || info->width != want_w)) {
        snprintf(err, n, "the image is %lldx%lld (height x width), the data set's images are %lldx%lld (the "
                 "first image's size); --image-size H,W resizes every image to one size", (long long)info->height,
                 (long long)info->width, (long long)want_h, (long long)want_w);
        return -1;
    }
    return 0;
}

/* Pixels [H, W, k] (k = info's channels) into out [C, H, W]. */
static void to_chw(const uint8_t *hwc, const zg__image_info *info, int want_c, uint8_t *out) {
    const int64_t hw = info->height * info->width;
    const int k = info->channels, c_out = want_c ? want_c : k;
    for (int64_t p = 0; p < hw; p++) {
        const uint8_t *px = hwc + p * k;
        if (k == c_out) {
            for (int c = 0; c < k; c++) out[c * hw + p] = px[c];
        } else if (k == 1) {
            for (int c = 0; c < c_out; c++) out[c * hw + p] = px[0];
        } else { /* PIL's L24: 16-bit fixed-point weights 0.299, 0.587, 0.114 */
            out[p] = (uint8_t)(((uint32_t)px[0] * 19595 + (uint32_t)px[1] * 38470 + (uint32_t)px[2] * 7471 + 0x8000) >> 16);
        }
    }
}

/* ---- PNG ------------------------------------------------------------------- */

typedef struct {
    const uint8_t *data;
    size_t len, pos;
    char *err;
    size_t err_len;
} png_mem;

static void png_read_mem(png_structp p, png_bytep out, size_t k) {
    png_mem *m = png_get_io_ptr(p);
    if (k > m->len - m->pos) png_error(p, "the file ends early (truncated)");
    memcpy(out, m->data + m->pos, k);
    m->pos += k;
}

static void png_on_error(png_structp p, png_const_charp msg) {
    png_mem *m = png_get_error_ptr(p);
    snprintf(m->err, m->err_len, "PNG: %s", msg);
    png_longjmp(p, 1);
}

static void png_on_warning(png_structp p, png_const_charp msg) {
    (void)p;
    (void)msg;
}

static int decode_png(const uint8_t *data, size_t len, int want_c, int64_t want_h, int64_t want_w, uint8_t *out,
                      zg__image_info *info, char *err, size_t n) {
    png_mem m = {data, len, 0, err, n};
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &m, png_on_error, png_on_warning);
    png_infop in = p ? png_create_info_struct(p) : NULL;
    uint8_t *volatile pix = NULL;
    png_bytep *volatile rows = NULL;
    if (!in) {
        png_destroy_read_struct(p ? &p : NULL, NULL, NULL);
        snprintf(err, n, "out of memory");
        return -1;
    }
    if (setjmp(png_jmpbuf(p))) {
        png_destroy_read_struct(&p, &in, NULL);
        free(pix);
        free(rows);
        return -1;
    }
    png_set_read_fn(p, &m, png_read_mem);
    png_read_info(p, in);
    int ctype = png_get_color_type(p, in);
    info->width = png_get_image_width(p, in);
    info->height = png_get_image_height(p, in);
    info->channels = ctype & PNG_COLOR_MASK_COLOR ? 3 : 1;
    int rc = check_size(info, want_h, want_w, err, n);
    if (!rc && out) {
        png_set_expand(p);      /* palette -> RGB, grey below 8 bits -> 8, tRNS -> alpha */
        png_set_strip_16(p);    /* 16-bit samples -> 8 */
        png_set_strip_alpha(p); /* as PIL's convert("RGB") / ("L") */
        png_set_interlace_handling(p);
        png_read_update_info(p, in);
        const size_t row = png_get_rowbytes(p, in), h = (size_t)info->height;
        pix = zg__malloc(row * h);
        rows = zg__malloc(h * sizeof *rows);
        if (!pix || !rows) png_error(p, "out of memory");
        for (size_t y = 0; y < h; y++) rows[y] = pix + y * row;
        png_read_image(p, rows);
        png_read_end(p, NULL);
        to_chw(pix, info, want_c, out);
    }
    png_destroy_read_struct(&p, &in, NULL);
    free(pix);
    free(rows);
    return rc;
}

/* ---- JPEG ------------------------------------------------------------------ */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char *err;
    size_t err_len;
} jpeg_err;

static void jpeg_fail(j_common_ptr c) {
    jpeg_err *e = (jpeg_err *)c->err;
    char msg[JMSG_LENGTH_MAX];
    c->err->format_message(c, msg);
    snprintf(e->err, e->err_len, "JPEG: %s", msg);
    longjmp(e->jb, 1);
}

/* Level -1 is a warning (corrupt data, a premature end): an error here;
 * trace messages (levels >= 0) are ignored. */
static void jpeg_message(j_common_ptr c, int level) {
    if (level < 0) jpeg_fail(c);
}

static int decode_jpeg(const uint8_t *data, size_t len, int want_c, int64_t want_h, int64_t want_w, uint8_t *out,
                       zg__image_info *info, char *err, size_t n) {
    struct jpeg_decompress_struct d;
    jpeg_err e;
    uint8_t *volatile pix = NULL;
    d.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = jpeg_fail;
    e.pub.emit_message = jpeg_message;
    e.err = err;
    e.err_len = n;
    if (setjmp(e.jb)) {
        jpeg_destroy_decompress(&d);
        free(pix);
        return -1;
    }
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, data, (unsigned long)len);
    jpeg_read_header(&d, TRUE);
    if (d.num_components != 1 && d.num_components != 3) {
        snprintf(err, n, "JPEG with %d colour components (CMYK?): only greyscale and colour (RGB) are supported",
                 d.num_components);
        jpeg_destroy_decompress(&d);
        return -1;
    }
    info->width = d.image_width;
    info->height = d.image_height;
    info->channels = d.num_components;
    int rc = check_size(info, want_h, want_w, err, n);
    if (!rc && out) {
        d.out_color_space = d.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
        jpeg_start_decompress(&d);
        const size_t row = (size_t)d.output_width * (size_t)d.output_components;
        pix = zg__malloc(row * (size_t)d.output_height);
        if (!pix) {
            snprintf(err, n, "out of memory");
            jpeg_destroy_decompress(&d);
            return -1;
        }
        while (d.output_scanline < d.output_height) {
            JSAMPROW r = pix + (size_t)d.output_scanline * row;
            jpeg_read_scanlines(&d, &r, 1);
        }
        jpeg_finish_decompress(&d);
        to_chw(pix, info, want_c, out);
    }
    jpeg_destroy_decompress(&d);
    free(pix);
    return rc;
}

/* ---- files ------------------------------------------------------------------- */

static int decode_any(const uint8_t *data, size_t len, int want_c, int64_t want_h, int64_t want_w, uint8_t *out,
                      zg__image_info *info, char *err, size_t err_len) {
    memset(info, 0, sizeof *info);
    if (len >= 8 && !memcmp(data, "\x89PNG\r\n\x1a\n", 8))
        return decode_png(data, len, want_c, want_h, want_w, out, info, err, err_len);
    if (len >= 3 && !memcmp(data, "\xFF\xD8\xFF", 3))
        return decode_jpeg(data, len, want_c, want_h, want_w, out, info, err, err_len);
    snprintf(err, err_len, "%s", len ? "not a PNG or JPEG file (its first bytes are neither's signature)"
                                     : "empty file");
    return -1;
}

/* Source coordinate and weights of output index o along an axis of n_in
 * -> n_out samples, as PyTorch's bilinear upsampling with align_corners
 * false: s = (o + 1/2) n_in / n_out - 1/2, clamped at 0; i0 = floor(s),
 * i1 = i0 + 1 but within the axis, weight s - i0 on i1. */
static void axis_weights(int64_t o, int64_t n_in, int64_t n_out, int64_t *i0, int64_t *i1, float *l1) {
    const float scale = (float)n_in / (float)n_out;
    float src = scale * ((float)o + 0.5f) - 0.5f;
    if (src < 0) src = 0;
    *i0 = (int64_t)src;
    if (*i0 > n_in - 1) *i0 = n_in - 1;
    *i1 = *i0 + (*i0 < n_in - 1);
    *l1 = src - (float)*i0;
}

/* Bytes [c, h, w] to [c, oh, ow] as torchvision's Resize([oh, ow],
 * antialias=False) on a uint8 tensor: bilinear interpolation in float
 * (F.interpolate, align_corners=False), rounded half to even, clamped to
 * [0, 255]. */
static void resize_bilinear(const uint8_t *in, int c, int64_t h, int64_t w, uint8_t *out, int64_t oh, int64_t ow) {
    for (int64_t y = 0; y < oh; y++) {
        int64_t y0, y1;
        float ly;
        axis_weights(y, h, oh, &y0, &y1, &ly);
        for (int64_t x = 0; x < ow; x++) {
            int64_t x0, x1;
            float lx;
            axis_weights(x, w, ow, &x0, &x1, &lx);
            for (int k = 0; k < c; k++) {
                const uint8_t *p = in + (int64_t)k * h * w;
                const float v = (1 - ly) * ((1 - lx) * p[y0 * w + x0] + lx * p[y0 * w + x1]) +
                                ly * ((1 - lx) * p[y1 * w + x0] + lx * p[y1 * w + x1]);
                const float r = nearbyintf(v);
                out[((int64_t)k * oh + y) * ow + x] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
            }
        }
    }
}

int zg__image_decode(const uint8_t *data, size_t len, int want_c, int64_t want_h, int64_t want_w, bool resize,
                     uint8_t *out, zg__image_info *info, char *err, size_t err_len) {
    if (!resize || want_h <= 0) return decode_any(data, len, want_c, want_h, want_w, out, info, err, err_len);
    /* The header first: an image of the size asked for is decoded as is. */
    if (decode_any(data, len, want_c, 0, 0, NULL, info, err, err_len)) return -1;
    if (!out) return 0;
    if (info->height == want_h && info->width == want_w)
        return decode_any(data, len, want_c, want_h, want_w, out, info, err, err_len);
    const int c = want_c ? want_c : info->channels;
    uint8_t *tmp = zg__malloc((size_t)(c * info->height * info->width));
    if (!tmp) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    int rc = decode_any(data, len, want_c, 0, 0, tmp, info, err, err_len);
    if (!rc) resize_bilinear(tmp, c, info->height, info->width, out, want_h, want_w);
    free(tmp);
    return rc;
}

int64_t zg__read_whole(const char *path, uint8_t **data, size_t *cap, size_t max, char *err, size_t err_len) {
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "cannot open: %s", f ? "not a regular file" : strerror(errno));
        if (f) fclose(f);
        return -1;
    }
    if ((uint64_t)st.st_size > max) {
        snprintf(err, err_len, "%lld bytes (at most %zu are read)", (long long)st.st_size, max);
        fclose(f);
        return -1;
    }
    const size_t len = (size_t)st.st_size;
    if (len > *cap || !*data) {
        uint8_t *nd = zg__realloc(*data, len ? len : 1);
        if (!nd) {
            snprintf(err, err_len, "out of memory");
            fclose(f);
            return -1;
        }
        *data = nd;
        *cap = len ? len : 1;
    }
    const size_t got = fread(*data, 1, len, f);
    const bool bad = ferror(f) != 0;
    fclose(f);
    if (bad || got != len) {
        snprintf(err, err_len, "read error: %s", bad ? strerror(errno ? errno : EIO) : "the file changed size");
        return -1;
    }
    return (int64_t)len;
}

/* A file larger than this is no image of a data set. */
#define MAX_FILE ((size_t)1 << 28)

int zg__image_load(const zg_dataset *ds, int64_t i, uint8_t *out, uint8_t **buf, size_t *cap, char *err,
                   size_t err_len) {
    const char *path = ds->buf->paths[i];
    char why[400];
    zg__image_info info;
    int64_t len = zg__read_whole(path, buf, cap, MAX_FILE, why, sizeof why);
    if (len >= 0 && zg__image_decode(*buf, (size_t)len, (int)ds->shape[0], ds->shape[1], ds->shape[2],
                                     ds->buf->image_resize, out, &info, why, sizeof why) == 0)
        return 0;
    snprintf(err, err_len, "'%s': %s", path, why);
    return -1;
}
