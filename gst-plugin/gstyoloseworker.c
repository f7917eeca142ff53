/* yolose element — detection on a worker thread. */
#include "gstyoloseworker.h"

typedef struct {
  GstBuffer *buffer; /* NULL when there is no job */
  GstVideoInfo info;
  GstClockTime pts;
  guint generation;
} Job;

struct _GstYoloseWorker {
  GstYoloseWorkerFunc func;
  gpointer user_data;
  GThread *thread;

  GMutex lock;
  GCond cond;
  gboolean stopping;
  Job pending;
  GstBuffer *spare; /* a copy buffer to reuse */
  guint generation; /* bumped by every flush */
  GArray *results;
  GstClockTime results_pts;
  guint64 results_serial; /* 0 = none yet */

  GArray *scratch; /* the worker thread's own */
};

/* Keeps one buffer for the next copy; with the lock held. */
static void
recycle (GstYoloseWorker *worker, GstBuffer *buffer)
{
  if (worker->spare == NULL)
    worker->spare = buffer;
  else
    gst_buffer_unref (buffer);
}

static void
run_job (GstYoloseWorker *worker, Job *job)
{
  GstVideoFrame frame;

  g_array_set_size (worker->scratch, 0);
  if (gst_video_frame_map (&frame, &job->info, job->buffer, GST_MAP_READ)) {
    worker->func (&frame, worker->scratch, worker->user_data);
    gst_video_frame_unmap (&frame);
  }
}

static gpointer
worker_loop (gpointer data)
{
  GstYoloseWorker *worker = data;

  g_mutex_lock (&worker->lock);
  while (!worker->stopping) {
    Job job;
    GArray *tmp;

    if (worker->pending.buffer == NULL) {
      g_cond_wait (&worker->cond, &worker->lock);
      continue;
    }
    job = worker->pending;
    worker->pending.buffer = NULL;
    g_mutex_unlock (&worker->lock);

    run_job (worker, &job);

    g_mutex_lock (&worker->lock);
    /* A flush while we worked makes these boxes stale. */
    if (job.generation == worker->generation) {
      tmp = worker->results;
      worker->results = worker->scratch;
      worker->scratch = tmp;
      worker->results_pts = job.pts;
      worker->results_serial++;
    }
    recycle (worker, job.buffer);
  }
  g_mutex_unlock (&worker->lock);
  return NULL;
}

GstYoloseWorker *
gst_yolose_worker_new (GstYoloseWorkerFunc func, gpointer user_data,
    GError **error)
{
  GstYoloseWorker *worker = g_new0 (GstYoloseWorker, 1);

  worker->func = func;
  worker->user_data = user_data;
  g_mutex_init (&worker->lock);
  g_cond_init (&worker->cond);
  worker->results = g_array_new (FALSE, FALSE, sizeof (GstYoloseBox));
  worker->scratch = g_array_new (FALSE, FALSE, sizeof (GstYoloseBox));
  worker->results_pts = GST_CLOCK_TIME_NONE;
  worker->thread
      = g_thread_try_new ("yolose-worker", worker_loop, worker, error);
  if (worker->thread == NULL) {
    gst_yolose_worker_free (worker);
    return NULL;
  }
  return worker;
}

void
gst_yolose_worker_free (GstYoloseWorker *worker)
{
  if (worker == NULL)
    return;
  if (worker->thread != NULL) {
    g_mutex_lock (&worker->lock);
    worker->stopping = TRUE;
    g_cond_signal (&worker->cond);
    g_mutex_unlock (&worker->lock);
    g_thread_join (worker->thread);
  }
  if (worker->pending.buffer != NULL)
    gst_buffer_unref (worker->pending.buffer);
  if (worker->spare != NULL)
    gst_buffer_unref (worker->spare);
  g_array_free (worker->results, TRUE);
  g_array_free (worker->scratch, TRUE);
  g_cond_clear (&worker->cond);
  g_mutex_clear (&worker->lock);
  g_free (worker);
}

static GstBuffer *
take_copy_buffer (GstYoloseWorker *worker, gsize size)
{
  GstBuffer *buffer;

  g_mutex_lock (&worker->lock);
  buffer = worker->spare;
  worker->spare = NULL;
  g_mutex_unlock (&worker->lock);

  if (buffer != NULL && gst_buffer_get_size (buffer) != size) {
    gst_buffer_unref (buffer);
    buffer = NULL;
  }
  if (buffer == NULL)
    buffer = gst_buffer_new_allocate (NULL, size, NULL);
  return buffer;
}

gboolean
gst_yolose_worker_submit (GstYoloseWorker *worker, const GstVideoFrame *frame,
    GstClockTime pts)
{
  const GstVideoInfo *info = &frame->info;
  GstBuffer *buffer = take_copy_buffer (worker, GST_VIDEO_INFO_SIZE (info));
  GstVideoFrame copy;
  gboolean ok;

  if (buffer == NULL)
    return FALSE;
  if (!gst_video_frame_map (&copy, info, buffer, GST_MAP_WRITE)) {
    gst_buffer_unref (buffer);
    return FALSE;
  }
  ok = gst_video_frame_copy (&copy, frame);
  gst_video_frame_unmap (&copy);
  if (!ok) {
    gst_buffer_unref (buffer);
    return FALSE;
  }

  g_mutex_lock (&worker->lock);
  if (worker->pending.buffer != NULL)
    recycle (worker, worker->pending.buffer);
  worker->pending.buffer = buffer;
  worker->pending.info = *info;
  worker->pending.pts = pts;
  worker->pending.generation = worker->generation;
  g_cond_signal (&worker->cond);
  g_mutex_unlock (&worker->lock);
  return TRUE;
}

void
gst_yolose_worker_flush (GstYoloseWorker *worker)
{
  g_mutex_lock (&worker->lock);
  worker->generation++;
  if (worker->pending.buffer != NULL) {
    recycle (worker, worker->pending.buffer);
    worker->pending.buffer = NULL;
  }
  g_array_set_size (worker->results, 0);
  worker->results_pts = GST_CLOCK_TIME_NONE;
  /* Stays increasing so that readers see "nothing newer" until the next
   * result, not a repeat of the old one. */
  g_mutex_unlock (&worker->lock);
}

gboolean
gst_yolose_worker_take_newer (GstYoloseWorker *worker, guint64 *serial,
    GArray *boxes, GstClockTime *pts)
{
  gboolean newer;

  g_mutex_lock (&worker->lock);
  newer = worker->results_serial > *serial;
  if (newer) {
    g_array_set_size (boxes, 0);
    g_array_append_vals (boxes, worker->results->data, worker->results->len);
    *pts = worker->results_pts;
    *serial = worker->results_serial;
  }
  g_mutex_unlock (&worker->lock);
  return newer;
}
