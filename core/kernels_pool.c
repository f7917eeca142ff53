/* yolose — the worker pool of the SIMD kernels.
 *
 * Why not `#pragma omp parallel`: an OpenMP region ends in a barrier that
 * waits for every thread of the team, including a thread that the OS has
 * not scheduled yet because another process holds its core.  Beside a
 * video pipeline (or on a busy machine) that made each of the ~80 parallel
 * steps of a forward pass wait up to a scheduler time slice, and two
 * threads ran slower than one.  Here the caller works on the tasks itself
 * and waits only for tasks that a worker has actually started: a late
 * worker finds nothing left and goes back to sleep.  Workers spin briefly
 * between steps (they follow each other closely), then sleep, so an idle
 * pool costs nothing. */
#include "kernels_pool.h"

#include <stdatomic.h>
#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define POOL_RELAX() _mm_pause ()
#else
#define POOL_RELAX() ((void)0)
#endif

#define POOL_MAX_WORKERS 64
/* How long a waiting worker spins before it sleeps: long enough to bridge
 * the gap between two steps, which lasts up to one task of the caller's
 * (a band of a large layer: about a millisecond), short enough not to hold
 * a core that another process wants.  Measured in time, not in pause
 * instructions: a pause lasts about 140 cycles on Skylake but 16.5 ns on
 * the Emerald Rapids this was tuned on, where 6000 of them (0.1 ms) sent
 * the worker to sleep between most layers, and each wake-up cost a futex
 * call and, in a VM, an interrupt to a halted virtual CPU. */
#define POOL_SPIN_US 2000
/* Pause loops between two looks at the clock. */
#define POOL_SPIN_CHECK 64

/* The ticket packs the job generation, its task count and the next task
 * to hand out, so that claiming a task is one compare-and-swap that also
 * proves the job is still the one the worker saw. */
#define TICKET_BITS 24
#define TICKET_MASK ((UINT64_C (1) << TICKET_BITS) - 1)
#define POOL_MAX_TASKS ((int)TICKET_MASK)

typedef struct {
  _Atomic uint64_t ticket; /* generation:16 | n_tasks:24 | next:24 */
  atomic_int done;         /* tasks of the current job finished */
  atomic_int busy;         /* a caller owns the pool */
  YolosePoolTask func;
  void *data;
  atomic_int max_worker; /* workers 1 .. max_worker - 1 may help */
  int n_workers;         /* threads started */
  atomic_int sleepers;   /* workers counted before they wait on wake */
  atomic_int resting;    /* no step follows soon: do not spin */
  atomic_int spin_us;    /* how long workers spin, POOL_SPIN_US */
  GMutex lock;
  GCond wake;
} Pool;

typedef struct {
  Pool *pool;
  int id;
  uint64_t seen; /* the generation before the job it was started for */
} PoolWorker;

/* One pool for the process: the SIMD tables share it, and a pool thread
 * that waits for work is one that no other pool competes with. */
static Pool the_pool = { .spin_us = POOL_SPIN_US };

static uint64_t
pool_ticket (uint64_t generation, uint64_t n_tasks, uint64_t next)
{
  return (generation << (2 * TICKET_BITS)) | (n_tasks << TICKET_BITS) | next;
}

static uint64_t
pool_generation (uint64_t ticket)
{
  return ticket >> (2 * TICKET_BITS);
}

/* Claims the next task of job @generation: its index, or -1 when the job
 * has none left or is over. */
static int
pool_claim (Pool *pool, uint64_t generation)
{
  uint64_t cur = atomic_load_explicit (&pool->ticket, memory_order_acquire);

  for (;;) {
    uint64_t n_tasks = (cur >> TICKET_BITS) & TICKET_MASK;
    uint64_t next = cur & TICKET_MASK;
    if (pool_generation (cur) != generation || next >= n_tasks)
      return -1;
    if (atomic_compare_exchange_weak_explicit (&pool->ticket, &cur, cur + 1,
            memory_order_acq_rel, memory_order_acquire))
      return (int)next;
  }
}

static void
pool_work (Pool *pool, uint64_t generation, int worker)
{
  int task;

  while ((task = pool_claim (pool, generation)) >= 0) {
    /* A successful claim means the caller is still waiting for this
     * job, so func and data are the ones published with it. */
    pool->func (pool->data, task, worker);
    atomic_fetch_add_explicit (&pool->done, 1, memory_order_release);
  }
}

/* Whether a waiting worker should go on spinning: not once the caller
 * has said that it rests, nor past the spin time (the first call sets the
 * time it sleeps at). */
static gboolean
spin_on (Pool *pool, gint64 *sleep_at)
{
  gint64 now;

  if (atomic_load_explicit (&pool->resting, memory_order_relaxed))
    return FALSE;
  now = g_get_monotonic_time ();
  if (*sleep_at == 0)
    *sleep_at
        = now + atomic_load_explicit (&pool->spin_us, memory_order_relaxed);
  return now < *sleep_at;
}

static gpointer
pool_worker_main (gpointer data)
{
  PoolWorker *self = data;
  Pool *pool = self->pool;
  /* Not the ticket it reads now: the caller that started this thread may
   * already have published the job it was started for. */
  uint64_t seen = self->seen;

  for (;;) {
    uint64_t generation;
    gint64 sleep_at = 0;
    int spins = 0;

    while ((generation = pool_generation (
                atomic_load_explicit (&pool->ticket, memory_order_acquire)))
        == seen) {
      if (++spins % POOL_SPIN_CHECK != 0 || spin_on (pool, &sleep_at)) {
        POOL_RELAX ();
        continue;
      }
      g_mutex_lock (&pool->lock);
      atomic_fetch_add (&pool->sleepers, 1);
      while (pool_generation (atomic_load (&pool->ticket)) == seen)
        g_cond_wait (&pool->wake, &pool->lock);
      atomic_fetch_sub (&pool->sleepers, 1);
      g_mutex_unlock (&pool->lock);
    }
    seen = generation;
    if (self->id
        < atomic_load_explicit (&pool->max_worker, memory_order_relaxed))
      pool_work (pool, generation, self->id);
  }
  return NULL;
}

/* Starts workers up to @count - 1; when a thread cannot be created the
 * caller simply does more of the work. */
static void
pool_grow (Pool *pool, int count)
{
  while (pool->n_workers < MIN (count, POOL_MAX_WORKERS) - 1) {
    PoolWorker *w = g_new (PoolWorker, 1);
    GThread *thread;

    w->pool = pool;
    w->id = pool->n_workers + 1;
    w->seen = pool_generation (atomic_load (&pool->ticket));
    thread = g_thread_try_new ("yolose-worker", pool_worker_main, w, NULL);
    if (thread == NULL) {
      g_free (w);
      return;
    }
    g_thread_unref (thread); /* it runs for the life of the process */
    pool->n_workers++;
  }
}

/* Hands out a new job.  Waking sleepers costs a system call; spinning
 * workers see the ticket by themselves, so the call is made only when a
 * worker sleeps.  Both sides are sequentially consistent: the caller
 * stores the ticket then counts sleepers, a worker counts itself then
 * reads the ticket, so either the caller sees the sleeper or the worker
 * sees the job.  A sleeper counted before it waits is woken under the
 * lock it holds until then. */
static void
publish_job (Pool *pool, uint64_t ticket)
{
  atomic_store (&pool->ticket, ticket);
  if (atomic_load (&pool->sleepers) == 0)
    return;
  g_mutex_lock (&pool->lock);
  g_cond_broadcast (&pool->wake);
  g_mutex_unlock (&pool->lock);
}

void
yolose_pool_run (int threads, int n_tasks, YolosePoolTask func, void *data)
{
  Pool *pool = &the_pool;
  uint64_t generation;
  int expected = 0;

  if (n_tasks <= 0)
    return;
  /* One caller at a time (two detectors in two threads): the second one
   * runs its tasks alone rather than waiting. */
  if (threads <= 1 || n_tasks == 1 || n_tasks > POOL_MAX_TASKS
      || !atomic_compare_exchange_strong (&pool->busy, &expected, 1)) {
    for (int t = 0; t < n_tasks; t++)
      func (data, t, 0);
    return;
  }

  pool_grow (pool, threads);
  pool->func = func;
  pool->data = data;
  atomic_store_explicit (&pool->max_worker, threads, memory_order_relaxed);
  atomic_store_explicit (&pool->done, 0, memory_order_relaxed);
  generation = (pool_generation (atomic_load (&pool->ticket)) + 1) & 0xffff;
  atomic_store_explicit (&pool->resting, 0, memory_order_relaxed);
  publish_job (pool, pool_ticket (generation, (uint64_t)n_tasks, 0));

  pool_work (pool, generation, 0);
  /* Everything is claimed; wait for the tasks workers are running,
   * yielding the core now and then in case one of them waits for it. */
  for (int spins = 1;
       atomic_load_explicit (&pool->done, memory_order_acquire) < n_tasks;
       spins++) {
    if (spins % 1024 == 0)
      g_thread_yield ();
    else
      POOL_RELAX ();
  }
  atomic_store_explicit (&pool->busy, 0, memory_order_release);
}

void
yolose_pool_rest (void)
{
  atomic_store_explicit (&the_pool.resting, 1, memory_order_relaxed);
}

void
yolose_pool_set_spin_us (int us)
{
  atomic_store_explicit (&the_pool.spin_us, us > 0 ? us : POOL_SPIN_US,
      memory_order_relaxed);
}

int
yolose_pool_sleeping_workers (void)
{
  return atomic_load (&the_pool.sleepers);
}
