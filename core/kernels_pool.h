/* yolose — the worker pool of the SIMD kernels (see kernels_pool.c for
 * why they do not use OpenMP regions). */
#ifndef YOLOSE_KERNELS_POOL_H
#define YOLOSE_KERNELS_POOL_H

#include <glib.h>

G_BEGIN_DECLS

/* Runs task @task on worker @worker: 0 is the caller, 1 .. threads - 1
 * are pool threads, so @worker can index per-thread scratch. */
typedef void (*YolosePoolTask) (void *data, int task, int worker);

/* Runs func (data, t, worker) for every t in [0, n_tasks) on up to
 * @threads threads including the caller and returns when all are done.
 * Tasks are handed out in increasing order, one at a time.  If another
 * thread is using the pool, the caller runs all tasks itself. */
void yolose_pool_run (int threads, int n_tasks, YolosePoolTask func,
    void *data);

G_END_DECLS

#endif
