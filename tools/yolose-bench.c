/* yolose-bench — times the raw network on one input tensor.
 *
 *   yolose-bench --model M.pt [--input IN.f32] [--threads N]
 *       [--iterations K] [--warmup W] [--kernels auto|generic|avx2|avx512]
 *       [--size S] [--per-layer]
 *
 * Runs yolose_detector_forward K times after W warm-up runs and prints, as
 * its last line, one JSON object (median_ms, min_ms, gflops, gflop_per_s,
 * peak_rss_mb, threads, kernels, iterations): scripts read it with
 * `tail -n 1`.  --per-layer prints a per-layer table before that line. */
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "tool-common.h"
#include "yolose.h"

typedef struct {
  char *model;
  char *input;
  int threads;
  int iterations;
  int warmup;
  char *kernels;
  int size;
  gboolean per_layer;
} BenchOptions;

static gboolean
check_options (const BenchOptions *opt, GError **error)
{
  const char *problem = NULL;

  if (opt->model == NULL)
    problem = "--model is required";
  else if (opt->iterations < 1 || opt->warmup < 0 || opt->threads < 0)
    problem = "--iterations must be >= 1, --warmup and --threads >= 0";
  return tool_check_option (problem, error);
}

static gboolean
parse_options (int argc, char **argv, BenchOptions *opt, GError **error)
{
  GOptionEntry entries[]
      = { { "model", 'm', 0, G_OPTION_ARG_FILENAME, &opt->model,
              "Upstream YOLOv5 checkpoint (.pt)", "M.pt" },
          { "input", 'i', 0, G_OPTION_ARG_FILENAME, &opt->input,
              "Input tensor, 3 x S x S little-endian float32 (default: a "
              "synthetic frame)",
              "IN.f32" },
          { "threads", 't', 0, G_OPTION_ARG_INT, &opt->threads,
              "Threads (0 = all cores)", "N" },
          { "iterations", 'n', 0, G_OPTION_ARG_INT, &opt->iterations,
              "Timed runs (default 10)", "K" },
          { "warmup", 'w', 0, G_OPTION_ARG_INT, &opt->warmup,
              "Untimed runs first (default 2)", "W" },
          { "kernels", 'k', 0, G_OPTION_ARG_STRING, &opt->kernels,
              "Kernel table: auto, generic, avx2 or avx512", "NAME" },
          { "size", 's', 0, G_OPTION_ARG_INT, &opt->size,
              "Network input size, a multiple of 32 (default 640)", "S" },
          { "per-layer", 'p', 0, G_OPTION_ARG_NONE, &opt->per_layer,
              "Print the time of every layer before the JSON line", NULL },
          { NULL } };
  GOptionContext *ctx = g_option_context_new ("- time the yolose network");
  gboolean ok;

  g_option_context_add_main_entries (ctx, entries, NULL);
  ok = g_option_context_parse (ctx, &argc, &argv, error)
      && check_options (opt, error);
  g_option_context_free (ctx);
  return ok;
}

/* Reads exactly @n floats from @path into @dst. */
static gboolean
read_input (const char *path, float *dst, gsize n, GError **error)
{
  char *contents;
  gsize length;

  if (!g_file_get_contents (path, &contents, &length, error))
    return FALSE;
  if (length != n * sizeof (float)) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
        "%s holds %" G_GSIZE_FORMAT " bytes, expected %" G_GSIZE_FORMAT
        " (3 x S x S float32 for the model's input size)",
        path, length, n * sizeof (float));
    g_free (contents);
    return FALSE;
  }
  memcpy (dst, contents, length);
  g_free (contents);
  return TRUE;
}

/* A fixed, frame-like input: smooth gradients with some texture, in the
 * [0, 1] range of a real /255 image, the same on every run. */
static void
fill_synthetic (float *dst, int size)
{
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < size; y++)
      for (int x = 0; x < size; x++) {
        double v = 0.5
            + 0.25 * sin ((x + 7 * c) * 0.05) * cos ((y - 5 * c) * 0.03)
            + 0.2 * (((x / 16 + y / 16) & 1) - 0.5);
        dst[((gsize)c * size + y) * size + x] = (float)CLAMP (v, 0.0, 1.0);
      }
}

static int
compare_doubles (const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;

  return (x > y) - (x < y);
}

static double
median_of (double *v, int n)
{
  qsort (v, n, sizeof (double), compare_doubles);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double
peak_rss_mb (void)
{
  struct rusage usage;

  if (getrusage (RUSAGE_SELF, &usage) != 0)
    return 0.0;
  return usage.ru_maxrss / 1024.0; /* kilobytes on Linux */
}

/* Per layer: the mean over the timed runs, the fastest run (what the
 * layer costs when nothing else on the machine interferes: noise only
 * ever adds time), its work and the rate of that fastest run. */
static void
print_layers (YoloseDetector *det, const double *sum_ms, const double *min_ms,
    int iterations)
{
  int n = yolose_detector_get_num_layers (det);
  double total = 0.0, total_min = 0.0;

  for (int i = 0; i < n; i++) {
    total += sum_ms[i];
    total_min += min_ms[i];
  }
  printf ("%5s  %-14s %10s %10s %8s %9s %7s\n", "layer", "type", "mean ms",
      "min ms", "GFLOP", "GFLOP/s", "share");
  for (int i = 0; i < n; i++) {
    double gflop = yolose_detector_get_layer_gflops (det, i);
    printf ("%5d  %-14s %10.3f %10.3f %8.3f %9.1f %6.1f%%\n", i,
        yolose_detector_get_layer_type (det, i), sum_ms[i] / iterations,
        min_ms[i], gflop, min_ms[i] > 0.0 ? gflop / min_ms[i] * 1e3 : 0.0,
        total > 0.0 ? 100.0 * sum_ms[i] / total : 0.0);
  }
  printf ("%5s  %-14s %10.3f %10.3f %8.3f\n", "", "total", total / iterations,
      total_min, yolose_detector_get_gflops (det));
}

/* Adds this run's per-layer times to @sum_ms and keeps the least in
 * @min_ms. */
static void
collect_layers (YoloseDetector *det, double *sum_ms, double *min_ms, int run)
{
  int n = yolose_detector_get_num_layers (det);

  for (int i = 0; i < n; i++) {
    double ms = yolose_detector_get_layer_ms (det, i);
    sum_ms[i] += ms;
    min_ms[i] = run == 0 ? ms : MIN (min_ms[i], ms);
  }
  yolose_detector_reset_profile (det);
}

/* Every run's time in the order they ran: a slow start (cold caches, a
 * clock still ramping up) shows here and not in the median. */
static void
add_times (JsonBuilder *b, const double *times, int n)
{
  json_builder_set_member_name (b, "times_ms");
  json_builder_begin_array (b);
  for (int i = 0; i < n; i++)
    json_builder_add_double_value (b, times[i]);
  json_builder_end_array (b);
}

static void
print_json (YoloseDetector *det, const BenchOptions *opt, const double *times)
{
  JsonBuilder *b = json_builder_new ();
  double gflops = yolose_detector_get_gflops (det);
  int threads = yolose_detector_get_threads (det);
  double *sorted = g_memdup2 (times, opt->iterations * sizeof (double));
  double median_ms = median_of (sorted, opt->iterations);
  double min_ms = sorted[0];

  g_free (sorted);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "median_ms");
  json_builder_add_double_value (b, median_ms);
  json_builder_set_member_name (b, "min_ms");
  json_builder_add_double_value (b, min_ms);
  json_builder_set_member_name (b, "gflops");
  json_builder_add_double_value (b, gflops);
  json_builder_set_member_name (b, "gflop_per_s");
  json_builder_add_double_value (b, gflops / (median_ms / 1000.0));
  json_builder_set_member_name (b, "peak_rss_mb");
  json_builder_add_double_value (b, peak_rss_mb ());
  json_builder_set_member_name (b, "threads");
  json_builder_add_int_value (b,
      threads > 0 ? threads : (gint64)g_get_num_processors ());
  json_builder_set_member_name (b, "kernels");
  json_builder_add_string_value (b, yolose_detector_get_kernels_name (det));
  json_builder_set_member_name (b, "iterations");
  json_builder_add_int_value (b, opt->iterations);
  json_builder_set_member_name (b, "size");
  json_builder_add_int_value (b, yolose_detector_get_input_size (det));
  add_times (b, times, opt->iterations);
  json_builder_end_object (b);
  tool_json_print_line (b);
}

static int
run (const BenchOptions *opt, GError **error)
{
  YoloseConfig config;
  YoloseDetector *det;
  double *times, *layer_sum, *layer_min;
  float *input;
  int size, n_layers;

  yolose_config_init (&config);
  config.model_path = opt->model;
  config.threads = opt->threads;
  config.kernels = opt->kernels;
  if (opt->size > 0)
    config.input_size = opt->size;
  det = yolose_detector_new (&config, error);
  if (det == NULL)
    return 1;

  size = yolose_detector_get_input_size (det);
  input = yolose_detector_get_input (det);
  if (opt->input != NULL) {
    if (!read_input (opt->input, input, (gsize)3 * size * size, error)) {
      yolose_detector_free (det);
      return 1;
    }
  } else {
    fill_synthetic (input, size);
  }

  for (int i = 0; i < opt->warmup; i++)
    yolose_detector_forward (det);
  yolose_detector_set_profiling (det, opt->per_layer);
  yolose_detector_reset_profile (det);

  times = g_new (double, opt->iterations);
  n_layers = yolose_detector_get_num_layers (det);
  layer_sum = g_new0 (double, n_layers);
  layer_min = g_new0 (double, n_layers);
  for (int i = 0; i < opt->iterations; i++) {
    gint64 start = g_get_monotonic_time ();
    yolose_detector_forward (det);
    times[i] = (g_get_monotonic_time () - start) / 1000.0;
    if (opt->per_layer)
      collect_layers (det, layer_sum, layer_min, i);
  }

  if (opt->per_layer)
    print_layers (det, layer_sum, layer_min, opt->iterations);
  g_free (layer_sum);
  g_free (layer_min);
  print_json (det, opt, times);
  g_free (times);
  yolose_detector_free (det);
  return 0;
}

int
main (int argc, char **argv)
{
  BenchOptions opt = { NULL, NULL, 0, 10, 2, NULL, 0, FALSE };
  GError *error = NULL;
  int status;

  /* A refused option still frees what GOption parsed (memcheck). */
  if (!parse_options (argc, argv, &opt, &error))
    status = 2;
  else
    status = run (&opt, &error);
  if (error != NULL) {
    fprintf (stderr, "yolose-bench: %s\n", error->message);
    g_error_free (error);
  }
  g_free (opt.model);
  g_free (opt.input);
  g_free (opt.kernels);
  return status;
}
