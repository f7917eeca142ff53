/* yolose element tests that need no test data: errors, property checks,
 * the class filter and labels parsing, the overlay and the worker. */
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <gst/video/video.h>
#include <glib/gstdio.h>
#include <string.h>

#include "gstyolosemodel.h"
#include "gstyoloseoverlay.h"
#include "gstyoloseworker.h"
#include "video_formats.h"

/* Sets @element to PAUSED on its own bus and returns the error message it
 * posts (or NULL); the state change itself must fail. */
static gchar *
start_and_expect_failure (GstElement *element)
{
  GstBus *bus = gst_bus_new ();
  GstMessage *msg;
  GError *error = NULL;
  gchar *text = NULL;

  gst_element_set_bus (element, bus);
  fail_unless_equals_int (gst_element_set_state (element, GST_STATE_PAUSED),
      GST_STATE_CHANGE_FAILURE);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  if (msg != NULL) {
    gst_message_parse_error (msg, &error, NULL);
    text = g_strdup (error->message);
    g_error_free (error);
    gst_message_unref (msg);
  }
  gst_element_set_state (element, GST_STATE_NULL);
  gst_element_set_bus (element, NULL);
  gst_object_unref (bus);
  return text;
}

/* The element exists, says what it is and has every documented property
 * with its documented default. */
GST_START_TEST (test_registered_with_documented_properties)
{
  GstElementFactory *factory = gst_element_factory_find ("yolose");
  GstElement *e;
  gfloat conf, iou;
  gint max_det, size, threads;
  guint interval;
  gboolean overlay, labels, confidence, post;
  gchar *model;

  fail_unless (factory != NULL);
  fail_unless_equals_string (
      gst_element_factory_get_metadata (factory, GST_ELEMENT_METADATA_KLASS),
      "Filter/Analyzer/Video");
  gst_object_unref (factory);

  e = gst_element_factory_make ("yolose", NULL);
  g_object_get (e, "model", &model, "conf-threshold", &conf, "iou-threshold",
      &iou, "max-detections", &max_det, "input-size", &size, "threads",
      &threads, "inference-interval", &interval, "overlay", &overlay,
      "show-labels", &labels, "show-confidence", &confidence, "post-messages",
      &post, NULL);
  fail_unless (model == NULL);
  fail_unless (conf == 0.25f && iou == 0.45f);
  fail_unless_equals_int (max_det, 300);
  fail_unless_equals_int (size, 640);
  fail_unless_equals_int (threads, 0);
  fail_unless_equals_int (interval, 1);
  fail_unless (!overlay && labels && confidence && !post);
  for (const char *const *p = (const char *[]){ "labels-file", "classes",
           "line-width", "mode", "kernels", "qos", NULL };
       *p; p++)
    fail_unless (g_object_class_find_property (G_OBJECT_GET_CLASS (e), *p)
            != NULL,
        "no property %s", *p);
  gst_object_unref (e);
}

GST_END_TEST;

/* Without a model the element refuses to start and says so. */
static gboolean
list_has_string (const GValue *list, const gchar *s)
{
  for (guint i = 0; i < gst_value_list_get_size (list); i++)
    if (g_strcmp0 (g_value_get_string (gst_value_list_get_value (list, i)), s)
        == 0)
      return TRUE;
  return FALSE;
}

/* The formats the tests run through are the ones the element's sink pad
 * accepts, no more and no fewer. */
GST_START_TEST (test_sink_formats_are_the_tested_ones)
{
  GstElement *e = gst_element_factory_make ("yolose", NULL);
  GstPad *sink = gst_element_get_static_pad (e, "sink");
  GstCaps *caps = gst_pad_get_pad_template_caps (sink);
  const GValue *list
      = gst_structure_get_value (gst_caps_get_structure (caps, 0), "format");

  fail_unless (list != NULL && GST_VALUE_HOLDS_LIST (list));
  fail_unless_equals_int (gst_value_list_get_size (list),
      G_N_ELEMENTS (yolose_test_formats));
  for (guint i = 0; i < G_N_ELEMENTS (yolose_test_formats); i++)
    fail_unless (list_has_string (list, yolose_test_formats[i]),
        "the sink pad does not accept %s", yolose_test_formats[i]);
  gst_caps_unref (caps);
  gst_object_unref (sink);
  gst_object_unref (e);
}

GST_END_TEST;

GST_START_TEST (test_no_model_fails_to_start)
{
  GstElement *e = gst_element_factory_make ("yolose", NULL);
  gchar *error = start_and_expect_failure (e);

  fail_unless (error != NULL);
  fail_unless (strstr (error, "model") != NULL, "error was: %s", error);
  g_free (error);
  gst_object_unref (e);
}

GST_END_TEST;

/* A model path that does not exist fails the state change with an error
 * that names the file. */
GST_START_TEST (test_missing_model_file_named_in_error)
{
  const gchar *path = "/nonexistent/folder/best.pt";
  GstElement *e = gst_element_factory_make ("yolose", NULL);
  gchar *error;

  g_object_set (e, "model", path, NULL);
  error = start_and_expect_failure (e);
  fail_unless (error != NULL);
  fail_unless (strstr (error, path) != NULL, "error was: %s", error);
  g_free (error);
  gst_object_unref (e);
}

GST_END_TEST;

/* A file that is not a checkpoint fails the same way, never crashes. */
GST_START_TEST (test_broken_model_file_named_in_error)
{
  GstElement *e = gst_element_factory_make ("yolose", NULL);
  gchar *path = NULL, *error;
  GError *err = NULL;
  gint fd = g_file_open_tmp ("yolose-broken-XXXXXX.pt", &path, &err);
  static const char junk[] = "PK\003\004 this is not a torch checkpoint";

  fail_unless (fd >= 0, "%s", err ? err->message : "");
  fail_unless (write (fd, junk, sizeof junk) == (ssize_t)sizeof junk);
  close (fd);
  g_object_set (e, "model", path, NULL);
  error = start_and_expect_failure (e);
  fail_unless (error != NULL);
  fail_unless (strstr (error, path) != NULL, "error was: %s", error);
  g_free (error);
  g_unlink (path);
  g_free (path);
  gst_object_unref (e);
}

GST_END_TEST;

/* An input-size that is not a multiple of 32 is refused with a warning
 * message and the previous value stays. */
GST_START_TEST (test_input_size_not_multiple_of_32_rejected)
{
  GstElement *e = gst_element_factory_make ("yolose", NULL);
  GstBus *bus = gst_bus_new ();
  GstMessage *msg;
  gint size;

  gst_element_set_bus (e, bus);
  g_object_set (e, "input-size", 320, NULL);
  g_object_set (e, "input-size", 100, NULL);
  g_object_get (e, "input-size", &size, NULL);
  fail_unless_equals_int (size, 320);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  fail_unless (msg != NULL);
  gst_message_unref (msg);
  gst_element_set_bus (e, NULL);
  gst_object_unref (bus);
  gst_object_unref (e);
}

GST_END_TEST;

/* Negative or too large thresholds are refused (GObject warns) and the
 * previous value stays. */
GST_START_TEST (test_out_of_range_thresholds_rejected)
{
  GstElement *e = gst_element_factory_make ("yolose", NULL);
  gfloat conf, iou;

  g_object_set (e, "conf-threshold", 0.5f, "iou-threshold", 0.6f, NULL);
  ASSERT_WARNING (g_object_set (e, "conf-threshold", -0.5f, NULL));
  ASSERT_WARNING (g_object_set (e, "iou-threshold", 1.5f, NULL));
  g_object_get (e, "conf-threshold", &conf, "iou-threshold", &iou, NULL);
  fail_unless (conf == 0.5f, "conf %f", conf);
  fail_unless (iou == 0.6f, "iou %f", iou);
  gst_object_unref (e);
}

GST_END_TEST;

static const gchar *const test_labels[]
    = { "person", "bicycle", "car", "7", NULL };

/* `classes` accepts labels and ids, ignores blanks, keeps all when empty
 * and names an entry that matches nothing. */
GST_START_TEST (test_classes_filter_parsing)
{
  guint8 mask[4];
  GError *error = NULL;

  fail_unless (
      gst_yolose_parse_classes ("person, 2", test_labels, 4, mask, NULL));
  fail_unless (mask[0] && !mask[1] && mask[2] && !mask[3]);
  fail_unless (gst_yolose_parse_classes ("", test_labels, 4, mask, NULL));
  fail_unless (mask[0] && mask[1] && mask[2] && mask[3]);
  fail_unless (gst_yolose_parse_classes (NULL, test_labels, 4, mask, NULL));
  fail_unless (mask[0] && mask[1] && mask[2] && mask[3]);
  /* "7" is a label here, the fourth class, not id 7. */
  fail_unless (gst_yolose_parse_classes ("7", test_labels, 4, mask, NULL));
  fail_unless (!mask[0] && !mask[1] && !mask[2] && mask[3]);
  fail_if (
      gst_yolose_parse_classes ("person,dog", test_labels, 4, mask, &error));
  fail_unless (error != NULL && strstr (error->message, "dog") != NULL);
  g_clear_error (&error);
  fail_if (gst_yolose_parse_classes ("4", test_labels, 4, mask, &error));
  g_clear_error (&error);
  fail_if (gst_yolose_parse_classes ("-1", test_labels, 4, mask, &error));
  g_clear_error (&error);
  fail_if (gst_yolose_parse_classes ("1x", test_labels, 4, mask, &error));
  g_clear_error (&error);
}

GST_END_TEST;

static gchar *
write_temp (const gchar *contents)
{
  gchar *path = NULL;
  gint fd = g_file_open_tmp ("yolose-labels-XXXXXX.txt", &path, NULL);

  fail_unless (fd >= 0);
  close (fd);
  fail_unless (g_file_set_contents (path, contents, -1, NULL));
  return path;
}

/* A labels file gives one label a line, trimmed, skipping blank lines; a
 * file without labels is an error. */
GST_START_TEST (test_labels_file_parsing)
{
  gchar *path = write_temp ("cat\n  dog  \n\nfire hydrant\r\n");
  gchar *empty = write_temp ("\n \n");
  GError *error = NULL;
  gchar **labels = gst_yolose_read_labels_file (path, NULL);

  fail_unless (labels != NULL);
  fail_unless_equals_int (g_strv_length (labels), 3);
  fail_unless_equals_string (labels[1], "dog");
  fail_unless_equals_string (labels[2], "fire hydrant");
  g_strfreev (labels);
  fail_unless (gst_yolose_read_labels_file (empty, &error) == NULL);
  fail_unless (error != NULL);
  g_clear_error (&error);
  fail_unless (
      gst_yolose_read_labels_file ("/nonexistent/l.txt", &error) == NULL);
  g_clear_error (&error);
  g_unlink (path);
  g_unlink (empty);
  g_free (path);
  g_free (empty);
}

GST_END_TEST;

static GstBuffer *
gray_frame (const GstVideoInfo *info, guint8 value)
{
  GstBuffer *buf = gst_buffer_new_allocate (NULL, info->size, NULL);

  gst_buffer_memset (buf, 0, value, info->size);
  return buf;
}

/* Draws @boxes on a mid-gray @format frame and returns a copy of the bytes
 * before and after. */
static void
draw_on_gray (const gchar *format, int w, int h, const GstYoloseBox *boxes,
    guint n, GBytes **before, GBytes **after)
{
  GstVideoInfo info;
  GstBuffer *buf;
  GstVideoFrame frame;
  GstYoloseOverlay *overlay = gst_yolose_overlay_new ();
  GstYoloseOverlayStyle style = { 2, TRUE, TRUE };
  gpointer data;
  gsize size;

  gst_video_info_set_format (&info, gst_video_format_from_string (format), w,
      h);
  buf = gray_frame (&info, 0x80);
  gst_buffer_extract_dup (buf, 0, info.size, &data, &size);
  *before = g_bytes_new_take (data, size);
  fail_unless (gst_video_frame_map (&frame, &info, buf, GST_MAP_READWRITE));
  fail_unless (gst_yolose_overlay_draw (overlay, &frame, boxes, n, &style),
      "blend failed for %s", format);
  gst_video_frame_unmap (&frame);
  gst_buffer_extract_dup (buf, 0, info.size, &data, &size);
  *after = g_bytes_new_take (data, size);
  gst_buffer_unref (buf);
  gst_yolose_overlay_free (overlay);
}

/* The overlay changes pixels in every supported format, and only near the
 * box: the far corner of the frame is untouched. */
GST_START_TEST (test_overlay_draws_in_every_format)
{
  GstYoloseBox box
      = { 20, 30, 60, 70, 0.87f, 0, g_quark_from_static_string ("person") };

  for (guint i = 0; i < G_N_ELEMENTS (yolose_test_formats); i++) {
    GBytes *before, *after;
    const guint8 *a, *b;
    gsize size;

    draw_on_gray (yolose_test_formats[i], 160, 120, &box, 1, &before, &after);
    fail_if (g_bytes_equal (before, after), "%s unchanged",
        yolose_test_formats[i]);
    /* The last bytes are the bottom-right corner in every layout here. */
    a = g_bytes_get_data (before, &size);
    b = g_bytes_get_data (after, NULL);
    fail_unless (memcmp (a + size - 16, b + size - 16, 16) == 0,
        "%s: corner changed", yolose_test_formats[i]);
    g_bytes_unref (before);
    g_bytes_unref (after);
  }
}

GST_END_TEST;

/* With no detection the overlay leaves the frame exactly as it was. */
GST_START_TEST (test_overlay_without_boxes_changes_nothing)
{
  for (guint i = 0; i < G_N_ELEMENTS (yolose_test_formats); i++) {
    GBytes *before, *after;

    draw_on_gray (yolose_test_formats[i], 33, 17, NULL, 0, &before, &after);
    fail_unless (g_bytes_equal (before, after), "%s changed",
        yolose_test_formats[i]);
    g_bytes_unref (before);
    g_bytes_unref (after);
  }
}

GST_END_TEST;

/* The box line has the class colour in the right channels, in RGB and BGR
 * alike, at the box's place on the frame. */
GST_START_TEST (test_overlay_colour_and_place)
{
  GstYoloseBox box
      = { 40, 40, 100, 90, 0.5f, 0, g_quark_from_static_string ("person") };
  guint32 colour = gst_yolose_overlay_class_colour (0);
  guint8 r = colour >> 16, g = (colour >> 8) & 0xff, b = colour & 0xff;
  const int w = 160, h = 120;
  GBytes *before, *after;
  const guint8 *px;
  int stride = GST_ROUND_UP_4 (w * 3);

  /* Left edge of the box, halfway down: on the line. */
  draw_on_gray ("RGB", w, h, &box, 1, &before, &after);
  px = (const guint8 *)g_bytes_get_data (after, NULL) + 65 * stride + 40 * 3;
  fail_unless (ABS (px[0] - r) <= 2 && ABS (px[1] - g) <= 2
          && ABS (px[2] - b) <= 2,
      "RGB %d %d %d", px[0], px[1], px[2]);
  /* Inside the box, away from lines and caption: untouched. */
  px = (const guint8 *)g_bytes_get_data (after, NULL) + 75 * stride + 70 * 3;
  fail_unless (px[0] == 0x80 && px[1] == 0x80 && px[2] == 0x80);
  g_bytes_unref (before);
  g_bytes_unref (after);

  draw_on_gray ("BGR", w, h, &box, 1, &before, &after);
  px = (const guint8 *)g_bytes_get_data (after, NULL) + 65 * stride + 40 * 3;
  fail_unless (ABS (px[2] - r) <= 2 && ABS (px[1] - g) <= 2
          && ABS (px[0] - b) <= 2,
      "BGR %d %d %d", px[0], px[1], px[2]);
  g_bytes_unref (before);
  g_bytes_unref (after);
}

GST_END_TEST;

/* Boxes partly or wholly outside the frame are clipped, never drawn out of
 * bounds (ASan would tell), and a 1x1 frame works. */
GST_START_TEST (test_overlay_clips_to_frame)
{
  GstYoloseBox boxes[] = {
    { -50, -50, 500, 500, 0.9f, 3, g_quark_from_static_string ("motorcycle") },
    { 0, 0, 1, 1, 0.3f, 1, g_quark_from_static_string ("bicycle") },
  };

  for (guint i = 0; i < G_N_ELEMENTS (yolose_test_formats); i++) {
    GBytes *before, *after;

    draw_on_gray (yolose_test_formats[i], 1, 1, boxes, 2, &before, &after);
    g_bytes_unref (before);
    g_bytes_unref (after);
    draw_on_gray (yolose_test_formats[i], 7, 5, boxes, 2, &before, &after);
    g_bytes_unref (before);
    g_bytes_unref (after);
  }
}

GST_END_TEST;

typedef struct {
  GMutex lock;
  guint calls;
  guint8 last_value;
} WorkerProbe;

/* Pretends to detect slowly; reports the frame's first byte as the class. */
static void
slow_detect (const GstVideoFrame *frame, GArray *boxes, gpointer user_data)
{
  WorkerProbe *probe = user_data;
  guint8 value = ((const guint8 *)GST_VIDEO_FRAME_PLANE_DATA (frame, 0))[0];
  GstYoloseBox box = { 0, 0, 1, 1, 1.0f, value, 0 };

  g_usleep (20000);
  g_mutex_lock (&probe->lock);
  probe->calls++;
  probe->last_value = value;
  g_mutex_unlock (&probe->lock);
  g_array_append_val (boxes, box);
}

static gboolean
wait_for_newer (GstYoloseWorker *worker, guint64 *serial, GArray *boxes,
    GstClockTime *pts)
{
  for (int i = 0; i < 500; i++) {
    if (gst_yolose_worker_take_newer (worker, serial, boxes, pts))
      return TRUE;
    g_usleep (2000);
  }
  return FALSE;
}

/* The worker detects on copies, always the newest frame, skips the ones
 * that were replaced while it was busy and ends cleanly. */
GST_START_TEST (test_worker_takes_newest_frame)
{
  WorkerProbe probe = { 0 };
  GstYoloseWorker *worker;
  GstVideoInfo info;
  GArray *boxes = g_array_new (FALSE, FALSE, sizeof (GstYoloseBox));
  guint64 serial = 0;
  GstClockTime pts = GST_CLOCK_TIME_NONE;

  g_mutex_init (&probe.lock);
  worker = gst_yolose_worker_new (slow_detect, &probe, NULL);
  fail_unless (worker != NULL);
  gst_video_info_set_format (&info, GST_VIDEO_FORMAT_GRAY8, 8, 8);
  for (guint8 v = 1; v <= 10; v++) {
    GstBuffer *buf = gray_frame (&info, v);
    GstVideoFrame frame;
    fail_unless (gst_video_frame_map (&frame, &info, buf, GST_MAP_READ));
    fail_unless (gst_yolose_worker_submit (worker, &frame, v * GST_SECOND));
    gst_video_frame_unmap (&frame);
    /* The worker has a copy: the original may change at once. */
    gst_buffer_memset (buf, 0, 0xff, info.size);
    gst_buffer_unref (buf);
  }
  /* The last result must come from the last frame. */
  while (
      wait_for_newer (worker, &serial, boxes, &pts) && pts != 10 * GST_SECOND)
    ;
  fail_unless_equals_uint64 (pts, 10 * GST_SECOND);
  fail_unless_equals_int (g_array_index (boxes, GstYoloseBox, 0).class_id, 10);
  g_mutex_lock (&probe.lock);
  fail_unless (probe.calls < 10, "%u calls: frames queued up", probe.calls);
  g_mutex_unlock (&probe.lock);
  fail_if (gst_yolose_worker_take_newer (worker, &serial, boxes, &pts));

  gst_yolose_worker_flush (worker);
  fail_if (gst_yolose_worker_take_newer (worker, &serial, boxes, &pts));
  gst_yolose_worker_free (worker);
  g_array_free (boxes, TRUE);
  g_mutex_clear (&probe.lock);
}

GST_END_TEST;

/* A flush while the worker detects discards that stale result. */
GST_START_TEST (test_worker_flush_discards_running_job)
{
  WorkerProbe probe = { 0 };
  GstYoloseWorker *worker;
  GstVideoInfo info;
  GArray *boxes = g_array_new (FALSE, FALSE, sizeof (GstYoloseBox));
  guint64 serial = 0;
  GstClockTime pts;
  GstBuffer *buf;
  GstVideoFrame frame;

  g_mutex_init (&probe.lock);
  worker = gst_yolose_worker_new (slow_detect, &probe, NULL);
  gst_video_info_set_format (&info, GST_VIDEO_FORMAT_GRAY8, 4, 4);
  buf = gray_frame (&info, 3);
  fail_unless (gst_video_frame_map (&frame, &info, buf, GST_MAP_READ));
  fail_unless (gst_yolose_worker_submit (worker, &frame, 0));
  g_usleep (5000); /* the worker is in its 20 ms "detection" */
  gst_yolose_worker_flush (worker);
  g_usleep (60000);
  fail_if (gst_yolose_worker_take_newer (worker, &serial, boxes, &pts));
  /* A frame after the flush is detected as usual. */
  fail_unless (gst_yolose_worker_submit (worker, &frame, GST_SECOND));
  fail_unless (wait_for_newer (worker, &serial, boxes, &pts));
  fail_unless_equals_uint64 (pts, GST_SECOND);
  gst_video_frame_unmap (&frame);
  gst_buffer_unref (buf);
  gst_yolose_worker_free (worker);
  g_array_free (boxes, TRUE);
  g_mutex_clear (&probe.lock);
}

GST_END_TEST;

static Suite *
yolose_suite (void)
{
  Suite *s = suite_create ("yolose");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_registered_with_documented_properties);
  tcase_add_test (tc, test_sink_formats_are_the_tested_ones);
  tcase_add_test (tc, test_no_model_fails_to_start);
  tcase_add_test (tc, test_missing_model_file_named_in_error);
  tcase_add_test (tc, test_broken_model_file_named_in_error);
  tcase_add_test (tc, test_input_size_not_multiple_of_32_rejected);
  tcase_add_test (tc, test_out_of_range_thresholds_rejected);
  tcase_add_test (tc, test_classes_filter_parsing);
  tcase_add_test (tc, test_labels_file_parsing);
  tcase_add_test (tc, test_overlay_draws_in_every_format);
  tcase_add_test (tc, test_overlay_without_boxes_changes_nothing);
  tcase_add_test (tc, test_overlay_colour_and_place);
  tcase_add_test (tc, test_overlay_clips_to_frame);
  tcase_add_test (tc, test_worker_takes_newest_frame);
  tcase_add_test (tc, test_worker_flush_discards_running_job);
  return s;
}

GST_CHECK_MAIN (yolose);
