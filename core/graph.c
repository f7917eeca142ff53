/* yolose — memory planning and the forward pass.
 *
 * Planning happens once, in yolose_graph_prepare:
 *  1. Concat placement: each Concat input that is used by no other Concat
 *     becomes a channel slice of the Concat's value, so its producer writes
 *     in place and the Concat copies nothing.
 *  2. In-place SE: a Squeeze-and-Excitation whose input has no other
 *     consumer rescales that storage instead of a copy.
 *  3. Arena: values that own storage get offsets in one arena by their
 *     lifetimes (first producer to last consumer), so buffers whose lives do
 *     not overlap share memory.
 * The forward pass is then a loop over the operations. */
#include "graph.h"
#include "big_alloc.h"
#include "kernels_pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "yolose.h"

#define ARENA_ALIGN_FLOATS 16 /* 64 bytes: a cache line, an AVX-512 load */

YoloseGraph *
yolose_graph_new (int size, const YoloseKernels *kernels)
{
  YoloseGraph *graph = g_new0 (YoloseGraph, 1);

  graph->values = g_array_new (FALSE, TRUE, sizeof (YoloseValue));
  graph->ops = g_array_new (FALSE, TRUE, sizeof (YoloseOp));
  graph->size = size;
  graph->kernels = kernels;
  graph->input = -1;
  return graph;
}

static void
op_clear (const YoloseKernels *kernels, YoloseOp *op)
{
  switch (op->kind) {
    case YOLOSE_OP_CONV:
      if (op->u.conv.packed)
        kernels->conv_packed_free (op->u.conv.packed);
      g_free (op->u.conv.weight);
      g_free (op->u.conv.bias);
      break;
    case YOLOSE_OP_SQUEEZE_EXCITE:
      g_free (op->u.se.w1);
      g_free (op->u.se.w2);
      break;
    case YOLOSE_OP_CONCAT:
      g_free (op->u.concat.inputs);
      break;
    default:
      break;
  }
}

void
yolose_graph_free (YoloseGraph *graph)
{
  guint i;

  if (graph == NULL)
    return;
  for (i = 0; i < graph->ops->len; i++)
    op_clear (graph->kernels, &g_array_index (graph->ops, YoloseOp, i));
  g_array_free (graph->ops, TRUE);
  if (graph->input >= 0)
    free (yolose_graph_value (graph, graph->input)->data);
  g_array_free (graph->values, TRUE);
  free (graph->output);
  free (graph->arena);
  free (graph->scratch);
  g_free (graph->layer_ms);
  g_free (graph);
}

int
yolose_graph_add_value (YoloseGraph *graph, int c, int h, int w)
{
  YoloseValue value = { 0 };

  value.c = c;
  value.h = h;
  value.w = w;
  value.parent = -1;
  g_array_append_val (graph->values, value);
  return (int)graph->values->len - 1;
}

static void
count_use (YoloseGraph *graph, int id)
{
  if (id >= 0)
    yolose_graph_value (graph, id)->n_consumers++;
}

int
yolose_graph_add_op (YoloseGraph *graph, const YoloseOp *op)
{
  int i;

  count_use (graph, op->input);
  count_use (graph, op->residual);
  if (op->kind == YOLOSE_OP_CONCAT)
    for (i = 0; i < op->u.concat.n_inputs; i++)
      count_use (graph, op->u.concat.inputs[i]);
  g_array_append_val (graph->ops, *op);
  if (op->layer + 1 > graph->n_layers)
    graph->n_layers = op->layer + 1;
  return (int)graph->ops->len - 1;
}

static YoloseOp *
graph_op (YoloseGraph *graph, guint i)
{
  return &g_array_index (graph->ops, YoloseOp, i);
}

/* Whether conv ops @a and @b are 1x1 convolutions of the same input that
 * one GEMM can run: same activation, no residual, no groups. */
static gboolean
convs_joinable (const YoloseOp *a, const YoloseOp *b)
{
  const YoloseConvDesc *da = &a->u.conv.desc, *db = &b->u.conv.desc;

  return a->kind == YOLOSE_OP_CONV && b->kind == YOLOSE_OP_CONV
      && a->input == b->input && a->residual < 0 && b->residual < 0
      && da->kernel == 1 && db->kernel == 1 && da->stride == 1
      && db->stride == 1 && da->pad == 0 && db->pad == 0 && da->groups == 1
      && db->groups == 1 && da->act == db->act;
}

/* [rows of @a ; rows of @b] for @n_a and @n_b rows of @row floats. */
static float *
stack_rows (const float *a, int n_a, const float *b, int n_b, gsize row)
{
  float *out = g_new (float, (gsize)(n_a + n_b) * row);

  memcpy (out, a, (gsize)n_a * row * sizeof (float));
  memcpy (out + (gsize)n_a * row, b, (gsize)n_b * row * sizeof (float));
  return out;
}

int
yolose_graph_join_last_convs (YoloseGraph *graph, gboolean last_on_top)
{
  guint n = graph->ops->len;
  YoloseOp *lower, *upper, *first, *second;
  YoloseConvDesc *d;
  int c_upper, c_lower, joined, in;
  gsize row;
  float *weight, *bias;

  if (n < 2
      || !convs_joinable (graph_op (graph, n - 2), graph_op (graph, n - 1)))
    return -1;
  first = graph_op (graph, n - 2);
  second = graph_op (graph, n - 1);
  if (yolose_graph_value (graph, first->output)->parent >= 0
      || yolose_graph_value (graph, second->output)->parent >= 0)
    return -1; /* already placed in another value */
  upper = last_on_top ? second : first;
  lower = last_on_top ? first : second;
  c_upper = upper->u.conv.desc.out_channels;
  c_lower = lower->u.conv.desc.out_channels;
  row = (gsize)first->u.conv.desc.in_channels;
  weight = stack_rows (upper->u.conv.weight, c_upper, lower->u.conv.weight,
      c_lower, row);
  bias = stack_rows (upper->u.conv.bias, c_upper, lower->u.conv.bias, c_lower,
      1);

  in = first->input;
  /* (adding a value may move the values, not the ops) */
  joined = yolose_graph_add_value (graph, c_upper + c_lower,
      yolose_graph_value (graph, upper->output)->h,
      yolose_graph_value (graph, upper->output)->w);
  /* the old outputs become the joined output's slices */
  yolose_graph_value (graph, upper->output)->parent = joined;
  yolose_graph_value (graph, upper->output)->channel_offset = 0;
  yolose_graph_value (graph, lower->output)->parent = joined;
  yolose_graph_value (graph, lower->output)->channel_offset = c_upper;

  op_clear (graph->kernels, second);
  g_array_set_size (graph->ops, n - 1);
  yolose_graph_value (graph, in)->n_consumers--;
  first = graph_op (graph, n - 2);
  op_clear (graph->kernels, first);
  first->output = joined;
  first->u.conv.weight = weight;
  first->u.conv.bias = bias;
  d = &first->u.conv.desc;
  d->out_channels = c_upper + c_lower;
  d->weight = weight;
  d->bias = bias;
  return joined;
}

static gsize
value_plane (const YoloseValue *value)
{
  return (gsize)value->h * value->w;
}

static gsize
value_floats (const YoloseValue *value)
{
  return (gsize)value->c * value_plane (value);
}

static int
value_root (YoloseGraph *graph, int id)
{
  while (yolose_graph_value (graph, id)->parent >= 0)
    id = yolose_graph_value (graph, id)->parent;
  return id;
}

/* A value may become a slice of a Concat when nothing else placed it and it
 * is not the network input (which the caller fills and keeps). */
static void
place_concat_inputs (YoloseGraph *graph, YoloseOp *op)
{
  int i, offset = 0;

  for (i = 0; i < op->u.concat.n_inputs; i++) {
    int id = op->u.concat.inputs[i];
    YoloseValue *value = yolose_graph_value (graph, id);

    if (id != graph->input && value->parent < 0
        && value_root (graph, op->output) != id) {
      value->parent = op->output;
      value->channel_offset = offset;
    }
    offset += value->c;
  }
}

static gboolean
value_has_children (YoloseGraph *graph, int id)
{
  guint i;

  for (i = 0; i < graph->values->len; i++)
    if (yolose_graph_value (graph, (int)i)->parent == id)
      return TRUE;
  return FALSE;
}

static void
place_in_place_se (YoloseGraph *graph, YoloseOp *op)
{
  YoloseValue *in = yolose_graph_value (graph, op->input);
  YoloseValue *out = yolose_graph_value (graph, op->output);

  if (op->input == graph->input || in->n_consumers != 1 || out->parent >= 0
      || value_has_children (graph, op->input))
    return;
  out->parent = op->input;
  out->channel_offset = 0;
}

typedef struct {
  int root;
  int first, last; /* op indices */
  gsize floats;
  gsize offset;
} Lifetime;

static void
extend_lifetime (Lifetime *lives, YoloseGraph *graph, int id, int op_index)
{
  Lifetime *life;

  if (id < 0 || id == graph->input)
    return;
  life = &lives[value_root (graph, id)];
  if (life->first < 0 || op_index < life->first)
    life->first = op_index;
  if (op_index > life->last)
    life->last = op_index;
}

static gint
compare_by_size_desc (gconstpointer a, gconstpointer b)
{
  const Lifetime *la = *(const Lifetime *const *)a;
  const Lifetime *lb = *(const Lifetime *const *)b;

  if (la->floats != lb->floats)
    return la->floats > lb->floats ? -1 : 1;
  return la->root - lb->root;
}

static gboolean
lives_overlap (const Lifetime *a, const Lifetime *b)
{
  return a->first <= b->last && b->first <= a->last;
}

/* Greedy first fit, largest first: each buffer takes the lowest offset that
 * no buffer alive at the same time occupies. */
static gsize
assign_offsets (Lifetime **sorted, guint n)
{
  gsize total = 0;
  guint i, j;

  for (i = 0; i < n; i++) {
    Lifetime *life = sorted[i];
    gsize offset = 0;
    gboolean moved = TRUE;

    while (moved) {
      moved = FALSE;
      for (j = 0; j < i; j++) {
        Lifetime *other = sorted[j];
        if (lives_overlap (life, other)
            && offset < other->offset + other->floats
            && other->offset < offset + life->floats) {
          offset = other->offset + other->floats;
          moved = TRUE;
        }
      }
    }
    life->offset = offset;
    total = MAX (total, offset + life->floats);
  }
  return total;
}

static gsize
round_up_floats (gsize n)
{
  return (n + ARENA_ALIGN_FLOATS - 1) / ARENA_ALIGN_FLOATS * ARENA_ALIGN_FLOATS;
}

/* Zeroed memory for the arena, the scratch, the input and the output, on
 * huge pages when large: a 1x1 convolution reads a row of each of up to
 * 128 input planes per microkernel call, one 4 KiB page apiece, more than
 * the first-level TLB holds.  Freed with free (). */
static void *
alloc_activations (gsize bytes)
{
  void *mem = yolose_big_alloc (bytes, 64);

  if (mem != NULL)
    memset (mem, 0, MAX (bytes, 64));
  return mem;
}

static gboolean
plan_arena (YoloseGraph *graph, GError **error)
{
  guint n = graph->values->len, i;
  Lifetime *lives = g_new0 (Lifetime, n);
  GPtrArray *owners = g_ptr_array_new ();
  gsize total;

  for (i = 0; i < n; i++) {
    lives[i].root = (int)i;
    lives[i].first = -1;
    lives[i].last = -1;
  }
  for (i = 0; i < graph->ops->len; i++) {
    YoloseOp *op = graph_op (graph, i);
    int k;

    extend_lifetime (lives, graph, op->input, (int)i);
    extend_lifetime (lives, graph, op->residual, (int)i);
    extend_lifetime (lives, graph, op->output, (int)i);
    if (op->kind == YOLOSE_OP_CONCAT)
      for (k = 0; k < op->u.concat.n_inputs; k++)
        extend_lifetime (lives, graph, op->u.concat.inputs[k], (int)i);
  }
  for (i = 0; i < n; i++) {
    YoloseValue *value = yolose_graph_value (graph, (int)i);
    if (value->parent < 0 && (int)i != graph->input && lives[i].first >= 0) {
      lives[i].floats = round_up_floats (value_floats (value));
      g_ptr_array_add (owners, &lives[i]);
    }
  }
  g_ptr_array_sort (owners, compare_by_size_desc);
  total = assign_offsets ((Lifetime **)owners->pdata, owners->len);

  graph->arena = alloc_activations (total * sizeof (float));
  if (graph->arena == NULL) {
    g_set_error (error, YOLOSE_ERROR, YOLOSE_ERROR_CONFIG,
        "cannot allocate %" G_GSIZE_FORMAT " MiB of activations",
        total * sizeof (float) >> 20);
  } else {
    for (i = 0; i < owners->len; i++) {
      Lifetime *life = owners->pdata[i];
      yolose_graph_value (graph, life->root)->data
          = graph->arena + life->offset;
    }
  }
  g_ptr_array_free (owners, TRUE);
  g_free (lives);
  return graph->arena != NULL;
}

/* Children point into their parent's storage; parents come first only by
 * accident, so resolve recursively. */
static float *
resolve_data (YoloseGraph *graph, int id)
{
  YoloseValue *value = yolose_graph_value (graph, id);

  if (value->data == NULL && value->parent >= 0)
    value->data = resolve_data (graph, value->parent)
        + (gsize)value->channel_offset * value_plane (value);
  return value->data;
}

static gboolean
prepare_kernels (YoloseGraph *graph, int threads, GError **error)
{
  const YoloseKernels *k = graph->kernels;
  gsize scratch = 0;
  guint i;

  for (i = 0; i < graph->ops->len; i++) {
    YoloseOp *op = graph_op (graph, i);
    YoloseValue *in;

    if (op->kind == YOLOSE_OP_CONV) {
      in = yolose_graph_value (graph, op->input);
      op->u.conv.packed = k->conv_pack (&op->u.conv.desc);
      if (op->u.conv.packed == NULL) {
        g_set_error (error, YOLOSE_ERROR, YOLOSE_ERROR_CONFIG,
            "out of memory packing the weights of layer %d", op->layer);
        return FALSE;
      }
      scratch = MAX (scratch,
          k->conv_scratch_size (&op->u.conv.desc, in->h, in->w, threads));
    } else if (op->kind == YOLOSE_OP_SQUEEZE_EXCITE) {
      in = yolose_graph_value (graph, op->input);
      scratch
          = MAX (scratch, (gsize)(in->c + op->u.se.hidden) * sizeof (float));
    }
  }
  graph->scratch_bytes = scratch;
  graph->scratch = alloc_activations (scratch);
  if (graph->scratch == NULL) {
    g_set_error (error, YOLOSE_ERROR, YOLOSE_ERROR_CONFIG,
        "cannot allocate %" G_GSIZE_FORMAT " bytes of scratch", scratch);
    return FALSE;
  }
  return TRUE;
}

gboolean
yolose_graph_prepare (YoloseGraph *graph, int threads, GError **error)
{
  YoloseValue *input = yolose_graph_value (graph, graph->input);
  gsize no = 5 + (gsize)graph->num_classes;
  guint i;

  for (i = 0; i < graph->ops->len; i++)
    if (graph_op (graph, i)->kind == YOLOSE_OP_CONCAT)
      place_concat_inputs (graph, graph_op (graph, i));
  for (i = 0; i < graph->ops->len; i++)
    if (graph_op (graph, i)->kind == YOLOSE_OP_SQUEEZE_EXCITE)
      place_in_place_se (graph, graph_op (graph, i));

  /* Huge pages for these too: the stem reads the input's three planes
   * (4.7 MiB at 640) and Detect writes 8.4 MiB of rows for a COCO model,
   * each page once per frame. */
  input->data = alloc_activations (value_floats (input) * sizeof (float));
  if (graph->output_rows <= G_MAXSIZE / sizeof (float) / no)
    graph->output
        = alloc_activations (graph->output_rows * no * sizeof (float));
  graph->layer_ms = g_new0 (double, MAX (graph->n_layers, 1));
  if (input->data == NULL || graph->output == NULL) {
    g_set_error (error, YOLOSE_ERROR, YOLOSE_ERROR_CONFIG,
        "cannot allocate the network's input and output");
    return FALSE;
  }
  if (!plan_arena (graph, error))
    return FALSE;
  for (i = 0; i < graph->values->len; i++)
    resolve_data (graph, (int)i);
  return prepare_kernels (graph, threads, error);
}

static YoloseTensor
tensor_of (YoloseGraph *graph, int id)
{
  YoloseValue *value = yolose_graph_value (graph, id);
  YoloseTensor t = { value->data, value->c, value->h, value->w };

  return t;
}

static void
run_concat (YoloseGraph *graph, const YoloseOp *op)
{
  YoloseValue *out = yolose_graph_value (graph, op->output);
  float *dst = out->data;
  int i;

  for (i = 0; i < op->u.concat.n_inputs; i++) {
    YoloseValue *in = yolose_graph_value (graph, op->u.concat.inputs[i]);
    gsize n = value_floats (in);

    if (in->data != dst)
      memcpy (dst, in->data, n * sizeof (float));
    dst += n;
  }
}

typedef struct {
  const YoloseValue *in;
  const float *src; /* this anchor's no planes */
  float *rows;      /* this anchor's first output row */
  int no;
  float stride, aw, ah;
} DecodeJob;

/* One row of the grid: gathers each cell's no values (one per plane)
 * into its output row and decodes the box. */
static void
decode_row (void *data, int y, int worker)
{
  const DecodeJob *job = data;
  int w = job->in->w, no = job->no;
  gsize plane = (gsize)job->in->h * w;

  (void)worker;
  for (int x = 0; x < w; x++) {
    gsize p = (gsize)y * w + x;
    float *row = job->rows + p * no;
    for (int k = 0; k < no; k++)
      row[k] = job->src[(gsize)k * plane + p];
    row[0] = (row[0] * 2.0f - 0.5f + (float)x) * job->stride;
    row[1] = (row[1] * 2.0f - 0.5f + (float)y) * job->stride;
    row[2] = (row[2] * 2.0f) * (row[2] * 2.0f) * job->aw;
    row[3] = (row[3] * 2.0f) * (row[3] * 2.0f) * job->ah;
  }
}

/* Upstream's Detect (v6): y = sigmoid(conv); xy = (2 y - 0.5 + grid) s;
 * wh = (2 y)^2 anchor; rows ordered anchor, y, x; columns cx cy w h obj cls.
 * The sigmoid is the conv's activation: in its epilogue it costs no pass
 * over the 255 x 8400 values of a COCO model.  The rows go to the kernels'
 * pool rather than an OpenMP region: a region's threads spin after it ends
 * and took a core from the next frame's first convolutions (the stem ran
 * at half speed on a loaded machine). */
static void
run_detect (YoloseGraph *graph, const YoloseOp *op, int threads)
{
  YoloseValue *in = yolose_graph_value (graph, op->input);
  int no = 5 + graph->num_classes, na = graph->num_anchors;
  gsize plane = value_plane (in);

  for (int a = 0; a < na; a++) {
    DecodeJob job = { in, in->data + (gsize)a * no * plane,
      graph->output + (op->u.detect.first_row + a * plane) * no, no,
      op->u.detect.stride, op->u.detect.anchors[2 * a],
      op->u.detect.anchors[2 * a + 1] };
    yolose_pool_run (threads, in->h, decode_row, &job);
  }
}

static void
run_op (YoloseGraph *graph, const YoloseOp *op, int threads)
{
  const YoloseKernels *k = graph->kernels;
  YoloseTensor in, out, res;

  switch (op->kind) {
    case YOLOSE_OP_CONV:
      in = tensor_of (graph, op->input);
      out = tensor_of (graph, op->output);
      if (op->residual >= 0)
        res = tensor_of (graph, op->residual);
      k->conv2d (&op->u.conv.desc, op->u.conv.packed, &in,
          op->residual >= 0 ? &res : NULL, &out, graph->scratch, threads);
      break;
    case YOLOSE_OP_MAXPOOL:
      in = tensor_of (graph, op->input);
      out = tensor_of (graph, op->output);
      k->maxpool2d (&in, &out, op->u.pool.kernel, op->u.pool.stride,
          op->u.pool.pad, threads);
      break;
    case YOLOSE_OP_UPSAMPLE:
      in = tensor_of (graph, op->input);
      out = tensor_of (graph, op->output);
      k->upsample_nearest (&in, &out, op->u.upsample.scale, threads);
      break;
    case YOLOSE_OP_SQUEEZE_EXCITE:
      in = tensor_of (graph, op->input);
      out = tensor_of (graph, op->output);
      if (out.data != in.data)
        memcpy (out.data, in.data,
            value_floats (yolose_graph_value (graph, op->input))
                * sizeof (float));
      k->squeeze_excite (&out, op->u.se.w1, op->u.se.w2, op->u.se.hidden,
          graph->scratch, threads);
      break;
    case YOLOSE_OP_CONCAT:
      run_concat (graph, op);
      break;
    case YOLOSE_OP_DETECT:
      run_detect (graph, op, threads);
      break;
  }
}

void
yolose_graph_forward (YoloseGraph *graph, int threads)
{
  guint i;

  for (i = 0; i < graph->ops->len; i++) {
    const YoloseOp *op = graph_op (graph, i);
    gint64 start = graph->profiling ? g_get_monotonic_time () : 0;

    run_op (graph, op, threads);
    if (graph->profiling)
      graph->layer_ms[op->layer] += (g_get_monotonic_time () - start) / 1e3;
  }
  /* The frame is done: the next step is a frame away, so the pool's
   * workers should not spin for it. */
  yolose_pool_rest ();
}
