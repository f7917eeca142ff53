/* yolose tests — the yolose-detect command line, end to end.
 *
 * Runs the built tool (its path is argv[1], passed by meson) as a user
 * would and checks what it prints: upstream's detections.json for bus.jpg
 * and zidane.jpg with yolov5n-coco.pt and yolov5n-se-coco.pt (same classes,
 * IoU >= 0.95, |dconf| <= 0.02), the raw tensor mode against upstream's
 * output (boxes within 0.25 px, scores within 1e-3), pictures in other
 * forms (RGBA PNG, gray PNG, EXIF-rotated JPEG), --info, and an exit status
 * and message for each kind of failure. */
#include <check.h>
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "slowcheck.h"
#include "testdata.h"
#include "tool_run.h"

static const char *tool_path;
static char *scratch_dir;

/* ------------------------------------------------------------ helpers */

/* Runs yolose-detect with the NULL-terminated arguments, for a run whose
 * checks hold at any network input size: in quick mode it runs at 320
 * instead of 640 (the others: yolose_test_run_tool). */
static YoloseToolRun
run_tool_any_size (const char *first, ...)
{
  YoloseToolRun run;
  va_list ap;

  va_start (ap, first);
  run = yolose_test_run_toolv (tool_path, "320", first, ap);
  va_end (ap);
  return run;
}

static char *
data (const char *relative)
{
  char *path = yolose_test_data_path (relative);

  ck_assert_msg (path != NULL, "%s missing", relative);
  return path;
}

static char *
scratch (const char *name)
{
  return g_build_filename (scratch_dir, name, NULL);
}

/* The lines of @text, each parsed as one JSON object. */
static GPtrArray *
parse_lines (const char *text)
{
  GPtrArray *objects
      = g_ptr_array_new_with_free_func ((GDestroyNotify)json_node_unref);
  char **lines = g_strsplit (text, "\n", -1);

  for (char **l = lines; *l != NULL; l++) {
    GError *error = NULL;
    JsonNode *node;

    if (**l == '\0')
      continue;
    node = json_from_string (*l, &error);
    ck_assert_msg (node != NULL && JSON_NODE_HOLDS_OBJECT (node),
        "not a JSON object line: %s (%s)", *l, error ? error->message : "");
    g_ptr_array_add (objects, node);
  }
  g_strfreev (lines);
  return objects;
}

static float
box_iou (JsonArray *a, JsonArray *b)
{
  double x1 = MAX (json_array_get_double_element (a, 0),
      json_array_get_double_element (b, 0));
  double y1 = MAX (json_array_get_double_element (a, 1),
      json_array_get_double_element (b, 1));
  double x2 = MIN (json_array_get_double_element (a, 2),
      json_array_get_double_element (b, 2));
  double y2 = MIN (json_array_get_double_element (a, 3),
      json_array_get_double_element (b, 3));
  double inter = MAX (x2 - x1, 0.0) * MAX (y2 - y1, 0.0);
  double area_a = (json_array_get_double_element (a, 2)
                      - json_array_get_double_element (a, 0))
      * (json_array_get_double_element (a, 3)
          - json_array_get_double_element (a, 1));
  double area_b = (json_array_get_double_element (b, 2)
                      - json_array_get_double_element (b, 0))
      * (json_array_get_double_element (b, 3)
          - json_array_get_double_element (b, 1));

  return (float)(inter / (area_a + area_b - inter));
}

/* One picture's result from the tool against upstream's entry: size, then
 * each detection in order. */
static void
compare_detections (JsonObject *got, JsonObject *want, const char *what)
{
  JsonArray *g = json_object_get_array_member (got, "detections");
  JsonArray *w = json_object_get_array_member (want, "detections");
  float worst_iou = 1.0f;
  double worst_conf = 0.0;

  ck_assert_int_eq (json_object_get_int_member (got, "width"),
      json_object_get_int_member (want, "width"));
  ck_assert_int_eq (json_object_get_int_member (got, "height"),
      json_object_get_int_member (want, "height"));
  ck_assert_msg (json_array_get_length (g) == json_array_get_length (w),
      "%s: %u detections, upstream %u", what, json_array_get_length (g),
      json_array_get_length (w));
  for (guint i = 0; i < json_array_get_length (g); i++) {
    JsonObject *a = json_array_get_object_element (g, i);
    JsonObject *b = json_array_get_object_element (w, i);

    ck_assert_int_eq (json_object_get_int_member (a, "class_id"),
        json_object_get_int_member (b, "class_id"));
    ck_assert_str_eq (json_object_get_string_member (a, "label"),
        json_object_get_string_member (b, "label"));
    worst_iou = MIN (worst_iou,
        box_iou (json_object_get_array_member (a, "box"),
            json_object_get_array_member (b, "box")));
    worst_conf = MAX (worst_conf,
        fabs (json_object_get_double_member (a, "confidence")
            - json_object_get_double_member (b, "confidence")));
  }
  printf ("%s: %u detections, worst IoU %.4f, worst |dconf| %.5f\n", what,
      json_array_get_length (g), worst_iou, worst_conf);
  ck_assert (worst_iou >= 0.95f);
  ck_assert (worst_conf <= 0.02);
}

static JsonObject *
reference_entry (JsonParser *parser, const char *model, const char *image)
{
  JsonObject *root = json_node_get_object (json_parser_get_root (parser));

  return json_object_get_object_member (
      json_object_get_object_member (root, model), image);
}

static JsonParser *
load_reference (void)
{
  JsonParser *parser = json_parser_new ();
  char *path = data ("reference/detections.json");
  GError *error = NULL;

  ck_assert_msg (json_parser_load_from_file (parser, path, &error), "%s",
      error ? error->message : "");
  g_free (path);
  return parser;
}

/* ------------------------------------------------- failures, no data */

/* No --model, an out-of-range or unparsable value, no picture: exit 2
 * with a message naming the option. */
START_TEST (test_bad_command_lines)
{
  static const char *cases[][4] = {
    { "x.jpg", NULL, NULL, "--model" },
    { "--model", "m.pt", "--conf=2", "--conf" },
    { "--model", "m.pt", "--iou=-0.1", "--iou" },
    { "--model", "m.pt", "--size=100", "--size" },
    { "--model", "m.pt", "--max-det=0", "--max-det" },
    { "--model", "m.pt", "--threads=-1", "--threads" },
    { "--model", "m.pt", "--conf=abc", "--conf" },
    { "--model", "m.pt", "--kernels=sse9", "--kernels" },
    { "--model", "m.pt", "--raw-input=a.f32", "--raw-output" },
    { "--model", "m.pt", NULL, "picture" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    YoloseToolRun run = yolose_test_run_tool (tool_path, cases[i][0],
        cases[i][1], cases[i][2], cases[i][2] ? "x.jpg" : NULL, NULL);
    ck_assert_msg (run.status == 2, "case %d: exit %d", (int)i, run.status);
    ck_assert_msg (strstr (run.err, cases[i][3]) != NULL,
        "case %d: stderr does not name %s: %s", (int)i, cases[i][3], run.err);
    ck_assert_str_eq (run.out, "");
    yolose_tool_run_clear (&run);
  }
}
END_TEST

/* A model that is missing or not a checkpoint: exit 1, message naming the
 * file. */
START_TEST (test_bad_models)
{
  char *garbage = scratch ("garbage.pt");
  char *missing = scratch ("missing.pt");
  YoloseToolRun run;

  ck_assert (g_file_set_contents (garbage, "this is not a zip", -1, NULL));
  run = yolose_test_run_tool (tool_path, "--model", garbage, "x.jpg", NULL);
  ck_assert_int_eq (run.status, 1);
  ck_assert_msg (strstr (run.err, garbage) != NULL, "%s", run.err);
  yolose_tool_run_clear (&run);
  run = yolose_test_run_tool (tool_path, "--model", missing, "x.jpg", NULL);
  ck_assert_int_eq (run.status, 1);
  ck_assert_msg (strstr (run.err, missing) != NULL, "%s", run.err);
  yolose_tool_run_clear (&run);
  g_free (garbage);
  g_free (missing);
}
END_TEST

/* ----------------------------------------------------------- with data */

/* Both COCO models on both sample pictures print upstream's detections,
 * one JSON line per picture, in order. */
START_TEST (test_detections_match_upstream)
{
  static const char *models[] = { "yolov5n-se-coco", "yolov5n-coco" };
  JsonParser *reference = load_reference ();
  char *bus = data ("images/bus.jpg"), *zidane = data ("images/zidane.jpg");
  /* Quick mode: the SE model only (the plain one has no other layer). */
  gsize n_models = yolose_test_count (G_N_ELEMENTS (models), 1);

  yolose_test_quick_note ("detections of %s on bus.jpg only", models[0]);
  for (gsize m = 0; m < n_models; m++) {
    char *rel = g_strdup_printf ("models/%s.pt", models[m]);
    char *model = data (rel);
    /* Quick mode: bus.jpg alone (test_bad_pictures has several). */
    guint n_images = yolose_test_count (2, 1);
    YoloseToolRun run = yolose_test_run_tool (tool_path, "--model", model, bus,
        n_images > 1 ? zidane : NULL, NULL);
    GPtrArray *lines;

    ck_assert_msg (run.status == 0, "exit %d: %s", run.status, run.err);
    lines = parse_lines (run.out);
    ck_assert_uint_eq (lines->len, n_images);
    for (guint i = 0; i < n_images; i++) {
      JsonObject *got = json_node_get_object (lines->pdata[i]);
      const char *image = i == 0 ? "bus.jpg" : "zidane.jpg";
      char *what = g_strdup_printf ("%s %s", models[m], image);

      ck_assert_str_eq (json_object_get_string_member (got, "image"),
          i == 0 ? bus : zidane);
      compare_detections (got, reference_entry (reference, models[m], image),
          what);
      g_free (what);
    }
    g_ptr_array_unref (lines);
    yolose_tool_run_clear (&run);
    g_free (model);
    g_free (rel);
  }
  g_free (bus);
  g_free (zidane);
  g_object_unref (reference);
}
END_TEST

/* A picture that is missing or not a picture fails with exit 1 and its
 * name, and the good pictures around it are still reported. */
START_TEST (test_bad_pictures)
{
  char *model = data ("models/yolov5n-coco.pt");
  char *bus = data ("images/bus.jpg");
  char *missing = scratch ("missing.jpg");
  char *text = scratch ("text.png");
  YoloseToolRun run;
  GPtrArray *lines;

  ck_assert (g_file_set_contents (text, "not a picture", -1, NULL));
  run = run_tool_any_size ("--model", model, missing, bus, text, NULL);
  ck_assert_int_eq (run.status, 1);
  ck_assert_msg (strstr (run.err, missing) != NULL, "%s", run.err);
  ck_assert_msg (strstr (run.err, text) != NULL, "%s", run.err);
  lines = parse_lines (run.out);
  ck_assert_uint_eq (lines->len, 1);
  g_ptr_array_unref (lines);
  yolose_tool_run_clear (&run);
  g_free (model);
  g_free (bus);
  g_free (missing);
  g_free (text);
}
END_TEST

/* bus.jpg re-saved as RGBA PNG (alpha ignored, as cv2.imread does) gives
 * exactly the JPEG's detections. */
START_TEST (test_rgba_png)
{
  char *model = data ("models/yolov5n-coco.pt");
  char *bus = data ("images/bus.jpg");
  char *png = scratch ("bus-rgba.png");
  GdkPixbuf *rgb = gdk_pixbuf_new_from_file (bus, NULL);
  GdkPixbuf *rgba = gdk_pixbuf_add_alpha (rgb, FALSE, 0, 0, 0);
  YoloseToolRun from_jpeg, from_png;
  GPtrArray *a, *b;

  ck_assert (gdk_pixbuf_save (rgba, png, "png", NULL, NULL));
  yolose_test_quick_note ("RGBA PNG against JPEG at input size 320");
  from_jpeg = run_tool_any_size ("--model", model, bus, NULL);
  from_png = run_tool_any_size ("--model", model, png, NULL);
  ck_assert_int_eq (from_jpeg.status, 0);
  ck_assert_msg (from_png.status == 0, "%s", from_png.err);
  a = parse_lines (from_jpeg.out);
  b = parse_lines (from_png.out);
  ck_assert (json_node_equal (
      json_object_get_member (json_node_get_object (a->pdata[0]), "detections"),
      json_object_get_member (json_node_get_object (b->pdata[0]),
          "detections")));
  g_ptr_array_unref (a);
  g_ptr_array_unref (b);
  yolose_tool_run_clear (&from_jpeg);
  yolose_tool_run_clear (&from_png);
  g_object_unref (rgb);
  g_object_unref (rgba);
  g_free (model);
  g_free (bus);
  g_free (png);
}
END_TEST

/* An 8x6 gray PNG (written by cv2.imencode). */
static const char gray_png_hex[]
    = "89504e470d0a1a0a0000000d4948445200000008000000060800000000db6e80"
      "270000002349444154081d6364608500460d5608600c608500c60a5608605cc0"
      "0a018c275821000045900331d283448a0000000049454e44ae426082";

/* An EXIF APP1 segment saying "orientation 6" (rotate 90 clockwise). */
static const guint8 exif_rotate_90[] = {
  0xff, 0xe1, 0x00, 0x22, 'E', 'x', 'i', 'f', 0, 0, 'M', 'M', 0x00, 0x2a, 0x00,
  0x00, 0x00, 0x08, 0x00, 0x01, /* one IFD entry: */
  0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, /* no next IFD */
};

static void
write_hex (const char *path, const char *hex)
{
  gsize n = strlen (hex) / 2;
  guint8 *bytes = g_malloc (n);

  for (gsize i = 0; i < n; i++)
    bytes[i] = (guint8)(g_ascii_xdigit_value (hex[2 * i]) * 16
        + g_ascii_xdigit_value (hex[2 * i + 1]));
  ck_assert (g_file_set_contents (path, (const char *)bytes, n, NULL));
  g_free (bytes);
}

/* A 16x8 JPEG whose EXIF says to rotate it: spliced in after SOI. */
static void
write_rotated_jpeg (const char *path)
{
  GdkPixbuf *pixbuf = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, 16, 8);
  char *jpeg;
  gsize size;
  GByteArray *out = g_byte_array_new ();

  gdk_pixbuf_fill (pixbuf, 0x8080ffff);
  ck_assert (
      gdk_pixbuf_save_to_buffer (pixbuf, &jpeg, &size, "jpeg", NULL, NULL));
  g_byte_array_append (out, (const guint8 *)jpeg, 2);
  g_byte_array_append (out, exif_rotate_90, sizeof exif_rotate_90);
  g_byte_array_append (out, (const guint8 *)jpeg + 2, size - 2);
  ck_assert (
      g_file_set_contents (path, (const char *)out->data, out->len, NULL));
  g_byte_array_unref (out);
  g_free (jpeg);
  g_object_unref (pixbuf);
}

/* A gray PNG is read (as R = G = B), and an EXIF-rotated JPEG is turned
 * upright first, as cv2.imread does: its width and height swap. */
START_TEST (test_gray_and_rotated)
{
  char *model = data ("models/yolov5n-coco.pt");
  char *gray = scratch ("gray.png");
  char *rotated = scratch ("rotated.jpg");
  YoloseToolRun run;
  GPtrArray *lines;
  JsonObject *o;

  write_hex (gray, gray_png_hex);
  write_rotated_jpeg (rotated);
  run = run_tool_any_size ("--model", model, gray, rotated, NULL);
  ck_assert_msg (run.status == 0, "%s", run.err);
  lines = parse_lines (run.out);
  ck_assert_uint_eq (lines->len, 2);
  o = json_node_get_object (lines->pdata[0]);
  ck_assert_int_eq (json_object_get_int_member (o, "width"), 8);
  ck_assert_int_eq (json_object_get_int_member (o, "height"), 6);
  o = json_node_get_object (lines->pdata[1]);
  ck_assert_int_eq (json_object_get_int_member (o, "width"), 8);
  ck_assert_int_eq (json_object_get_int_member (o, "height"), 16);
  g_ptr_array_unref (lines);
  yolose_tool_run_clear (&run);
  g_free (model);
  g_free (gray);
  g_free (rotated);
}
END_TEST

/* --raw-input/--raw-output: upstream's bus input tensor gives upstream's
 * output tensor (boxes within 0.25 px, scores within 1e-3); a file of the
 * wrong size is refused with its size. */
START_TEST (test_raw_tensors)
{
  char *model = data ("models/yolov5n-se-coco.pt");
  char *in = data ("reference/yolov5n-se-coco-bus.input.f32");
  char *want_path = data ("reference/yolov5n-se-coco-bus.output.f32");
  char *out = scratch ("out.f32");
  char *got_bytes, *want_bytes;
  gsize got_len, want_len;
  float max_box = 0.0f, max_score = 0.0f;
  YoloseToolRun run = yolose_test_run_tool (tool_path, "--model", model,
      "--raw-input", in, "--raw-output", out, NULL);

  ck_assert_msg (run.status == 0, "%s", run.err);
  ck_assert (g_file_get_contents (out, &got_bytes, &got_len, NULL));
  ck_assert (g_file_get_contents (want_path, &want_bytes, &want_len, NULL));
  ck_assert_uint_eq (got_len, want_len);
  for (gsize i = 0; i < want_len / sizeof (float); i++) {
    float g = ((float *)got_bytes)[i], w = ((float *)want_bytes)[i];
    if (i % 85 < 4)
      max_box = MAX (max_box, fabsf (g - w));
    else
      max_score = MAX (max_score, fabsf (g - w));
  }
  printf ("raw: max box error %.5f px, max score error %.2g\n", max_box,
      max_score);
  ck_assert (max_box <= 0.25f && max_score <= 1e-3f);
  yolose_tool_run_clear (&run);

  run = yolose_test_run_tool (tool_path, "--model", model, "--raw-input",
      want_path, "--raw-output", out, NULL);
  ck_assert_int_eq (run.status, 1);
  ck_assert_msg (strstr (run.err, "8568000 bytes") != NULL, "%s", run.err);
  yolose_tool_run_clear (&run);
  g_free (got_bytes);
  g_free (want_bytes);
  g_free (model);
  g_free (in);
  g_free (want_path);
  g_free (out);
}
END_TEST

/* --info describes the architecture and the classes. */
START_TEST (test_info)
{
  char *model = data ("models/yolov5s-se-voc-random.pt");
  YoloseToolRun run
      = yolose_test_run_tool (tool_path, "--model", model, "--info", NULL);

  ck_assert_msg (run.status == 0, "%s", run.err);
  ck_assert_msg (strstr (run.out, "SElayer") != NULL, "%s", run.out);
  ck_assert_msg (strstr (run.out, "20 classes") != NULL, "%s", run.out);
  ck_assert_msg (strstr (run.out, "19=tvmonitor") != NULL, "%s", run.out);
  yolose_tool_run_clear (&run);
  g_free (model);
}
END_TEST

static const char *data_files[] = {
  "models/yolov5n-coco.pt",
  "models/yolov5n-se-coco.pt",
  "models/yolov5s-se-voc-random.pt",
  "images/bus.jpg",
  "images/zidane.jpg",
  "reference/detections.json",
  "reference/yolov5n-se-coco-bus.input.f32",
  "reference/yolov5n-se-coco-bus.output.f32",
};

static gboolean
have_data (void)
{
  for (gsize i = 0; i < G_N_ELEMENTS (data_files); i++) {
    char *path = yolose_test_data_path (data_files[i]);
    gboolean found = path != NULL;

    g_free (path);
    if (!found)
      return FALSE;
  }
  return TRUE;
}

static Suite *
detect_tool_suite (gboolean with_data)
{
  Suite *s = suite_create ("yolose-detect");
  TCase *tc = tcase_create ("tool");

  tcase_set_timeout (tc, 600);
  tcase_add_test (tc, test_bad_command_lines);
  tcase_add_test (tc, test_bad_models);
  if (with_data) {
    tcase_add_test (tc, test_detections_match_upstream);
    tcase_add_test (tc, test_bad_pictures);
    tcase_add_test (tc, test_rgba_png);
    tcase_add_test (tc, test_gray_and_rotated);
    tcase_add_test (tc, test_raw_tensors);
    tcase_add_test (tc, test_info);
  }
  suite_add_tcase (s, tc);
  return s;
}

static void
remove_scratch (void)
{
  GDir *dir = g_dir_open (scratch_dir, 0, NULL);
  const char *name;

  while (dir && (name = g_dir_read_name (dir)) != NULL) {
    char *path = scratch (name);
    g_unlink (path);
    g_free (path);
  }
  if (dir)
    g_dir_close (dir);
  g_rmdir (scratch_dir);
}

int
main (int argc, char **argv)
{
  gboolean with_data = have_data ();
  SRunner *runner;
  int failed;

  if (argc < 2) {
    fprintf (stderr, "usage: %s PATH-TO-yolose-detect\n", argv[0]);
    return 1;
  }
  tool_path = argv[1];
  scratch_dir = g_dir_make_tmp ("yolose-detect-test-XXXXXX", NULL);
  if (scratch_dir == NULL) {
    fprintf (stderr, "cannot make a temporary folder\n");
    return 1;
  }
  runner = srunner_create (detect_tool_suite (with_data));
  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  remove_scratch ();
  g_free (scratch_dir);
  if (failed != 0)
    return 1;
  if (!with_data)
    yolose_test_require_data (data_files[0], data_files[1], data_files[2],
        data_files[3], data_files[4], data_files[5], data_files[6],
        data_files[7], NULL);
  return 0;
}
