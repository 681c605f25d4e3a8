/* The cost of one gradient all-reduce on this machine, for `make bench`'s
 * ddp line and docs/distributed.md's scaling projection: a blocking
 * MPI_Allreduce (in place, float sum, as a zg_ddp bucket's) of each size,
 * median over REPS calls after warm-up calls, under mpirun.
 *
 *     mpirun -np P allreduce [REPS] BYTES...
 *
 * Rank 0 prints one JSON line per size: {"ranks", "bytes", "us"}. The
 * ranks meet at a barrier before each call, so a call's time is the
 * all-reduce alone, not a rank waiting for a late partner. */
#include <stdio.h>
#include <stdlib.h>

#include "bench_timing.h"

#ifdef ZG_HAVE_MPI
#include <mpi.h>

static double median_us(float *buf, int count, int reps) {
    double *t = malloc((size_t)reps * sizeof *t);
    if (!t) return -1;
    for (int r = -3; r < reps; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = now_s();
        MPI_Allreduce(MPI_IN_PLACE, buf, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        const double dt = now_s() - t0;
        /* The slowest rank's time is the collective's. */
        double worst;
        MPI_Allreduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (r >= 0) t[r] = worst * 1e6;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    const double m = t[reps / 2];
    free(t);
    return m;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    const int reps = argc > 1 ? atoi(argv[1]) : 0;
    if (argc < 3 || reps < 1) {
        if (!rank) fprintf(stderr, "usage: mpirun -np P allreduce REPS BYTES...\n");
        MPI_Finalize();
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const long bytes = atol(argv[i]);
        const int count = (int)(bytes / (long)sizeof(float));
        float *buf = calloc((size_t)(count > 0 ? count : 1), sizeof *buf);
        if (!buf || count < 1) {
            if (!rank) fprintf(stderr, "allreduce: bad size %s\n", argv[i]);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
        const double us = median_us(buf, count, reps);
        if (!rank) printf("{\"ranks\": %d, \"bytes\": %ld, \"us\": %.3f}\n", world, (long)count * 4, us);
        free(buf);
    }
    MPI_Finalize();
    return 0;
}
#else
int main(void) {
    fprintf(stderr, "allreduce: this build has no MPI (ZG_MPI=0)\n");
    return 1;
}
#endif
