/* The protobuf wire format, write side, for the messages zgrad encodes by
 * hand (TensorBoard's Event). A field is a key, (number << 3) | wire type,
 * as a varint, then its value: a varint (type 0), 8 little-endian bytes
 * (type 1), a varint length and that many bytes (type 2: strings and
 * embedded messages), or 4 little-endian bytes (type 5). A varint is 7 bits
 * a byte, lowest first, the high bit set on every byte but the last. */
#include "io_internal.h"

enum { WIRE_VARINT = 0, WIRE_I64 = 1, WIRE_LEN = 2, WIRE_I32 = 5 };

void zg__pb_varint(zg__strbuf *b, uint64_t v) {
    unsigned char out[10];
    size_t n = 0;
    do {
        out[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v) out[n] |= 0x80;
        n++;
    } while (v);
    zg__sb_put(b, out, n);
}

static void key(zg__strbuf *b, int field, int wire) { zg__pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wire); }

void zg__le_bytes(unsigned char *out, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) out[i] = (unsigned char)(v >> (8 * i));
}

static void little_endian(zg__strbuf *b, uint64_t v, int bytes) {
    unsigned char out[8];
    zg__le_bytes(out, v, bytes);
    zg__sb_put(b, out, (size_t)bytes);
}

/* int64 fields carry a negative value as its two's complement: 10 bytes. */
void zg__pb_int64(zg__strbuf *b, int field, int64_t v) {
    key(b, field, WIRE_VARINT);
    zg__pb_varint(b, (uint64_t)v);
}

void zg__pb_double(zg__strbuf *b, int field, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    key(b, field, WIRE_I64);
    little_endian(b, bits, 8);
}

void zg__pb_float(zg__strbuf *b, int field, float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    key(b, field, WIRE_I32);
    little_endian(b, bits, 4);
}

void zg__pb_bytes(zg__strbuf *b, int field, const void *data, size_t n) {
    key(b, field, WIRE_LEN);
    zg__pb_varint(b, (uint64_t)n);
    zg__sb_put(b, data, n);
}

/* An embedded message is its encoding as a length-delimited field; a
 * failed inner buffer fails the outer one. */
void zg__pb_message(zg__strbuf *b, int field, const zg__strbuf *msg) {
    if (msg->failed) b->failed = true;
    zg__pb_bytes(b, field, msg->s ? msg->s : "", msg->n);
}
