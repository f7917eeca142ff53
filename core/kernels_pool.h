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

/* Says that no step follows soon (a frame is done): workers waiting for
 * one sleep at once instead of spinning for it, leaving the cores to the
 * rest of a video pipeline until the next yolose_pool_run. */
void yolose_pool_rest (void);

/* For tests: how long workers spin before they sleep (0: the default),
 * and how many sleep now. */
void yolose_pool_set_spin_us (int us);
int yolose_pool_sleeping_workers (void);

G_END_DECLS

#endif
