/* The vectorisable exp and erfc of src/ops/vmath.h against libm's double
 * versions, over dense grids: the error bounds the header states. */
#include <math.h>
#include <stdio.h>

#include "harness.h"
#include "ops/vmath.h"

/* float ulp at v */
static double ulp(double v) { return nextafterf((float)fabs(v), INFINITY) - (float)fabs(v); }

TEST(vexpf_within_2_ulp_of_exp) {
    double worst = 0;
    for (double x = -87.3; x <= 88.7; x += 1.3e-4) {
        const float xf = (float)x;
        const double ref = exp((double)xf), got = zg__vexpf(xf);
        const double e = fabs(got - ref) / ulp(ref);
        if (e > worst) worst = e;
    }
    printf("  vexpf: worst %.2f ulp over [-87.3, 88.7]\n", worst);
    CHECK(worst <= 2.0);
    CHECK(zg__vexpf(-100.0f) == 0.0f && zg__vexpf(100.0f) == INFINITY && isnan(zg__vexpf(NAN)));
    CHECK(zg__vexpf(0.0f) == 1.0f);
}

TEST(verfc_and_normal_cdf_relative_error) {
    double worst = 0;
    for (double z = 0; z <= 9.0; z += 1e-4) {
        const float zf = (float)z;
        const double ref = erfc((double)zf), got = zg__verfc_nonneg(zf);
        const double e = fabs(got - ref) / ref;
        if (e > worst) worst = e;
    }
    printf("  verfc: worst relative error %.3g over [0, 9]\n", worst);
    CHECK(worst <= 4e-7);
    /* -x / sqrt 2 rounds (6e-8 relative), which erfc's slope multiplies
     * by 2 z^2 in relative terms (plus 1/sqrt 2 itself rounded): 1.6e-7 z^2 */
    double wc = 0;
    for (double x = -12.0; x <= 12.0; x += 1e-4) {
        const float xf = (float)x;
        const double z2 = (double)xf * xf / 2;
        const double ref = 0.5 * erfc(-(double)xf / sqrt(2.0)), got = zg__vnormal_cdf(xf);
        const double e = fabs(got - ref) / ref / (4e-7 + 1.6e-7 * z2);
        if (e > wc) wc = e;
    }
    printf("  normal cdf: worst error %.3g of its bound over [-12, 12]\n", wc);
    CHECK(wc <= 1.0);
    CHECK(zg__verfc_nonneg(20.0f) == 0.0f && zg__vnormal_cdf(-40.0f) == 0.0f && zg__vnormal_cdf(40.0f) == 1.0f);
    CHECK(isnan(zg__vnormal_cdf(NAN)));
}

/* e^(-s z^2) through one exponential of a split argument: within 2 ulp of
 * the double e^(-s z^2) of the float z (vexpf's own bound; the split's
 * small part adds about 1e-3 ulp), down to where the result leaves the
 * normal floats. A single exponential of the rounded -s z^2 would be off
 * by up to s z^2 2^-24 relative (about 40 ulp at z = 9). */
TEST(vexp_neg_sq_within_2_ulp) {
    const float scales[2] = {0.5f, 1.0f};
    for (int i = 0; i < 2; i++) {
        const float s = scales[i];
        const double zmax = sqrt(87.3 / s);
        double worst = 0;
        for (double z = 0; z <= zmax; z += 3.7e-5) {
            const float zf = (float)z;
            const double ref = exp(-(double)s * zf * zf), got = zg__vexp_neg_sq(zf, s);
            const double e = fabs(got - ref) / ulp(ref);
            if (e > worst) worst = e;
        }
        printf("  vexp_neg_sq s=%.1f: worst %.2f ulp over [0, %.2f]\n", s, worst, zmax);
        CHECK(worst <= 2.0);
    }
    CHECK(zg__vexp_neg_sq(0.0f, 1.0f) == 1.0f && zg__vexp_neg_sq(20.0f, 1.0f) == 0.0f);
}

/* Phi's e^(-t^2) comes from x itself (e^(-x^2/2), as GELU's derivative
 * shares it), not from the rounded t = -x / sqrt 2: in the tails the error
 * stays at erfc's fit (4e-7) plus a few roundings (t's reaching erfc(t)
 * e^(t^2) with a log-slope of at most 2, and the last products: 4 2^-24
 * together), where an exponential of t^2 would add up to 2 t^2 2^-24 (1e-5
 * relative at |x| = 12). */
TEST(normal_cdf_tails_keep_erfc_accuracy) {
    const double bound = 4e-7 + 4 * 0x1p-24;
    double worst = 0;
    for (double a = 6.0; a <= 12.0; a += 1e-4)
        for (int sign = -1; sign <= 1; sign += 2) {
            const float xf = (float)(sign * a);
            const double ref = 0.5 * erfc(-(double)xf / sqrt(2.0));
            const double e = fabs(zg__vnormal_cdf(xf) - ref) / ref;
            if (e > worst) worst = e;
        }
    printf("  normal cdf, 6 <= |x| <= 12: worst relative error %.3g (bound %.3g)\n", worst, bound);
    CHECK(worst <= bound);
}
