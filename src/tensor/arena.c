/* The step arena: a per-thread bump allocator over a list of blocks.
 * Reset moves the cursor back to the first block but keeps every block, so
 * a loop whose steps need the same memory never calls malloc again. */
#include "tensor_internal.h"

#define ZG_ARENA_ALIGN 64
#define ZG_ARENA_MIN_BLOCK ((size_t)4 << 20)

typedef struct block {
    struct block *next;
    size_t cap;  /* usable bytes after the header */
    size_t used;
    size_t base; /* total bytes used in the blocks before this one */
    unsigned char *mem;
} block;

typedef struct {
    block *head;
    block *cur;
} arena;

static _Thread_local arena A;

static size_t align_up(size_t n) { return (n + ZG_ARENA_ALIGN - 1) & ~(size_t)(ZG_ARENA_ALIGN - 1); }

static block *new_block(size_t need) {
    size_t cap = need > ZG_ARENA_MIN_BLOCK ? align_up(need) : ZG_ARENA_MIN_BLOCK;
    block *b = zg__malloc(sizeof *b);
    if (!b) return NULL;
    b->mem = zg__aligned_alloc(ZG_ARENA_ALIGN, cap);
    if (!b->mem) {
        free(b);
        return NULL;
    }
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    b->base = 0;
    return b;
}

void *zg__arena_alloc(size_t nbytes) {
    size_t n = align_up(nbytes ? nbytes : 1);
    block *b = A.cur;
    while (b && b->used + n > b->cap) {
        /* Move on to the next kept block (reset earlier) that fits. */
        block *nx = b->next;
        if (!nx) break;
        nx->used = 0;
        nx->base = b->base + b->used;
        A.cur = b = nx;
    }
    if (!b || b->used + n > b->cap) {
        block *nb = new_block(n);
        if (!nb) return NULL;
        if (b) {
            /* Insert after the current block so later kept blocks stay usable. */
            nb->next = b->next;
            b->next = nb;
            nb->base = b->base + b->used;
        } else {
            A.head = nb;
        }
        A.cur = b = nb;
    }
    void *p = b->mem + b->used;
    b->used += n;
    return p;
}

void *zg__arena_calloc(size_t nbytes) {
    void *p = zg__arena_alloc(nbytes);
    if (p) memset(p, 0, nbytes);
    return p;
}

size_t zg_arena_mark(void) { return A.cur ? A.cur->base + A.cur->used : 0; }

void zg_arena_release(size_t mark) {
    zg__recycle_forget_from(mark);
    /* Find the block holding `mark` and move the cursor back to it. */
    for (block *b = A.head; b; b = b->next) {
        if (mark <= b->base + b->used && mark >= b->base) {
            b->used = mark - b->base;
            A.cur = b;
            return;
        }
        if (b == A.cur) break;
    }
    zg_arena_reset();
}

void zg_arena_reset(void) {
    zg__recycle_forget_from(0);
    if (A.head) {
        A.head->used = 0;
        A.head->base = 0;
    }
    A.cur = A.head;
}

size_t zg_arena_bytes_used(void) { return zg_arena_mark(); }

size_t zg_arena_bytes_reserved(void) {
    size_t n = 0;
    for (block *b = A.head; b; b = b->next) n += b->cap;
    return n;
}

void zg_arena_free_all(void) {
    zg__recycle_forget_from(0);
    block *b = A.head;
    while (b) {
        block *nx = b->next;
        free(b->mem);
        free(b);
        b = nx;
    }
    A.head = A.cur = NULL;
}
