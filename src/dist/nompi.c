/* A build without MPI (make ZG_MPI=0, or no Open MPI found): the same
 * functions as comm.c and ddp.c, so the header and the exports do not
 * depend on the build; each fails saying why. */
#include "ddp_internal.h"

#ifndef ZG_HAVE_MPI
#include <stdlib.h>

static int unavailable(const char *fn) {
    return zg__fail(ZG_ERR_UNAVAILABLE,
                    "%s: zgrad was built without MPI; install Open MPI (openmpi-bin, libopenmpi-dev: scripts/setup) "
                    "and rebuild without ZG_MPI=0",
                    fn);
}

bool zg_dist_available(void) { return false; }
int zg_dist_init(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return unavailable("zg_dist_init");
}
int zg_dist_finalize(void) { return ZG_OK; }
bool zg_dist_is_initialized(void) { return false; }
int zg_dist_rank(void) { return 0; }
int zg_dist_world_size(void) { return 1; }
int zg_dist_barrier(void) { return unavailable("zg_dist_barrier"); }
int zg_dist_allreduce_sum_f64(double *values, int n) {
    (void)values;
    (void)n;
    return unavailable("zg_dist_allreduce_sum_f64");
}
int zg_dist_broadcast(void *data, size_t nbytes, int root) {
    (void)data;
    (void)nbytes;
    (void)root;
    return unavailable("zg_dist_broadcast");
}
int zg_dist_set_timeout(double seconds) {
    (void)seconds;
    return unavailable("zg_dist_set_timeout");
}
void zg_dist_abort(int code, const char *message) {
    fprintf(stderr, "zgrad: rank 0: %s\n", message ? message : "aborting");
    exit(code);
}

zg_ddp *zg_ddp_new(zg_module *m, const zg_ddp_options *opts) {
    (void)m;
    (void)opts;
    unavailable("zg_ddp_new");
    return NULL;
}
void zg_ddp_free(zg_ddp *d) { (void)d; }
zg_module *zg_ddp_module(const zg_ddp *d) {
    (void)d;
    return NULL;
}
int zg_ddp_before_forward(zg_ddp *d) {
    (void)d;
    return unavailable("zg_ddp_before_forward");
}
zg_tensor *zg_ddp_forward(zg_ddp *d, zg_tensor *x) {
    (void)d;
    (void)x;
    unavailable("zg_ddp_forward");
    return NULL;
}
int zg_ddp_set_require_sync(zg_ddp *d, bool require_sync) {
    (void)d;
    (void)require_sync;
    return unavailable("zg_ddp_set_require_sync");
}
bool zg_ddp_require_sync(const zg_ddp *d) {
    (void)d;
    return true;
}
bool zg_ddp_has_param(const zg_ddp *d, const zg_tensor *p) {
    (void)d;
    (void)p;
    return false;
}
int zg_ddp_get_stats(const zg_ddp *d, zg_ddp_stats *out) {
    (void)d;
    (void)out;
    return unavailable("zg_ddp_get_stats");
}
void zg_ddp_reset_stats(zg_ddp *d) { (void)d; }
int zg_ddp_join_begin(zg_ddp *d) {
    (void)d;
    return unavailable("zg_ddp_join_begin");
}
int zg_ddp_join_end(zg_ddp *d) {
    (void)d;
    return unavailable("zg_ddp_join_end");
}
int zg_ddp_sync_gradients(zg_ddp *d) {
    (void)d;
    return unavailable("zg_ddp_sync_gradients");
}
zg_ddp *zg__ddp_of_param(const zg_tensor *p) {
    (void)p;
    return NULL;
}
int zg_ddp_bucket_params(const zg_ddp *d, int b, int *idx, int max) {
    (void)d;
    (void)b;
    (void)idx;
    (void)max;
    return unavailable("zg_ddp_bucket_params");
}
#endif
