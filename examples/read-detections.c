/* read-detections — read yolose's detections back from the buffers.
 *
 * Runs
 *   filesrc location=IMAGE ! decodebin ! videoconvert ! yolose model=MODEL
 *     ! fakesink
 * and prints, for every frame that reaches the sink, the region-of-interest
 * metadata yolose attached: label, confidence and box.  This is how an
 * application that embeds yolose in its own pipeline gets at the results:
 * a pad probe (or an appsink) and gst_buffer_iterate_meta_filtered().
 *
 *   read-detections best.pt bus.jpg
 *
 * Build: gcc read-detections.c $(pkg-config --cflags --libs
 * gstreamer-video-1.0) Run with the yolose plugin in GST_PLUGIN_PATH unless it
 * is installed. */
#include <gst/gst.h>
#include <gst/video/video.h>

/* Prints one detection: the ROI meta gives the pixel box and the label,
 * its "detection" parameter the confidence and the normalised box. */
static void
print_region (GstVideoRegionOfInterestMeta *roi)
{
  GstStructure *s
      = gst_video_region_of_interest_meta_get_param (roi, "detection");
  double confidence = 0, x_min = 0, y_min = 0, x_max = 0, y_max = 0;
  int label_id = -1;

  if (s != NULL)
    gst_structure_get (s, "confidence", G_TYPE_DOUBLE, &confidence, "label_id",
        G_TYPE_INT, &label_id, "x_min", G_TYPE_DOUBLE, &x_min, "y_min",
        G_TYPE_DOUBLE, &y_min, "x_max", G_TYPE_DOUBLE, &x_max, "y_max",
        G_TYPE_DOUBLE, &y_max, NULL);
  g_print ("  %-14s %.2f  x=%u y=%u w=%u h=%u  (class %d, normalised "
           "%.3f %.3f %.3f %.3f)\n",
      g_quark_to_string (roi->roi_type), confidence, roi->x, roi->y, roi->w,
      roi->h, label_id, x_min, y_min, x_max, y_max);
}

static GstPadProbeReturn
on_buffer (GstPad *pad, GstPadProbeInfo *info, gpointer user_data)
{
  GstBuffer *buffer = GST_PAD_PROBE_INFO_BUFFER (info);
  guint *frame = user_data;
  gpointer state = NULL;
  GstMeta *meta;
  guint n = gst_buffer_get_n_meta (buffer,
      GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE);

  g_print ("frame %u, pts %" GST_TIME_FORMAT ": %u detections\n", (*frame)++,
      GST_TIME_ARGS (GST_BUFFER_PTS (buffer)), n);
  while ((meta = gst_buffer_iterate_meta_filtered (buffer, &state,
              GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))
      != NULL)
    print_region ((GstVideoRegionOfInterestMeta *)meta);
  return GST_PAD_PROBE_OK;
}

/* Runs the pipeline to the end; returns FALSE after printing an error. */
static gboolean
run (GstElement *pipeline)
{
  GstBus *bus = gst_element_get_bus (pipeline);
  GstMessage *msg;
  gboolean ok = TRUE;

  if (gst_element_set_state (pipeline, GST_STATE_PLAYING)
      == GST_STATE_CHANGE_FAILURE)
    ok = FALSE;
  msg = gst_bus_timed_pop_filtered (bus, GST_CLOCK_TIME_NONE,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  if (GST_MESSAGE_TYPE (msg) == GST_MESSAGE_ERROR) {
    GError *error = NULL;
    gchar *debug = NULL;

    gst_message_parse_error (msg, &error, &debug);
    g_printerr ("error from %s: %s\n%s\n", GST_OBJECT_NAME (msg->src),
        error->message, debug ? debug : "");
    g_clear_error (&error);
    g_free (debug);
    ok = FALSE;
  }
  gst_message_unref (msg);
  gst_object_unref (bus);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  return ok;
}

int
main (int argc, char **argv)
{
  GstElement *pipeline, *sink;
  GstPad *pad;
  GError *error = NULL;
  gchar *launch;
  guint frame = 0;
  gboolean ok;

  gst_init (&argc, &argv);
  if (argc != 3) {
    g_printerr ("usage: %s MODEL.pt IMAGE\n", argv[0]);
    return 2;
  }

  /* Quoted so that paths with spaces survive gst_parse_launch. */
  launch = g_strdup_printf (
      "filesrc location=\"%s\" ! decodebin ! "
      "videoconvert ! yolose model=\"%s\" ! fakesink name=sink",
      argv[2], argv[1]);
  pipeline = gst_parse_launch (launch, &error);
  g_free (launch);
  if (pipeline == NULL) {
    g_printerr ("could not build the pipeline: %s\n", error->message);
    g_error_free (error);
    return 1;
  }

  sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
  pad = gst_element_get_static_pad (sink, "sink");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, on_buffer, &frame, NULL);
  gst_object_unref (pad);
  gst_object_unref (sink);

  ok = run (pipeline);
  gst_object_unref (pipeline);
  return ok && frame > 0 ? 0 : 1;
}
