/* yolose tests — the yolose-bench command line.
 *
 * Runs the built tool (its path is argv[1], passed by meson) the way
 * ../shared/bench/compare.sh and a developer choosing the next
 * optimisation do, and checks what it prints: the JSON line's fields and
 * their consistency, the per-layer table (one row per yaml row, the work
 * of the stem and of the first stride-2 convolution computed here from
 * the architecture, the rows summing to the network's total), and an exit
 * status with a message for each kind of bad input. */
#include <check.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testdata.h"
#include "tool_run.h"

static const char *tool_path;

static char *
model_path (const char *name)
{
  char *relative = g_build_filename ("models", name, NULL);
  char *path = yolose_test_data_path (relative);

  ck_assert_msg (path != NULL, "%s missing", relative);
  g_free (relative);
  return path;
}

/* The last line of @text parsed as a JSON object (owned by @parser). */
static JsonObject *
last_json_line (JsonParser *parser, const char *text)
{
  char *copy = g_strchomp (g_strdup (text));
  char **lines = g_strsplit (copy, "\n", -1);
  guint n = g_strv_length (lines);
  GError *error = NULL;

  g_free (copy);

  ck_assert_uint_gt (n, 0);
  ck_assert_msg (json_parser_load_from_data (parser, lines[n - 1], -1, &error),
      "last line is not JSON: %s (%s)", lines[n - 1],
      error ? error->message : "");
  g_strfreev (lines);
  ck_assert (JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)));
  return json_node_get_object (json_parser_get_root (parser));
}

static double
member_double (JsonObject *o, const char *name)
{
  ck_assert_msg (json_object_has_member (o, name), "no \"%s\" in the JSON",
      name);
  return json_object_get_double_member (o, name);
}

/* 2 * in * k * k * out * oh * ow: a convolution's multiply-adds, twice. */
static double
conv_gflop (int in, int k, int out, int out_size)
{
  return 2.0 * in * k * k * out * out_size * out_size / 1e9;
}

typedef struct {
  int index;
  char type[32];
  double mean_ms, min_ms, gflop, rate, share;
} LayerRow;

/* Rows of the per-layer table in @text, in order. */
static GArray *
layer_rows (const char *text)
{
  GArray *rows = g_array_new (FALSE, TRUE, sizeof (LayerRow));
  char **lines = g_strsplit (text, "\n", -1);

  for (char **l = lines; *l != NULL; l++) {
    LayerRow r;
    if (sscanf (*l, "%d %31s %lf %lf %lf %lf %lf%%", &r.index, r.type,
            &r.mean_ms, &r.min_ms, &r.gflop, &r.rate, &r.share)
        == 7)
      g_array_append_val (rows, r);
  }
  g_strfreev (lines);
  return rows;
}

/* times_ms holds one time per timed run, whose median and fastest are
 * the line's median_ms and min_ms. */
static void
check_times (JsonObject *o, double median, double min)
{
  JsonArray *times = json_object_get_array_member (o, "times_ms");
  double t[3];

  ck_assert_msg (times != NULL, "no times_ms array");
  ck_assert_int_eq (json_array_get_length (times), 3);
  for (int i = 0; i < 3; i++)
    t[i] = json_array_get_double_element (times, i);
  ck_assert_msg (MIN (MIN (t[0], t[1]), t[2]) == min,
      "min_ms is not the "
      "fastest of times_ms");
  ck_assert_msg (MAX (MIN (t[0], t[1]), MIN (MAX (t[0], t[1]), t[2])) == median,
      "median_ms is not the median of times_ms");
}

/* The JSON line of a run at 64 x 64: fields present, consistent with the
 * options and with each other. */
START_TEST (test_json_line)
{
  char *model = model_path ("yolov5n-se-coco.pt");
  YoloseToolRun run
      = yolose_test_run_tool (tool_path, "--model", model, "--size", "64",
          "--threads", "1", "--iterations", "3", "--warmup", "1", NULL);
  JsonParser *parser = json_parser_new ();
  JsonObject *o;
  double median, min, gflops;

  ck_assert_msg (run.status == 0, "exit %d: %s", run.status, run.err);
  o = last_json_line (parser, run.out);
  median = member_double (o, "median_ms");
  min = member_double (o, "min_ms");
  gflops = member_double (o, "gflops");
  ck_assert (min > 0.0 && min <= median);
  /* yolov5n + SE at 640 is 4.5 GFLOP: 100x less at 64 */
  ck_assert_msg (gflops > 0.040 && gflops < 0.050, "gflops %g", gflops);
  ck_assert_msg (fabs (member_double (o, "gflop_per_s") - gflops / median * 1e3)
          < 1e-6 * gflops / median * 1e3,
      "gflop_per_s is not gflops / median");
  ck_assert (member_double (o, "peak_rss_mb") > 1.0);
  ck_assert_int_eq (json_object_get_int_member (o, "threads"), 1);
  ck_assert_int_eq (json_object_get_int_member (o, "iterations"), 3);
  ck_assert_int_eq (json_object_get_int_member (o, "size"), 64);
  ck_assert (json_object_get_string_member (o, "kernels") != NULL);
  check_times (o, median, min);
  g_object_unref (parser);
  yolose_tool_run_clear (&run);
  g_free (model);
}
END_TEST

/* --per-layer: one row per yaml row; the stem's and the first stride-2
 * convolution's work as the architecture gives them; the rows add up to
 * the network's total; the fastest run of a layer is no slower than its
 * mean. */
START_TEST (test_per_layer_table)
{
  char *model = model_path ("yolov5n-se-coco.pt");
  YoloseToolRun run = yolose_test_run_tool (tool_path, "--model", model,
      "--size", "640", "--threads", "1", "--iterations", "1", "--warmup", "0",
      "--per-layer", NULL);
  JsonParser *parser = json_parser_new ();
  GArray *rows;
  double sum = 0.0, share = 0.0;

  ck_assert_msg (run.status == 0, "exit %d: %s", run.status, run.err);
  rows = layer_rows (run.out);
  /* the seed's yaml: 10 backbone rows (with SElayer) + 16 head rows */
  ck_assert_uint_eq (rows->len, 26);
  for (guint i = 0; i < rows->len; i++) {
    LayerRow *r = &g_array_index (rows, LayerRow, i);
    ck_assert_int_eq (r->index, (int)i);
    ck_assert_msg (r->min_ms <= r->mean_ms + 1e-3, "layer %u: min %g > mean %g",
        i, r->min_ms, r->mean_ms);
    sum += r->gflop;
    share += r->share;
  }
  ck_assert_str_eq (g_array_index (rows, LayerRow, 0).type, "Conv");
  ck_assert_str_eq (g_array_index (rows, LayerRow, 9).type, "SElayer");
  ck_assert_str_eq (g_array_index (rows, LayerRow, 25).type, "Detect");
  /* yolov5n: Conv(3, 16, 6, 2, 2) to 320 x 320, Conv(16, 32, 3, 2) to
   * 160 x 160 (the table prints 3 decimals) */
  ck_assert_double_eq_tol (g_array_index (rows, LayerRow, 0).gflop,
      conv_gflop (3, 6, 16, 320), 6e-4);
  ck_assert_double_eq_tol (g_array_index (rows, LayerRow, 1).gflop,
      conv_gflop (16, 3, 32, 160), 6e-4);
  ck_assert_double_eq_tol (sum,
      member_double (last_json_line (parser, run.out), "gflops"), 26 * 6e-4);
  ck_assert_double_eq_tol (share, 100.0, 26 * 0.06);
  g_array_free (rows, TRUE);
  g_object_unref (parser);
  yolose_tool_run_clear (&run);
  g_free (model);
}
END_TEST

/* Each kind of bad input: a non-zero exit and a message naming it. */
START_TEST (test_refusals)
{
  char *model = model_path ("yolov5n-se-coco.pt");
  char *dir = g_dir_make_tmp ("yolose-bench-XXXXXX", NULL);
  char *short_input = g_build_filename (dir, "short.f32", NULL);
  const char *expect[][2] = {
    { "--size", "65" },
    { "--iterations", "0" },
    { "--kernels", "nonesuch" },
  };

  ck_assert (g_file_set_contents (short_input, "0123", 4, NULL));
  for (guint i = 0; i < G_N_ELEMENTS (expect); i++) {
    YoloseToolRun run = yolose_test_run_tool (tool_path, "--model", model,
        expect[i][0], expect[i][1], NULL);
    ck_assert_msg (run.status != 0 && run.err != NULL && run.err[0] != '\0',
        "%s %s: exit %d, no message", expect[i][0], expect[i][1], run.status);
    yolose_tool_run_clear (&run);
  }
  {
    YoloseToolRun run = yolose_test_run_tool (tool_path, "--model",
        "/nonexistent/m.pt", NULL);
    ck_assert_int_ne (run.status, 0);
    ck_assert_msg (strstr (run.err, "/nonexistent/m.pt") != NULL,
        "message does not name the model: %s", run.err);
    yolose_tool_run_clear (&run);
  }
  {
    YoloseToolRun run = yolose_test_run_tool (tool_path, "--model", model,
        "--size", "64", "--input", short_input, NULL);
    ck_assert_int_ne (run.status, 0);
    ck_assert_msg (strstr (run.err, "short.f32") != NULL,
        "message does not name the input: %s", run.err);
    yolose_tool_run_clear (&run);
  }
  g_unlink (short_input);
  g_rmdir (dir);
  g_free (short_input);
  g_free (dir);
  g_free (model);
}
END_TEST

static Suite *
bench_tool_suite (void)
{
  Suite *s = suite_create ("bench_tool");
  TCase *tc = tcase_create ("bench_tool");

  tcase_set_timeout (tc, 300);
  tcase_add_test (tc, test_json_line);
  tcase_add_test (tc, test_per_layer_table);
  tcase_add_test (tc, test_refusals);
  suite_add_tcase (s, tc);
  return s;
}

int
main (int argc, char **argv)
{
  SRunner *runner;
  int failed;

  if (argc < 2) {
    fprintf (stderr, "usage: %s PATH-TO-yolose-bench\n", argv[0]);
    return 2;
  }
  tool_path = argv[1];
  yolose_test_require_data ("models/yolov5n-se-coco.pt", NULL);
  runner = srunner_create (bench_tool_suite ());
  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? 0 : 1;
}
