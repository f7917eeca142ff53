/* yolose tests — non_max_suppression and scale_coords against upstream's.
 *
 * Synthetic tensors probe each rule of upstream's utils/general.py
 * (thresholds, best class, class-aware offsets, IoU boundary, limits,
 * mapping back to the frame); the expected outcomes are worked out by hand
 * in the comments.  The data test runs on upstream's own network outputs
 * and must give upstream's detections.json, which proves NMS without the
 * network. */
#include <check.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "postprocess.h"
#include "testdata.h"

#define NC 6
#define COLS (5 + NC)

/* ------------------------------------------------------------ helpers */

typedef struct {
  float *raw;
  gsize rows;
  int nc;
} Tensor;

static Tensor
tensor_new (gsize rows, int nc)
{
  Tensor t = { g_new0 (float, rows *(5 + nc)), rows, nc };
  return t;
}

/* One prediction: box centre and size in letterbox pixels, objectness,
 * and a single class probability (the others stay 0). */
static void
set_row (Tensor *t, gsize row, float cx, float cy, float w, float h, float obj,
    int cls, float prob)
{
  float *r = t->raw + row * (5 + t->nc);

  r[0] = cx;
  r[1] = cy;
  r[2] = w;
  r[3] = h;
  r[4] = obj;
  r[5 + cls] = prob;
}

/* The letterbox of an S x S frame: no scaling, no padding. */
static YoloseLetterbox
identity_box (int size)
{
  YoloseLetterbox box;

  yolose_letterbox_compute (size, size, size, &box);
  return box;
}

/* Runs NMS with @params (default ones when NULL) on an identity box. */
static gsize
run (Tensor *t, const YoloseNmsParams *params, YoloseDetection *out, gsize cap)
{
  YolosePostprocess *post = yolose_postprocess_new (t->rows, t->nc);
  YoloseLetterbox box = identity_box (640);
  YoloseNmsParams defaults;
  gsize n;

  yolose_nms_params_init (&defaults);
  n = yolose_postprocess_run (post, t->raw, params ? params : &defaults, &box,
      out, cap);
  yolose_postprocess_free (post);
  return n;
}

/* run() on a letterbox 32000 pixels wide, so nothing is clipped. */
static gsize
run_wide (Tensor *t, const YoloseNmsParams *params, YoloseDetection *out,
    gsize cap)
{
  YolosePostprocess *post = yolose_postprocess_new (t->rows, t->nc);
  YoloseLetterbox box = identity_box (32000);
  gsize n = yolose_postprocess_run (post, t->raw, params, &box, out, cap);

  yolose_postprocess_free (post);
  return n;
}

/* --------------------------------------------------------- thresholds */

/* Objectness must exceed conf (0.25 itself is out), and so must
 * obj x class probability (0.5 x 0.5 = 0.25 exactly is out). */
START_TEST (test_threshold_edges)
{
  Tensor t = tensor_new (5, NC);
  YoloseDetection out[8];
  gsize n;

  set_row (&t, 0, 20, 20, 10, 10, 0.25f, 0, 1.0f);    /* obj == conf */
  set_row (&t, 1, 60, 20, 10, 10, 0.5f, 1, 0.5f);     /* score == conf */
  set_row (&t, 2, 100, 20, 10, 10, 0.5f, 2, 0.5001f); /* just above */
  set_row (&t, 3, 140, 20, 10, 10, 0.2f, 3, 1.0f);    /* obj too low */
  set_row (&t, 4, 180, 20, 10, 10, 0.26f, 4, 1.0f);   /* just above */
  n = run (&t, NULL, out, G_N_ELEMENTS (out));
  ck_assert_uint_eq (n, 2);
  ck_assert_int_eq (out[0].class_id, 4);
  ck_assert_float_eq (out[0].confidence, 0.26f);
  ck_assert_int_eq (out[1].class_id, 2);
  ck_assert_float_eq (out[1].confidence, 0.5f * 0.5001f);
  g_free (t.raw);
}
END_TEST

/* The best class is the first maximum (torch.max), and the score is
 * objectness times that class's probability. */
START_TEST (test_best_class_first_maximum)
{
  Tensor t = tensor_new (1, NC);
  YoloseDetection out[2];

  set_row (&t, 0, 50, 50, 20, 20, 0.9f, 2, 0.7f);
  t.raw[5 + 5] = 0.7f; /* tie with class 2 */
  t.raw[5 + 1] = 0.69f;
  ck_assert_uint_eq (run (&t, NULL, out, 2), 1);
  ck_assert_int_eq (out[0].class_id, 2);
  ck_assert_float_eq (out[0].confidence, 0.9f * 0.7f);
  g_free (t.raw);
}
END_TEST

/* ---------------------------------------------------------------- NMS */

/* Identical boxes of different classes are both kept; of the same class,
 * only the better one. */
START_TEST (test_class_aware)
{
  Tensor t = tensor_new (3, NC);
  YoloseDetection out[4];
  gsize n;

  set_row (&t, 0, 100, 100, 50, 80, 0.9f, 0, 0.9f);
  set_row (&t, 1, 100, 100, 50, 80, 0.9f, 3, 0.8f);
  set_row (&t, 2, 101, 100, 50, 80, 0.9f, 0, 0.95f);
  n = run (&t, NULL, out, G_N_ELEMENTS (out));
  ck_assert_uint_eq (n, 2);
  ck_assert_int_eq (out[0].class_id, 0);
  ck_assert_float_eq (out[0].confidence, 0.9f * 0.95f);
  ck_assert_float_eq (out[0].x1, 76.0f);
  ck_assert_int_eq (out[1].class_id, 3);
  g_free (t.raw);
}
END_TEST

/* [0,0,10,10] and [0,0,10,5] overlap with IoU exactly 0.5: kept at an
 * IoU threshold of 0.5 (suppression needs IoU > threshold), suppressed at
 * 0.49. */
START_TEST (test_iou_boundary)
{
  Tensor t = tensor_new (2, NC);
  YoloseDetection out[4];
  YoloseNmsParams params;

  set_row (&t, 0, 5, 5, 10, 10, 0.9f, 1, 0.9f);
  set_row (&t, 1, 5, 2.5f, 10, 5, 0.9f, 1, 0.8f);
  yolose_nms_params_init (&params);
  params.iou_threshold = 0.5f;
  ck_assert_uint_eq (run (&t, &params, out, 4), 2);
  params.iou_threshold = 0.49f;
  ck_assert_uint_eq (run (&t, &params, out, 4), 1);
  g_free (t.raw);
}
END_TEST

/* Upstream offsets boxes by class x 7680 in float32 before NMS, and the
 * rounding of that add is part of its result.  [0, 10] and [3.79, 13.79]
 * (both 10 high) overlap with IoU 6.21 / 13.79 = 0.4503 > 0.45: in class 0
 * the second box goes.  In class 79 (offset 606720, where floats are 1/16
 * apart) 3.79 becomes 3.8125 and the IoU 6.1875 / 13.8125 = 0.44796, so
 * upstream keeps both. */
START_TEST (test_class_offset_rounding)
{
  Tensor t = tensor_new (2, 80);
  YoloseDetection out[4];

  set_row (&t, 0, 5, 5, 10, 10, 0.9f, 0, 0.9f);
  set_row (&t, 1, 8.79f, 5, 10, 10, 0.9f, 0, 0.8f);
  ck_assert_uint_eq (run (&t, NULL, out, 4), 1);

  memset (t.raw, 0, sizeof (float) * 2 * 85);
  set_row (&t, 0, 5, 5, 10, 10, 0.9f, 79, 0.9f);
  set_row (&t, 1, 8.79f, 5, 10, 10, 0.9f, 79, 0.8f);
  ck_assert_uint_eq (run (&t, NULL, out, 4), 2);
  /* the reported boxes are the unshifted ones */
  ck_assert_float_eq_tol (out[1].x1, 3.79f, 1e-5f);
  g_free (t.raw);
}
END_TEST

/* Equal scores: the earlier row wins, as with torchvision's stable sort. */
START_TEST (test_equal_scores_stable)
{
  Tensor t = tensor_new (3, NC);
  YoloseDetection out[4];

  set_row (&t, 0, 300, 300, 10, 10, 0.6f, 0, 0.5f); /* elsewhere */
  set_row (&t, 1, 100, 100, 40, 40, 0.8f, 0, 0.5f);
  set_row (&t, 2, 101, 100, 40, 40, 0.8f, 0, 0.5f);
  ck_assert_uint_eq (run (&t, NULL, out, 4), 2);
  ck_assert_float_eq (out[0].x1, 80.0f);
  ck_assert_float_eq (out[1].x1, 295.0f);
  g_free (t.raw);
}
END_TEST

/* Many disjoint boxes with random, often equal scores come out sorted by
 * score, equal scores in row order. */
START_TEST (test_order_random_scores)
{
  gsize rows = 5000;
  Tensor t = tensor_new (rows, 1);
  YoloseDetection *out = g_new (YoloseDetection, rows);
  YoloseNmsParams params;
  GRand *rand = g_rand_new_with_seed (3);
  gsize n;

  /* row r sits at x = 4 r (2 wide), so x1 / 4 gives the row back */
  for (gsize r = 0; r < rows; r++)
    set_row (&t, r, 4 * r + 1, 1, 2, 2,
        0.3f + 0.05f * g_rand_int_range (rand, 0, 12), 0, 1.0f);
  yolose_nms_params_init (&params);
  params.max_detections = (int)rows;
  n = run_wide (&t, &params, out, rows);
  ck_assert_uint_eq (n, rows);
  for (gsize i = 1; i < n; i++) {
    gboolean ordered = out[i - 1].confidence > out[i].confidence
        || (out[i - 1].confidence == out[i].confidence
            && out[i - 1].x1 < out[i].x1);
    ck_assert_msg (ordered, "position %d: %g at %g after %g at %g", (int)i,
        out[i].confidence, out[i].x1, out[i - 1].confidence, out[i - 1].x1);
  }
  g_rand_free (rand);
  g_free (out);
  g_free (t.raw);
}
END_TEST

/* At most max_detections (and at most out_cap), the best first. */
START_TEST (test_max_detections)
{
  Tensor t = tensor_new (10, NC);
  YoloseDetection out[10];
  YoloseNmsParams params;

  for (int i = 0; i < 10; i++)
    set_row (&t, i, 30 + 60 * i, 30, 20, 20, 0.3f + 0.05f * i, i % NC, 1.0f);
  yolose_nms_params_init (&params);
  params.max_detections = 3;
  ck_assert_uint_eq (run (&t, &params, out, 10), 3);
  for (int k = 0; k < 3; k++)
    ck_assert_float_eq (out[k].x1, 20.0f + 60 * (9 - k));
  params.max_detections = 300;
  ck_assert_uint_eq (run (&t, &params, out, 4), 4);
  ck_assert_uint_eq (run (&t, &params, out, 10), 10);
  params.max_detections = 0;
  ck_assert_uint_eq (run (&t, &params, out, 10), 0);
  g_free (t.raw);
}
END_TEST

/* The class filter applies to the best class: a box whose best class is
 * masked out is dropped even if another of its classes would pass. */
START_TEST (test_class_mask)
{
  Tensor t = tensor_new (2, NC);
  YoloseDetection out[4];
  YoloseNmsParams params;
  guint8 mask[NC] = { 0, 1, 1, 1, 1, 1 };

  set_row (&t, 0, 100, 100, 20, 20, 0.9f, 0, 0.9f);
  t.raw[5 + 1] = 0.8f;
  set_row (&t, 1, 300, 100, 20, 20, 0.9f, 2, 0.9f);
  yolose_nms_params_init (&params);
  params.class_mask = mask;
  ck_assert_uint_eq (run (&t, &params, out, 4), 1);
  ck_assert_int_eq (out[0].class_id, 2);
  g_free (t.raw);
}
END_TEST

/* More than 30000 candidates: only the 30000 best reach NMS.  The best
 * 30000 are one box repeated (NMS keeps one of them); the 100 weaker ones
 * are disjoint and would all survive NMS if they reached it. */
START_TEST (test_nms_input_cap)
{
  gsize rows = 30100, top = 30000;
  Tensor t = tensor_new (rows, 1);
  YoloseDetection *out = g_new (YoloseDetection, rows);
  YoloseNmsParams params;

  for (gsize i = 0; i < rows; i++) {
    if (i < top)
      set_row (&t, i, 320, 320, 50, 50, 0.9f, 0, 1.0f);
    else
      set_row (&t, i, 5 + 6 * (i - top), 5, 4, 4, 0.5f, 0, 1.0f);
  }
  yolose_nms_params_init (&params);
  params.max_detections = (int)rows;
  ck_assert_uint_eq (run (&t, &params, out, rows), 1);
  ck_assert_float_eq (out[0].x1, 295.0f);

  /* one fewer repeat: the first weak box now makes the cut */
  set_row (&t, 0, 5 + 6 * 200, 5, 4, 4, 0.5f, 0, 1.0f);
  ck_assert_uint_eq (run (&t, &params, out, rows), 2);
  g_free (out);
  g_free (t.raw);
}
END_TEST

/* ------------------------------------------------------------ mapping */

/* scale_coords: the unrounded padding is removed, the gain divided out,
 * and the box clipped to the frame. 810x1080 in 640: gain 0.5926, pad x
 * (640 - 480) / 2 = 80, pad y 0. */
START_TEST (test_mapping_and_clipping)
{
  Tensor t = tensor_new (2, NC);
  YolosePostprocess *post = yolose_postprocess_new (2, NC);
  YoloseLetterbox box;
  YoloseNmsParams params;
  YoloseDetection out[2];
  double gain = 640.0 / 1080.0;
  gsize n;

  yolose_letterbox_compute (810, 1080, 640, &box);
  /* frame box [100, 200, 300, 500] -> letterbox */
  set_row (&t, 0, 80 + 200 * gain, 350 * gain, 200 * gain, 300 * gain, 0.9f, 1,
      0.9f);
  /* reaches past every edge of the picture */
  set_row (&t, 1, 320, 320, 700, 700, 0.8f, 2, 0.9f);
  yolose_nms_params_init (&params);
  n = yolose_postprocess_run (post, t.raw, &params, &box, out, 2);
  ck_assert_uint_eq (n, 2);
  ck_assert_float_eq_tol (out[0].x1, 100.0f, 1e-3f);
  ck_assert_float_eq_tol (out[0].y1, 200.0f, 1e-3f);
  ck_assert_float_eq_tol (out[0].x2, 300.0f, 1e-3f);
  ck_assert_float_eq_tol (out[0].y2, 500.0f, 1e-3f);
  ck_assert_float_eq (out[1].x1, 0.0f);
  ck_assert_float_eq (out[1].y1, 0.0f);
  ck_assert_float_eq (out[1].x2, 810.0f);
  ck_assert_float_eq (out[1].y2, 1080.0f);

  /* 1280x720: pad y = (640 - 360) / 2 = 140 (letterbox top is 140 too) */
  yolose_letterbox_compute (1280, 720, 640, &box);
  memset (t.raw, 0, sizeof (float) * 2 * COLS);
  set_row (&t, 0, 320, 140 + 90, 100, 80, 0.9f, 1, 0.9f);
  n = yolose_postprocess_run (post, t.raw, &params, &box, out, 2);
  ck_assert_uint_eq (n, 1);
  ck_assert_float_eq_tol (out[0].x1, 540.0f, 1e-3f);
  ck_assert_float_eq_tol (out[0].y1, 100.0f, 1e-3f);
  ck_assert_float_eq_tol (out[0].x2, 740.0f, 1e-3f);
  ck_assert_float_eq_tol (out[0].y2, 260.0f, 1e-3f);
  yolose_postprocess_free (post);
  g_free (t.raw);
}
END_TEST

/* ---------------------------------------------------------------- data */

static float
iou (const float a[4], const float b[4])
{
  float w = MIN (a[2], b[2]) - MAX (a[0], b[0]);
  float h = MIN (a[3], b[3]) - MAX (a[1], b[1]);
  float inter = MAX (w, 0.0f) * MAX (h, 0.0f);
  float area_a = (a[2] - a[0]) * (a[3] - a[1]);
  float area_b = (b[2] - b[0]) * (b[3] - b[1]);

  return inter / (area_a + area_b - inter);
}

/* Upstream's output tensor through our NMS gives upstream's detections:
 * same classes in the same order, IoU >= 0.95, |dconf| <= 0.02 (measured:
 * identical boxes after rounding, confidences equal to 5 decimals). */
static void
check_reference (const char *model, const char *image, int nc, int width,
    int height)
{
  char *rel = g_strdup_printf ("reference/%s-%s.output.f32", model,
      g_str_has_prefix (image, "bus") ? "bus" : "zidane");
  char *path = yolose_test_data_path (rel);
  char *json_path = yolose_test_data_path ("reference/detections.json");
  JsonParser *parser = json_parser_new ();
  GError *error = NULL;
  char *contents = NULL;
  gsize length = 0, rows = 25200, n;
  YolosePostprocess *post = yolose_postprocess_new (rows, nc);
  YoloseNmsParams params;
  YoloseLetterbox box;
  YoloseDetection out[1000];
  JsonObject *entry;
  JsonArray *dets;
  float worst_iou = 1.0f, worst_conf = 0.0f;

  ck_assert (path != NULL && json_path != NULL);
  ck_assert (g_file_get_contents (path, &contents, &length, NULL));
  ck_assert_uint_eq (length, rows * (5 + nc) * sizeof (float));
  ck_assert_msg (json_parser_load_from_file (parser, json_path, &error), "%s",
      error ? error->message : "");
  entry = json_object_get_object_member (
      json_object_get_object_member (
          json_node_get_object (json_parser_get_root (parser)), model),
      image);
  ck_assert_int_eq (json_object_get_int_member (entry, "width"), width);
  dets = json_object_get_array_member (entry, "detections");

  yolose_letterbox_compute (width, height, 640, &box);
  yolose_nms_params_init (&params);
  params.max_detections = 1000; /* the reference's setting */
  n = yolose_postprocess_run (post, (const float *)contents, &params, &box, out,
      G_N_ELEMENTS (out));
  ck_assert_uint_eq (n, json_array_get_length (dets));
  for (gsize i = 0; i < n; i++) {
    JsonObject *d = json_array_get_object_element (dets, i);
    JsonArray *jb = json_object_get_array_member (d, "box");
    float want[4],
        got[4] = { nearbyintf (out[i].x1), nearbyintf (out[i].y1),
          nearbyintf (out[i].x2), nearbyintf (out[i].y2) };
    float conf = (float)json_object_get_double_member (d, "confidence");

    for (int k = 0; k < 4; k++)
      want[k] = (float)json_array_get_double_element (jb, k);
    printf ("%s %s: %s %.5f [%g %g %g %g] (upstream %.5f [%g %g %g %g])\n",
        model, image, json_object_get_string_member (d, "label"),
        out[i].confidence, got[0], got[1], got[2], got[3], conf, want[0],
        want[1], want[2], want[3]);
    ck_assert_int_eq (out[i].class_id,
        json_object_get_int_member (d, "class_id"));
    worst_iou = MIN (worst_iou, iou (got, want));
    worst_conf = MAX (worst_conf, fabsf (out[i].confidence - conf));
  }
  printf ("%s %s: %d detections, worst IoU %.4f, worst |dconf| %.6f\n", model,
      image, (int)n, worst_iou, worst_conf);
  ck_assert (worst_iou >= 0.95f);
  ck_assert (worst_conf <= 0.02f);
  yolose_postprocess_free (post);
  g_object_unref (parser);
  g_free (contents);
  g_free (json_path);
  g_free (path);
  g_free (rel);
}

/* NMS on upstream's yolov5n-se-coco output for bus.jpg reproduces its
 * four detections. */
START_TEST (test_reference_bus)
{
  check_reference ("yolov5n-se-coco", "bus.jpg", 80, 810, 1080);
}
END_TEST

/* ... and the 20-class random model's single detection on zidane.jpg. */
START_TEST (test_reference_zidane_voc)
{
  check_reference ("yolov5s-se-voc-random", "zidane.jpg", 20, 1280, 720);
}
END_TEST

static Suite *
postprocess_suite (gboolean with_data)
{
  Suite *s = suite_create ("postprocess");
  TCase *tc = tcase_create ("nms");

  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_threshold_edges);
  tcase_add_test (tc, test_best_class_first_maximum);
  tcase_add_test (tc, test_class_aware);
  tcase_add_test (tc, test_iou_boundary);
  tcase_add_test (tc, test_class_offset_rounding);
  tcase_add_test (tc, test_equal_scores_stable);
  tcase_add_test (tc, test_order_random_scores);
  tcase_add_test (tc, test_max_detections);
  tcase_add_test (tc, test_class_mask);
  tcase_add_test (tc, test_nms_input_cap);
  tcase_add_test (tc, test_mapping_and_clipping);
  if (with_data) {
    tcase_add_test (tc, test_reference_bus);
    tcase_add_test (tc, test_reference_zidane_voc);
  }
  suite_add_tcase (s, tc);
  return s;
}

static gboolean
have (const char *relative)
{
  char *path = yolose_test_data_path (relative);
  gboolean found = path != NULL;

  g_free (path);
  return found;
}

int
main (void)
{
  gboolean with_data = have ("reference/detections.json")
      && have ("reference/yolov5n-se-coco-bus.output.f32")
      && have ("reference/yolov5s-se-voc-random-zidane.output.f32");
  SRunner *runner = srunner_create (postprocess_suite (with_data));
  int failed;

  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  if (failed != 0)
    return 1;
  if (!with_data)
    yolose_test_require_data ("reference/detections.json",
        "reference/yolov5n-se-coco-bus.output.f32",
        "reference/yolov5s-se-voc-random-zidane.output.f32", NULL);
  return 0;
}
