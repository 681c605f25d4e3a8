/* The default generator: xoshiro256** seeded through splitmix64. Normals by
 * Box-Muller, one value per pair of uniforms: keeping the second value for
 * the next call would be state outside the four words that checkpoints
 * save, and a resumed run would then draw different numbers. */
#include "tensor_internal.h"

#include <math.h>

static uint64_t S[4] = {0x9E3779B97F4A7C15ull, 0xBF58476D1CE4E5B9ull, 0x94D049BB133111EBull, 1};

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void zg_manual_seed(uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) S[i] = splitmix(&x);
}

void zg_rng_get_state(uint64_t state[4]) { memcpy(state, S, sizeof S); }

void zg_rng_set_state(const uint64_t state[4]) {
    memcpy(S, state, sizeof S);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t zg__rng_next(void) {
    uint64_t r = rotl(S[1] * 5, 7) * 9;
    uint64_t t = S[1] << 17;
    S[2] ^= S[0];
    S[3] ^= S[1];
    S[1] ^= S[2];
    S[0] ^= S[3];
    S[2] ^= t;
    S[3] = rotl(S[3], 45);
    return r;
}

/* 24 random bits: every value is exact in float and < 1. */
float zg__rng_uniform(void) { return (float)(zg__rng_next() >> 40) * (1.0f / 16777216.0f); }

float zg__rng_normal(void) {
    double u1, u2;
    do u1 = (double)(zg__rng_next() >> 11) * (1.0 / 9007199254740992.0);
    while (u1 <= 0.0);
    u2 = (double)(zg__rng_next() >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}
