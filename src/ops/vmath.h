/* exp and erfc written so that loops over them vectorise (libm's expf and
 * erff are calls, one element at a time): straight-line float arithmetic,
 * selects instead of branches. Private to src/ops.
 *
 * zg__vexpf(x) = e^x: x = n ln2 + r with |r| <= ln2 / 2 (n by the 1.5 * 2^23
 * rounding trick, ln2 split in a short and a long part so n ln2 is exact),
 * e^r by its Taylor series to r^7 (truncation below 6e-9 relative), 2^n
 * put in the exponent bits in two halves (no overflow of the bits at
 * n = 128). Within 2 ulp of expf; 0 below -87.34 (e^x < FLT_MIN), inf
 * above 88.72, NaN for NaN.
 *
 * zg__verfc_nonneg(z) = erfc(z), z >= 0, relative error below 4e-7:
 *   z < 0.7:  1 - z P(z^2), P a degree-6 least-squares fit of erf(z) / z
 *             (below 0.7, 1 - erf loses at most a factor 2 to cancellation);
 *   z >= 0.7: e^(-z^2) Q(s) / z, Q a degree-12 fit of erfc(z) e^(z^2) z in
 *             s = (1/z - 0.7643) / 0.6643 in [-1, 1] (z in [0.7, 10]); the
 *           coefficients were fitted for zgrad in double precision to the
 *           mpmath values on Chebyshev nodes. e^(-z^2) is one exponential
 *           of -h^2 - (z-h)(z+h) with h = z cut to 12 significant bits:
 *           h^2 is exact and taken whole into the reduced argument, so no
 *           rounding of z^2 (~50 at z = 7) reaches the exponent. */
#ifndef ZG_OPS_VMATH_H
#define ZG_OPS_VMATH_H

#include "../kernels/kernels_internal.h"

#include <math.h>

/* e^(a + b) with b small beside a (|b| < 0.05): n from the rounded sum,
 * r = ((a - n ln2) + b), so a reaches r exactly and only b's own rounding
 * error is added (the split arguments of zg__vexp_neg_sq). zg__vexpf is the
 * case b = 0: r + 0 is r (a -0 only becomes +0, and e^-0 = e^+0). */
static inline float zg__vexpf_sum(float a, float b) {
    const float lo = -87.33654f, hi = 88.72283f, x = a + b;
    const float xc = x > lo ? (x < hi ? x : hi) : lo; /* NaN -> lo: the conversions below stay defined */
    const float n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f;
    const float r = ((a - n * 0.693359375f) - n * -2.12194440e-4f) + b;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t ni = (int32_t)n, n1 = ni / 2, n2 = ni - n1;
    const float y = p * zg__bits_f32((uint32_t)(n1 + 127) << 23) * zg__bits_f32((uint32_t)(n2 + 127) << 23);
    return x != x ? x : x < lo ? 0.0f : x > hi ? INFINITY : y;
}

static inline float zg__vexpf(float x) { return zg__vexpf_sum(x, 0.0f); }

/* e^(-s z^2) for z >= 0 and s 1 or 0.5 (exact scalings of h^2): one
 * exponential of the exact -s h^2 and the small -s (z - h)(z + h). */
static inline float zg__vexp_neg_sq(float z, float s) {
    const float h = zg__bits_f32(zg__f32_bits(z) & 0xfffff000u);
    return zg__vexpf_sum(-s * (h * h), -s * ((z - h) * (z + h)));
}

/* erfc(z) for z >= 0 given e = e^(-z^2) (used where 0.7 <= z < 10): the
 * caller may have it from a more exact argument than z itself. */
static inline float zg__verfc_nonneg_e(float z, float e) {
    const float z2 = z * z;
    float ps = 7.933139917e-05f;
    ps = ps * z2 - 8.034754219e-04f;
    ps = ps * z2 + 5.191209616e-03f;
    ps = ps * z2 - 2.685539584e-02f;
    ps = ps * z2 + 1.128362567e-01f;
    ps = ps * z2 - 3.761262988e-01f;
    ps = ps * z2 + 1.128379167e+00f;
    const float small = 1.0f - z * ps;
    const float zc = z < 0.7f ? 0.7f : z < 10.0f ? z : 10.0f; /* the large branch stays finite */
    const float u = 1.0f / zc, s = (u - 0.764285714f) * (1.0f / 0.664285714f);
    float q = -9.580287284e-05f;
    q = q * s + 2.520729362e-05f;
    q = q * s + 4.654289009e-04f;
    q = q * s - 6.066290650e-04f;
    q = q * s + 1.779870887e-04f;
    q = q * s + 2.716709568e-04f;
    q = q * s - 1.484851307e-03f;
    q = q * s + 4.620167715e-03f;
    q = q * s - 9.324018903e-03f;
    q = q * s + 1.099534000e-02f;
    q = q * s + 9.273639185e-03f;
    q = q * s - 1.119351257e-01f;
    q = q * s + 4.657682066e-01f;
    const float large = e * q * u;
    return z != z ? z : z < 0.7f ? small : z < 10.0f ? large : 0.0f;
}

static inline float zg__verfc_nonneg(float z) {
    const float zc = z < 0.7f ? 0.7f : z < 10.0f ? z : 10.0f;
    return zg__verfc_nonneg_e(z, zg__vexp_neg_sq(zc, 1.0f));
}

/* Phi(x) = P(N(0,1) <= x) = erfc(-x / sqrt 2) / 2, accurate in both tails,
 * given e = e^(-x^2 / 2): erfc's e^(-t^2) taken from x itself, exact up to
 * vexp's error, not from the rounded t = -x / sqrt 2 (whose rounding
 * would cost up to 2 t^2 2^-24 relative). The same e is the normal density
 * times sqrt(2 pi), so GELU's derivative needs one exponential. */
static inline float zg__vnormal_cdf_e(float x, float e) {
    const float t = x * -0.70710678118654752440f;
    const float c = 0.5f * zg__verfc_nonneg_e(fabsf(t), e);
    return t >= 0.0f ? c : 1.0f - c;
}

static inline float zg__vnormal_cdf(float x) { return zg__vnormal_cdf_e(x, zg__vexp_neg_sq(fabsf(x), 0.5f)); }

#endif
