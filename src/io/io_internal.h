/* The io layer: file formats of tensors (safetensors). Not installed. */
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

#endif
