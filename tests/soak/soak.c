/* yolose soak — long runs of the element in one process.
 *
 *   soak frames   MODEL INPUT_SIZE THREADS FRAMES
 *   soak cycles   MODEL INPUT_SIZE THREADS CYCLES
 *   soak parallel MODEL INPUT_SIZE ELEMENTS FRAMES
 *
 * THREADS is yolose's `threads` property (0: all cores); in parallel mode
 * each element has one thread, so that the elements are what runs at once.
 *
 * frames:   FRAMES 320x240 frames through videotestsrc ! yolose ! fakesink;
 *           the resident memory (VmRSS of /proc/self/status) is sampled after
 *           the warm-up (the first tenth of the frames) and at the end, and
 *           must not grow by more than 5 %.
 * cycles:   one pipeline taken NULL -> PLAYING -> NULL CYCLES times, frames
 *           flowing in each cycle (so the model is loaded, run and freed
 *           each time); every state change must succeed, and the resident
 *           memory after the last cycle must be within 5 % of what it was
 *           after the first tenth of the cycles.
 * parallel: ELEMENTS branches videotestsrc ! yolose ! fakesink in one
 *           pipeline, each with its own streaming thread; every branch must
 *           deliver all its FRAMES, and pad probes around each yolose count
 *           how many were detecting at the same moment (at least 2).
 *
 * Prints one "soak <mode>: ..." line with the numbers.  Exit status 0 when
 * the run passed, 1 when it failed, 77 (skip) when MODEL does not exist.
 * The yolose plugin must be in GST_PLUGIN_PATH (tools/soak.sh sets it). */
#include <gst/gst.h>
#include <gst/video/video.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "slowcheck.h"

#define RSS_TOLERANCE 0.05

/* AddressSanitizer keeps freed memory in quarantine (up to 256 MiB), so the
 * resident size says nothing there: print it, judge only leaks (LSan). */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_MEANINGFUL FALSE
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_MEANINGFUL FALSE
#endif
#endif
#ifndef RSS_MEANINGFUL
#define RSS_MEANINGFUL TRUE
#endif
#define MAX_SAMPLES 64
#define FRAME_CAPS "video/x-raw,format=I420,width=320,height=240"
/* videotestsrc shows no real objects: with this threshold every frame
 * still carries a few boxes, so NMS and the metas run on every frame. */
#define YOLOSE_ARGS "conf-threshold=0.001"
#define CYCLE_FRAMES 2 /* frames that must flow in each cycle */
#define CYCLE_TIMEOUT_S 60

static gint64
rss_kib (void)
{
  gint64 kib = -1;
  char *status = NULL;
  const char *line;

  if (g_file_get_contents ("/proc/self/status", &status, NULL, NULL)
      && (line = strstr (status, "VmRSS:")) != NULL)
    kib = g_ascii_strtoll (line + strlen ("VmRSS:"), NULL, 10);
  g_free (status);
  return kib;
}

/* The resident memory between two cycles, once the allocator has given
 * back what it keeps free: glibc returns a freed model's heap to the
 * system only sometimes (a trace of 25 samples went 35 MB, 35 MB, 21.8 MB,
 * ... as the freed blocks did or did not sit at the top of their heap),
 * and a warm-up sample that fell on 21.8 MB failed a run with no leak.
 * What stays after the trim is what is really held. */
static gint64
settled_rss_kib (void)
{
#ifdef __GLIBC__
  malloc_trim (0);
#endif
  return rss_kib ();
}

static guint
count_regions (GstBuffer *buffer)
{
  return gst_buffer_get_n_meta (buffer,
      GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE);
}

/* Runs @pipeline to EOS; FALSE (with the error printed) otherwise. */
static gboolean
run_to_eos (GstElement *pipeline)
{
  GstBus *bus = gst_element_get_bus (pipeline);
  GstMessage *msg;
  gboolean ok;

  if (gst_element_set_state (pipeline, GST_STATE_PLAYING)
      == GST_STATE_CHANGE_FAILURE) {
    g_printerr ("soak: the pipeline cannot go to PLAYING\n");
    gst_object_unref (bus);
    return FALSE;
  }
  msg = gst_bus_timed_pop_filtered (bus, GST_CLOCK_TIME_NONE,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  ok = GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS;
  if (!ok) {
    GError *error = NULL;
    char *debug = NULL;

    gst_message_parse_error (msg, &error, &debug);
    g_printerr ("soak: error from %s: %s (%s)\n",
        GST_OBJECT_NAME (GST_MESSAGE_SRC (msg)), error->message,
        debug ? debug : "");
    g_error_free (error);
    g_free (debug);
  }
  gst_message_unref (msg);
  gst_object_unref (bus);
  return ok;
}

static GstElement *
launch (const char *description)
{
  GError *error = NULL;
  GstElement *pipeline = gst_parse_launch (description, &error);

  if (pipeline == NULL || error != NULL) {
    g_printerr ("soak: cannot build '%s': %s\n", description,
        error ? error->message : "?");
    g_clear_error (&error);
    if (pipeline)
      gst_object_unref (pipeline);
    return NULL;
  }
  return pipeline;
}

static GstPad *
pad_of (GstElement *bin, const char *element, const char *pad)
{
  GstElement *e = gst_bin_get_by_name (GST_BIN (bin), element);
  GstPad *p = gst_element_get_static_pad (e, pad);

  gst_object_unref (e);
  return p;
}

static void
print_rss_trace (const gint64 *samples, guint n)
{
  g_print ("soak: VmRSS trace (KiB):");
  for (guint i = 0; i < n; i++)
    g_print (" %" G_GINT64_FORMAT, samples[i]);
  g_print ("\n");
}

/* The element's `kernels` property: $YOLOSE_TEST_KERNELS when set (CI's
 * memcheck step: "generic"; valgrind emulates FMA lane by lane), as a
 * property string to append, or "". */
static const char *
kernels_prop (void)
{
  static char prop[64];
  const char *kernels = g_getenv ("YOLOSE_TEST_KERNELS");

  if (kernels == NULL || *kernels == '\0')
    return "";
  g_snprintf (prop, sizeof prop, "kernels=%s", kernels);
  return prop;
}

static gboolean
rss_flat (const char *what, gint64 warm, gint64 end)
{
  double growth = warm > 0 ? (double)(end - warm) / (double)warm : 1.0;
  /* valgrind's allocator keeps freed blocks aside (--freelist-vol) like
   * ASan's quarantine. */
  gboolean meaningful = RSS_MEANINGFUL && !yolose_test_under_valgrind ();

  g_print ("soak %s: VmRSS after warm-up %" G_GINT64_FORMAT " KiB, at the "
           "end %" G_GINT64_FORMAT " KiB: %+.2f %% (limit %+.0f %%)%s\n",
      what, warm, end, 100.0 * growth, 100.0 * RSS_TOLERANCE,
      meaningful ? "" : " -- not judged under AddressSanitizer or valgrind");
  return growth <= RSS_TOLERANCE || !meaningful;
}

/* ---- frames ----------------------------------------------------------- */

typedef struct {
  guint64 frames, regions;
  guint64 warmup, every;
  gint64 warm_rss;
  gint64 samples[MAX_SAMPLES];
  guint n_samples;
} FrameCounter;

static GstPadProbeReturn
count_frame (GstPad *pad, GstPadProbeInfo *info, gpointer user_data)
{
  FrameCounter *c = user_data;

  c->regions += count_regions (GST_PAD_PROBE_INFO_BUFFER (info));
  c->frames++;
  if (c->frames == c->warmup)
    c->warm_rss = rss_kib ();
  if (c->frames % c->every == 0 && c->n_samples < MAX_SAMPLES)
    c->samples[c->n_samples++] = rss_kib ();
  return GST_PAD_PROBE_OK;
}

static gboolean
soak_frames (const char *model, int size, int threads, guint64 frames)
{
  FrameCounter c = { 0 };
  char *description = g_strdup_printf (
      "videotestsrc num-buffers=%" G_GUINT64_FORMAT
      " pattern=ball ! " FRAME_CAPS " ! yolose " YOLOSE_ARGS
      " %s model=\"%s\" input-size=%d threads=%d ! fakesink name=sink "
      "sync=false",
      frames, kernels_prop (), model, size, threads);
  GstElement *pipeline = launch (description);
  GstPad *pad;
  gint64 start, end_rss;
  double seconds;
  gboolean ok;

  g_free (description);
  if (pipeline == NULL)
    return FALSE;
  c.warmup = MAX (frames / 10, 1);
  c.every = MAX (frames / 20, 1);
  pad = pad_of (pipeline, "sink", "sink");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, count_frame, &c, NULL);
  gst_object_unref (pad);

  start = g_get_monotonic_time ();
  ok = run_to_eos (pipeline);
  seconds = (g_get_monotonic_time () - start) / 1e6;
  end_rss = rss_kib ();
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (pipeline);

  g_print ("soak frames: %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
           " frames at input %d, threads=%d, in %.1f s (%.0f frames/s), "
           "%" G_GUINT64_FORMAT " detections\n",
      c.frames, frames, size, threads, seconds, c.frames / seconds, c.regions);
  print_rss_trace (c.samples, c.n_samples);
  if (c.frames != frames) {
    g_printerr ("soak frames: %" G_GUINT64_FORMAT " frames lost\n",
        frames - c.frames);
    ok = FALSE;
  }
  return rss_flat ("frames", c.warm_rss, end_rss) && ok;
}

/* ---- cycles ----------------------------------------------------------- */

typedef struct {
  GMutex lock;
  GCond cond;
  guint frames;
} CycleCounter;

static GstPadProbeReturn
count_cycle_frame (GstPad *pad, GstPadProbeInfo *info, gpointer user_data)
{
  CycleCounter *c = user_data;

  g_mutex_lock (&c->lock);
  c->frames++;
  g_cond_signal (&c->cond);
  g_mutex_unlock (&c->lock);
  return GST_PAD_PROBE_OK;
}

/* Waits until @c counted CYCLE_FRAMES frames or the bus has an error. */
static gboolean
wait_for_frames (CycleCounter *c, GstBus *bus, guint cycle)
{
  gint64 deadline
      = g_get_monotonic_time () + CYCLE_TIMEOUT_S * G_TIME_SPAN_SECOND;
  gboolean ok = TRUE;

  g_mutex_lock (&c->lock);
  while (ok && c->frames < CYCLE_FRAMES) {
    GstMessage *error;

    g_mutex_unlock (&c->lock);
    error = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
    if (error != NULL) {
      GError *e = NULL;
      gst_message_parse_error (error, &e, NULL);
      g_printerr ("soak cycles: cycle %u: %s\n", cycle, e->message);
      g_error_free (e);
      gst_message_unref (error);
      ok = FALSE;
    }
    g_mutex_lock (&c->lock);
    if (ok && c->frames < CYCLE_FRAMES
        && !g_cond_wait_until (&c->cond, &c->lock,
            MIN (deadline, g_get_monotonic_time () + G_TIME_SPAN_SECOND / 10))
        && g_get_monotonic_time () >= deadline) {
      g_printerr ("soak cycles: cycle %u: no frame in %d s\n", cycle,
          CYCLE_TIMEOUT_S);
      ok = FALSE;
    }
  }
  g_mutex_unlock (&c->lock);
  return ok;
}

static gboolean
soak_cycles (const char *model, int size, int threads, guint cycles)
{
  CycleCounter c = { 0 };
  char *description
      = g_strdup_printf ("videotestsrc pattern=ball ! " FRAME_CAPS
                         " ! yolose " YOLOSE_ARGS " %s model=\"%s\" "
                         "input-size=%d threads=%d ! "
                         "fakesink name=sink sync=false",
          kernels_prop (), model, size, threads);
  GstElement *pipeline = launch (description);
  GstBus *bus;
  GstPad *pad;
  gint64 start, warm_rss = -1, samples[MAX_SAMPLES];
  guint done = 0, n_samples = 0, every = MAX (cycles / 20, 1);
  gboolean ok = TRUE;

  g_free (description);
  if (pipeline == NULL)
    return FALSE;
  g_mutex_init (&c.lock);
  g_cond_init (&c.cond);
  bus = gst_element_get_bus (pipeline);
  pad = pad_of (pipeline, "sink", "sink");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, count_cycle_frame, &c,
      NULL);
  gst_object_unref (pad);

  start = g_get_monotonic_time ();
  while (ok && done < cycles) {
    g_mutex_lock (&c.lock);
    c.frames = 0;
    g_mutex_unlock (&c.lock);
    ok = gst_element_set_state (pipeline, GST_STATE_PLAYING)
            != GST_STATE_CHANGE_FAILURE
        && wait_for_frames (&c, bus, done + 1);
    if (gst_element_set_state (pipeline, GST_STATE_NULL)
        != GST_STATE_CHANGE_SUCCESS) {
      g_printerr ("soak cycles: cycle %u: PLAYING -> NULL failed\n", done + 1);
      ok = FALSE;
    }
    gst_bus_set_flushing (bus, TRUE); /* drop this cycle's messages */
    gst_bus_set_flushing (bus, FALSE);
    if (ok)
      done++;
    if (done == MAX (cycles / 10, 1))
      warm_rss = settled_rss_kib ();
    if (done % every == 0 && n_samples < MAX_SAMPLES)
      samples[n_samples++] = settled_rss_kib ();
  }
  g_print ("soak cycles: %u of %u NULL->PLAYING->NULL cycles at input %d in "
           "%.1f s, at least %d frames each\n",
      done, cycles, size, (g_get_monotonic_time () - start) / 1e6,
      CYCLE_FRAMES);
  print_rss_trace (samples, n_samples);
  ok = rss_flat ("cycles", warm_rss, settled_rss_kib ()) && ok;
  gst_object_unref (bus);
  gst_object_unref (pipeline);
  g_mutex_clear (&c.lock);
  g_cond_clear (&c.cond);
  return ok;
}

/* ---- parallel --------------------------------------------------------- */

typedef struct {
  gint inside; /* elements detecting right now */
  gint most_inside;
  guint64 *frames; /* per branch */
  guint64 *regions;
} Parallel;

typedef struct {
  Parallel *p;
  guint branch;
} Branch;

static GstPadProbeReturn
enter_element (GstPad *pad, GstPadProbeInfo *info, gpointer user_data)
{
  Parallel *p = ((Branch *)user_data)->p;
  gint now = g_atomic_int_add (&p->inside, 1) + 1;
  gint most = g_atomic_int_get (&p->most_inside);

  while (now > most
      && !g_atomic_int_compare_and_exchange (&p->most_inside, most, now))
    most = g_atomic_int_get (&p->most_inside);
  return GST_PAD_PROBE_OK;
}

static GstPadProbeReturn
leave_element (GstPad *pad, GstPadProbeInfo *info, gpointer user_data)
{
  Branch *b = user_data;

  g_atomic_int_add (&b->p->inside, -1);
  b->p->frames[b->branch]++;
  b->p->regions[b->branch] += count_regions (GST_PAD_PROBE_INFO_BUFFER (info));
  return GST_PAD_PROBE_OK;
}

static gboolean
soak_parallel (const char *model, int size, guint elements, guint64 frames)
{
  GString *description = g_string_new (NULL);
  Parallel p = { 0 };
  Branch *branches = g_new0 (Branch, elements);
  GstElement *pipeline;
  gint64 start;
  gboolean ok;

  /* threads=1: the elements, not OpenMP, provide the parallelism. */
  for (guint i = 0; i < elements; i++)
    g_string_append_printf (description,
        "videotestsrc num-buffers=%" G_GUINT64_FORMAT
        " pattern=%u ! " FRAME_CAPS " ! yolose " YOLOSE_ARGS " %s name=det%u "
        "model=\"%s\" input-size=%d threads=1 ! fakesink sync=false ",
        frames, i % 2 == 0 ? 18 : 0, kernels_prop (), i, model, size);
  pipeline = launch (description->str);
  g_string_free (description, TRUE);
  if (pipeline == NULL) {
    g_free (branches);
    return FALSE;
  }
  p.frames = g_new0 (guint64, elements);
  p.regions = g_new0 (guint64, elements);
  for (guint i = 0; i < elements; i++) {
    char name[16];
    GstPad *sink, *src;

    g_snprintf (name, sizeof name, "det%u", i);
    branches[i].p = &p;
    branches[i].branch = i;
    sink = pad_of (pipeline, name, "sink");
    src = pad_of (pipeline, name, "src");
    gst_pad_add_probe (sink, GST_PAD_PROBE_TYPE_BUFFER, enter_element,
        &branches[i], NULL);
    gst_pad_add_probe (src, GST_PAD_PROBE_TYPE_BUFFER, leave_element,
        &branches[i], NULL);
    gst_object_unref (sink);
    gst_object_unref (src);
  }

  start = g_get_monotonic_time ();
  ok = run_to_eos (pipeline);
  g_print ("soak parallel: %u elements in one pipeline, %.1f s, frames per "
           "element:",
      elements, (g_get_monotonic_time () - start) / 1e6);
  for (guint i = 0; i < elements; i++) {
    g_print (" %" G_GUINT64_FORMAT " (%" G_GUINT64_FORMAT " detections)",
        p.frames[i], p.regions[i]);
    ok = ok && p.frames[i] == frames;
  }
  g_print ("; at most %d detecting at once\n", p.most_inside);
  /* valgrind runs one thread at a time: whether two detections overlap
   * there depends only on where its scheduler switches threads. */
  if (elements > 1 && p.most_inside < 2 && yolose_test_under_valgrind ()) {
    g_print ("soak parallel: overlap not judged under valgrind\n");
  } else if (elements > 1 && p.most_inside < 2) {
    g_printerr ("soak parallel: the elements never ran at the same time\n");
    ok = FALSE;
  }
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (pipeline);
  g_free (p.frames);
  g_free (p.regions);
  g_free (branches);
  return ok;
}

/* ---- main ------------------------------------------------------------- */

static guint64
count_arg (const char *text, guint64 min)
{
  guint64 value = 0;

  if (!g_ascii_string_to_unsigned (text, 10, min, G_MAXUINT32, &value, NULL)) {
    g_printerr ("soak: '%s' is not a count\n", text);
    exit (2);
  }
  return value;
}

static int
usage (void)
{
  g_printerr ("usage: soak frames   MODEL INPUT_SIZE THREADS FRAMES\n"
              "       soak cycles   MODEL INPUT_SIZE THREADS CYCLES\n"
              "       soak parallel MODEL INPUT_SIZE ELEMENTS FRAMES\n");
  return 2;
}

int
main (int argc, char **argv)
{
  const char *mode, *model;
  int size;
  gboolean ok;

  gst_init (&argc, &argv);
  if (argc < 5)
    return usage ();
  mode = argv[1];
  model = argv[2];
  size = (int)count_arg (argv[3], 1);
  if (!g_file_test (model, G_FILE_TEST_IS_REGULAR)) {
    g_print ("SKIP: model %s not found (set YOLOSE_TESTDATA)\n", model);
    return 77;
  }
  if (strcmp (mode, "frames") == 0 && argc == 6)
    ok = soak_frames (model, size, (int)count_arg (argv[4], 0),
        count_arg (argv[5], 1));
  else if (strcmp (mode, "cycles") == 0 && argc == 6)
    ok = soak_cycles (model, size, (int)count_arg (argv[4], 0),
        (guint)count_arg (argv[5], 1));
  else if (strcmp (mode, "parallel") == 0 && argc == 6)
    ok = soak_parallel (model, size, (guint)count_arg (argv[4], 1),
        count_arg (argv[5], 1));
  else
    return usage ();
  g_print ("soak %s: %s\n", mode, ok ? "PASS" : "FAIL");
  gst_deinit ();
  return ok ? 0 : 1;
}
