/* The sanitizer's records: one open-addressing map with linear probing,
 * keyed by address. Each event does O(1) work per tensor and allocates
 * only when the map grows. A record dies with its object (tensor,
 * optimizer, scheduler frees are events), so a new object at a reused
 * address starts clean; removal shifts the following run of the probe
 * sequence back, leaving no tombstones. */
#include "check_internal.h"

#include <stdlib.h>

static zg__san_entry *tab;
static size_t cap, used;

static size_t slot_of(const void *k, size_t c) {
    uint64_t h = (uint64_t)(uintptr_t)k * 0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 29)) & (c - 1);
}

zg__san_entry *zg__san_find(const void *k) {
    if (!tab) return NULL;
    for (size_t i = slot_of(k, cap);; i = (i + 1) & (cap - 1)) {
        if (tab[i].key == k) return &tab[i];
        if (!tab[i].key) return NULL;
    }
}

static void put(zg__san_entry *t, size_t c, const zg__san_entry *e) {
    size_t j = slot_of(e->key, c);
    while (t[j].key) j = (j + 1) & (c - 1);
    t[j] = *e;
}

static bool grow(void) {
    size_t nc = cap ? cap * 2 : 256;
    zg__san_entry *nt = zg__calloc(nc, sizeof *nt);
    if (!nt) return false;
    for (size_t i = 0; i < cap; i++)
        if (tab[i].key) put(nt, nc, &tab[i]);
    free(tab);
    tab = nt;
    cap = nc;
    return true;
}

zg__san_entry *zg__san_get(const void *k, int type) {
    zg__san_entry *e = zg__san_find(k);
    if (e) return e;
    if ((used + 1) * 2 > cap && !grow()) return NULL;
    size_t i = slot_of(k, cap);
    while (tab[i].key) i = (i + 1) & (cap - 1);
    tab[i] = (zg__san_entry){.key = k, .type = (uint8_t)type};
    used++;
    return &tab[i];
}

/* Removes slot i, then moves back each later record of the run whose home
 * slot does not lie cyclically in (i, j], so every probe still finds it. */
void zg__san_erase(const void *k) {
    zg__san_entry *e = zg__san_find(k);
    if (!e) return;
    size_t i = (size_t)(e - tab);
    tab[i].key = NULL;
    used--;
    for (size_t j = (i + 1) & (cap - 1); tab[j].key; j = (j + 1) & (cap - 1)) {
        size_t h = slot_of(tab[j].key, cap);
        bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
        if (stays) continue;
        tab[i] = tab[j];
        tab[j].key = NULL;
        i = j;
    }
}

void zg__san_clear(bool (*keep)(zg__san_entry *e)) {
    if (!tab) return;
    zg__san_entry *nt = zg__calloc(cap, sizeof *nt);
    used = 0;
    for (size_t i = 0; i < cap; i++)
        if (nt && tab[i].key && keep(&tab[i])) {
            put(nt, cap, &tab[i]);
            used++;
        }
    free(tab); /* out of memory: nothing is kept rather than a broken map */
    tab = used ? nt : NULL;
    if (!used) {
        free(nt);
        cap = 0;
    }
}

bool zg__san_nonempty(void) { return used > 0; }
