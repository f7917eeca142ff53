/* yolose-monitor — watch cameras, RTSP streams and video files with yolose.
 *
 *   yolose-monitor --model M.pt [--output FILE|-] [--conf X]
 *       [--overlay-to DIR] [--threads N] [--input-size S]
 *       [--kernels auto|generic|avx2] [--timeout SEC] SOURCE...
 *
 * A SOURCE is an rtsp:// URL, a V4L2 device (/dev/videoN), a video file or
 * any URI GStreamer reads, or a numbered picture sequence
 * ("photos/%04d.jpg").  Each source gets a pipeline of its own, in this one
 * process:
 *
 *   uridecodebin uri=SOURCE ! videoconvert ! yolose ! fakesink
 *
 * and every frame that leaves yolose becomes one JSON line:
 *
 *   {"source": "rtsp://cam/1", "pts": 1033333333, "wall_time": 1764.5e6,
 *    "detections": [{"class_id": 0, "label": "person",
 *                    "confidence": 0.8231, "box": [x1, y1, x2, y2]}]}
 *
 * read from the buffer's region-of-interest metadata (a pad probe on
 * yolose's source pad); boxes are in frame pixels, pts in nanoseconds (null
 * when the frame has none), wall_time in seconds since 1970.
 *
 * Live sources (RTSP, V4L2) are watched: an error, an end of stream or no
 * frame for --timeout seconds is a drop, logged on stderr, and the source's
 * pipeline is rebuilt after 1 s, then 2, 4, ... up to 30 s between tries,
 * back to 1 s once frames flowed again.  Files end at their end of stream;
 * the program ends when every source has.  SIGINT/SIGTERM stop it cleanly,
 * with a summary per source on stderr.  Exit status: 0, or 1 when a source
 * failed for good or the program could not start (the cause on stderr), 2
 * for a bad command line. */
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <gst/gst.h>
#include <gst/pbutils/pbutils.h>
#include <gst/video/video.h>
#include <json-glib/json-glib.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "tool-common.h"

#define EXIT_USAGE 2

#define DEFAULT_CONF 0.25
#define DEFAULT_TIMEOUT_S 10.0
#define DEFAULT_SNAPSHOT_INTERVAL_S 1.0
#define DEFAULT_MAX_SNAPSHOTS 100
#define BACKOFF_FIRST_S 1
#define BACKOFF_MAX_S 30
#define WATCHDOG_PERIOD_MS 250
/* rtspsrc buffers 2 s by default; a monitor wants its answers sooner. */
#define RTSP_LATENCY_MS 200
#define SNAPSHOT_TIMEOUT (2 * GST_SECOND)

typedef struct {
  char *model;
  char *output;
  double conf;
  char *overlay_dir;
  int threads;
  int input_size;
  char *kernels;
  double timeout_s;
  double snapshot_interval_s;
  int max_snapshots;
  char **sources;
} MonitorOptions;

typedef enum {
  SOURCE_RUNNING,  /* a pipeline exists: connecting or frames flowing */
  SOURCE_WAITING,  /* dropped; a reconnection is scheduled */
  SOURCE_FINISHED, /* a file that reached its end */
  SOURCE_FAILED,   /* gave up: an error no retry can fix */
  SOURCE_STOPPED,  /* stopped by a signal */
} SourceState;

typedef struct _Monitor Monitor;

typedef struct {
  Monitor *monitor;
  guint number;  /* 1-based, in command-line order */
  char *name;    /* as given: the JSON "source" */
  char *uri;     /* for uridecodebin, or NULL for a picture sequence */
  char *pattern; /* multifilesrc location of a picture sequence */
  guint pattern_start;
  gboolean live;

  /* Main thread only. */
  SourceState state;
  GstElement *pipeline;
  GstElement *convert;
  GstElement *yolose;
  gboolean watching_bus;
  guint retry_timer;
  guint backoff_s;
  gint64 started_us;
  gboolean fatal; /* the current run's failure will not go away */

  /* Shared with the streaming thread, under @lock. */
  GMutex lock;
  guint64 frames, detections, snapshots;
  guint64 frames_this_run;
  gint64 last_frame_us;
  gint64 watched_from_us; /* when the watchdog started listening */
  gint64 last_snapshot_us;
  GQueue snapshot_paths;

  guint64 drops, reconnects; /* main thread */
} Source;

struct _Monitor {
  MonitorOptions opt;
  GMainLoop *loop;
  GPtrArray *sources;
  FILE *out;
  GMutex out_lock;
  gint output_failed; /* atomic */
  guint watchdog;
  gboolean stopping;
};

static void log_source (const Source *src, const char *format, ...)
    G_GNUC_PRINTF (2, 3);

/* One line on stderr: "yolose-monitor: [2 rtsp://cam] connected". */
static void
log_source (const Source *src, const char *format, ...)
{
  va_list ap;
  char *text;

  va_start (ap, format);
  text = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_printerr ("yolose-monitor: [%u %s] %s\n", src->number, src->name, text);
  g_free (text);
}

/* ------------------------------------------------------ command line */

static gboolean
check_options (const MonitorOptions *opt, GError **error)
{
  static const char *const kernel_names[] = { "auto", "generic", "avx2", NULL };
  const char *problem = NULL;

  if (opt->model == NULL || *opt->model == '\0')
    problem = "--model is required";
  else if (!(opt->conf >= 0.0 && opt->conf <= 1.0))
    problem = "--conf must be between 0 and 1";
  else if (opt->threads < 0)
    problem = "--threads must be 0 (all cores) or more";
  else if (opt->input_size != 0
      && (opt->input_size < 32 || opt->input_size > 4096
          || opt->input_size % 32 != 0))
    problem = "--input-size must be a multiple of 32 from 32 to 4096";
  else if (opt->kernels != NULL
      && !g_strv_contains (kernel_names, opt->kernels))
    problem = "--kernels must be auto, generic or avx2";
  else if (!(opt->timeout_s > 0.0))
    problem = "--timeout must be more than 0 seconds";
  else if (!(opt->snapshot_interval_s >= 0.0))
    problem = "--snapshot-interval must be 0 seconds or more";
  else if (opt->max_snapshots < 1)
    problem = "--max-snapshots must be at least 1";
  else if (opt->sources == NULL || opt->sources[0] == NULL)
    problem = "no source given";
  return tool_check_option (problem, error);
}

static gboolean
parse_options (int argc, char **argv, MonitorOptions *opt, GError **error)
{
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &opt->model,
        "Upstream YOLOv5 (+SE) checkpoint (.pt)", "M.pt" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &opt->output,
        "Append the JSON lines to FILE (default -, standard output)", "FILE" },
    { "conf", 'c', 0, G_OPTION_ARG_DOUBLE, &opt->conf,
        "Confidence threshold (default 0.25)", "X" },
    { "overlay-to", 0, 0, G_OPTION_ARG_FILENAME, &opt->overlay_dir,
        "Save JPEG snapshots with the boxes drawn of frames with detections "
        "into DIR",
        "DIR" },
    { "snapshot-interval", 0, 0, G_OPTION_ARG_DOUBLE, &opt->snapshot_interval_s,
        "At most one snapshot per source every SEC seconds (default 1)",
        "SEC" },
    { "max-snapshots", 0, 0, G_OPTION_ARG_INT, &opt->max_snapshots,
        "Keep the newest N snapshots per source (default 100)", "N" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &opt->threads,
        "CPU threads per source (default 0 = all cores)", "N" },
    { "input-size", 's', 0, G_OPTION_ARG_INT, &opt->input_size,
        "Network input size, a multiple of 32 (default 640)", "S" },
    { "kernels", 'k', 0, G_OPTION_ARG_STRING, &opt->kernels,
        "Kernel table: auto, generic or avx2 (default auto)", "NAME" },
    { "timeout", 0, 0, G_OPTION_ARG_DOUBLE, &opt->timeout_s,
        "A live source sending no frame for SEC seconds has dropped "
        "(default 10)",
        "SEC" },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt->sources,
        NULL, "SOURCE..." },
    { NULL },
  };
  GOptionContext *ctx = g_option_context_new (
      "- detect objects in cameras, RTSP streams and video files");
  gboolean ok;

  g_option_context_set_summary (ctx,
      "SOURCE is an rtsp:// URL, a V4L2 device (/dev/videoN), a video "
      "file or URI, or a picture\nsequence such as photos/%04d.jpg. One "
      "JSON line per processed frame:\n"
      "{\"source\", \"pts\", \"wall_time\", \"detections\": "
      "[{\"class_id\", \"label\", \"confidence\", \"box\"}]}");
  opt->conf = DEFAULT_CONF;
  opt->timeout_s = DEFAULT_TIMEOUT_S;
  opt->snapshot_interval_s = DEFAULT_SNAPSHOT_INTERVAL_S;
  opt->max_snapshots = DEFAULT_MAX_SNAPSHOTS;
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_add_group (ctx, gst_init_get_option_group ());
  ok = g_option_context_parse (ctx, &argc, &argv, error)
      && check_options (opt, error);
  g_option_context_free (ctx);
  return ok;
}

static void
monitor_options_clear (MonitorOptions *opt)
{
  g_free (opt->model);
  g_free (opt->output);
  g_free (opt->overlay_dir);
  g_free (opt->kernels);
  g_strfreev (opt->sources);
}

/* ------------------------------------------------------------ sources */

static gboolean
scheme_is_live (const char *scheme)
{
  static const char *const live[] = { "rtsp", "rtsps", "rtspt", "rtspu",
    "rtsph", "v4l2", "udp", "rtp", "srt", "rtmp", NULL };

  return g_strv_contains (live, scheme);
}

/* The width of the one "%d" / "%0Nd" in @pattern, or -1 when @pattern is
 * not a picture sequence.  Any other '%' (but "%%") makes it no pattern:
 * multifilesrc hands the location to printf. */
static int
sequence_width (const char *pattern, const char **conversion)
{
  int width = -1;

  for (const char *p = pattern; *p != '\0'; p++) {
    const char *start = p;
    int w = 0;

    if (*p != '%')
      continue;
    if (p[1] == '%') {
      p++;
      continue;
    }
    for (p++; g_ascii_isdigit (*p) && w < 100; p++)
      w = w * 10 + (*p - '0');
    if (*p != 'd' || width >= 0)
      return -1;
    width = w;
    *conversion = start;
  }
  return width;
}

/* @pattern's file name for picture @index, without going through printf. */
static char *
sequence_file (const char *pattern, guint index)
{
  const char *conversion = NULL;
  int width = sequence_width (pattern, &conversion);
  const char *after = strchr (conversion, 'd') + 1;
  GString *name = g_string_new (NULL);
  char digits[32];
  int n = g_snprintf (digits, sizeof digits, "%u", index);

  for (const char *p = pattern; p < conversion; p++) {
    g_string_append_c (name, *p);
    if (p[0] == '%' && p[1] == '%')
      p++;
  }
  for (int i = n; i < width; i++)
    g_string_append_c (name, '0');
  g_string_append (name, digits);
  for (const char *p = after; *p != '\0'; p++) {
    g_string_append_c (name, *p);
    if (p[0] == '%' && p[1] == '%')
      p++;
  }
  return g_string_free (name, FALSE);
}

static gboolean
classify_sequence (Source *src, GError **error)
{
  for (guint start = 0; start <= 1; start++) {
    char *first = sequence_file (src->name, start);
    gboolean found = g_file_test (first, G_FILE_TEST_IS_REGULAR);

    g_free (first);
    if (found) {
      src->pattern = g_strdup (src->name);
      src->pattern_start = start;
      return TRUE;
    }
  }
  g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
      "%s: no picture numbered 0 or 1 in this sequence", src->name);
  return FALSE;
}

static gboolean
classify_uri (Source *src, GError **error)
{
  char *scheme = gst_uri_get_protocol (src->name);
  gboolean ok = TRUE;

  if (!gst_uri_protocol_is_supported (GST_URI_SRC, scheme)) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
        "%s: no GStreamer element reads %s:// (for rtsp:// install "
        "gstreamer1.0-plugins-good)",
        src->name, scheme);
    ok = FALSE;
  } else if (g_str_equal (scheme, "file")) {
    char *path = g_filename_from_uri (src->name, NULL, NULL);

    if (path == NULL || !g_file_test (path, G_FILE_TEST_IS_REGULAR)) {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT, "%s: no such file",
          src->name);
      ok = FALSE;
    }
    g_free (path);
  }
  if (ok) {
    src->uri = g_strdup (src->name);
    src->live = scheme_is_live (scheme);
  }
  g_free (scheme);
  return ok;
}

/* Works out how to read @src->name; fails on what cannot work however
 * long we wait (a missing file, an unknown scheme). */
static gboolean
classify_source (Source *src, GError **error)
{
  const char *conversion;

  if (gst_uri_is_valid (src->name))
    return classify_uri (src, error);
  if (g_str_has_prefix (src->name, "/dev/video")) {
    if (!g_file_test (src->name, G_FILE_TEST_EXISTS)) {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
          "%s: no such device", src->name);
      return FALSE;
    }
    src->uri = g_strconcat ("v4l2://", src->name, NULL);
    src->live = TRUE;
    return TRUE;
  }
  if (strchr (src->name, '%') != NULL
      && sequence_width (src->name, &conversion) >= 0)
    return classify_sequence (src, error);
  if (!g_file_test (src->name, G_FILE_TEST_IS_REGULAR)) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOENT, "%s: no such file",
        src->name);
    return FALSE;
  }
  src->uri = gst_filename_to_uri (src->name, error);
  return src->uri != NULL;
}

static Source *
source_new (Monitor *monitor, guint number, const char *name)
{
  Source *src = g_new0 (Source, 1);

  src->monitor = monitor;
  src->number = number;
  src->name = g_strdup (name);
  src->backoff_s = BACKOFF_FIRST_S;
  src->state = SOURCE_WAITING;
  g_mutex_init (&src->lock);
  g_queue_init (&src->snapshot_paths);
  return src;
}

static void
source_free (Source *src)
{
  g_free (src->name);
  g_free (src->uri);
  g_free (src->pattern);
  g_queue_clear_full (&src->snapshot_paths, g_free);
  g_mutex_clear (&src->lock);
  g_free (src);
}

/* ------------------------------------------------------------- frames */

static void
add_box (JsonBuilder *b, GstVideoRegionOfInterestMeta *roi, int width,
    int height)
{
  GstStructure *s
      = gst_video_region_of_interest_meta_get_param (roi, "detection");
  double x1 = roi->x, y1 = roi->y, x2 = roi->x + roi->w, y2 = roi->y + roi->h;
  double confidence = 0.0;
  int class_id = -1;
  const char *label = g_quark_to_string (roi->roi_type);

  /* The normalised box is yolose's own float box; the pixel rectangle of
   * the meta is rounded outwards. */
  if (s != NULL && gst_structure_get_double (s, "x_min", &x1)
      && gst_structure_get_double (s, "y_min", &y1)
      && gst_structure_get_double (s, "x_max", &x2)
      && gst_structure_get_double (s, "y_max", &y2)) {
    x1 *= width;
    x2 *= width;
    y1 *= height;
    y2 *= height;
  }
  if (s != NULL) {
    gst_structure_get_double (s, "confidence", &confidence);
    gst_structure_get_int (s, "label_id", &class_id);
    if (gst_structure_get_string (s, "label") != NULL)
      label = gst_structure_get_string (s, "label");
  }

  tool_json_add_detection (b, class_id, label, confidence,
      (const double[4]){ x1, y1, x2, y2 });
}

/* The frame's JSON line (without the newline); *@n_boxes gets the number of
 * detections in it. */
static char *
frame_json (const Source *src, GstBuffer *buf, const GstVideoInfo *info,
    guint *n_boxes)
{
  JsonBuilder *b = json_builder_new ();
  gpointer state = NULL;
  GstMeta *meta;

  *n_boxes = 0;
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "source");
  json_builder_add_string_value (b, src->name);
  json_builder_set_member_name (b, "pts");
  if (GST_BUFFER_PTS_IS_VALID (buf))
    json_builder_add_int_value (b, (gint64)GST_BUFFER_PTS (buf));
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "wall_time");
  json_builder_add_double_value (b, g_get_real_time () / 1e6);
  json_builder_set_member_name (b, "detections");
  json_builder_begin_array (b);
  while ((meta = gst_buffer_iterate_meta_filtered (buf, &state,
              GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))
      != NULL) {
    add_box (b, (GstVideoRegionOfInterestMeta *)meta,
        GST_VIDEO_INFO_WIDTH (info), GST_VIDEO_INFO_HEIGHT (info));
    (*n_boxes)++;
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  return tool_json_finish_line (b);
}

static void
write_line (Monitor *monitor, const char *line)
{
  gboolean ok;

  g_mutex_lock (&monitor->out_lock);
  /* Flushed line by line: whoever reads the stream sees each frame now. */
  ok = fputs (line, monitor->out) >= 0 && fputc ('\n', monitor->out) != EOF
      && fflush (monitor->out) == 0;
  g_mutex_unlock (&monitor->out_lock);
  if (!ok)
    g_atomic_int_set (&monitor->output_failed, 1);
}

/* The frame (overlay drawn) as a JPEG file at @path. */
static gboolean
write_jpeg (GstBuffer *buf, GstCaps *caps, const char *path, GError **error)
{
  GstSample *sample = gst_sample_new (buf, caps, NULL, NULL);
  GstCaps *jpeg = gst_caps_new_empty_simple ("image/jpeg");
  GstSample *encoded
      = gst_video_convert_sample (sample, jpeg, SNAPSHOT_TIMEOUT, error);
  GstMapInfo map;
  gboolean ok;

  gst_caps_unref (jpeg);
  gst_sample_unref (sample);
  if (encoded == NULL)
    return FALSE;
  if (!gst_buffer_map (gst_sample_get_buffer (encoded), &map, GST_MAP_READ)) {
    g_set_error_literal (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_FAILED,
        "cannot read the encoded picture");
    gst_sample_unref (encoded);
    return FALSE;
  }
  ok = g_file_set_contents (path, (const char *)map.data, map.size, error);
  gst_buffer_unmap (gst_sample_get_buffer (encoded), &map);
  gst_sample_unref (encoded);
  return ok;
}

/* Saves frames with detections, at most one per --snapshot-interval, and
 * deletes the oldest snapshot past --max-snapshots.  Encoding happens
 * outside the lock: the main loop's watchdog takes it too. */
static void
maybe_save_snapshot (Source *src, GstPad *pad, GstBuffer *buf, guint n_boxes,
    gint64 now)
{
  const MonitorOptions *opt = &src->monitor->opt;
  char *name, *path;
  GstCaps *caps;
  GError *error = NULL;
  guint64 serial;
  gboolean due;

  if (opt->overlay_dir == NULL || n_boxes == 0)
    return;
  g_mutex_lock (&src->lock);
  due = src->last_snapshot_us == 0
      || now - src->last_snapshot_us >= opt->snapshot_interval_s * 1e6;
  if (due)
    src->last_snapshot_us = now;
  serial = src->snapshots;
  g_mutex_unlock (&src->lock);
  if (!due || (caps = gst_pad_get_current_caps (pad)) == NULL)
    return;

  name = g_strdup_printf ("source%u-%06" G_GUINT64_FORMAT ".jpg", src->number,
      serial);
  path = g_build_filename (opt->overlay_dir, name, NULL);
  g_free (name);
  if (!write_jpeg (buf, caps, path, &error)) {
    log_source (src, "could not save a snapshot: %s", error->message);
    g_error_free (error);
    g_free (path);
    gst_caps_unref (caps);
    return;
  }
  gst_caps_unref (caps);

  g_mutex_lock (&src->lock);
  src->snapshots++;
  g_queue_push_tail (&src->snapshot_paths, path);
  while (
      g_queue_get_length (&src->snapshot_paths) > (guint)opt->max_snapshots) {
    char *oldest = g_queue_pop_head (&src->snapshot_paths);
    g_unlink (oldest);
    g_free (oldest);
  }
  g_mutex_unlock (&src->lock);
}

/* On yolose's source pad, in the streaming thread: every frame that
 * leaves the element has been through detection. */
static GstPadProbeReturn
on_frame (GstPad *pad, GstPadProbeInfo *info, gpointer user_data)
{
  Source *src = user_data;
  GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER (info);
  gint64 now = g_get_monotonic_time ();
  GstVideoInfo vinfo;
  GstCaps *caps = gst_pad_get_current_caps (pad);
  gboolean have_info = caps != NULL && gst_video_info_from_caps (&vinfo, caps);
  guint n_boxes;
  gboolean first;
  double waited;
  char *line;

  g_clear_pointer (&caps, gst_caps_unref);
  if (!have_info)
    return GST_PAD_PROBE_OK;
  line = frame_json (src, buf, &vinfo, &n_boxes);
  write_line (src->monitor, line);
  g_free (line);

  g_mutex_lock (&src->lock);
  first = src->frames_this_run == 0;
  src->frames_this_run++;
  src->frames++;
  src->detections += n_boxes;
  src->last_frame_us = now;
  waited = (now - src->started_us) / 1e6;
  g_mutex_unlock (&src->lock);
  if (first)
    log_source (src, "connected: frames flowing (first after %.1f s)", waited);

  maybe_save_snapshot (src, pad, buf, n_boxes, now);
  return GST_PAD_PROBE_OK;
}

/* ----------------------------------------------------------- pipeline */

static GstElement *
make_yolose (const MonitorOptions *opt, GError **error)
{
  GstElement *yolose = gst_element_factory_make ("yolose", NULL);

  if (yolose == NULL) {
    g_set_error_literal (error, GST_CORE_ERROR, GST_CORE_ERROR_MISSING_PLUGIN,
        "no GStreamer element \"yolose\": install the plugin or add the "
        "folder holding libgstyolose.so to GST_PLUGIN_PATH");
    return NULL;
  }
  g_object_set (yolose, "model", opt->model, "conf-threshold", (float)opt->conf,
      "threads", opt->threads, "overlay", opt->overlay_dir != NULL, NULL);
  if (opt->input_size != 0)
    g_object_set (yolose, "input-size", opt->input_size, NULL);
  /* The element's enum takes the same nicks (checked in check_options). */
  if (opt->kernels != NULL)
    gst_util_set_object_arg (G_OBJECT (yolose), "kernels", opt->kernels);
  return yolose;
}

static GstElement *
make_element (const char *factory, GError **error)
{
  GstElement *e = gst_element_factory_make (factory, NULL);

  if (e == NULL)
    g_set_error (error, GST_CORE_ERROR, GST_CORE_ERROR_MISSING_PLUGIN,
        "no GStreamer element \"%s\" (gstreamer1.0-plugins-base "
        "and -good have it)",
        factory);
  return e;
}

/* A stream the monitor does not watch (audio, subtitles) goes nowhere,
 * quietly, so that it neither blocks nor fails the video. */
static void
discard_pad (GstElement *pipeline, GstPad *pad)
{
  GstElement *sink = gst_element_factory_make ("fakesink", NULL);
  GstPad *sinkpad;

  if (sink == NULL)
    return;
  g_object_set (sink, "sync", FALSE, "async", FALSE, NULL);
  gst_bin_add (GST_BIN (pipeline), sink);
  sinkpad = gst_element_get_static_pad (sink, "sink");
  gst_pad_link (pad, sinkpad);
  gst_object_unref (sinkpad);
  gst_element_sync_state_with_parent (sink);
}

static void
on_pad_added (GstElement *decoder, GstPad *pad, gpointer user_data)
{
  Source *src = user_data;
  GstCaps *caps = gst_pad_get_current_caps (pad);
  GstPad *sinkpad = gst_element_get_static_pad (src->convert, "sink");
  gboolean video = FALSE;

  if (caps == NULL)
    caps = gst_pad_query_caps (pad, NULL);
  if (caps != NULL && gst_caps_get_size (caps) > 0)
    video = g_str_has_prefix (
        gst_structure_get_name (gst_caps_get_structure (caps, 0)), "video/");
  if (video && !gst_pad_is_linked (sinkpad))
    gst_pad_link (pad, sinkpad);
  else
    discard_pad (src->pipeline, pad);
  gst_object_unref (sinkpad);
  g_clear_pointer (&caps, gst_caps_unref);
}

static void
on_source_setup (GstElement *uridecodebin, GstElement *source,
    gpointer user_data)
{
  /* rtspsrc: a short jitter buffer that drops what comes too late rather
   * than growing while detection is slower than the camera. */
  if (g_str_equal (G_OBJECT_TYPE_NAME (source), "GstRTSPSrc"))
    g_object_set (source, "latency", (guint)RTSP_LATENCY_MS, "drop-on-latency",
        TRUE, NULL);
}

static GstElement *
make_decoder (Source *src, GError **error)
{
  GstElement *decoder;

  if (src->uri != NULL) {
    decoder = make_element ("uridecodebin", error);
    if (decoder == NULL)
      return NULL;
    g_object_set (decoder, "uri", src->uri, NULL);
    g_signal_connect (decoder, "source-setup", G_CALLBACK (on_source_setup),
        src);
  } else {
    decoder = make_element ("decodebin", error);
  }
  if (decoder != NULL)
    g_signal_connect (decoder, "pad-added", G_CALLBACK (on_pad_added), src);
  return decoder;
}

/* multifilesrc for a picture sequence: one picture a second, so that a
 * picture's pts says which one it is. */
static GstElement *
make_sequence_reader (Source *src, GError **error)
{
  GstElement *reader = make_element ("multifilesrc", error);
  const char *ext = strrchr (src->pattern, '.');
  gboolean png = ext != NULL && g_ascii_strcasecmp (ext, ".png") == 0;
  GstCaps *caps;

  if (reader == NULL)
    return NULL;
  caps = gst_caps_new_simple (png ? "image/png" : "image/jpeg", "framerate",
      GST_TYPE_FRACTION, 1, 1, NULL);
  g_object_set (reader, "location", src->pattern, "index",
      (gint)src->pattern_start, "start-index", (gint)src->pattern_start, "caps",
      caps, NULL);
  gst_caps_unref (caps);
  return reader;
}

/* [reader !] decoder ! videoconvert ! yolose ! fakesink, with the probe. */
static gboolean
build_pipeline (Source *src, GError **error)
{
  const MonitorOptions *opt = &src->monitor->opt;
  char *name = g_strdup_printf ("source%u", src->number);
  GstElement *pipeline = gst_pipeline_new (name);
  GstElement *reader = NULL, *decoder, *convert, *yolose, *sink;
  GstPad *pad;

  g_free (name);
  src->pipeline = pipeline;
  if (src->pattern != NULL
      && (reader = make_sequence_reader (src, error)) == NULL)
    return FALSE;
  if (reader != NULL)
    gst_bin_add (GST_BIN (pipeline), reader);
  if ((decoder = make_decoder (src, error)) == NULL)
    return FALSE;
  gst_bin_add (GST_BIN (pipeline), decoder);
  if (reader != NULL)
    gst_element_link (reader, decoder);
  if ((convert = make_element ("videoconvert", error)) == NULL)
    return FALSE;
  gst_bin_add (GST_BIN (pipeline), convert);
  if ((yolose = make_yolose (opt, error)) == NULL)
    return FALSE;
  gst_bin_add (GST_BIN (pipeline), yolose);
  if ((sink = make_element ("fakesink", error)) == NULL)
    return FALSE;
  /* Live: the sink keeps time, so that the latency query and QoS reach
   * yolose and it drops stale frames instead of falling behind.  Files:
   * every frame, as fast as the CPU goes. */
  g_object_set (sink, "sync", src->live, NULL);
  gst_bin_add (GST_BIN (pipeline), sink);
  gst_element_link_many (convert, yolose, sink, NULL);

  src->convert = convert;
  src->yolose = yolose;
  pad = gst_element_get_static_pad (yolose, "src");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, on_frame, src, NULL);
  gst_object_unref (pad);
  return TRUE;
}

static void
teardown_pipeline (Source *src)
{
  GstBus *bus;

  if (src->pipeline == NULL)
    return;
  gst_element_set_state (src->pipeline, GST_STATE_NULL);
  if (src->watching_bus) {
    bus = gst_element_get_bus (src->pipeline);
    gst_bus_remove_watch (bus);
    gst_object_unref (bus);
    src->watching_bus = FALSE;
  }
  gst_clear_object (&src->pipeline);
  src->convert = NULL;
  src->yolose = NULL;
}

/* ------------------------------------------------- drops and restarts */

static void start_source (Source *src);

static void
quit_when_all_done (Monitor *monitor)
{
  for (guint i = 0; i < monitor->sources->len; i++) {
    Source *src = g_ptr_array_index (monitor->sources, i);
    if (src->state == SOURCE_RUNNING || src->state == SOURCE_WAITING)
      return;
  }
  g_main_loop_quit (monitor->loop);
}

static void
finish_source (Source *src, SourceState state, const char *why)
{
  teardown_pipeline (src);
  src->state = state;
  log_source (src, "%s: %s", state == SOURCE_FAILED ? "failed" : "finished",
      why);
  quit_when_all_done (src->monitor);
}

static gboolean
on_retry (gpointer user_data)
{
  Source *src = user_data;

  src->retry_timer = 0;
  src->reconnects++;
  log_source (src, "reconnecting (attempt %" G_GUINT64_FORMAT ")",
      src->reconnects);
  start_source (src);
  return G_SOURCE_REMOVE;
}

/* A live source went away: rebuild its pipeline after the backoff, which
 * starts again from the shortest once a run delivered frames. */
static void
drop_source (Source *src, const char *why)
{
  guint64 frames;

  teardown_pipeline (src);
  g_mutex_lock (&src->lock);
  frames = src->frames_this_run;
  g_mutex_unlock (&src->lock);
  if (frames > 0)
    src->backoff_s = BACKOFF_FIRST_S;
  src->drops++;
  src->state = SOURCE_WAITING;
  log_source (src, "dropped: %s; reconnecting in %u s", why, src->backoff_s);
  src->retry_timer = g_timeout_add_seconds (src->backoff_s, on_retry, src);
  src->backoff_s = MIN (src->backoff_s * 2, BACKOFF_MAX_S);
}

/* What happened to this run: the end for a file or an error nothing will
 * fix, a drop (and a retry) for a live source. */
static void
source_ended (Source *src, const char *why, gboolean error)
{
  if (src->fatal)
    finish_source (src, SOURCE_FAILED, why);
  else if (src->live)
    drop_source (src, why);
  else
    finish_source (src, error ? SOURCE_FAILED : SOURCE_FINISHED, why);
}

/* The last line of a GStreamer debug string: the part that says what
 * went wrong, after the code location and the element path.  Newly
 * allocated; NULL for NULL. */
static char *
debug_tail (const char *debug)
{
  char *text, *nl, *tail;

  if (debug == NULL)
    return NULL;
  text = g_strchomp (g_strdup (debug));
  nl = strrchr (text, '\n');
  tail = g_strdup (nl != NULL ? nl + 1 : text);
  g_free (text);
  return tail;
}

static gboolean
error_is_permanent (Source *src, GstMessage *msg, const GError *error)
{
  /* The model, its settings, a missing decoder: reconnecting cannot help. */
  if (GST_MESSAGE_SRC (msg) == GST_OBJECT (src->yolose))
    return TRUE;
  if (g_error_matches (error, GST_CORE_ERROR, GST_CORE_ERROR_MISSING_PLUGIN))
    return TRUE;
  return g_error_matches (error, GST_STREAM_ERROR,
             GST_STREAM_ERROR_CODEC_NOT_FOUND)
      || g_error_matches (error, GST_STREAM_ERROR,
          GST_STREAM_ERROR_TYPE_NOT_FOUND)
      || g_error_matches (error, GST_STREAM_ERROR, GST_STREAM_ERROR_WRONG_TYPE);
}

static void
handle_error (Source *src, GstMessage *msg)
{
  GError *error = NULL;
  char *debug = NULL, *why, *tail;

  gst_message_parse_error (msg, &error, &debug);
  tail = debug_tail (debug);
  why = g_strdup_printf ("error from %s: %s%s%s%s", GST_MESSAGE_SRC_NAME (msg),
      error->message, tail ? " (" : "", tail ? tail : "", tail ? ")" : "");
  if (error_is_permanent (src, msg, error))
    src->fatal = TRUE;
  source_ended (src, why, TRUE);
  g_free (why);
  g_free (tail);
  g_free (debug);
  g_error_free (error);
}

static void
handle_element_message (Source *src, GstMessage *msg)
{
  char *what;

  if (!gst_is_missing_plugin_message (msg))
    return;
  what = gst_missing_plugin_message_get_description (msg);
  log_source (src, "missing a GStreamer plugin: %s", what);
  src->fatal = TRUE;
  g_free (what);
}

static gboolean
on_bus_message (GstBus *bus, GstMessage *msg, gpointer user_data)
{
  Source *src = user_data;
  GError *warning = NULL;

  if (src->monitor->stopping || src->pipeline == NULL)
    return G_SOURCE_CONTINUE;
  switch (GST_MESSAGE_TYPE (msg)) {
    case GST_MESSAGE_ERROR:
      handle_error (src, msg);
      break;
    case GST_MESSAGE_EOS:
      source_ended (src, "end of stream", FALSE);
      break;
    case GST_MESSAGE_WARNING:
      gst_message_parse_warning (msg, &warning, NULL);
      log_source (src, "warning from %s: %s", GST_MESSAGE_SRC_NAME (msg),
          warning->message);
      g_error_free (warning);
      break;
    case GST_MESSAGE_LATENCY:
      /* yolose tells when its processing time moved. */
      gst_bin_recalculate_latency (GST_BIN (src->pipeline));
      break;
    case GST_MESSAGE_ELEMENT:
      handle_element_message (src, msg);
      break;
    default:
      break;
  }
  return G_SOURCE_CONTINUE;
}

static void
start_source (Source *src)
{
  GError *error = NULL;
  GstBus *bus;

  src->fatal = FALSE;
  src->state = SOURCE_RUNNING;
  g_mutex_lock (&src->lock);
  src->frames_this_run = 0;
  src->started_us = g_get_monotonic_time ();
  g_mutex_unlock (&src->lock);

  if (!build_pipeline (src, &error)) {
    src->fatal = TRUE;
    source_ended (src, error->message, TRUE);
    g_error_free (error);
    return;
  }
  log_source (src, "connecting%s", src->live ? " (live)" : "");
  bus = gst_element_get_bus (src->pipeline);
  gst_bus_add_watch (bus, on_bus_message, src);
  src->watching_bus = TRUE;
  gst_object_unref (bus);
  /* A failure here posts an error, which the bus watch reports. */
  gst_element_set_state (src->pipeline, GST_STATE_PLAYING);
  /* The model loads inside set_state(): the time it takes is no silence
   * of the source. */
  g_mutex_lock (&src->lock);
  src->watched_from_us = g_get_monotonic_time ();
  g_mutex_unlock (&src->lock);
}

/* Drops the live sources that stopped sending frames without saying so
 * (a camera unplugged, a network gone quiet), and stops everything when
 * the output cannot be written. */
static gboolean
on_watchdog (gpointer user_data)
{
  Monitor *monitor = user_data;
  gint64 now = g_get_monotonic_time ();

  if (g_atomic_int_get (&monitor->output_failed)) {
    g_printerr ("yolose-monitor: cannot write the output; stopping\n");
    for (guint i = 0; i < monitor->sources->len; i++) {
      Source *src = g_ptr_array_index (monitor->sources, i);
      g_clear_handle_id (&src->retry_timer, g_source_remove);
      if (src->state == SOURCE_RUNNING || src->state == SOURCE_WAITING)
        finish_source (src, SOURCE_FAILED, "output failed");
    }
    monitor->watchdog = 0;
    return G_SOURCE_REMOVE;
  }
  for (guint i = 0; i < monitor->sources->len; i++) {
    Source *src = g_ptr_array_index (monitor->sources, i);
    gint64 last;

    if (!src->live || src->state != SOURCE_RUNNING)
      continue;
    g_mutex_lock (&src->lock);
    last = MAX (src->watched_from_us, src->last_frame_us);
    g_mutex_unlock (&src->lock);
    if (now - last > monitor->opt.timeout_s * G_USEC_PER_SEC) {
      char *why = g_strdup_printf ("no frame for %.1f s", (now - last) / 1e6);
      drop_source (src, why);
      g_free (why);
    }
  }
  return G_SOURCE_CONTINUE;
}

/* --------------------------------------------------- start and finish */

static gboolean
on_signal (gpointer user_data)
{
  Monitor *monitor = user_data;

  if (monitor->stopping)
    return G_SOURCE_CONTINUE;
  monitor->stopping = TRUE;
  g_printerr ("yolose-monitor: stopping\n");
  for (guint i = 0; i < monitor->sources->len; i++) {
    Source *src = g_ptr_array_index (monitor->sources, i);

    g_clear_handle_id (&src->retry_timer, g_source_remove);
    if (src->state == SOURCE_RUNNING || src->state == SOURCE_WAITING) {
      teardown_pipeline (src);
      src->state = SOURCE_STOPPED;
    }
  }
  g_main_loop_quit (monitor->loop);
  return G_SOURCE_CONTINUE;
}

/* Loads the model once in a pipeline of its own, so that a bad model or a
 * missing plugin stops the program at once with the element's own words
 * instead of failing every source over and over. */
static gboolean
check_model (const MonitorOptions *opt, GError **error)
{
  GstElement *pipeline, *yolose;
  GstStateChangeReturn ret;
  GstBus *bus;
  GstMessage *msg;

  if ((yolose = make_yolose (opt, error)) == NULL)
    return FALSE;
  pipeline = gst_pipeline_new ("model-check");
  gst_bin_add (GST_BIN (pipeline), yolose);
  ret = gst_element_set_state (pipeline, GST_STATE_PAUSED);
  if (ret == GST_STATE_CHANGE_FAILURE) {
    bus = gst_element_get_bus (pipeline);
    msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
    if (msg != NULL) {
      gst_message_parse_error (msg, error, NULL);
      gst_message_unref (msg);
    } else {
      g_set_error (error, GST_CORE_ERROR, GST_CORE_ERROR_STATE_CHANGE,
          "yolose could not start with model %s", opt->model);
    }
    gst_object_unref (bus);
  }
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (pipeline);
  return ret != GST_STATE_CHANGE_FAILURE;
}

static gboolean
open_output (Monitor *monitor, GError **error)
{
  const char *path = monitor->opt.output;

  if (path == NULL || g_str_equal (path, "-")) {
    monitor->out = stdout;
    return TRUE;
  }
  monitor->out = g_fopen (path, "a");
  if (monitor->out == NULL) {
    int saved = errno;
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
        "cannot open %s: %s", path, g_strerror (saved));
    return FALSE;
  }
  return TRUE;
}

static gboolean
prepare (Monitor *monitor, GError **error)
{
  const MonitorOptions *opt = &monitor->opt;

  for (guint i = 0; opt->sources[i] != NULL; i++) {
    Source *src = source_new (monitor, i + 1, opt->sources[i]);

    g_ptr_array_add (monitor->sources, src);
    if (!classify_source (src, error))
      return FALSE;
  }
  if (opt->overlay_dir != NULL
      && g_mkdir_with_parents (opt->overlay_dir, 0755) != 0) {
    int saved = errno;
    g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (saved),
        "cannot create %s: %s", opt->overlay_dir, g_strerror (saved));
    return FALSE;
  }
  return check_model (opt, error) && open_output (monitor, error);
}

static const char *
state_name (SourceState state)
{
  switch (state) {
    case SOURCE_FINISHED:
      return "finished";
    case SOURCE_FAILED:
      return "failed";
    case SOURCE_STOPPED:
      return "stopped";
    default:
      return "running";
  }
}

/* The summary on stderr; returns whether every source went well. */
static gboolean
print_summary (Monitor *monitor)
{
  gboolean ok = TRUE;

  for (guint i = 0; i < monitor->sources->len; i++) {
    Source *src = g_ptr_array_index (monitor->sources, i);

    log_source (src,
        "summary: %" G_GUINT64_FORMAT " frames, %" G_GUINT64_FORMAT
        " detections, %" G_GUINT64_FORMAT " drops, %" G_GUINT64_FORMAT
        " reconnects, %" G_GUINT64_FORMAT " snapshots, %s",
        src->frames, src->detections, src->drops, src->reconnects,
        src->snapshots, state_name (src->state));
    if (src->state == SOURCE_FAILED)
      ok = FALSE;
  }
  return ok && !g_atomic_int_get (&monitor->output_failed);
}

static void
monitor_clear (Monitor *monitor)
{
  if (monitor->watchdog != 0)
    g_source_remove (monitor->watchdog);
  for (guint i = 0; i < monitor->sources->len; i++) {
    Source *src = g_ptr_array_index (monitor->sources, i);
    g_clear_handle_id (&src->retry_timer, g_source_remove);
    teardown_pipeline (src);
  }
  g_ptr_array_free (monitor->sources, TRUE);
  if (monitor->out != NULL && monitor->out != stdout)
    fclose (monitor->out);
  g_mutex_clear (&monitor->out_lock);
  g_main_loop_unref (monitor->loop);
  monitor_options_clear (&monitor->opt);
}

int
main (int argc, char **argv)
{
  Monitor monitor = { 0 };
  GError *error = NULL;
  guint sigint, sigterm;
  gboolean pending = FALSE, ok;

  if (!parse_options (argc, argv, &monitor.opt, &error)) {
    g_printerr ("yolose-monitor: %s (see --help)\n", error->message);
    g_error_free (error);
    monitor_options_clear (&monitor.opt);
    return EXIT_USAGE;
  }
  monitor.loop = g_main_loop_new (NULL, FALSE);
  monitor.sources
      = g_ptr_array_new_with_free_func ((GDestroyNotify)source_free);
  g_mutex_init (&monitor.out_lock);

  if (!prepare (&monitor, &error)) {
    g_printerr ("yolose-monitor: %s\n", error->message);
    g_error_free (error);
    monitor_clear (&monitor);
    return 1;
  }

  sigint = g_unix_signal_add (SIGINT, on_signal, &monitor);
  sigterm = g_unix_signal_add (SIGTERM, on_signal, &monitor);
  monitor.watchdog = g_timeout_add (WATCHDOG_PERIOD_MS, on_watchdog, &monitor);
  for (guint i = 0; i < monitor.sources->len; i++)
    start_source (g_ptr_array_index (monitor.sources, i));
  /* Sources may all have failed already, without the loop running. */
  for (guint i = 0; i < monitor.sources->len; i++) {
    Source *src = g_ptr_array_index (monitor.sources, i);
    if (src->state == SOURCE_RUNNING || src->state == SOURCE_WAITING)
      pending = TRUE;
  }
  if (pending)
    g_main_loop_run (monitor.loop);

  ok = print_summary (&monitor);
  g_source_remove (sigint);
  g_source_remove (sigterm);
  monitor_clear (&monitor);
  gst_deinit ();
  return ok ? 0 : 1;
}
