/* yolose — YOLOv5 (+SE) object detection as a GStreamer element.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

/**
 * SECTION:element-yolose
 * @title: yolose
 *
 * Runs an upstream YOLOv5 training checkpoint (`best.pt`, with or without
 * the Squeeze-and-Excitation layer) on the CPU on every video frame and
 * attaches what it finds to the buffer as standard metadata: one
 * #GstVideoRegionOfInterestMeta per object, in frame pixels, whose
 * `roi_type` is the label and whose parameter structure `detection` holds
 * `x_min`, `y_min`, `x_max`, `y_max` (double, 0..1 of the frame),
 * `confidence` (double), `label_id` (int), `label` (string) and `age_ms`
 * (double, how much older than the frame the detection is: 0 unless
 * `inference-interval` or `mode=async` carry results over).  On GStreamer
 * 1.24 and newer a #GstAnalyticsRelationMeta with one object-detection entry
 * per box is added too.
 *
 * The frame is converted straight from its own format (RGB, BGR, the 4-byte
 * RGB orders, I420, YV12, NV12, NV21, YUY2, UYVY, GRAY8; BT.601/BT.709,
 * full or limited range as the caps say) into the network's letterboxed
 * input: a webcam's YUY2 needs no videoconvert in front.
 *
 * With `overlay=true` the boxes and "label 0.87" captions are drawn onto the
 * picture; with `post-messages=true` an element message named `yolose`
 * (fields `timestamp`, `stream-time`, `running-time` and `detections`, an
 * array of `detection` structures as above) is posted for every frame
 * detection ran on.  A frame without detections posts an empty array, of
 * the same type; GStreamer's text form (`gst-launch-1.0 -m`,
 * gst_structure_to_string()) names an array's type after its first element,
 * so it prints that one as `detections=(int)< >`, which parses back to an
 * empty array all the same.
 *
 * `mode=sync` (the default) detects on a frame before passing it on; late
 * frames are dropped before detection (QoS) and the processing time is
 * reported as latency, so a live pipeline never falls behind real time but
 * shows fewer frames when the CPU is slower than the camera.  `mode=async`
 * passes every frame on at once and detects on the newest frame in a worker
 * thread; each frame carries the most recent results, whose age is in
 * `age_ms`: choose it when a smooth display matters more than boxes that
 * sit exactly on the picture.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 v4l2src ! yolose model=best.pt overlay=true ! videoconvert !
 * autovideosink
 * ]| Webcam to screen with boxes drawn.
 * |[
 * gst-launch-1.0 filesrc location=in.mp4 ! decodebin ! videoconvert ! \
 *     yolose model=yolov5s.pt overlay=true ! videoconvert ! x264enc ! mp4mux !
 * \ filesink location=out.mp4
 * ]| A video file with boxes drawn, saved to MP4.
 * |[
 * gst-launch-1.0 -m filesrc location=bus.jpg ! jpegdec ! videoconvert ! \
 *     yolose model=yolov5s.pt post-messages=true ! fakesink
 * ]| Detections of a still image printed as bus messages.
 */

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstyolose.h"

#include <math.h>
#include <string.h>

#ifdef HAVE_GST_ANALYTICS
#include <gst/analytics/analytics.h>
#endif

GST_DEBUG_CATEGORY_STATIC (gst_yolose_debug);
#define GST_CAT_DEFAULT gst_yolose_debug

#define DEFAULT_MODEL NULL
#define DEFAULT_LABELS_FILE NULL
#define DEFAULT_CONF_THRESHOLD YOLOSE_DEFAULT_CONF_THRESHOLD
#define DEFAULT_IOU_THRESHOLD YOLOSE_DEFAULT_IOU_THRESHOLD
#define DEFAULT_MAX_DETECTIONS YOLOSE_DEFAULT_MAX_DETECTIONS
#define DEFAULT_CLASSES NULL
#define DEFAULT_INPUT_SIZE YOLOSE_DEFAULT_INPUT_SIZE
#define DEFAULT_THREADS 0
#define DEFAULT_INFERENCE_INTERVAL 1
#define DEFAULT_OVERLAY FALSE
#define DEFAULT_LINE_WIDTH 0
#define DEFAULT_SHOW_LABELS TRUE
#define DEFAULT_SHOW_CONFIDENCE TRUE
#define DEFAULT_POST_MESSAGES FALSE
#define DEFAULT_MODE GST_YOLOSE_MODE_SYNC
#define DEFAULT_KERNELS GST_YOLOSE_KERNELS_AUTO

#define MAX_MAX_DETECTIONS 30000
#define MIN_INPUT_SIZE 32
#define MAX_INPUT_SIZE 4096

enum {
  PROP_0,
  PROP_MODEL,
  PROP_LABELS_FILE,
  PROP_CONF_THRESHOLD,
  PROP_IOU_THRESHOLD,
  PROP_MAX_DETECTIONS,
  PROP_CLASSES,
  PROP_INPUT_SIZE,
  PROP_THREADS,
  PROP_INFERENCE_INTERVAL,
  PROP_OVERLAY,
  PROP_LINE_WIDTH,
  PROP_SHOW_LABELS,
  PROP_SHOW_CONFIDENCE,
  PROP_POST_MESSAGES,
  PROP_MODE,
  PROP_KERNELS,
};

#define YOLOSE_FORMATS                                                         \
  "{ RGB, BGR, RGBx, BGRx, xRGB, xBGR, RGBA, BGRA, "                           \
  "ARGB, ABGR, I420, YV12, NV12, NV21, YUY2, UYVY, GRAY8 }"

static GstStaticPadTemplate sink_template
    = GST_STATIC_PAD_TEMPLATE ("sink", GST_PAD_SINK, GST_PAD_ALWAYS,
        GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (YOLOSE_FORMATS)));

static GstStaticPadTemplate src_template
    = GST_STATIC_PAD_TEMPLATE ("src", GST_PAD_SRC, GST_PAD_ALWAYS,
        GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (YOLOSE_FORMATS)));

#define gst_yolose_parent_class parent_class
G_DEFINE_TYPE (GstYolose, gst_yolose, GST_TYPE_VIDEO_FILTER);
GST_ELEMENT_REGISTER_DEFINE (yolose, "yolose", GST_RANK_NONE, GST_TYPE_YOLOSE);

GType
gst_yolose_mode_get_type (void)
{
  static gsize type = 0;
  static const GEnumValue values[] = {
    { GST_YOLOSE_MODE_SYNC,
        "Detect on each frame before passing it on; "
        "late frames are dropped (QoS)",
        "sync" },
    { GST_YOLOSE_MODE_ASYNC,
        "Pass each frame on at once; detect on the "
        "newest frame in a worker thread",
        "async" },
    { 0, NULL, NULL },
  };

  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("GstYoloseMode", values));
  return (GType)type;
}

GType
gst_yolose_kernels_get_type (void)
{
  static gsize type = 0;
  static const GEnumValue values[] = {
    { GST_YOLOSE_KERNELS_AUTO, "The fastest this CPU runs", "auto" },
    { GST_YOLOSE_KERNELS_GENERIC, "Portable C kernels", "generic" },
    { GST_YOLOSE_KERNELS_AVX2, "AVX2/FMA kernels", "avx2" },
    { 0, NULL, NULL },
  };

  if (g_once_init_enter (&type))
    g_once_init_leave (&type,
        g_enum_register_static ("GstYoloseKernels", values));
  return (GType)type;
}

static const char *
kernels_name (GstYoloseKernels kernels)
{
  switch (kernels) {
    case GST_YOLOSE_KERNELS_GENERIC:
      return "generic";
    case GST_YOLOSE_KERNELS_AVX2:
      return "avx2";
    default:
      return "auto";
  }
}

/* ----- properties ----- */

static void
gst_yolose_init (GstYolose *self)
{
  GstYoloseSettings *s = &self->settings;

  self->model_path = g_strdup (DEFAULT_MODEL);
  self->labels_file = g_strdup (DEFAULT_LABELS_FILE);
  self->classes = g_strdup (DEFAULT_CLASSES);
  self->input_size = DEFAULT_INPUT_SIZE;
  self->kernels = DEFAULT_KERNELS;
  s->conf_threshold = DEFAULT_CONF_THRESHOLD;
  s->iou_threshold = DEFAULT_IOU_THRESHOLD;
  s->max_detections = DEFAULT_MAX_DETECTIONS;
  s->threads = DEFAULT_THREADS;
  s->inference_interval = DEFAULT_INFERENCE_INTERVAL;
  s->overlay = DEFAULT_OVERLAY;
  s->style.line_width = DEFAULT_LINE_WIDTH;
  s->style.show_labels = DEFAULT_SHOW_LABELS;
  s->style.show_confidence = DEFAULT_SHOW_CONFIDENCE;
  s->post_messages = DEFAULT_POST_MESSAGES;
  s->mode = DEFAULT_MODE;

  self->boxes = g_array_new (FALSE, FALSE, sizeof (GstYoloseBox));
  self->boxes_pts = GST_CLOCK_TIME_NONE;

  /* Metadata and an optional overlay are written into the frame the
   * element receives; QoS lets it drop late frames before detecting. */
  gst_base_transform_set_in_place (GST_BASE_TRANSFORM (self), TRUE);
  gst_base_transform_set_qos_enabled (GST_BASE_TRANSFORM (self), TRUE);
}

static void
gst_yolose_finalize (GObject *object)
{
  GstYolose *self = GST_YOLOSE (object);

  gst_yolose_model_free (self->pending_model);
  g_strfreev (self->labels);
  g_free (self->model_path);
  g_free (self->labels_file);
  g_free (self->classes);
  g_array_free (self->boxes, TRUE);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

/* threads=0 means every core, except that the worker thread of
 * mode=async leaves one to the streaming thread: frames must keep flowing
 * while it detects. */
static int
inference_threads (int threads, gboolean on_worker)
{
  if (threads != 0 || !on_worker)
    return threads;
  return MAX (1, (int)g_get_num_processors () - 1);
}

/* The loader's settings as the properties say now; the strings are copies
 * the caller frees with config_clear(). */
static void
config_from_properties (GstYolose *self, YoloseConfig *config,
    gchar **labels_file)
{
  yolose_config_init (config);
  GST_OBJECT_LOCK (self);
  config->model_path = g_strdup (self->model_path);
  config->input_size = self->input_size;
  config->threads = inference_threads (self->settings.threads,
      self->settings.mode == GST_YOLOSE_MODE_ASYNC);
  config->kernels = kernels_name (self->kernels);
  *labels_file = g_strdup (self->labels_file);
  GST_OBJECT_UNLOCK (self);
}

static void
config_clear (YoloseConfig *config, gchar *labels_file)
{
  g_free ((gchar *)config->model_path);
  g_free (labels_file);
}

/* Whether @spec is a valid `classes` value for @labels; NULL labels (no
 * model yet) accept anything, start() checks it then.  With the object
 * lock. */
static gboolean
classes_valid_locked (gchar **labels, const gchar *spec, GError **error)
{
  guint n;
  guint8 *mask;
  gboolean ok;

  if (labels == NULL)
    return TRUE;
  n = g_strv_length (labels);
  mask = g_malloc (MAX (n, 1));
  ok = gst_yolose_parse_classes (spec, (const gchar *const *)labels, n, mask,
      error);
  g_free (mask);
  return ok;
}

static void
set_classes (GstYolose *self, const gchar *spec)
{
  GError *error = NULL;
  gboolean ok;

  GST_OBJECT_LOCK (self);
  ok = classes_valid_locked (self->labels, spec, &error);
  if (ok) {
    g_free (self->classes);
    self->classes = g_strdup (spec);
    self->classes_serial++;
  }
  GST_OBJECT_UNLOCK (self);

  if (!ok) {
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
        ("Ignoring classes \"%s\": %s", spec, error->message),
        ("the previous classes value is kept"));
    g_error_free (error);
  }
}

static void
set_input_size (GstYolose *self, gint size)
{
  if (size % 32 != 0) {
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
        ("Ignoring input-size %d: it must be a multiple of 32", size),
        ("the previous input-size is kept"));
    return;
  }
  GST_OBJECT_LOCK (self);
  self->input_size = size;
  GST_OBJECT_UNLOCK (self);
}

/* Loads the new model now (in the caller's thread, outside every lock) and
 * leaves it for the inference thread to take at its next frame: the model
 * in use is never freed under its feet.  A model that does not load, or
 * that the `classes` filter does not fit, is refused with a warning. */
static void
swap_model (GstYolose *self, const gchar *path)
{
  YoloseConfig config;
  gchar *labels_file;
  GstYoloseModel *model, *replaced = NULL;
  GError *error = NULL;
  gboolean accepted = FALSE;

  config_from_properties (self, &config, &labels_file);
  g_free ((gchar *)config.model_path);
  config.model_path = g_strdup (path);
  model = gst_yolose_model_load (&config, labels_file, &error);

  if (model != NULL) {
    GST_OBJECT_LOCK (self);
    if (self->started
        && classes_valid_locked (model->labels, self->classes, &error)) {
      replaced = self->pending_model;
      self->pending_model = model;
      g_strfreev (self->labels);
      self->labels = g_strdupv (model->labels);
      g_free (self->model_path);
      self->model_path = g_strdup (path);
      accepted = TRUE;
    }
    GST_OBJECT_UNLOCK (self);
    if (!accepted)
      replaced = model;
  }
  gst_yolose_model_free (replaced);

  if (accepted) {
    GST_INFO_OBJECT (self, "loaded model %s, used from the next frame", path);
  } else if (error != NULL) {
    GST_ELEMENT_WARNING (self, RESOURCE, OPEN_READ,
        ("Could not use model \"%s\": %s", path, error->message),
        ("the model in use is kept"));
  }
  g_clear_error (&error);
  config_clear (&config, labels_file);
}

static void
set_model (GstYolose *self, const gchar *path)
{
  gboolean started;

  GST_OBJECT_LOCK (self);
  started = self->started;
  if (!started) {
    g_free (self->model_path);
    self->model_path = g_strdup (path);
  }
  GST_OBJECT_UNLOCK (self);

  if (!started)
    return;
  if (path == NULL || *path == '\0') {
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
        ("Cannot remove the model while the element runs"),
        ("the model in use is kept"));
    return;
  }
  swap_model (self, path);
}

static void
gst_yolose_set_property (GObject *object, guint prop_id, const GValue *value,
    GParamSpec *pspec)
{
  GstYolose *self = GST_YOLOSE (object);
  GstYoloseSettings *s = &self->settings;

  switch (prop_id) {
    case PROP_MODEL:
      set_model (self, g_value_get_string (value));
      return;
    case PROP_CLASSES:
      set_classes (self, g_value_get_string (value));
      return;
    case PROP_INPUT_SIZE:
      set_input_size (self, g_value_get_int (value));
      return;
    default:
      break;
  }

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_LABELS_FILE:
      g_free (self->labels_file);
      self->labels_file = g_value_dup_string (value);
      break;
    case PROP_CONF_THRESHOLD:
      s->conf_threshold = g_value_get_float (value);
      break;
    case PROP_IOU_THRESHOLD:
      s->iou_threshold = g_value_get_float (value);
      break;
    case PROP_MAX_DETECTIONS:
      s->max_detections = g_value_get_int (value);
      break;
    case PROP_THREADS:
      s->threads = g_value_get_int (value);
      break;
    case PROP_INFERENCE_INTERVAL:
      s->inference_interval = g_value_get_uint (value);
      break;
    case PROP_OVERLAY:
      s->overlay = g_value_get_boolean (value);
      break;
    case PROP_LINE_WIDTH:
      s->style.line_width = g_value_get_uint (value);
      break;
    case PROP_SHOW_LABELS:
      s->style.show_labels = g_value_get_boolean (value);
      break;
    case PROP_SHOW_CONFIDENCE:
      s->style.show_confidence = g_value_get_boolean (value);
      break;
    case PROP_POST_MESSAGES:
      s->post_messages = g_value_get_boolean (value);
      break;
    case PROP_MODE:
      /* The worker thread exists from start() to stop(). */
      if (self->started)
        GST_WARNING_OBJECT (self, "mode takes effect at the next start");
      s->mode = g_value_get_enum (value);
      break;
    case PROP_KERNELS:
      self->kernels = g_value_get_enum (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_yolose_get_property (GObject *object, guint prop_id, GValue *value,
    GParamSpec *pspec)
{
  GstYolose *self = GST_YOLOSE (object);
  GstYoloseSettings *s = &self->settings;

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL:
      g_value_set_string (value, self->model_path);
      break;
    case PROP_LABELS_FILE:
      g_value_set_string (value, self->labels_file);
      break;
    case PROP_CONF_THRESHOLD:
      g_value_set_float (value, s->conf_threshold);
      break;
    case PROP_IOU_THRESHOLD:
      g_value_set_float (value, s->iou_threshold);
      break;
    case PROP_MAX_DETECTIONS:
      g_value_set_int (value, s->max_detections);
      break;
    case PROP_CLASSES:
      g_value_set_string (value, self->classes);
      break;
    case PROP_INPUT_SIZE:
      g_value_set_int (value, self->input_size);
      break;
    case PROP_THREADS:
      g_value_set_int (value, s->threads);
      break;
    case PROP_INFERENCE_INTERVAL:
      g_value_set_uint (value, s->inference_interval);
      break;
    case PROP_OVERLAY:
      g_value_set_boolean (value, s->overlay);
      break;
    case PROP_LINE_WIDTH:
      g_value_set_uint (value, s->style.line_width);
      break;
    case PROP_SHOW_LABELS:
      g_value_set_boolean (value, s->style.show_labels);
      break;
    case PROP_SHOW_CONFIDENCE:
      g_value_set_boolean (value, s->style.show_confidence);
      break;
    case PROP_POST_MESSAGES:
      g_value_set_boolean (value, s->post_messages);
      break;
    case PROP_MODE:
      g_value_set_enum (value, s->mode);
      break;
    case PROP_KERNELS:
      g_value_set_enum (value, self->kernels);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
copy_settings (GstYolose *self, GstYoloseSettings *s)
{
  GST_OBJECT_LOCK (self);
  *s = self->settings;
  GST_OBJECT_UNLOCK (self);
}

/* ----- from a GstVideoFrame to a YoloseImage ----- */

static YoloseYuvMatrix
yuv_matrix (const GstVideoColorimetry *c)
{
  /* BT.2020 has its own coefficients; BT.709's are the nearer of the two
   * the converter knows. */
  if (c->matrix == GST_VIDEO_COLOR_MATRIX_BT709
      || c->matrix == GST_VIDEO_COLOR_MATRIX_BT2020)
    return YOLOSE_YUV_BT709;
  return YOLOSE_YUV_BT601;
}

static void
set_packed_rgb (const GstVideoInfo *info, YoloseImage *image)
{
  image->layout = YOLOSE_IMAGE_PACKED_RGB;
  image->r_offset = GST_VIDEO_INFO_COMP_POFFSET (info, GST_VIDEO_COMP_R);
  image->g_offset = GST_VIDEO_INFO_COMP_POFFSET (info, GST_VIDEO_COMP_G);
  image->b_offset = GST_VIDEO_INFO_COMP_POFFSET (info, GST_VIDEO_COMP_B);
  image->pixel_stride = GST_VIDEO_INFO_COMP_PSTRIDE (info, GST_VIDEO_COMP_R);
}

/* Everything about the frame's layout except where its planes are; done
 * once per caps. */
static gboolean
fill_image_template (const GstVideoInfo *info, YoloseImage *image)
{
  memset (image, 0, sizeof *image);
  image->width = GST_VIDEO_INFO_WIDTH (info);
  image->height = GST_VIDEO_INFO_HEIGHT (info);
  image->matrix = yuv_matrix (&info->colorimetry);
  image->full_range = info->colorimetry.range == GST_VIDEO_COLOR_RANGE_0_255;
  image->y_offset = GST_VIDEO_INFO_COMP_POFFSET (info, GST_VIDEO_COMP_Y);
  image->u_offset = GST_VIDEO_INFO_COMP_POFFSET (info, GST_VIDEO_COMP_U);
  image->v_offset = GST_VIDEO_INFO_COMP_POFFSET (info, GST_VIDEO_COMP_V);

  switch (GST_VIDEO_INFO_FORMAT (info)) {
    case GST_VIDEO_FORMAT_RGB:
    case GST_VIDEO_FORMAT_BGR:
    case GST_VIDEO_FORMAT_RGBx:
    case GST_VIDEO_FORMAT_BGRx:
    case GST_VIDEO_FORMAT_xRGB:
    case GST_VIDEO_FORMAT_xBGR:
    case GST_VIDEO_FORMAT_RGBA:
    case GST_VIDEO_FORMAT_BGRA:
    case GST_VIDEO_FORMAT_ARGB:
    case GST_VIDEO_FORMAT_ABGR:
      set_packed_rgb (info, image);
      return TRUE;
    case GST_VIDEO_FORMAT_GRAY8:
      image->layout = YOLOSE_IMAGE_GRAY8;
      return TRUE;
    case GST_VIDEO_FORMAT_I420:
    case GST_VIDEO_FORMAT_YV12:
      image->layout = YOLOSE_IMAGE_YUV420_PLANAR;
      return TRUE;
    case GST_VIDEO_FORMAT_NV12:
    case GST_VIDEO_FORMAT_NV21:
      image->layout = YOLOSE_IMAGE_YUV420_SEMIPLANAR;
      return TRUE;
    case GST_VIDEO_FORMAT_YUY2:
    case GST_VIDEO_FORMAT_UYVY:
      image->layout = YOLOSE_IMAGE_YUV422_PACKED;
      return TRUE;
    default:
      return FALSE;
  }
}

/* The per-frame part: where this frame's planes are in memory. */
static void
set_image_planes (YoloseImage *image, const GstVideoFrame *frame)
{
  switch (image->layout) {
    case YOLOSE_IMAGE_YUV420_PLANAR:
      /* By component, so YV12's swapped planes come out as Y, U, V. */
      for (int c = 0; c < 3; c++) {
        image->planes[c] = GST_VIDEO_FRAME_COMP_DATA (frame, c);
        image->strides[c] = GST_VIDEO_FRAME_COMP_STRIDE (frame, c);
      }
      break;
    case YOLOSE_IMAGE_YUV420_SEMIPLANAR:
      for (int p = 0; p < 2; p++) {
        image->planes[p] = GST_VIDEO_FRAME_PLANE_DATA (frame, p);
        image->strides[p] = GST_VIDEO_FRAME_PLANE_STRIDE (frame, p);
      }
      break;
    default:
      image->planes[0] = GST_VIDEO_FRAME_PLANE_DATA (frame, 0);
      image->strides[0] = GST_VIDEO_FRAME_PLANE_STRIDE (frame, 0);
      break;
  }
}

/* ----- detection (on the inference thread) ----- */

/* Takes a model that set_property loaded in PAUSED/PLAYING. */
static void
adopt_pending_model (GstYolose *self)
{
  GstYoloseModel *fresh;

  GST_OBJECT_LOCK (self);
  fresh = self->pending_model;
  self->pending_model = NULL;
  GST_OBJECT_UNLOCK (self);

  if (fresh == NULL)
    return;
  gst_yolose_model_free (self->model);
  self->model = fresh;
  g_free (self->class_mask);
  self->class_mask = g_malloc (MAX (fresh->num_classes, 1));
  /* Forces update_class_mask() to parse `classes` for this model. */
  self->class_mask_serial = G_MAXUINT;
}

static void
update_class_mask (GstYolose *self)
{
  GstYoloseModel *model = self->model;

  GST_OBJECT_LOCK (self);
  if (self->class_mask_serial != self->classes_serial) {
    /* `classes` was checked against the newest model; a model still in
     * use that it does not fit keeps every class until that one comes. */
    if (!gst_yolose_parse_classes (self->classes,
            (const gchar *const *)model->labels, model->num_classes,
            self->class_mask, NULL))
      memset (self->class_mask, 1, model->num_classes);
    else
      self->class_mask_serial = self->classes_serial;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
ensure_detections_capacity (GstYolose *self, gsize n)
{
  if (self->detections_cap >= n)
    return;
  g_free (self->detections);
  self->detections = g_new (YoloseDetection, n);
  self->detections_cap = n;
}

/* Runs the detector on @image and replaces @boxes with what it found. */
static void
detect (GstYolose *self, const YoloseImage *image, const GstYoloseSettings *s,
    gboolean on_worker, GArray *boxes)
{
  GstYoloseModel *model;
  YoloseNmsParams params;
  gsize n;

  adopt_pending_model (self);
  model = self->model;
  g_array_set_size (boxes, 0);
  if (model == NULL)
    return;
  update_class_mask (self);
  ensure_detections_capacity (self, s->max_detections);

  yolose_nms_params_init (&params);
  params.conf_threshold = s->conf_threshold;
  params.iou_threshold = s->iou_threshold;
  params.max_detections = s->max_detections;
  params.class_mask = self->class_mask;
  yolose_detector_set_threads (model->detector,
      inference_threads (s->threads, on_worker));
  n = yolose_detector_detect (model->detector, image, &params, self->detections,
      s->max_detections);

  for (gsize i = 0; i < n; i++) {
    const YoloseDetection *d = &self->detections[i];
    GstYoloseBox box
        = { d->x1, d->y1, d->x2, d->y2, d->confidence, d->class_id, 0 };
    if (d->class_id < 0 || d->class_id >= model->num_classes)
      continue;
    box.label = model->label_quarks[d->class_id];
    g_array_append_val (boxes, box);
  }
}

/* mode=async: runs on the worker thread on its copy of a frame. */
static void
worker_detect (const GstVideoFrame *frame, GArray *boxes, gpointer user_data)
{
  GstYolose *self = user_data;
  GstYoloseSettings s;
  YoloseImage image;

  copy_settings (self, &s);
  if (!fill_image_template (&frame->info, &image))
    return;
  set_image_planes (&image, frame);
  detect (self, &image, &s, TRUE, boxes);
}

/* ----- start / stop / caps ----- */

static gboolean
load_model_or_post_error (GstYolose *self, GstYoloseModel **out,
    guint8 **mask_out)
{
  YoloseConfig config;
  gchar *labels_file, *classes;
  GstYoloseModel *model;
  GError *error = NULL;
  guint8 *mask;

  config_from_properties (self, &config, &labels_file);
  if (config.model_path == NULL || *config.model_path == '\0') {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND, ("No model given."),
        ("Set the 'model' property to the path of a YOLOv5 .pt checkpoint."));
    config_clear (&config, labels_file);
    return FALSE;
  }
  model = gst_yolose_model_load (&config, labels_file, &error);
  if (model == NULL) {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
        ("Could not load model \"%s\": %s", config.model_path, error->message),
        ("model \"%s\", labels file \"%s\": %s", config.model_path,
            GST_STR_NULL (labels_file), error->message));
    g_error_free (error);
    config_clear (&config, labels_file);
    return FALSE;
  }
  config_clear (&config, labels_file);

  GST_OBJECT_LOCK (self);
  classes = g_strdup (self->classes);
  GST_OBJECT_UNLOCK (self);
  mask = g_malloc (MAX (model->num_classes, 1));
  if (!gst_yolose_parse_classes (classes, (const gchar *const *)model->labels,
          model->num_classes, mask, &error)) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
        ("Invalid classes \"%s\": %s", classes, error->message), (NULL));
    g_error_free (error);
    g_free (classes);
    g_free (mask);
    gst_yolose_model_free (model);
    return FALSE;
  }
  g_free (classes);
  *out = model;
  *mask_out = mask;
  return TRUE;
}

static void
forget_results (GstYolose *self)
{
  g_array_set_size (self->boxes, 0);
  self->have_boxes = FALSE;
  self->boxes_pts = GST_CLOCK_TIME_NONE;
  self->frame_count = 0;
  if (self->worker != NULL)
    gst_yolose_worker_flush (self->worker);
}

static gboolean
gst_yolose_start (GstBaseTransform *trans)
{
  GstYolose *self = GST_YOLOSE (trans);
  GstYoloseModel *model;
  guint8 *mask;
  GError *error = NULL;
  GstYoloseMode mode;

  if (!load_model_or_post_error (self, &model, &mask))
    return FALSE;
  GST_INFO_OBJECT (self, "model loaded: %d classes, input %d, kernels %s",
      model->num_classes, model->input_size,
      yolose_detector_get_kernels_name (model->detector));

  self->model = model;
  self->class_mask = mask;
  GST_OBJECT_LOCK (self);
  self->class_mask_serial = self->classes_serial;
  self->labels = g_strdupv (model->labels);
  self->latency = 0;
  self->latency_reported = 0;
  self->latency_posted_at = 0;
  self->upstream_live = FALSE;
  self->upstream_latency = 0;
  mode = self->settings.mode;
  self->started = TRUE;
  GST_OBJECT_UNLOCK (self);

  forget_results (self);
  self->worker_serial = 0;
  self->processed = self->dropped = 0;
  if (mode == GST_YOLOSE_MODE_ASYNC) {
    self->worker = gst_yolose_worker_new (worker_detect, self, &error);
    if (self->worker == NULL) {
      GST_ELEMENT_ERROR (self, RESOURCE, FAILED,
          ("Could not start the detection thread."), ("%s", error->message));
      g_error_free (error);
      return FALSE; /* stop() frees the rest */
    }
  }
  return TRUE;
}

static gboolean
gst_yolose_stop (GstBaseTransform *trans)
{
  GstYolose *self = GST_YOLOSE (trans);
  GstYoloseModel *pending;

  /* First, so that nothing uses the model while it is freed. */
  gst_yolose_worker_free (self->worker);
  self->worker = NULL;

  GST_OBJECT_LOCK (self);
  self->started = FALSE;
  pending = self->pending_model;
  self->pending_model = NULL;
  g_strfreev (self->labels);
  self->labels = NULL;
  GST_OBJECT_UNLOCK (self);

  gst_yolose_model_free (pending);
  gst_yolose_model_free (self->model);
  self->model = NULL;
  g_clear_pointer (&self->class_mask, g_free);
  g_clear_pointer (&self->detections, g_free);
  self->detections_cap = 0;
  g_clear_pointer (&self->overlay, gst_yolose_overlay_free);
  forget_results (self);
  return TRUE;
}

static gboolean
gst_yolose_set_info (GstVideoFilter *filter, GstCaps *incaps,
    GstVideoInfo *in_info, GstCaps *outcaps, GstVideoInfo *out_info)
{
  GstYolose *self = GST_YOLOSE (filter);
  int size = self->model ? self->model->input_size : DEFAULT_INPUT_SIZE;

  if (!fill_image_template (in_info, &self->image_template)) {
    GST_ERROR_OBJECT (self, "unsupported caps %" GST_PTR_FORMAT, incaps);
    return FALSE;
  }
  yolose_letterbox_compute (in_info->width, in_info->height, size,
      &self->letterbox);
  GST_DEBUG_OBJECT (self, "%s %dx%d letterboxed to %dx%d at (%d, %d) in %d",
      gst_video_format_to_string (GST_VIDEO_INFO_FORMAT (in_info)),
      in_info->width, in_info->height, self->letterbox.resized_w,
      self->letterbox.resized_h, self->letterbox.left, self->letterbox.top,
      size);
  /* Boxes found at another size or format no longer fit the picture. */
  forget_results (self);
  return TRUE;
}

/* ----- per frame ----- */

/* How late @buf reaches us in a live pipeline, beyond what upstream's
 * latency and one frame period allow; 0 when on time or not live. */
static GstClockTime
lateness_on_arrival (GstYolose *self, GstBuffer *buf)
{
  GstBaseTransform *trans = GST_BASE_TRANSFORM (self);
  GstClockTime running, now, allowed, period;
  GstClock *clock;
  gboolean live;

  GST_OBJECT_LOCK (self);
  live = self->upstream_live;
  allowed = self->upstream_latency;
  GST_OBJECT_UNLOCK (self);
  if (!live || !gst_base_transform_is_qos_enabled (trans)
      || trans->segment.format != GST_FORMAT_TIME
      || !GST_BUFFER_PTS_IS_VALID (buf))
    return 0;
  running = gst_segment_to_running_time (&trans->segment, GST_FORMAT_TIME,
      GST_BUFFER_PTS (buf));
  clock = gst_element_get_clock (GST_ELEMENT (self));
  if (clock == NULL || !GST_CLOCK_TIME_IS_VALID (running)) {
    g_clear_object (&clock);
    return 0;
  }
  now = gst_clock_get_time (clock)
      - gst_element_get_base_time (GST_ELEMENT (self));
  gst_object_unref (clock);
  period = GST_BUFFER_DURATION_IS_VALID (buf) ? GST_BUFFER_DURATION (buf)
                                              : GST_SECOND / 30;
  allowed += running + period;
  return now > allowed ? now - allowed : 0;
}

static void
post_qos_drop (GstYolose *self, GstBuffer *buf, GstClockTime lateness)
{
  GstSegment *segment = &GST_BASE_TRANSFORM (self)->segment;
  GstClockTime pts = GST_BUFFER_PTS (buf);
  GstMessage *msg;

  msg = gst_message_new_qos (GST_OBJECT (self), TRUE,
      gst_segment_to_running_time (segment, GST_FORMAT_TIME, pts),
      gst_segment_to_stream_time (segment, GST_FORMAT_TIME, pts), pts,
      GST_BUFFER_DURATION (buf));
  gst_message_set_qos_values (msg, (gint64)lateness, 1.0, 1000000);
  gst_message_set_qos_stats (msg, GST_FORMAT_BUFFERS, self->processed,
      self->dropped);
  gst_element_post_message (GST_ELEMENT (self), msg);
}

/* The sink's QoS events make the base class drop frames it knows will be
 * late, but only after one came late: in a live pipeline the frame that
 * waited upstream while we detected on the previous one arrives stale
 * already, and detecting on it would put the picture a second detection
 * time behind.  Skipping it lets the next, fresh frame be detected. */
static gboolean
drop_if_stale (GstYolose *self, GstBuffer *buf)
{
  GstClockTime lateness = lateness_on_arrival (self, buf);

  if (lateness == 0)
    return FALSE;
  self->dropped++;
  GST_DEBUG_OBJECT (self,
      "dropping a frame that arrived %" GST_TIME_FORMAT " late",
      GST_TIME_ARGS (lateness));
  post_qos_drop (self, buf, lateness);
  return TRUE;
}

static gboolean
run_sync (GstYolose *self, const GstVideoFrame *frame, GstClockTime pts,
    const GstYoloseSettings *s)
{
  YoloseImage image;
  gboolean due = self->frame_count % s->inference_interval == 0;

  self->frame_count++;
  if (!due)
    return FALSE;
  self->processed++;
  image = self->image_template;
  set_image_planes (&image, frame);
  detect (self, &image, s, FALSE, self->boxes);
  self->boxes_pts = pts;
  self->have_boxes = TRUE;
  return TRUE;
}

/* Returns TRUE when the frame brings results the worker found since the
 * previous frame. */
static gboolean
run_async (GstYolose *self, const GstVideoFrame *frame, GstClockTime pts,
    const GstYoloseSettings *s)
{
  gboolean due = self->frame_count % s->inference_interval == 0;

  self->frame_count++;
  if (due && !gst_yolose_worker_submit (self->worker, frame, pts))
    GST_WARNING_OBJECT (self, "could not copy the frame for the worker");
  if (!gst_yolose_worker_take_newer (self->worker, &self->worker_serial,
          self->boxes, &self->boxes_pts))
    return FALSE;
  self->have_boxes = TRUE;
  return TRUE;
}

static double
age_ms (GstClockTime now, GstClockTime then)
{
  if (!GST_CLOCK_TIME_IS_VALID (now) || !GST_CLOCK_TIME_IS_VALID (then))
    return 0.0;
  return (double)GST_CLOCK_DIFF (then, now) / GST_MSECOND;
}

/* The `detection` structure DL Streamer's tools read, plus how old it is. */
static GstStructure *
detection_structure (const GstYoloseBox *b, int width, int height, double age)
{
  return gst_structure_new ("detection", "x_min", G_TYPE_DOUBLE,
      (double)b->x1 / width, "y_min", G_TYPE_DOUBLE, (double)b->y1 / height,
      "x_max", G_TYPE_DOUBLE, (double)b->x2 / width, "y_max", G_TYPE_DOUBLE,
      (double)b->y2 / height, "confidence", G_TYPE_DOUBLE,
      (double)b->confidence, "label_id", G_TYPE_INT, b->class_id, "label",
      G_TYPE_STRING, g_quark_to_string (b->label), "age_ms", G_TYPE_DOUBLE, age,
      NULL);
}

/* Pixel rectangle covering the box, inside the frame. */
static void
box_pixels (const GstYoloseBox *b, int width, int height, guint *x, guint *y,
    guint *w, guint *h)
{
  int x0 = CLAMP ((int)floorf (b->x1), 0, width);
  int y0 = CLAMP ((int)floorf (b->y1), 0, height);
  int x1 = CLAMP ((int)ceilf (b->x2), x0, width);
  int y1 = CLAMP ((int)ceilf (b->y2), y0, height);

  *x = x0;
  *y = y0;
  *w = x1 - x0;
  *h = y1 - y0;
}

static void
attach_metas (GstYolose *self, GstBuffer *buf, int width, int height,
    GstClockTime pts)
{
  double age = age_ms (pts, self->boxes_pts);
#ifdef HAVE_GST_ANALYTICS
  GstAnalyticsRelationMeta *relations = self->boxes->len > 0
      ? gst_buffer_add_analytics_relation_meta (buf)
      : NULL;
#endif

  for (guint i = 0; i < self->boxes->len; i++) {
    const GstYoloseBox *b = &g_array_index (self->boxes, GstYoloseBox, i);
    GstVideoRegionOfInterestMeta *roi;
    guint x, y, w, h;

    box_pixels (b, width, height, &x, &y, &w, &h);
    roi = gst_buffer_add_video_region_of_interest_meta_id (buf, b->label, x, y,
        w, h);
    roi->id = (gint)i;
    gst_video_region_of_interest_meta_add_param (roi,
        detection_structure (b, width, height, age));
#ifdef HAVE_GST_ANALYTICS
    if (relations != NULL) {
      GstAnalyticsODMtd od;
      gst_analytics_relation_meta_add_od_mtd (relations, b->label, x, y, w, h,
          b->confidence, &od);
    }
#endif
  }
}

static void
post_detections (GstYolose *self, int width, int height)
{
  GstSegment *segment = &GST_BASE_TRANSFORM (self)->segment;
  GstClockTime pts = self->boxes_pts;
  GValue list = G_VALUE_INIT;
  GstStructure *s;

  gst_value_array_init (&list, self->boxes->len);
  for (guint i = 0; i < self->boxes->len; i++) {
    const GstYoloseBox *b = &g_array_index (self->boxes, GstYoloseBox, i);
    GValue v = G_VALUE_INIT;

    g_value_init (&v, GST_TYPE_STRUCTURE);
    g_value_take_boxed (&v, detection_structure (b, width, height, 0.0));
    gst_value_array_append_and_take_value (&list, &v);
  }
  s = gst_structure_new ("yolose", "timestamp", G_TYPE_UINT64, pts,
      "stream-time", G_TYPE_UINT64,
      gst_segment_to_stream_time (segment, GST_FORMAT_TIME, pts),
      "running-time", G_TYPE_UINT64,
      gst_segment_to_running_time (segment, GST_FORMAT_TIME, pts), NULL);
  gst_structure_take_value (s, "detections", &list);
  gst_element_post_message (GST_ELEMENT (self),
      gst_message_new_element (GST_OBJECT (self), s));
}

static gboolean
draw_overlay (GstYolose *self, GstVideoFrame *frame, const GstYoloseSettings *s)
{
  if (self->boxes->len == 0)
    return TRUE;
  if (self->overlay == NULL)
    self->overlay = gst_yolose_overlay_new ();
  return gst_yolose_overlay_draw (self->overlay, frame,
      (const GstYoloseBox *)(gpointer)self->boxes->data, self->boxes->len,
      &s->style);
}

/* Keeps an average of the time a frame spends in the element and tells the
 * pipeline when it moved away from what the last LATENCY query answered. */
static void
note_processing_time (GstYolose *self, gint64 elapsed_us)
{
  GstClockTime t = (GstClockTime)elapsed_us * GST_USECOND;
  gint64 now = g_get_monotonic_time ();
  gboolean post = FALSE;

  GST_OBJECT_LOCK (self);
  self->latency = self->latency == 0 ? t : (self->latency * 7 + t) / 8;
  if (now - self->latency_posted_at > G_USEC_PER_SEC) {
    GstClockTimeDiff drift
        = GST_CLOCK_DIFF (self->latency_reported, self->latency);
    if (ABS (drift) > (GstClockTimeDiff)(self->latency_reported / 4)
        && ABS (drift) > 2 * GST_MSECOND) {
      self->latency_posted_at = now;
      post = TRUE;
    }
  }
  GST_OBJECT_UNLOCK (self);

  if (post)
    gst_element_post_message (GST_ELEMENT (self),
        gst_message_new_latency (GST_OBJECT (self)));
}

static gboolean
map_frame_or_post_error (GstYolose *self, GstVideoFrame *frame, GstBuffer *buf,
    gboolean writable)
{
  GstVideoInfo *info = &GST_VIDEO_FILTER (self)->in_info;
  /* NO_REF: a mapped frame's extra reference would make the buffer
   * read-only for the metas we add. */
  GstMapFlags flags = GST_VIDEO_FRAME_MAP_FLAG_NO_REF
      | (writable ? GST_MAP_READWRITE : GST_MAP_READ);

  if (gst_video_frame_map (frame, info, buf, flags))
    return TRUE;
  GST_ELEMENT_ERROR (self, STREAM, FORMAT,
      ("Received a video buffer that does not hold the frame its caps "
       "describe."),
      ("buffer of %" G_GSIZE_FORMAT " bytes, %s %dx%d "
       "needs %" G_GSIZE_FORMAT,
          gst_buffer_get_size (buf),
          gst_video_format_to_string (GST_VIDEO_INFO_FORMAT (info)),
          GST_VIDEO_INFO_WIDTH (info), GST_VIDEO_INFO_HEIGHT (info),
          GST_VIDEO_INFO_SIZE (info)));
  return FALSE;
}

static GstFlowReturn
gst_yolose_transform_ip (GstBaseTransform *trans, GstBuffer *buf)
{
  GstYolose *self = GST_YOLOSE (trans);
  GstVideoFilter *filter = GST_VIDEO_FILTER (trans);
  int width = GST_VIDEO_INFO_WIDTH (&filter->in_info);
  int height = GST_VIDEO_INFO_HEIGHT (&filter->in_info);
  GstClockTime pts = GST_BUFFER_PTS (buf);
  gint64 start = g_get_monotonic_time ();
  GstYoloseSettings s;
  GstVideoFrame frame;
  gboolean fresh, drawn = TRUE;

  if (G_UNLIKELY (!filter->negotiated)) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, (NULL),
        ("received a buffer before caps"));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  copy_settings (self, &s);
  if (self->worker == NULL && self->frame_count % s.inference_interval == 0
      && drop_if_stale (self, buf))
    return GST_BASE_TRANSFORM_FLOW_DROPPED;
  if (!map_frame_or_post_error (self, &frame, buf, s.overlay))
    return GST_FLOW_ERROR;

  if (self->worker != NULL)
    fresh = run_async (self, &frame, pts, &s);
  else
    fresh = run_sync (self, &frame, pts, &s);
  if (self->have_boxes)
    attach_metas (self, buf, width, height, pts);
  if (s.overlay && self->have_boxes)
    drawn = draw_overlay (self, &frame, &s);
  gst_video_frame_unmap (&frame);

  if (!drawn) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED,
        ("Could not draw the overlay onto %s video.",
            gst_video_format_to_string (
                GST_VIDEO_INFO_FORMAT (&filter->in_info))),
        (NULL));
    return GST_FLOW_ERROR;
  }
  /* In sync mode the frames that skip detection say nothing about the
   * latency the frames that run it add. */
  if (fresh || self->worker != NULL)
    note_processing_time (self, g_get_monotonic_time () - start);
  if (fresh && s.post_messages)
    post_detections (self, width, height);
  return GST_FLOW_OK;
}

/* ----- events and queries ----- */

static gboolean
gst_yolose_sink_event (GstBaseTransform *trans, GstEvent *event)
{
  if (GST_EVENT_TYPE (event) == GST_EVENT_FLUSH_STOP)
    forget_results (GST_YOLOSE (trans));
  return GST_BASE_TRANSFORM_CLASS (parent_class)->sink_event (trans, event);
}

static gboolean
gst_yolose_query (GstBaseTransform *trans, GstPadDirection direction,
    GstQuery *query)
{
  GstYolose *self = GST_YOLOSE (trans);
  GstClockTime min, max, ours;
  gboolean live;

  if (GST_QUERY_TYPE (query) != GST_QUERY_LATENCY || direction != GST_PAD_SRC)
    return GST_BASE_TRANSFORM_CLASS (parent_class)
        ->query (trans, direction, query);

  if (!GST_BASE_TRANSFORM_CLASS (parent_class)->query (trans, direction, query))
    return FALSE;
  gst_query_parse_latency (query, &live, &min, &max);
  GST_OBJECT_LOCK (self);
  self->upstream_live = live;
  self->upstream_latency = min;
  ours = self->latency;
  self->latency_reported = ours;
  GST_OBJECT_UNLOCK (self);
  min += ours;
  if (GST_CLOCK_TIME_IS_VALID (max))
    max += ours;
  GST_DEBUG_OBJECT (self, "adding %" GST_TIME_FORMAT " of processing latency",
      GST_TIME_ARGS (ours));
  gst_query_set_latency (query, live, min, max);
  return TRUE;
}

/* ----- class ----- */

static void
install_properties (GObjectClass *gobject_class)
{
  const GParamFlags rw = G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS;
  const GParamFlags playing = rw | GST_PARAM_MUTABLE_PLAYING;
  const GParamFlags ready = rw | GST_PARAM_MUTABLE_READY;

  g_object_class_install_property (gobject_class, PROP_MODEL,
      g_param_spec_string ("model", "Model",
          "Path of an upstream YOLOv5 (+SE) training checkpoint (.pt); "
          "required. A new model set while playing is loaded and swapped in "
          "without stopping",
          DEFAULT_MODEL, playing));
  g_object_class_install_property (gobject_class, PROP_LABELS_FILE,
      g_param_spec_string ("labels-file", "Labels file",
          "Optional file with one label a line, replacing the checkpoint's "
          "class names",
          DEFAULT_LABELS_FILE, ready));
  g_object_class_install_property (gobject_class, PROP_CONF_THRESHOLD,
      g_param_spec_float ("conf-threshold", "Confidence threshold",
          "Keep detections whose confidence is above this", 0.0f, 1.0f,
          DEFAULT_CONF_THRESHOLD, playing));
  g_object_class_install_property (gobject_class, PROP_IOU_THRESHOLD,
      g_param_spec_float ("iou-threshold", "IoU threshold",
          "Non-maximum suppression: a box overlapping a better one of the "
          "same class by more than this is dropped",
          0.0f, 1.0f, DEFAULT_IOU_THRESHOLD, playing));
  g_object_class_install_property (gobject_class, PROP_MAX_DETECTIONS,
      g_param_spec_int ("max-detections", "Maximum detections",
          "Keep at most this many detections per frame, the best first", 1,
          MAX_MAX_DETECTIONS, DEFAULT_MAX_DETECTIONS, playing));
  g_object_class_install_property (gobject_class, PROP_CLASSES,
      g_param_spec_string ("classes", "Classes",
          "Comma-separated labels or class ids to keep (e.g. "
          "\"person,car\" or \"0,2\"); empty keeps every class",
          DEFAULT_CLASSES, playing));
  g_object_class_install_property (gobject_class, PROP_INPUT_SIZE,
      g_param_spec_int ("input-size", "Input size",
          "Side of the square network input in pixels, a multiple of 32; "
          "smaller is faster and misses small objects",
          MIN_INPUT_SIZE, MAX_INPUT_SIZE, DEFAULT_INPUT_SIZE, ready));
  g_object_class_install_property (gobject_class, PROP_THREADS,
      g_param_spec_int ("threads", "Threads",
          "CPU threads for detection (0 = all cores; in mode=async all but "
          "one, which the video needs)",
          0, 1024, DEFAULT_THREADS, playing));
  g_object_class_install_property (gobject_class, PROP_INFERENCE_INTERVAL,
      g_param_spec_uint ("inference-interval", "Inference interval",
          "Detect on every Nth frame; the frames between carry the last "
          "results",
          1, G_MAXINT, DEFAULT_INFERENCE_INTERVAL, playing));
  g_object_class_install_property (gobject_class, PROP_OVERLAY,
      g_param_spec_boolean ("overlay", "Overlay",
          "Draw the boxes and labels onto the video", DEFAULT_OVERLAY,
          playing));
  g_object_class_install_property (gobject_class, PROP_LINE_WIDTH,
      g_param_spec_uint ("line-width", "Line width",
          "Width of the overlay's box lines in pixels (0 = from the frame "
          "size)",
          0, 100, DEFAULT_LINE_WIDTH, playing));
  g_object_class_install_property (gobject_class, PROP_SHOW_LABELS,
      g_param_spec_boolean ("show-labels", "Show labels",
          "Write each box's label in the overlay", DEFAULT_SHOW_LABELS,
          playing));
  g_object_class_install_property (gobject_class, PROP_SHOW_CONFIDENCE,
      g_param_spec_boolean ("show-confidence", "Show confidence",
          "Write each box's confidence in the overlay", DEFAULT_SHOW_CONFIDENCE,
          playing));
  g_object_class_install_property (gobject_class, PROP_POST_MESSAGES,
      g_param_spec_boolean ("post-messages", "Post messages",
          "Post an element message named \"yolose\" with the detections of "
          "each frame detection ran on",
          DEFAULT_POST_MESSAGES, playing));
  g_object_class_install_property (gobject_class, PROP_MODE,
      g_param_spec_enum ("mode", "Mode",
          "sync: detect before passing each frame on, dropping late frames; "
          "async: pass frames on at once and detect on the newest in a "
          "worker thread, frames carrying the most recent results",
          GST_TYPE_YOLOSE_MODE, DEFAULT_MODE, ready));
  g_object_class_install_property (gobject_class, PROP_KERNELS,
      g_param_spec_enum ("kernels", "Kernels", "Which compute kernels to run",
          GST_TYPE_YOLOSE_KERNELS, DEFAULT_KERNELS, ready));
}

static void
gst_yolose_class_init (GstYoloseClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);
  GstVideoFilterClass *filter_class = GST_VIDEO_FILTER_CLASS (klass);

  GST_DEBUG_CATEGORY_INIT (gst_yolose_debug, "yolose", 0,
      "YOLOv5 object detection");

  gobject_class->set_property = gst_yolose_set_property;
  gobject_class->get_property = gst_yolose_get_property;
  gobject_class->finalize = gst_yolose_finalize;
  install_properties (gobject_class);

  gst_element_class_set_static_metadata (element_class,
      "YOLOv5 object detector", "Filter/Analyzer/Video",
      "Detects objects with an upstream YOLOv5 (+SE) checkpoint on the CPU "
      "and attaches them as region-of-interest metadata",
      "yolose developers");
  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);

  trans_class->start = GST_DEBUG_FUNCPTR (gst_yolose_start);
  trans_class->stop = GST_DEBUG_FUNCPTR (gst_yolose_stop);
  trans_class->query = GST_DEBUG_FUNCPTR (gst_yolose_query);
  trans_class->sink_event = GST_DEBUG_FUNCPTR (gst_yolose_sink_event);
  /* In place only, mapping the frame ourselves: read-only unless the
   * overlay draws, so that a shared buffer is not copied for metadata. */
  trans_class->transform = NULL;
  trans_class->transform_ip = GST_DEBUG_FUNCPTR (gst_yolose_transform_ip);
  trans_class->passthrough_on_same_caps = FALSE;
  trans_class->transform_ip_on_passthrough = FALSE;
  filter_class->set_info = GST_DEBUG_FUNCPTR (gst_yolose_set_info);

  gst_type_mark_as_plugin_api (GST_TYPE_YOLOSE_MODE, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_YOLOSE_KERNELS, 0);
}
