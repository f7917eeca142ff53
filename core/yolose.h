/* yolose — the detector library's public API.
 *
 * A YoloseDetector loads an upstream YOLOv5 (+SE) training checkpoint
 * (.pt) directly, builds the network from the checkpoint's own yaml, and
 * runs it on the CPU.  It never aborts or exits its host: every failure is
 * reported through a GError whose message names the cause.
 *
 *   YoloseConfig config;
 *   yolose_config_init (&config);
 *   config.model_path = "best.pt";
 *   YoloseDetector *det = yolose_detector_new (&config, &error);
 *   ...
 *   n = yolose_detector_detect (det, &image, &nms, dets, G_N_ELEMENTS (dets));
 *
 * One detector must not be used from two threads at once. */
#ifndef YOLOSE_H
#define YOLOSE_H

#include <glib.h>
#include "image.h"
#include "letterbox.h"
#include "postprocess.h"

G_BEGIN_DECLS

#define YOLOSE_ERROR (yolose_error_quark ())
GQuark yolose_error_quark (void);

typedef enum {
  YOLOSE_ERROR_MODEL,       /* the checkpoint's content is unusable */
  YOLOSE_ERROR_UNSUPPORTED, /* a module or option yolose cannot run */
  YOLOSE_ERROR_CONFIG,      /* a bad argument */
} YoloseErrorCode;

#define YOLOSE_DEFAULT_INPUT_SIZE 640

typedef struct {
  const char *model_path;
  int input_size;      /* S, a multiple of 32; default 640 */
  int threads;         /* 0 = all cores */
  const char *kernels; /* NULL/"auto", "generic", "avx2" */
} YoloseConfig;

void yolose_config_init (YoloseConfig *config);

typedef struct _YoloseDetector YoloseDetector;

YoloseDetector *yolose_detector_new (const YoloseConfig *config,
    GError **error);
void yolose_detector_free (YoloseDetector *det);

int yolose_detector_get_num_classes (const YoloseDetector *det);
/* The checkpoint's name for class @id ("person"), or NULL if out of range. */
const char *yolose_detector_get_class_name (const YoloseDetector *det, int id);
int yolose_detector_get_input_size (const YoloseDetector *det);
const char *yolose_detector_get_kernels_name (const YoloseDetector *det);
/* 0 = all cores. Takes effect on the next run. */
void yolose_detector_set_threads (YoloseDetector *det, int threads);
int yolose_detector_get_threads (const YoloseDetector *det);

/* Raw network.  The input is 1 x 3 x S x S float32 (RGB, / 255) in the
 * detector's own buffer; the output is rows x (5 + nc) float32 laid out
 * exactly as upstream's inference output. */
float *yolose_detector_get_input (YoloseDetector *det);
gsize yolose_detector_get_output_rows (const YoloseDetector *det);
int yolose_detector_get_output_cols (const YoloseDetector *det);
const float *yolose_detector_forward (YoloseDetector *det);

/* Whole pipeline on one frame: letterbox, network, NMS, back to frame
 * pixels.  Returns the number of detections written to @out. No allocation
 * happens here after the first call for a given frame size. */
gsize yolose_detector_detect (YoloseDetector *det, const YoloseImage *image,
    const YoloseNmsParams *params, YoloseDetection *out, gsize out_cap);

/* Architecture summary (layers, parameters, GFLOPs at S, classes), one
 * line per layer, for `yolose-detect --info`. */
char *yolose_detector_describe (const YoloseDetector *det);
gint64 yolose_detector_get_num_parameters (const YoloseDetector *det);
double yolose_detector_get_gflops (const YoloseDetector *det);

/* Per-layer timing for yolose-bench: when enabled, each forward records the
 * wall time of every top-level layer (the yaml's rows). */
void yolose_detector_set_profiling (YoloseDetector *det, gboolean enable);
int yolose_detector_get_num_layers (const YoloseDetector *det);
/* Name ("C3", "SElayer", ...) and accumulated milliseconds of layer @i. */
const char *yolose_detector_get_layer_type (const YoloseDetector *det, int i);
double yolose_detector_get_layer_ms (const YoloseDetector *det, int i);
/* Floating-point work of layer @i at the built input size. */
double yolose_detector_get_layer_gflops (const YoloseDetector *det, int i);
void yolose_detector_reset_profile (YoloseDetector *det);

G_END_DECLS

#endif
