/* The dist layer: communication over MPI (comm.c) and the data-parallel
 * wrapper of a module (ddp.c, bucket.c, join.c). Compiled with MPI when
 * the build finds it (ZG_HAVE_MPI); without it, nompi.c gives the same
 * functions, failing with ZG_ERR_UNAVAILABLE. Not installed. */
#ifndef ZG_DIST_INTERNAL_H
#define ZG_DIST_INTERNAL_H

#include "../autograd/autograd_internal.h"

#ifdef ZG_HAVE_MPI
#include <mpi.h>

/* ZG_OK if zg_dist_init ran, else an error naming fn and the fix. */
int zg__dist_require(const char *fn);
/* An MPI call's failure as a zgrad error naming fn and MPI's text. */
int zg__dist_mpi_fail(const char *fn, const char *what, int mpi_rc);
/* A bitwise-or / max / sum of n ints over all ranks, in place. */
int zg__dist_allreduce_int(const char *fn, int *v, int n, MPI_Op op);
/* Completes req: MPI_Wait, or under zg_dist_set_timeout's bound MPI_Test
 * polls that end the world when the bound passes. An MPI return code. */
int zg__dist_wait(MPI_Request *req, const char *fn);
/* Whether waits are bounded (then collectives go non-blocking + wait). */
bool zg__dist_bounded(void);
#endif

#endif
