/* yolose — YOLOv5 (+SE) object detection as a GStreamer element. */
#ifndef GST_YOLOSE_H
#define GST_YOLOSE_H

#include <gst/gst.h>
#include <gst/video/video.h>
#include <gst/video/gstvideofilter.h>

#include "gstyolosemodel.h"
#include "gstyoloseoverlay.h"
#include "gstyoloseworker.h"

G_BEGIN_DECLS

#define GST_TYPE_YOLOSE (gst_yolose_get_type ())
G_DECLARE_FINAL_TYPE (GstYolose, gst_yolose, GST, YOLOSE, GstVideoFilter)

typedef enum {
  GST_YOLOSE_MODE_SYNC,
  GST_YOLOSE_MODE_ASYNC,
} GstYoloseMode;

typedef enum {
  GST_YOLOSE_KERNELS_AUTO,
  GST_YOLOSE_KERNELS_GENERIC,
  GST_YOLOSE_KERNELS_AVX2,
} GstYoloseKernels;

#define GST_TYPE_YOLOSE_MODE (gst_yolose_mode_get_type ())
GType gst_yolose_mode_get_type (void);
#define GST_TYPE_YOLOSE_KERNELS (gst_yolose_kernels_get_type ())
GType gst_yolose_kernels_get_type (void);

/* What one frame needs of the properties, copied under the object lock. */
typedef struct {
  gfloat conf_threshold;
  gfloat iou_threshold;
  gint max_detections;
  gint threads;
  guint inference_interval;
  gboolean overlay;
  GstYoloseOverlayStyle style;
  gboolean post_messages;
  GstYoloseMode mode;
} GstYoloseSettings;

struct _GstYolose {
  GstVideoFilter parent;

  /* Properties, with the object lock. */
  gchar *model_path;
  gchar *labels_file;
  gchar *classes;
  guint classes_serial; /* bumped when `classes` changes */
  gint input_size;
  GstYoloseKernels kernels;
  GstYoloseSettings settings;
  /* Set between start() and stop(): the labels of the model in use (or
   * about to be), to check `classes` against, and a model loaded in
   * PAUSED/PLAYING waiting for the inference thread to take it. */
  gboolean started;
  gchar **labels;
  GstYoloseModel *pending_model;
  /* Measured processing time per frame, for LATENCY queries. */
  GstClockTime latency;
  GstClockTime latency_reported;
  gint64 latency_posted_at;
  /* What upstream answered the last LATENCY query. */
  gboolean upstream_live;
  GstClockTime upstream_latency;

  /* The inference thread's own: the streaming thread in mode=sync, the
   * worker in mode=async. */
  GstYoloseModel *model;
  guint8 *class_mask;
  guint class_mask_serial;
  YoloseDetection *detections;
  gsize detections_cap;

  /* The streaming thread's own. */
  YoloseImage image_template; /* filled in set_info */
  YoloseLetterbox letterbox;
  guint64 frame_count;
  GArray *boxes;          /* GstYoloseBox: the results frames carry */
  GstClockTime boxes_pts; /* of the frame they were found on */
  gboolean have_boxes;
  guint64 worker_serial;
  guint64 processed, dropped; /* QoS statistics of our own drops */
  GstYoloseWorker *worker;
  GstYoloseOverlay *overlay;
};

GST_ELEMENT_REGISTER_DECLARE (yolose);

G_END_DECLS

#endif
