/* yolose tests — an H.264 RTSP camera on 127.0.0.1, and H.264 clips.
 *
 *   rtsp-test-server serve PORT PICTURE
 *       serves PICTURE as a live 10 fps H.264 stream at
 *       rtsp://127.0.0.1:PORT/test (PORT 0: any free port), prints
 *       "port N" on stdout once it listens, and runs until killed;
 *   rtsp-test-server clip PICTURE FRAMES OUT.mp4
 *       writes FRAMES frames of PICTURE at 10 fps as an H.264 MP4;
 *   rtsp-test-server probe
 *       only says whether an H.264 encoder is there (exit 0 or 77).
 *
 * A separate program so that yolose-monitor's test can make the camera
 * vanish the way a real one does (killed, connections cut) and come back
 * on the same port.  Exits 77 when no H.264 encoder is installed, 1 on any
 * other failure. */
#include <glib-unix.h>
#include <gst/gst.h>
#include <gst/rtsp-server/rtsp-server.h>
#include <stdio.h>
#include <stdlib.h>

#define EXIT_NO_ENCODER 77
/* About half of bus.jpg (810 x 1080), in whole 16 x 16 blocks: JPEG
 * encodes 16 x 16 blocks (4:2:0), and the monitor's snapshots of a frame
 * that ends inside one make jpegenc read the decoder's padding bytes past
 * the picture, which memcheck reports in libjpeg (at 406 x 540: 123
 * errors in one run, the uninitialised bytes from avdec_h264's buffer pool;
 * none at 416 x 544). */
#define WIDTH 416
#define HEIGHT 544
#define CLIP_TIMEOUT (120 * GST_SECOND)

/* openh264enc comes with gstreamer1.0-plugins-bad, which the RTSP server
 * library depends on; x264enc (plugins-ugly) when that is all there is. */
static const char *
h264_encoder (void)
{
  GstElementFactory *f;

  if ((f = gst_element_factory_find ("openh264enc")) != NULL) {
    gst_object_unref (f);
    return "openh264enc gop-size=10";
  }
  if ((f = gst_element_factory_find ("x264enc")) != NULL) {
    gst_object_unref (f);
    return "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10";
  }
  return NULL;
}

/* The picture, scaled, repeated forever (or @frames times) at 10 fps. */
static char *
picture_frames (const char *picture, int frames, gboolean live)
{
  char *quoted = g_strescape (picture, NULL);
  char *launch = g_strdup_printf (
      "filesrc location=\"%s\" ! jpegdec ! videoconvert ! videoscale ! "
      "video/x-raw,width=%d,height=%d ! imagefreeze is-live=%s "
      "num-buffers=%d ! video/x-raw,framerate=10/1 ! videoconvert ! %s",
      quoted, WIDTH, HEIGHT, live ? "true" : "false", frames, h264_encoder ());

  g_free (quoted);
  return launch;
}

static gboolean
on_signal (gpointer loop)
{
  g_main_loop_quit (loop);
  return G_SOURCE_REMOVE;
}

static int
serve (const char *port, const char *picture)
{
  GstRTSPServer *server = gst_rtsp_server_new ();
  GstRTSPMountPoints *mounts = gst_rtsp_server_get_mount_points (server);
  GstRTSPMediaFactory *factory = gst_rtsp_media_factory_new ();
  GMainLoop *loop = g_main_loop_new (NULL, FALSE);
  char *frames = picture_frames (picture, -1, TRUE);
  char *launch = g_strdup_printf (
      "( %s ! rtph264pay name=pay0 pt=96 config-interval=-1 )", frames);
  guint id;

  gst_rtsp_media_factory_set_launch (factory, launch);
  g_free (launch);
  g_free (frames);
  gst_rtsp_mount_points_add_factory (mounts, "/test", factory);
  g_object_unref (mounts);
  gst_rtsp_server_set_address (server, "127.0.0.1");
  gst_rtsp_server_set_service (server, port);
  id = gst_rtsp_server_attach (server, NULL);
  if (id == 0) {
    g_printerr ("rtsp-test-server: cannot listen on 127.0.0.1:%s\n", port);
    return 1;
  }
  printf ("port %d\n", gst_rtsp_server_get_bound_port (server));
  fflush (stdout);

  g_unix_signal_add (SIGTERM, on_signal, loop);
  g_unix_signal_add (SIGINT, on_signal, loop);
  g_main_loop_run (loop);
  g_source_remove (id);
  g_object_unref (server);
  g_main_loop_unref (loop);
  return 0;
}

static int
clip (const char *picture, int n_frames, const char *out)
{
  char *frames = picture_frames (picture, n_frames, FALSE);
  char *quoted = g_strescape (out, NULL);
  char *launch = g_strdup_printf (
      "%s ! h264parse ! mp4mux ! filesink location=\"%s\"", frames, quoted);
  GError *error = NULL;
  GstElement *pipeline = gst_parse_launch (launch, &error);
  GstBus *bus;
  GstMessage *msg;
  int status = 1;

  g_free (frames);
  g_free (quoted);
  g_free (launch);
  if (pipeline == NULL) {
    g_printerr ("rtsp-test-server: %s\n", error->message);
    g_error_free (error);
    return 1;
  }
  bus = gst_element_get_bus (pipeline);
  gst_element_set_state (pipeline, GST_STATE_PLAYING);
  msg = gst_bus_timed_pop_filtered (bus, CLIP_TIMEOUT,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  if (msg != NULL && GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS) {
    status = 0;
  } else if (msg != NULL) {
    gst_message_parse_error (msg, &error, NULL);
    g_printerr ("rtsp-test-server: %s\n", error->message);
    g_error_free (error);
  } else {
    g_printerr ("rtsp-test-server: the clip took too long\n");
  }
  g_clear_pointer (&msg, gst_message_unref);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (pipeline);
  return status;
}

int
main (int argc, char **argv)
{
  gst_init (&argc, &argv);
  if (h264_encoder () == NULL) {
    printf ("SKIP: no H.264 encoder (openh264enc from "
            "gstreamer1.0-plugins-bad, or x264enc)\n");
    return EXIT_NO_ENCODER;
  }
  if (argc == 2 && g_str_equal (argv[1], "probe"))
    return 0;
  if (argc == 4 && g_str_equal (argv[1], "serve"))
    return serve (argv[2], argv[3]);
  if (argc == 5 && g_str_equal (argv[1], "clip"))
    return clip (argv[2], atoi (argv[3]), argv[4]);
  g_printerr ("usage: %s serve PORT PICTURE | clip PICTURE FRAMES OUT.mp4\n",
      argv[0]);
  return 2;
}
