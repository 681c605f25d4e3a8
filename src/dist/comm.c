/* Communication primitives over MPI_COMM_WORLD: init and finalize, rank
 * and size, barrier, a sum of doubles (metrics), a broadcast of bytes and
 * an abort of every rank. */
#include "dist_internal.h"

#ifdef ZG_HAVE_MPI
#include <limits.h>
#include <sched.h>
#include <stdlib.h>

/* MPI was initialised by zg_dist_init (so zg_dist_finalize finalizes it),
 * rather than found initialised by the program. */
static bool we_initialized;

bool zg_dist_available(void) { return true; }

bool zg_dist_is_initialized(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}

int zg__dist_require(const char *fn) {
    if (zg_dist_is_initialized()) return ZG_OK;
    return zg__fail(ZG_ERR_STATE, "%s: MPI is not initialised; call zg_dist_init(&argc, &argv) first", fn);
}

int zg__dist_mpi_fail(const char *fn, const char *what, int mpi_rc) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(mpi_rc, text, &len) != MPI_SUCCESS) len = 0;
    text[len] = 0;
    return zg__fail(ZG_ERR_STATE, "%s: %s failed: %s", fn, what, len ? text : "unknown MPI error");
}

/* zg_dist_set_timeout's bound in seconds (0: none). */
static double wait_bound;

int zg_dist_set_timeout(double seconds) {
    if (!(seconds >= 0 && seconds <= 1e9))
        return zg__fail(ZG_ERR_ARG, "zg_dist_set_timeout: seconds must be in [0, 1e9] (got %g)", seconds);
    wait_bound = seconds;
    return ZG_OK;
}

bool zg__dist_bounded(void) { return wait_bound > 0; }

int zg__dist_wait(MPI_Request *req, const char *fn) {
    if (wait_bound <= 0) return MPI_Wait(req, MPI_STATUS_IGNORE);
    const double t0 = MPI_Wtime();
    for (;;) {
        int done = 0;
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS || done) return rc;
        if (MPI_Wtime() - t0 > wait_bound) {
            char msg[400];
            snprintf(msg, sizeof msg,
                     "%s: no answer from the other ranks for %g s (one of them hung or was stopped); ending every "
                     "rank (the bound: zg_dist_set_timeout, zgrad train --ddp-timeout)",
                     fn, wait_bound);
            zg_dist_abort(1, msg);
        }
        sched_yield();
    }
}

int zg__dist_allreduce_int(const char *fn, int *v, int n, MPI_Op op) {
    MPI_Request req;
    int rc = zg__dist_bounded() ? MPI_Iallreduce(MPI_IN_PLACE, v, n, MPI_INT, op, MPI_COMM_WORLD, &req)
                                : MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT, op, MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS && zg__dist_bounded()) rc = zg__dist_wait(&req, fn);
    return rc == MPI_SUCCESS ? ZG_OK : zg__dist_mpi_fail(fn, "MPI_Allreduce", rc);
}

int zg_dist_init(int *argc, char ***argv) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return zg__fail(ZG_ERR_STATE, "zg_dist_init: MPI was finalized already; it cannot start again");
    if (zg_dist_is_initialized()) return ZG_OK;
    /* FUNNELED: OpenMP threads compute, only the main thread calls MPI. */
    int provided = 0;
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return zg__fail(ZG_ERR_STATE, "zg_dist_init: MPI_Init_thread failed (code %d)", rc);
    /* Errors come back as codes (turned into zgrad errors), never an abort
     * of the job from inside MPI. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    we_initialized = true;
    return ZG_OK;
}

int zg_dist_finalize(void) {
    if (!we_initialized || !zg_dist_is_initialized()) return ZG_OK;
    int rc = MPI_Finalize();
    we_initialized = false;
    return rc == MPI_SUCCESS ? ZG_OK : zg__dist_mpi_fail("zg_dist_finalize", "MPI_Finalize", rc);
}

int zg_dist_rank(void) {
    int r = 0;
    if (zg_dist_is_initialized()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int zg_dist_world_size(void) {
    int w = 1;
    if (zg_dist_is_initialized()) MPI_Comm_size(MPI_COMM_WORLD, &w);
    return w;
}

int zg_dist_barrier(void) {
    int rc = zg__dist_require("zg_dist_barrier");
    if (rc) return rc;
    MPI_Request req;
    rc = zg__dist_bounded() ? MPI_Ibarrier(MPI_COMM_WORLD, &req) : MPI_Barrier(MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS && zg__dist_bounded()) rc = zg__dist_wait(&req, "zg_dist_barrier");
    return rc == MPI_SUCCESS ? ZG_OK : zg__dist_mpi_fail("zg_dist_barrier", "MPI_Barrier", rc);
}

int zg_dist_allreduce_sum_f64(double *values, int n) {
    const char *fn = "zg_dist_allreduce_sum_f64";
    if (!values || n < 0) return zg__fail(ZG_ERR_ARG, "%s: need values and n >= 0 (got n = %d)", fn, n);
    int rc = zg__dist_require(fn);
    if (rc || n == 0) return rc;
    MPI_Request req;
    rc = zg__dist_bounded() ? MPI_Iallreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &req)
                            : MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    if (rc == MPI_SUCCESS && zg__dist_bounded()) rc = zg__dist_wait(&req, fn);
    return rc == MPI_SUCCESS ? ZG_OK : zg__dist_mpi_fail(fn, "MPI_Allreduce", rc);
}

int zg_dist_broadcast(void *data, size_t nbytes, int root) {
    const char *fn = "zg_dist_broadcast";
    int rc = zg__dist_require(fn);
    if (rc) return rc;
    if (!data && nbytes) return zg__fail(ZG_ERR_ARG, "%s: data is NULL", fn);
    if (root < 0 || root >= zg_dist_world_size())
        return zg__fail(ZG_ERR_ARG, "%s: root %d is not a rank (world size %d)", fn, root, zg_dist_world_size());
    /* MPI counts are ints: large buffers go in chunks of 1 GiB. */
    for (size_t off = 0; off < nbytes; off += (size_t)1 << 30) {
        size_t len = nbytes - off < (size_t)1 << 30 ? nbytes - off : (size_t)1 << 30;
        MPI_Request req;
        rc = zg__dist_bounded() ? MPI_Ibcast((char *)data + off, (int)len, MPI_BYTE, root, MPI_COMM_WORLD, &req)
                                : MPI_Bcast((char *)data + off, (int)len, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc == MPI_SUCCESS && zg__dist_bounded()) rc = zg__dist_wait(&req, fn);
        if (rc != MPI_SUCCESS) return zg__dist_mpi_fail(fn, "MPI_Bcast", rc);
    }
    return ZG_OK;
}

void zg_dist_abort(int code, const char *message) {
    fprintf(stderr, "zgrad: rank %d: %s\n", zg_dist_rank(), message ? message : "aborting");
    fflush(stderr);
    if (zg_dist_is_initialized()) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}
#endif
