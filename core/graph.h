/* yolose — the network as a flat list of operations over planned tensors.
 *
 * model_builder.c turns a checkpoint into a YoloseGraph; graph.c plans the
 * memory and runs it.  Values are NCHW tensors; a value may live inside a
 * channel slice of a Concat's value, which is how Concat costs nothing: its
 * producers write straight into their slice.  Every operation goes through
 * the YoloseKernels table, so the graph never knows which implementation
 * runs. */
#ifndef YOLOSE_GRAPH_H
#define YOLOSE_GRAPH_H

#include <glib.h>
#include "kernels.h"

G_BEGIN_DECLS

typedef enum {
  YOLOSE_OP_CONV,
  YOLOSE_OP_MAXPOOL,
  YOLOSE_OP_UPSAMPLE,
  YOLOSE_OP_SQUEEZE_EXCITE, /* in place on its input's storage */
  YOLOSE_OP_CONCAT,         /* copies only inputs not already in place */
  YOLOSE_OP_DETECT,         /* one level of Detect's decode */
} YoloseOpKind;

typedef struct {
  YoloseOpKind kind;
  int layer; /* yaml row it belongs to (profiling) */
  int input; /* value ids; -1 when unused */
  int residual;
  int output;
  union {
    struct {
      YoloseConvDesc desc; /* weight/bias point at the owned copies */
      float *weight, *bias;
      void *packed;
    } conv;
    struct {
      int kernel, stride, pad;
    } pool;
    struct {
      int scale;
    } upsample;
    struct {
      float *w1, *w2;
      int hidden;
    } se;
    struct {
      int *inputs;
      int n_inputs;
    } concat;
    struct {
      int level;
      gsize first_row; /* where this level starts in the output */
      float stride;
      float anchors[2 * 16]; /* na x (w, h), in input pixels */
    } detect;
  } u;
} YoloseOp;

typedef struct {
  int c, h, w;
  int parent;         /* value whose slice this is, or -1 */
  int channel_offset; /* within parent */
  int n_consumers;
  float *data; /* set by yolose_graph_prepare */
} YoloseValue;

typedef struct {
  GArray *values; /* YoloseValue */
  GArray *ops;    /* YoloseOp */
  int input;      /* the 3 x S x S input value */
  int size;       /* S */
  int num_classes, num_anchors;
  gsize output_rows;
  float *output; /* rows x (5 + nc) */
  const YoloseKernels *kernels;
  float *arena; /* all values that own storage */
  void *scratch;
  gsize scratch_bytes;
  int n_layers;
  double *layer_ms; /* profiling, n_layers entries */
  gboolean profiling;
} YoloseGraph;

YoloseGraph *yolose_graph_new (int size, const YoloseKernels *kernels);
void yolose_graph_free (YoloseGraph *graph);

int yolose_graph_add_value (YoloseGraph *graph, int c, int h, int w);
/* Appends @op (a copy) and counts its uses; returns its index. */
int yolose_graph_add_op (YoloseGraph *graph, const YoloseOp *op);
static inline YoloseValue *
yolose_graph_value (YoloseGraph *graph, int id)
{
  return &g_array_index (graph->values, YoloseValue, id);
}

/* When the last two operations are 1x1 convolutions of the same input
 * with the same activation, runs them as one: its output channels are the
 * last op's then the one before's (@last_on_top) or the other way round,
 * in a new value whose slices the two old outputs become.  The input is
 * read once and the GEMM has more rows.  Returns the new value, or -1
 * when the two cannot be joined (nothing changes). */
int yolose_graph_join_last_convs (YoloseGraph *graph, gboolean last_on_top);

/* Places values in concat slices, packs weights, allocates every buffer and
 * the scratch once.  After this, forward allocates nothing. */
gboolean yolose_graph_prepare (YoloseGraph *graph, int threads, GError **error);
void yolose_graph_forward (YoloseGraph *graph, int threads);

G_END_DECLS

#endif
