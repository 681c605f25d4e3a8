/* Reuse of gradient buffers within a backward pass. In the step arena
 * nothing is freed before the step ends, so a backward pass would hold
 * the gradient of every intermediate tensor at once, as much memory again
 * as the forward's activations. Once the engine has run a tensor's node,
 * the gradient it consumed is dead (unless something else of the pass
 * still refers to it): its buffer goes on a free list and the next arena
 * tensor of exactly that size takes it. The list lives in the freed
 * buffers themselves (each at least 64 bytes), so it costs no allocation;
 * it is per thread, as the arena, and forgets whatever the arena hands out
 * again (release to a mark, reset). */
#include "tensor_internal.h"

/* Under AddressSanitizer a listed buffer is poisoned past its list entry:
 * a read or write through a pointer that the pass should no longer use (a
 * gradient given back too early) fails the sanitizer build of every test,
 * at the access. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ZG_RECYCLE_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ZG_RECYCLE_ASAN 1
#endif
#ifdef ZG_RECYCLE_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

typedef struct free_buf {
    struct free_buf *next;
    size_t cap; /* bytes, a multiple of 64 */
    size_t pos; /* the arena mark where the buffer began */
} free_buf;

static _Thread_local free_buf *free_list;
static _Thread_local bool recycling;

static size_t cap_of(size_t nbytes) { return ((nbytes ? nbytes : 1) + 63) & ~(size_t)63; }

bool zg__recycle_enable(bool on) {
    bool prev = recycling;
    recycling = on;
    return prev;
}

bool zg__recycle_on(void) { return recycling; }

void *zg__recycle_take(size_t nbytes, size_t *pos) {
    const size_t cap = cap_of(nbytes);
    for (free_buf **p = &free_list; *p; p = &(*p)->next)
        if ((*p)->cap == cap) {
            free_buf *b = *p;
            *p = b->next;
            *pos = b->pos;
            UNPOISON(b, cap);
            return b;
        }
    return NULL;
}

void zg__recycle_put(zg__storage *s) {
    if (!s || !s->recyclable || s->recycled || s->bw_refs > 0) return;
    s->recycled = true;
    free_buf *b = s->data;
    b->cap = cap_of(s->nbytes);
    b->pos = s->arena_pos;
    b->next = free_list;
    free_list = b;
    POISON((unsigned char *)b + sizeof *b, b->cap - sizeof *b);
}

void zg__recycle_forget_from(size_t mark) {
    for (free_buf **p = &free_list; *p;)
        if ((*p)->pos >= mark) {
            free_buf *b = *p;
            *p = b->next;
            UNPOISON(b, b->cap); /* the arena's to hand out again */
        } else {
            p = &(*p)->next;
        }
}
