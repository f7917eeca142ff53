/* yolose — what the fuzz targets do with one input (see fuzz_entry.h).
 *
 * The checkpoint path first walks the unpickled value graph and converts
 * every tensor it reaches (within a budget), since a hostile file can put
 * tensors where the model builder never looks; then it builds the model the
 * way yolose_detector_new() does, prepares the graph and runs it once. */
#include "fuzz_entry.h"

#include <stdlib.h>

#include "checkpoint.h"
#include "graph.h"
#include "kernels.h"
#include "model_builder.h"
#include "pickle.h"

/* Bounds per input: values visited in the walk, and tensor elements
 * converted by the walk (the real checkpoints hold 2–7 M). */
#define MAX_VISITS 1000000
#define ELEMENT_BUDGET (1 << 18)

/* A refusal must say why: an empty GError is a bug. */
static YoloseFuzzOutcome
refused (YoloseFuzzOutcome outcome, GError *error, char **message)
{
  if (error == NULL || error->message == NULL || error->message[0] == '\0')
    abort ();
  if (message != NULL)
    *message = g_strdup (error->message);
  g_error_free (error);
  return outcome;
}

/* ---- the value graph -------------------------------------------------- */

/* Pushes the values @v refers to onto @todo. */
static void
push_children (GPtrArray *todo, const YolosePyValue *v)
{
  switch (v->kind) {
    case YOLOSE_PY_LIST:
    case YOLOSE_PY_TUPLE:
      for (gsize i = 0; i < v->v.seq.len; i++)
        g_ptr_array_add (todo, v->v.seq.items[i]);
      break;
    case YOLOSE_PY_DICT:
      for (gsize i = 0; i < v->v.dict.len; i++) {
        g_ptr_array_add (todo, v->v.dict.keys[i]);
        g_ptr_array_add (todo, v->v.dict.values[i]);
      }
      break;
    case YOLOSE_PY_OBJECT:
      g_ptr_array_add (todo, v->v.object.args);
      g_ptr_array_add (todo, v->v.object.state);
      break;
    case YOLOSE_PY_TENSOR:
      g_ptr_array_add (todo, v->v.tensor.storage);
      break;
    default:
      break;
  }
}

typedef void (*VisitFunc) (const YolosePyValue *v, gpointer user_data);

/* Depth-first over the value graph, each value once (pickles may hold
 * cycles), without recursion (they may nest deeply). */
static void
walk_values (const YolosePyValue *root, VisitFunc visit, gpointer user_data)
{
  GPtrArray *todo = g_ptr_array_new ();
  GHashTable *seen = g_hash_table_new (NULL, NULL);
  guint visits = 0;

  g_ptr_array_add (todo, (gpointer)root);
  while (todo->len > 0 && visits++ < MAX_VISITS) {
    const YolosePyValue *v = g_ptr_array_steal_index_fast (todo, todo->len - 1);

    if (v == NULL || !g_hash_table_add (seen, (gpointer)v))
      continue;
    visit (v, user_data);
    push_children (todo, v);
  }
  g_hash_table_destroy (seen);
  g_ptr_array_free (todo, TRUE);
}

/* Touches what a consumer would read of @v. */
static void
inspect_value (const YolosePyValue *v, gpointer user_data)
{
  gint64 integer;
  double number;

  (void)yolose_py_kind_name (v->kind);
  (void)yolose_py_get_int (v, &integer);
  (void)yolose_py_get_number (v, &number);
  (void)yolose_py_get_string (v);
  (void)yolose_py_dict_get (v, "model");
  (void)yolose_py_attr (v, "weight");
  (void)yolose_py_is_class (v, NULL, "Model");
  for (gsize i = 0; i < yolose_py_len (v); i++)
    (void)yolose_py_item (v, i);
  if (v->kind == YOLOSE_PY_STORAGE)
    (void)yolose_dtype_name (v->v.storage.dtype);
}

typedef struct {
  YoloseCheckpoint *ckpt;
  gint64 budget; /* tensor elements left to convert */
} TensorWalk;

static void
read_tensor (const YolosePyValue *tensor, gpointer user_data)
{
  TensorWalk *walk = user_data;
  gint64 numel;
  GError *error = NULL;
  float *values;

  if (tensor->kind != YOLOSE_PY_TENSOR)
    return;
  /* Invalid shapes (numel -1) fail before any allocation: always try. */
  numel = yolose_tensor_numel (tensor);
  if (numel > walk->budget)
    return;
  walk->budget -= MAX (numel, 1);
  values = yolose_checkpoint_tensor_f32 (walk->ckpt, tensor, &error);
  if (values == NULL) {
    (void)refused (YOLOSE_FUZZ_REFUSED_ARCHIVE, error, NULL);
    return;
  }
  {
    volatile float sink = 0.0f;
    for (gint64 i = 0; i < numel; i++)
      sink += values[i]; /* ASan checks every element was allocated */
    (void)sink;
  }
  g_free (values);
}

/* ---- the model -------------------------------------------------------- */

static void
fill_input (YoloseGraph *graph)
{
  YoloseValue *input = yolose_graph_value (graph, graph->input);
  gsize n = (gsize)input->c * input->h * input->w;

  for (gsize i = 0; i < n; i++)
    input->data[i] = (float)(i % 255) / 255.0f;
}

/* Builds, prepares and runs the model, as yolose_detector_new() and one
 * frame would. */
static YoloseFuzzOutcome
build_and_run (YoloseCheckpoint *ckpt, char **message)
{
  const YoloseKernels *kernels = yolose_kernels_select (NULL, NULL);
  YoloseModelInfo info;
  YoloseGraph *graph;
  GError *error = NULL;

  graph = yolose_model_build (ckpt, YOLOSE_FUZZ_INPUT_SIZE, kernels, &info,
      &error);
  if (graph == NULL) {
    yolose_model_info_clear (&info);
    return refused (YOLOSE_FUZZ_REFUSED_MODEL, error, message);
  }
  if (!yolose_graph_prepare (graph, 1, &error)) {
    yolose_graph_free (graph);
    yolose_model_info_clear (&info);
    return refused (YOLOSE_FUZZ_REFUSED_MODEL, error, message);
  }
  fill_input (graph);
  yolose_graph_forward (graph, 1);
  /* ASan checks the output rows the graph promised exist. */
  for (gsize i = 0; i < graph->output_rows * (5 + graph->num_classes); i++)
    (void)*(volatile float *)&graph->output[i];
  yolose_graph_free (graph);
  yolose_model_info_clear (&info);
  return YOLOSE_FUZZ_RAN;
}

YoloseFuzzOutcome
yolose_fuzz_checkpoint (const guint8 *data, gsize size, char **message)
{
  GError *error = NULL;
  YoloseCheckpoint *ckpt;
  TensorWalk walk;
  YoloseFuzzOutcome outcome;

  if (message != NULL)
    *message = NULL;
  ckpt = yolose_checkpoint_open_bytes (data, size, &error);
  if (ckpt == NULL)
    return refused (YOLOSE_FUZZ_REFUSED_ARCHIVE, error, message);
  walk.ckpt = ckpt;
  walk.budget = ELEMENT_BUDGET;
  walk_values (yolose_checkpoint_root (ckpt), inspect_value, NULL);
  walk_values (yolose_checkpoint_root (ckpt), read_tensor, &walk);
  outcome = build_and_run (ckpt, message);
  yolose_checkpoint_free (ckpt);
  return outcome;
}

YoloseFuzzOutcome
yolose_fuzz_pickle (const guint8 *data, gsize size, char **message)
{
  GError *error = NULL;
  YolosePickle *pickle;

  if (message != NULL)
    *message = NULL;
  pickle = yolose_pickle_parse (data, size, &error);
  if (pickle == NULL)
    return refused (YOLOSE_FUZZ_REFUSED_ARCHIVE, error, message);
  walk_values (yolose_pickle_root (pickle), inspect_value, NULL);
  yolose_pickle_free (pickle);
  return YOLOSE_FUZZ_RAN;
}
