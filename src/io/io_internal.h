/* The io layer: file formats of tensors (safetensors), the protobuf wire
 * format (pbwire.c), TensorBoard's event files (tfevents.c) and ONNX
 * models (onnx_graph.c, over protobuf-c). Not installed. */
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

/* ---- ONNX models (onnx_graph.c) -------------------------------------------- */

/* A model under construction. The builders copy what they are given and
 * report nothing; a failed allocation makes zg__onnx_save fail. */
typedef struct zg__onnx zg__onnx;
/* A node attribute: an int, a float or a list of ints. */
typedef struct {
    const char *name;
    enum { ZG__ONNX_INT, ZG__ONNX_FLOAT, ZG__ONNX_INTS } kind;
    int64_t i;
    float f;
    const int64_t *ints;
    int n;
} zg__onnx_attr;
#define ZG__ONNX_I(nm, v) ((zg__onnx_attr){.name = (nm), .kind = ZG__ONNX_INT, .i = (v)})
#define ZG__ONNX_F(nm, v) ((zg__onnx_attr){.name = (nm), .kind = ZG__ONNX_FLOAT, .f = (v)})
#define ZG__ONNX_INTS(nm, arr, k) ((zg__onnx_attr){.name = (nm), .kind = ZG__ONNX_INTS, .ints = (arr), .n = (k)})

/* A model of the default domain's `opset` (NULL: out of memory). */
zg__onnx *zg__onnx_new(int64_t opset, const char *graph_name, const char *doc);
void zg__onnx_free(zg__onnx *g);
/* A new value name, "<hint>_<k>" (owned by the model). */
const char *zg__onnx_name(zg__onnx *g, const char *hint);
/* A constant tensor (float32 or int64; ndim 0: a scalar), data copied. */
void zg__onnx_initializer(zg__onnx *g, const char *name, zg_dtype type, const int64_t *dims, int ndim,
                          const void *data);
/* A graph input (or output): its type and shape, dimension i symbolic
 * (named params[i]) where params && params[i]. */
void zg__onnx_value(zg__onnx *g, bool output, const char *name, zg_dtype type, const int64_t *dims,
                    const char *const *params, int ndim);
/* A node of the default domain; zg__onnx_node names its one output and
 * returns the name. */
const char *zg__onnx_node(zg__onnx *g, const char *op, const char *const *in, int n_in, const zg__onnx_attr *attrs,
                          int n_attrs);
void zg__onnx_node_outs(zg__onnx *g, const char *op, const char *const *in, int n_in, const zg__onnx_attr *attrs,
                        int n_attrs, const char *const *out, int n_out);
/* Writes the model to path atomically. */
int zg__onnx_save(zg__onnx *g, const char *fn, const char *path);

#endif
