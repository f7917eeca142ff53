/* yolose — the detector: checkpoint + graph + pre- and post-processing. */
#include "yolose.h"

#include <omp.h>
#include <string.h>

#include "checkpoint.h"
#include "model_builder.h"

struct _YoloseDetector {
  YoloseGraph *graph;
  YoloseModelInfo info;
  YolosePostprocess *post;
  int threads;         /* as configured: 0 = all cores */
  int max_threads;     /* the scratch was sized for at most this many */
  YoloseLetterbox box; /* geometry of the last frame size */
};

G_DEFINE_QUARK (yolose - error - quark, yolose_error)

void
yolose_config_init (YoloseConfig *config)
{
  memset (config, 0, sizeof *config);
  config->input_size = YOLOSE_DEFAULT_INPUT_SIZE;
}

static gboolean
config_valid (const YoloseConfig *config, GError **error)
{
  if (config->model_path == NULL || *config->model_path == '\0') {
    g_set_error_literal (error, YOLOSE_ERROR, YOLOSE_ERROR_CONFIG,
        "no model file given");
    return FALSE;
  }
  if (config->input_size < 32 || config->input_size > 8192
      || config->input_size % 32 != 0) {
    g_set_error (error, YOLOSE_ERROR, YOLOSE_ERROR_CONFIG,
        "input size %d is not a multiple of 32 between 32 and 8192",
        config->input_size);
    return FALSE;
  }
  if (config->threads < 0) {
    g_set_error (error, YOLOSE_ERROR, YOLOSE_ERROR_CONFIG,
        "thread count %d is negative", config->threads);
    return FALSE;
  }
  return TRUE;
}

static int
effective_threads (int threads)
{
  return threads > 0 ? threads : MAX (omp_get_num_procs (), 1);
}

static int
run_threads (const YoloseDetector *det)
{
  return MIN (effective_threads (det->threads), det->max_threads);
}

/* Errors from the loader name the file once, at this level. */
static void
prefix_with_path (GError **error, const char *path)
{
  if (error && *error && !g_str_has_prefix ((*error)->message, path))
    g_prefix_error (error, "%s: ", path);
}

YoloseDetector *
yolose_detector_new (const YoloseConfig *config, GError **error)
{
  const YoloseKernels *kernels;
  YoloseCheckpoint *ckpt;
  YoloseDetector *det;

  if (!config_valid (config, error))
    return NULL;
  kernels = yolose_kernels_select (config->kernels, error);
  if (kernels == NULL)
    return NULL;
  ckpt = yolose_checkpoint_open (config->model_path, error);
  if (ckpt == NULL) {
    prefix_with_path (error, config->model_path);
    return NULL;
  }
  det = g_new0 (YoloseDetector, 1);
  det->threads = config->threads;
  /* Kernel scratch grows with the thread count, and set_threads may raise
   * it later: size it for every core (or more, when asked), and never run
   * with more threads than that. */
  det->max_threads
      = MAX (effective_threads (config->threads), effective_threads (0));
  det->graph = yolose_model_build (ckpt, config->input_size, kernels,
      &det->info, error);
  /* every weight is copied out at build time: the archive can go */
  yolose_checkpoint_free (ckpt);
  if (det->graph == NULL
      || !yolose_graph_prepare (det->graph, det->max_threads, error)) {
    prefix_with_path (error, config->model_path);
    yolose_detector_free (det);
    return NULL;
  }
  det->post = yolose_postprocess_new (det->graph->output_rows,
      det->graph->num_classes);
  return det;
}

void
yolose_detector_free (YoloseDetector *det)
{
  if (det == NULL)
    return;
  yolose_graph_free (det->graph);
  yolose_model_info_clear (&det->info);
  if (det->post)
    yolose_postprocess_free (det->post);
  g_free (det);
}

int
yolose_detector_get_num_classes (const YoloseDetector *det)
{
  return det->graph->num_classes;
}

const char *
yolose_detector_get_class_name (const YoloseDetector *det, int id)
{
  if (id < 0 || (guint)id >= det->info.class_names->len)
    return NULL;
  return g_ptr_array_index (det->info.class_names, id);
}

int
yolose_detector_get_input_size (const YoloseDetector *det)
{
  return det->graph->size;
}

const char *
yolose_detector_get_kernels_name (const YoloseDetector *det)
{
  return det->graph->kernels->name;
}

void
yolose_detector_set_threads (YoloseDetector *det, int threads)
{
  det->threads = MAX (threads, 0);
}

int
yolose_detector_get_threads (const YoloseDetector *det)
{
  return det->threads;
}

float *
yolose_detector_get_input (YoloseDetector *det)
{
  return yolose_graph_value (det->graph, det->graph->input)->data;
}

gsize
yolose_detector_get_output_rows (const YoloseDetector *det)
{
  return det->graph->output_rows;
}

int
yolose_detector_get_output_cols (const YoloseDetector *det)
{
  return 5 + det->graph->num_classes;
}

const float *
yolose_detector_forward (YoloseDetector *det)
{
  yolose_graph_forward (det->graph, run_threads (det));
  return det->graph->output;
}

gsize
yolose_detector_detect (YoloseDetector *det, const YoloseImage *image,
    const YoloseNmsParams *params, YoloseDetection *out, gsize out_cap)
{
  int threads = run_threads (det);

  if (image->width < 1 || image->height < 1)
    return 0;
  if (det->box.src_w != image->width || det->box.src_h != image->height)
    yolose_letterbox_compute (image->width, image->height, det->graph->size,
        &det->box);
  yolose_letterbox_fill (image, &det->box, yolose_detector_get_input (det),
      threads);
  yolose_graph_forward (det->graph, threads);
  return yolose_postprocess_run (det->post, det->graph->output, params,
      &det->box, out, out_cap);
}

gint64
yolose_detector_get_num_parameters (const YoloseDetector *det)
{
  return det->info.params;
}

double
yolose_detector_get_gflops (const YoloseDetector *det)
{
  return det->info.gflops;
}

char *
yolose_detector_describe (const YoloseDetector *det)
{
  GString *s = g_string_new (NULL);
  guint i;

  g_string_append_printf (s, "%4s %18s %3s %10s  %-12s %s\n", "", "from", "n",
      "params", "module", "arguments");
  for (i = 0; i < det->info.layers->len; i++) {
    YoloseLayerInfo *li = &g_array_index (det->info.layers, YoloseLayerInfo, i);
    g_string_append_printf (s,
        "%4u %18s %3d %10" G_GINT64_FORMAT "  %-12s %s\n", i, li->from,
        li->repeats, li->params, li->module, li->args);
  }
  g_string_append_printf (s,
      "%s: %u layers, %" G_GINT64_FORMAT " parameters, %.1f GFLOPs at %dx%d\n",
      det->info.yaml_file ? det->info.yaml_file : "model",
      det->info.layers->len, det->info.params, det->info.gflops,
      det->graph->size, det->graph->size);
  g_string_append_printf (s, "%d classes:", det->graph->num_classes);
  for (i = 0; i < det->info.class_names->len; i++)
    g_string_append_printf (s, "%s %u=%s", i ? "," : "", i,
        (const char *)g_ptr_array_index (det->info.class_names, i));
  g_string_append_printf (s, "\nkernels: %s\n", det->graph->kernels->name);
  return g_string_free (s, FALSE);
}

void
yolose_detector_set_profiling (YoloseDetector *det, gboolean enable)
{
  det->graph->profiling = enable;
}

int
yolose_detector_get_num_layers (const YoloseDetector *det)
{
  return (int)det->info.layers->len;
}

const char *
yolose_detector_get_layer_type (const YoloseDetector *det, int i)
{
  if (i < 0 || (guint)i >= det->info.layers->len)
    return NULL;
  return g_array_index (det->info.layers, YoloseLayerInfo, i).module;
}

double
yolose_detector_get_layer_ms (const YoloseDetector *det, int i)
{
  if (i < 0 || i >= det->graph->n_layers)
    return 0.0;
  return det->graph->layer_ms[i];
}

double
yolose_detector_get_layer_gflops (const YoloseDetector *det, int i)
{
  if (i < 0 || (guint)i >= det->info.layers->len)
    return 0.0;
  return g_array_index (det->info.layers, YoloseLayerInfo, i).gflops;
}

void
yolose_detector_reset_profile (YoloseDetector *det)
{
  memset (det->graph->layer_ms, 0,
      sizeof (double) * MAX (det->graph->n_layers, 1));
}
