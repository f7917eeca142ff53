/* yolose element — detection on a worker thread (mode=async).
 *
 * The streaming thread hands the worker a private copy of a frame and goes
 * on at once; the worker always takes the newest frame waiting (an older one
 * is simply replaced: a live display wants recent results, not all of
 * them) and publishes the boxes it found.  At most three frame copies exist
 * (the one waiting, the one being detected, one spare), so nothing queues
 * up and, once warmed up, nothing is allocated per frame. */
#ifndef GST_YOLOSE_WORKER_H
#define GST_YOLOSE_WORKER_H

#include <gst/video/video.h>
#include "gstyolosemodel.h"

G_BEGIN_DECLS

typedef struct _GstYoloseWorker GstYoloseWorker;

/* Runs on the worker thread: detect on @frame and append GstYoloseBox
 * entries to @boxes (empty on entry). */
typedef void (*GstYoloseWorkerFunc) (const GstVideoFrame *frame, GArray *boxes,
    gpointer user_data);

GstYoloseWorker *gst_yolose_worker_new (GstYoloseWorkerFunc func,
    gpointer user_data, GError **error);
/* Stops the thread (after the detection it may be running) and frees. */
void gst_yolose_worker_free (GstYoloseWorker *worker);

/* Copies @frame for the worker, replacing a frame still waiting. */
gboolean gst_yolose_worker_submit (GstYoloseWorker *worker,
    const GstVideoFrame *frame, GstClockTime pts);

/* Forgets the waiting frame and every result from before: after a flush or
 * a caps change old boxes no longer belong to the picture. */
void gst_yolose_worker_flush (GstYoloseWorker *worker);

/* When results newer than *@serial exist, copies them into @boxes, sets
 * @pts to the timestamp of the frame they were found on, updates @serial
 * and returns TRUE. */
gboolean gst_yolose_worker_take_newer (GstYoloseWorker *worker, guint64 *serial,
    GArray *boxes, GstClockTime *pts);

G_END_DECLS

#endif
