/* An ONNX model being built, node by node, and its file: the messages of
 * src/io/onnx.proto filled in and packed by protobuf-c (Debian's
 * libprotobuf-c; the C code is generated from the .proto at build time).
 * This file knows ONNX's containers (graph, nodes, initializers, typed
 * inputs and outputs); what a zgrad module becomes is the train layer's
 * business (src/train/onnx_export.c).
 *
 * Every piece of memory the messages point at is allocated here and
 * listed in `owned`, so one zg__onnx_free releases a model however far it
 * got. Builders report nothing: a failed allocation marks the model, and
 * zg__onnx_save reports it. */
#include "io_internal.h"

#include <onnx.pb-c.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ONNX raw_data is little-endian: the exporter copies tensors as they are in memory"
#endif

/* ONNX's IR version 8 goes with opsets up to 17. */
#define IR_VERSION 8
/* protobuf's limit on one message. */
#define MAX_BYTES ((size_t)2 << 30)

struct zg__onnx {
    ZgOnnx__ModelProto model;
    ZgOnnx__GraphProto graph;
    ZgOnnx__OperatorSetIdProto opset;
    ZgOnnx__OperatorSetIdProto *opsets[1];
    void **owned;
    size_t n_owned, cap_owned;
    size_t cap_node, cap_init, cap_in, cap_out;
    int64_t counter; /* numbers the values named by zg__onnx_name */
    bool failed;
};

/* Makes p (or, failing, the model) owned; p back. */
static void *keep(zg__onnx *g, void *p) {
    if (!p) {
        g->failed = true;
        return NULL;
    }
    if (g->n_owned == g->cap_owned) {
        size_t cap = g->cap_owned ? 2 * g->cap_owned : 64;
        void **o = zg__realloc(g->owned, cap * sizeof *o);
        if (!o) {
            free(p);
            g->failed = true;
            return NULL;
        }
        g->owned = o;
        g->cap_owned = cap;
    }
    g->owned[g->n_owned++] = p;
    return p;
}

static void *alloc(zg__onnx *g, size_t n) { return g->failed ? NULL : keep(g, zg__calloc(1, n ? n : 1)); }

static char *str(zg__onnx *g, const char *s) {
    char *c = alloc(g, strlen(s) + 1);
    if (c) memcpy(c, s, strlen(s) + 1);
    return c;
}

/* Appends item to the array *arr of *n pointers (capacity *cap). */
static void push(zg__onnx *g, void ***arr, size_t *n, size_t *cap, void *item) {
    if (g->failed || !item) {
        g->failed = true;
        return;
    }
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        void **a = zg__realloc(*arr, c * sizeof *a);
        if (!a) {
            g->failed = true;
            return;
        }
        *arr = a;
        *cap = c;
    }
    (*arr)[(*n)++] = item;
}

zg__onnx *zg__onnx_new(int64_t opset, const char *name, const char *doc) {
    zg__onnx *g = zg__calloc(1, sizeof *g);
    if (!g) return NULL;
    g->model = (ZgOnnx__ModelProto)ZG_ONNX__MODEL_PROTO__INIT;
    g->graph = (ZgOnnx__GraphProto)ZG_ONNX__GRAPH_PROTO__INIT;
    g->opset = (ZgOnnx__OperatorSetIdProto)ZG_ONNX__OPERATOR_SET_ID_PROTO__INIT;
    g->opset.domain = str(g, ""); /* the default domain: ai.onnx */
    g->opset.has_version = true;
    g->opset.version = opset;
    g->opsets[0] = &g->opset;
    g->model.has_ir_version = true;
    g->model.ir_version = IR_VERSION;
    g->model.producer_name = str(g, "zgrad");
    g->model.producer_version = str(g, ZG_VERSION);
    g->model.doc_string = str(g, doc);
    g->model.n_opset_import = 1;
    g->model.opset_import = g->opsets;
    g->model.graph = &g->graph;
    g->graph.name = str(g, name);
    return g;
}

void zg__onnx_free(zg__onnx *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_owned; i++) free(g->owned[i]);
    free(g->owned);
    free(g->graph.node);
    free(g->graph.initializer);
    free(g->graph.input);
    free(g->graph.output);
    free(g);
}

const char *zg__onnx_name(zg__onnx *g, const char *hint) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s_%lld", hint, (long long)g->counter++);
    return str(g, buf);
}

static int32_t elem_type(zg_dtype t) {
    return t == ZG_INT64 ? ZG_ONNX__TENSOR_PROTO__DATA_TYPE__INT64 : ZG_ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
}

void zg__onnx_initializer(zg__onnx *g, const char *name, zg_dtype type, const int64_t *dims, int ndim,
                          const void *data) {
    ZgOnnx__TensorProto *t = alloc(g, sizeof *t);
    int64_t *d = alloc(g, (size_t)ndim * sizeof *d);
    size_t n = type == ZG_INT64 ? sizeof(int64_t) : sizeof(float);
    for (int i = 0; i < ndim; i++) n *= (size_t)dims[i];
    void *raw = alloc(g, n);
    if (!t || !d || !raw) return;
    *t = (ZgOnnx__TensorProto)ZG_ONNX__TENSOR_PROTO__INIT;
    if (ndim) memcpy(d, dims, (size_t)ndim * sizeof *d); /* a scalar has no dims */
    memcpy(raw, data, n);
    t->n_dims = (size_t)ndim;
    t->dims = d;
    t->has_data_type = true;
    t->data_type = elem_type(type);
    t->name = str(g, name);
    t->has_raw_data = true;
    t->raw_data = (ProtobufCBinaryData){n, raw};
    push(g, (void ***)&g->graph.initializer, &g->graph.n_initializer, &g->cap_init, t);
}

void zg__onnx_value(zg__onnx *g, bool output, const char *name, zg_dtype type, const int64_t *dims,
                    const char *const *params, int ndim) {
    ZgOnnx__ValueInfoProto *v = alloc(g, sizeof *v);
    ZgOnnx__TypeProto *tp = alloc(g, sizeof *tp);
    ZgOnnx__TypeProto__Tensor *tt = alloc(g, sizeof *tt);
    ZgOnnx__TensorShapeProto *sh = alloc(g, sizeof *sh);
    ZgOnnx__TensorShapeProto__Dimension **dim = alloc(g, (size_t)ndim * sizeof *dim);
    if (!v || !tp || !tt || !sh || !dim) return;
    for (int i = 0; i < ndim; i++) {
        ZgOnnx__TensorShapeProto__Dimension *d = alloc(g, sizeof *d);
        if (!d) return;
        *d = (ZgOnnx__TensorShapeProto__Dimension)ZG_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
        if (params && params[i]) {
            d->value_case = ZG_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = str(g, params[i]);
        } else {
            d->value_case = ZG_ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        dim[i] = d;
    }
    *sh = (ZgOnnx__TensorShapeProto)ZG_ONNX__TENSOR_SHAPE_PROTO__INIT;
    sh->n_dim = (size_t)ndim;
    sh->dim = dim;
    *tt = (ZgOnnx__TypeProto__Tensor)ZG_ONNX__TYPE_PROTO__TENSOR__INIT;
    tt->has_elem_type = true;
    tt->elem_type = elem_type(type);
    tt->shape = sh;
    *tp = (ZgOnnx__TypeProto)ZG_ONNX__TYPE_PROTO__INIT;
    tp->value_case = ZG_ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    *v = (ZgOnnx__ValueInfoProto)ZG_ONNX__VALUE_INFO_PROTO__INIT;
    v->name = str(g, name);
    v->type = tp;
    if (output) push(g, (void ***)&g->graph.output, &g->graph.n_output, &g->cap_out, v);
    else push(g, (void ***)&g->graph.input, &g->graph.n_input, &g->cap_in, v);
}

static ZgOnnx__AttributeProto *attribute(zg__onnx *g, const zg__onnx_attr *a) {
    ZgOnnx__AttributeProto *p = alloc(g, sizeof *p);
    if (!p) return NULL;
    *p = (ZgOnnx__AttributeProto)ZG_ONNX__ATTRIBUTE_PROTO__INIT;
    p->name = str(g, a->name);
    p->has_type = true;
    if (a->kind == ZG__ONNX_INTS) {
        p->type = ZG_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
        p->ints = alloc(g, (size_t)a->n * sizeof *p->ints);
        if (p->ints && a->n) memcpy(p->ints, a->ints, (size_t)a->n * sizeof *p->ints);
        p->n_ints = (size_t)a->n;
    } else if (a->kind == ZG__ONNX_FLOAT) {
        p->type = ZG_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
        p->has_f = true;
        p->f = a->f;
    } else {
        p->type = ZG_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
        p->has_i = true;
        p->i = a->i;
    }
    return p;
}

static char **names(zg__onnx *g, const char *const *v, int n) {
    char **out = alloc(g, (size_t)n * sizeof *out);
    for (int i = 0; out && i < n; i++) out[i] = str(g, v[i]);
    return out;
}

void zg__onnx_node_outs(zg__onnx *g, const char *op, const char *const *in, int n_in, const zg__onnx_attr *attrs,
                        int n_attrs, const char *const *out, int n_out) {
    ZgOnnx__NodeProto *node = alloc(g, sizeof *node);
    ZgOnnx__AttributeProto **a = alloc(g, (size_t)n_attrs * sizeof *a);
    if (!node || !a) return;
    *node = (ZgOnnx__NodeProto)ZG_ONNX__NODE_PROTO__INIT;
    for (int i = 0; i < n_attrs; i++) a[i] = attribute(g, &attrs[i]);
    node->n_input = (size_t)n_in;
    node->input = names(g, in, n_in);
    node->n_output = (size_t)n_out;
    node->output = names(g, out, n_out);
    node->name = str(g, out[0]);
    node->op_type = str(g, op);
    node->n_attribute = (size_t)n_attrs;
    node->attribute = a;
    push(g, (void ***)&g->graph.node, &g->graph.n_node, &g->cap_node, node);
}

const char *zg__onnx_node(zg__onnx *g, const char *op, const char *const *in, int n_in, const zg__onnx_attr *attrs,
                          int n_attrs) {
    const char *out = zg__onnx_name(g, op);
    if (out) zg__onnx_node_outs(g, op, in, n_in, attrs, n_attrs, &out, 1);
    return g->failed ? "" : out;
}

int zg__onnx_save(zg__onnx *g, const char *fn, const char *path) {
    if (g->failed) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory building the ONNX graph", fn);
    size_t n = zg_onnx__model_proto__get_packed_size(&g->model);
    if (n >= MAX_BYTES)
        return zg__fail(ZG_ERR_ARG, "%s: the model takes %zu bytes, over protobuf's 2 GiB limit for one ONNX file", fn,
                        n);
    uint8_t *buf = zg__malloc(n ? n : 1);
    if (!buf) return zg__fail(ZG_ERR_NOMEM, "%s: out of memory (%zu bytes)", fn, n);
    size_t k = zg_onnx__model_proto__pack(&g->model, buf);
    int rc = k == n ? zg__write_atomic(fn, path, buf, n)
                    : zg__fail(ZG_ERR_STATE, "%s: protobuf-c packed %zu of %zu bytes", fn, k, n);
    free(buf);
    return rc;
}
