/* The io layer: file formats of tensors (safetensors), the protobuf wire
 * format (pbwire.c) and TensorBoard's event files (tfevents.c). Not
 * installed. */
#ifndef ZG_IO_INTERNAL_H
#define ZG_IO_INTERNAL_H

#include "../tensor/tensor_internal.h"

/* zg_safetensors_read with the kind of failure as its status: ZG_OK (*out
 * set), ZG_ERR_IO (the file cannot be opened or read), ZG_ERR_FORMAT (it
 * is not a valid safetensors file), ZG_ERR_NOMEM or ZG_ERR_ARG; the error
 * text as zg_safetensors_read's. */
int zg__safetensors_open(const char *path, zg_safetensors **out);
/* The number of metadata entries, and the key of entry i (header order),
 * for readers that refuse keys they do not know. */
int zg__safetensors_meta_count(const zg_safetensors *st);
const char *zg__safetensors_meta_key(const zg_safetensors *st, int i);

/* ---- protobuf, write side (pbwire.c) ------------------------------------ */

/* v as n little-endian bytes into out. */
void zg__le_bytes(unsigned char *out, uint64_t v, int bytes);
void zg__pb_varint(zg__strbuf *b, uint64_t v);
/* One field each: its key, then the value in its wire type. */
void zg__pb_int64(zg__strbuf *b, int field, int64_t v);
void zg__pb_double(zg__strbuf *b, int field, double v);
void zg__pb_float(zg__strbuf *b, int field, float v);
void zg__pb_bytes(zg__strbuf *b, int field, const void *data, size_t n);
/* msg (an encoded message) as an embedded message field. */
void zg__pb_message(zg__strbuf *b, int field, const zg__strbuf *msg);

/* ---- TensorBoard event files (tfevents.c) --------------------------------- */

/* CRC-32C of data, and TFRecord's masked form of it. */
uint32_t zg__crc32c(const void *data, size_t n);
uint32_t zg__crc32c_masked(const void *data, size_t n);
/* data[0..n) as one TFRecord record appended to file. */
void zg__tfrecord_put(zg__strbuf *file, const void *data, size_t n);
/* The file_version event that starts an event file. */
void zg__tfevent_version(zg__strbuf *file, double wall_time);
/* An event holding one scalar summary value. */
void zg__tfevent_scalar(zg__strbuf *file, double wall_time, int64_t step, const char *tag, float value);

#endif
