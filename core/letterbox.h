/* yolose — upstream YOLOv5's letterbox, reproduced exactly.
 *
 * upstream: r = min(S/h, S/w); resize to round(w r) x round(h r) with
 * OpenCV INTER_LINEAR (half-pixel centres, its fixed-point arithmetic);
 * pad with 114 gray; top = round(dh - 0.1), left = round(dw - 0.1) where
 * dw, dh are half the padding; Python's round() rounds half to even. Then
 * RGB, / 255, planar float32 (1 x 3 x S x S). */
#ifndef YOLOSE_LETTERBOX_H
#define YOLOSE_LETTERBOX_H

#include <glib.h>
#include "image.h"

G_BEGIN_DECLS

typedef struct {
  int size; /* S, the network's square input */
  int src_w, src_h;
  double scale; /* r */
  int resized_w, resized_h;
  int left, top;
} YoloseLetterbox;

/* Geometry for a @width x @height frame into an S = @size square.
 * Requires width, height, size >= 1. */
void yolose_letterbox_compute (int width, int height, int size,
    YoloseLetterbox *box);

/* Writes the R, G, B planes (each S x S float32, values in [0, 1]) of the
 * letterboxed @image into @dst (3 * S * S floats). @image must have the
 * size @box was computed for. Parallel over rows, @threads threads of the
 * kernels' pool. */
void yolose_letterbox_fill (const YoloseImage *image,
    const YoloseLetterbox *box, float *dst, int threads);

/* The implementations of the resampling: every one gives the same bits
 * (they compute the same integers); AUTO takes the fastest this CPU runs.
 * Tests run each one against the oracles. */
typedef enum {
  YOLOSE_LETTERBOX_AUTO,
  YOLOSE_LETTERBOX_PORTABLE,
  YOLOSE_LETTERBOX_AVX2,
} YoloseLetterboxPath;

gboolean yolose_letterbox_path_available (YoloseLetterboxPath path);

void yolose_letterbox_fill_with (const YoloseImage *image,
    const YoloseLetterbox *box, float *dst, int threads,
    YoloseLetterboxPath path);

G_END_DECLS

#endif
