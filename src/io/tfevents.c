/* TensorBoard event files: a sequence of records in TFRecord framing,
 *
 *     uint64 length, uint32 masked_crc32c(length), data, uint32 masked_crc32c(data)
 *
 * (little-endian), each record's data one Event protobuf:
 *
 *     Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
 *               Summary summary = 5; }
 *     Summary { repeated Value value = 1; }
 *     Value   { string tag = 1; float simple_value = 2; }
 *
 * The first event of a file names its version ("brain.Event:2"); then one
 * scalar a record, as TensorBoard's own writers do. CRC-32C is the
 * Castagnoli polynomial (reflected 0x82F63B78), initial value and final
 * xor all ones; the mask rotates it right by 15 bits and adds 0xa282ead8
 * (so that a CRC of data holding CRCs does not degenerate). */
#include "io_internal.h"

#include <pthread.h>

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (c & 1 ? 0x82F63B78u : 0);
        crc_table[i] = c;
    }
}

uint32_t zg__crc32c(const void *data, size_t n) {
    pthread_once(&crc_once, crc_init);
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t zg__crc32c_masked(const void *data, size_t n) {
    uint32_t c = zg__crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

void zg__tfrecord_put(zg__strbuf *file, const void *data, size_t n) {
    unsigned char len[8], crc[4];
    zg__le_bytes(len, (uint64_t)n, 8);
    zg__sb_put(file, len, 8);
    zg__le_bytes(crc, zg__crc32c_masked(len, 8), 4);
    zg__sb_put(file, crc, 4);
    zg__sb_put(file, data, n);
    zg__le_bytes(crc, zg__crc32c_masked(data, n), 4);
    zg__sb_put(file, crc, 4);
}

enum { EVENT_WALL_TIME = 1, EVENT_STEP = 2, EVENT_FILE_VERSION = 3, EVENT_SUMMARY = 5 };
enum { SUMMARY_VALUE = 1 };
enum { VALUE_TAG = 1, VALUE_SIMPLE_VALUE = 2 };

/* The event in ev as one record of file; ev is freed. */
static void put_event(zg__strbuf *file, zg__strbuf *ev) {
    if (ev->failed) file->failed = true;
    else zg__tfrecord_put(file, ev->s, ev->n);
    zg__sb_free(ev);
}

void zg__tfevent_version(zg__strbuf *file, double wall_time) {
    zg__strbuf ev = {0};
    static const char version[] = "brain.Event:2";
    zg__pb_double(&ev, EVENT_WALL_TIME, wall_time);
    zg__pb_bytes(&ev, EVENT_FILE_VERSION, version, sizeof version - 1);
    put_event(file, &ev);
}

void zg__tfevent_scalar(zg__strbuf *file, double wall_time, int64_t step, const char *tag, float value) {
    zg__strbuf val = {0}, sum = {0}, ev = {0};
    zg__pb_bytes(&val, VALUE_TAG, tag, strlen(tag));
    zg__pb_float(&val, VALUE_SIMPLE_VALUE, value);
    zg__pb_message(&sum, SUMMARY_VALUE, &val);
    zg__pb_double(&ev, EVENT_WALL_TIME, wall_time);
    zg__pb_int64(&ev, EVENT_STEP, step);
    zg__pb_message(&ev, EVENT_SUMMARY, &sum);
    zg__sb_free(&val);
    zg__sb_free(&sum);
    put_event(file, &ev);
}
