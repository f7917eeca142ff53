/* yolose-detect — upstream YOLOv5 detections for pictures, from the
 * command line.
 *
 *   yolose-detect --model M.pt [--conf 0.25] [--iou 0.45] [--size 640]
 *       [--threads N] [--max-det 300] [--kernels auto|generic|avx2]
 *       IMAGE...
 *   yolose-detect --model M.pt --raw-input IN.f32 --raw-output OUT.f32
 *   yolose-detect --model M.pt --info
 *
 * Prints one JSON line per picture, in the schema of upstream's reference
 * detections.json: {"image", "width", "height", "detections": [{"class_id",
 * "label", "confidence", "box": [x1, y1, x2, y2]}]}, boxes in picture
 * pixels rounded half to even (torch.round) and confidences to 5 decimals.
 * Pictures are decoded with gdk-pixbuf (JPEG, PNG: colour, gray, alpha
 * ignored) and turned upright by their EXIF orientation, as cv2.imread
 * does.  Exits with 2 on a bad command line, 1 when anything else fails
 * (after trying every picture), naming the cause on stderr. */
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool-common.h"
#include "yolose.h"

#define EXIT_USAGE 2

typedef struct {
  char *model;
  double conf;
  double iou;
  int size;
  int threads;
  int max_det;
  char *kernels;
  char *raw_input;
  char *raw_output;
  gboolean info;
  char **images;
} DetectOptions;

static void
detect_options_clear (DetectOptions *opt)
{
  g_free (opt->model);
  g_free (opt->kernels);
  g_free (opt->raw_input);
  g_free (opt->raw_output);
  g_strfreev (opt->images);
}

/* ------------------------------------------------------ command line */

static gboolean
check_options (const DetectOptions *opt, GError **error)
{
  static const char *const kernel_names[] = { "auto", "generic", "avx2", NULL };
  const char *problem = NULL;

  if (opt->model == NULL)
    problem = "--model is required";
  else if (!(opt->conf >= 0.0 && opt->conf <= 1.0))
    problem = "--conf must be between 0 and 1";
  else if (!(opt->iou >= 0.0 && opt->iou <= 1.0))
    problem = "--iou must be between 0 and 1";
  else if (opt->size < 32 || opt->size % 32 != 0)
    problem = "--size must be a positive multiple of 32";
  else if (opt->threads < 0)
    problem = "--threads must be 0 (all cores) or more";
  else if (opt->kernels != NULL
      && !g_strv_contains (kernel_names, opt->kernels))
    problem = "--kernels must be auto, generic or avx2";
  else if (opt->max_det < 1)
    problem = "--max-det must be at least 1";
  else if ((opt->raw_input == NULL) != (opt->raw_output == NULL))
    problem = "--raw-input and --raw-output go together";
  else if (opt->raw_input != NULL && opt->images != NULL)
    problem = "--raw-input does not take pictures";
  else if (opt->raw_input == NULL && opt->images == NULL && !opt->info)
    problem = "no picture given (or use --raw-input or --info)";
  return tool_check_option (problem, error);
}

static gboolean
parse_options (int argc, char **argv, DetectOptions *opt, GError **error)
{
  GOptionEntry entries[] = { { "model", 'm', 0, G_OPTION_ARG_FILENAME,
                                 &opt->model,
                                 "Upstream YOLOv5 checkpoint (.pt)", "M.pt" },
    { "conf", 'c', 0, G_OPTION_ARG_DOUBLE, &opt->conf,
        "Confidence threshold (default 0.25)", "C" },
    { "iou", 'u', 0, G_OPTION_ARG_DOUBLE, &opt->iou,
        "NMS IoU threshold (default 0.45)", "U" },
    { "size", 's', 0, G_OPTION_ARG_INT, &opt->size,
        "Network input size, a multiple of 32 (default 640)", "S" },
    { "threads", 't', 0, G_OPTION_ARG_INT, &opt->threads,
        "Threads (default 0 = all cores)", "N" },
    { "max-det", 'd', 0, G_OPTION_ARG_INT, &opt->max_det,
        "Most detections per picture (default 300)", "K" },
    { "kernels", 'k', 0, G_OPTION_ARG_STRING, &opt->kernels,
        "Kernel table: auto, generic or avx2", "NAME" },
    { "raw-input", 0, 0, G_OPTION_ARG_FILENAME, &opt->raw_input,
        "Run the network on this 1 x 3 x S x S float32 tensor", "IN.f32" },
    { "raw-output", 0, 0, G_OPTION_ARG_FILENAME, &opt->raw_output,
        "Write the network's rows x (5 + classes) float32 output here",
        "OUT.f32" },
    { "info", 'i', 0, G_OPTION_ARG_NONE, &opt->info,
        "Print the architecture (layers, parameters, GFLOPs, classes)", NULL },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt->images, NULL,
        "IMAGE..." },
    { NULL } };
  GOptionContext *ctx
      = g_option_context_new ("- detect objects with an upstream YOLOv5 model");
  gboolean ok;

  opt->conf = YOLOSE_DEFAULT_CONF_THRESHOLD;
  opt->iou = YOLOSE_DEFAULT_IOU_THRESHOLD;
  opt->size = YOLOSE_DEFAULT_INPUT_SIZE;
  opt->max_det = YOLOSE_DEFAULT_MAX_DETECTIONS;
  g_option_context_add_main_entries (ctx, entries, NULL);
  ok = g_option_context_parse (ctx, &argc, &argv, error)
      && check_options (opt, error);
  g_option_context_free (ctx);
  return ok;
}

/* ------------------------------------------------------- raw tensors */

/* Runs the network on the tensor in @in_path and writes its output to
 * @out_path, both float32 in this machine's byte order (little-endian on
 * every platform yolose runs on). */
static gboolean
run_raw (YoloseDetector *det, const char *in_path, const char *out_path,
    GError **error)
{
  int s = yolose_detector_get_input_size (det);
  gsize want = 3 * (gsize)s * s * sizeof (float);
  gsize out_size = yolose_detector_get_output_rows (det)
      * yolose_detector_get_output_cols (det) * sizeof (float);
  char *contents = NULL;
  gsize length = 0;
  const float *out;

  if (!g_file_get_contents (in_path, &contents, &length, error))
    return FALSE;
  if (length != want) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
        "%s: %" G_GSIZE_FORMAT " bytes, but a 1 x 3 x %d x %d float32 "
        "tensor is %" G_GSIZE_FORMAT,
        in_path, length, s, s, want);
    g_free (contents);
    return FALSE;
  }
  memcpy (yolose_detector_get_input (det), contents, want);
  g_free (contents);
  out = yolose_detector_forward (det);
  return g_file_set_contents (out_path, (const char *)out, out_size, error);
}

/* ---------------------------------------------------------- pictures */

/* The picture upright, as cv2.imread gives it. */
static GdkPixbuf *
load_picture (const char *path, GError **error)
{
  GdkPixbuf *raw = gdk_pixbuf_new_from_file (path, error);
  GdkPixbuf *upright;

  if (raw == NULL)
    return NULL;
  upright = gdk_pixbuf_apply_embedded_orientation (raw);
  g_object_unref (raw);
  if (gdk_pixbuf_get_colorspace (upright) != GDK_COLORSPACE_RGB
      || gdk_pixbuf_get_bits_per_sample (upright) != 8
      || gdk_pixbuf_get_n_channels (upright) < 3) {
    g_set_error (error, GDK_PIXBUF_ERROR, GDK_PIXBUF_ERROR_UNKNOWN_TYPE,
        "%s: decoded to an unsupported pixel format", path);
    g_object_unref (upright);
    return NULL;
  }
  return upright;
}

/* RGB or RGBA rows as gdk-pixbuf lays them out; alpha is ignored, as
 * cv2.imread (IMREAD_COLOR) ignores it. */
static void
image_from_pixbuf (GdkPixbuf *pixbuf, YoloseImage *image)
{
  yolose_image_init_rgb (image, gdk_pixbuf_read_pixels (pixbuf),
      gdk_pixbuf_get_width (pixbuf), gdk_pixbuf_get_height (pixbuf),
      gdk_pixbuf_get_rowstride (pixbuf));
  image->pixel_stride = gdk_pixbuf_get_n_channels (pixbuf);
}

static void
add_detection (JsonBuilder *b, const YoloseDetector *det,
    const YoloseDetection *d)
{
  const char *label = yolose_detector_get_class_name (det, d->class_id);
  const double box[4] = { d->x1, d->y1, d->x2, d->y2 };
  char id_label[16];

  if (label == NULL) {
    g_snprintf (id_label, sizeof id_label, "%d", d->class_id);
    label = id_label;
  }
  tool_json_add_detection (b, d->class_id, label, d->confidence, box);
}

static void
print_result (const char *path, const YoloseImage *image,
    const YoloseDetector *det, const YoloseDetection *dets, gsize n)
{
  JsonBuilder *b = json_builder_new ();

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "image");
  json_builder_add_string_value (b, path);
  json_builder_set_member_name (b, "width");
  json_builder_add_int_value (b, image->width);
  json_builder_set_member_name (b, "height");
  json_builder_add_int_value (b, image->height);
  json_builder_set_member_name (b, "detections");
  json_builder_begin_array (b);
  for (gsize i = 0; i < n; i++)
    add_detection (b, det, &dets[i]);
  json_builder_end_array (b);
  json_builder_end_object (b);
  tool_json_print_line (b);
}

static gboolean
detect_picture (YoloseDetector *det, const DetectOptions *opt, const char *path,
    YoloseDetection *dets, GError **error)
{
  GdkPixbuf *pixbuf = load_picture (path, error);
  YoloseNmsParams params;
  YoloseImage image;
  gsize n;

  if (pixbuf == NULL)
    return FALSE;
  yolose_nms_params_init (&params);
  params.conf_threshold = (float)opt->conf;
  params.iou_threshold = (float)opt->iou;
  params.max_detections = opt->max_det;
  image_from_pixbuf (pixbuf, &image);
  n = yolose_detector_detect (det, &image, &params, dets, opt->max_det);
  print_result (path, &image, det, dets, n);
  g_object_unref (pixbuf);
  return TRUE;
}

/* Every picture is tried; FALSE if any failed. */
static gboolean
detect_pictures (YoloseDetector *det, const DetectOptions *opt)
{
  YoloseDetection *dets = g_new (YoloseDetection, opt->max_det);
  gboolean all_ok = TRUE;

  for (char **p = opt->images; p != NULL && *p != NULL; p++) {
    GError *error = NULL;

    if (!detect_picture (det, opt, *p, dets, &error)) {
      /* gdk-pixbuf's messages name the file already */
      fprintf (stderr, "yolose-detect: %s\n", error->message);
      g_clear_error (&error);
      all_ok = FALSE;
    }
  }
  g_free (dets);
  return all_ok;
}

/* ------------------------------------------------------------- main */

static YoloseDetector *
open_detector (const DetectOptions *opt, GError **error)
{
  YoloseConfig config;

  yolose_config_init (&config);
  config.model_path = opt->model;
  config.input_size = opt->size;
  config.threads = opt->threads;
  config.kernels = opt->kernels;
  return yolose_detector_new (&config, error);
}

int
main (int argc, char **argv)
{
  DetectOptions opt = { 0 };
  YoloseDetector *det;
  GError *error = NULL;
  gboolean ok = TRUE;

  if (!parse_options (argc, argv, &opt, &error)) {
    fprintf (stderr, "yolose-detect: %s (see --help)\n", error->message);
    g_error_free (error);
    detect_options_clear (&opt);
    return EXIT_USAGE;
  }
  det = open_detector (&opt, &error);
  if (det == NULL) {
    fprintf (stderr, "yolose-detect: cannot load the model: %s\n",
        error->message);
    g_error_free (error);
    detect_options_clear (&opt);
    return EXIT_FAILURE;
  }
  if (opt.info) {
    char *text = yolose_detector_describe (det);
    fputs (text, stdout);
    fflush (stdout);
    g_free (text);
  }
  if (opt.raw_input != NULL
      && !run_raw (det, opt.raw_input, opt.raw_output, &error)) {
    fprintf (stderr, "yolose-detect: %s\n", error->message);
    g_clear_error (&error);
    ok = FALSE;
  }
  if (opt.images != NULL)
    ok = detect_pictures (det, &opt) && ok;
  yolose_detector_free (det);
  detect_options_clear (&opt);
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
