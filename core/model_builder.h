/* yolose — builds the network from an upstream YOLOv5 checkpoint.
 *
 * The architecture comes from the checkpoint's own `yaml` dict, interpreted
 * the way upstream's parse_model does (depth and width multiples, `from`
 * indices, module arguments); the weights come from the pickled modules
 * (model.model.<i>...).  BatchNorm is folded into the convolutions here, in
 * float32 as upstream's fuse() does.  Anything unexpected is refused with an
 * error naming the layer and the cause. */
#ifndef YOLOSE_MODEL_BUILDER_H
#define YOLOSE_MODEL_BUILDER_H

#include <glib.h>
#include "checkpoint.h"
#include "graph.h"

G_BEGIN_DECLS

typedef struct {
  char *module; /* "Conv", "C3", "SElayer", ... */
  char *from;   /* "-1", "[-1, 6]" */
  int repeats;  /* n after depth_multiple */
  gint64 params;
  double gflops; /* at the built input size */
  char *args;    /* the module's arguments after parse */
} YoloseLayerInfo;

typedef struct {
  GPtrArray *class_names; /* char *, nc entries */
  GArray *layers;         /* YoloseLayerInfo */
  gint64 params;
  double gflops;   /* at the built input size */
  char *yaml_file; /* the checkpoint's yaml_file, if any */
} YoloseModelInfo;

void yolose_model_info_clear (YoloseModelInfo *info);

/* Builds the graph for an S x S input (S = @size, a multiple of 32). */
YoloseGraph *yolose_model_build (YoloseCheckpoint *ckpt, int size,
    const YoloseKernels *kernels, YoloseModelInfo *info, GError **error);

G_END_DECLS

#endif
