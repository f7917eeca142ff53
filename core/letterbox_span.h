/* yolose — one span of a letterboxed row, private to letterbox.c and
 * letterbox_span.c.
 *
 * letterbox.c computes OpenCV's taps and cuts the picture into spans of
 * output pixels; letterbox_span.c resamples a span.  The span code works
 * in passes over arrays (fetch the four taps of every pixel, convert YUV,
 * blend, store) so that everything but the fetch vectorises.  It is
 * compiled twice: once for any x86-64 (or other CPU) and once with -mavx2,
 * chosen at run time; both compute the same integers, so they give the
 * same bits. */
#ifndef YOLOSE_LETTERBOX_SPAN_H
#define YOLOSE_LETTERBOX_SPAN_H

#include "image.h"

G_BEGIN_DECLS

/* Output pixels resampled at once (about 13 kB of arrays on the stack). */
#define LETTERBOX_SPAN 256

/* Fixed-point (16 fractional bits) YUV -> RGB matrix for one colour
 * standard and range, as videoconvert applies it. */
typedef struct {
  int y_offset;
  int y_gain, r_v, g_u, g_v, b_u;
} LetterboxYuv;

/* The rows of every plane that hold one source row. */
typedef struct {
  const guint8 *p[3];
} LetterboxSourceRow;

/* The horizontal taps of the span's pixels, one array per field: source
 * columns src0, src1 with weights w0, w1 out of 2048. */
typedef struct {
  int src0[LETTERBOX_SPAN], src1[LETTERBOX_SPAN];
  int w0[LETTERBOX_SPAN], w1[LETTERBOX_SPAN];
} LetterboxColumns;

typedef struct {
  const YoloseImage *image;
  const LetterboxYuv *yuv;
  const LetterboxColumns *cols;
  int count;                  /* pixels, at most LETTERBOX_SPAN */
  LetterboxSourceRow rows[2]; /* the two source rows */
  int row_w0, row_w1;         /* their weights, out of 2048 */
  float *out[3];              /* R, G, B planes at the span's first pixel */
} LetterboxSpan;

typedef void (*LetterboxSpanFunc) (const LetterboxSpan *span);

void yolose_letterbox_span_generic (const LetterboxSpan *span);
#ifdef YOLOSE_HAVE_AVX2
void yolose_letterbox_span_avx2 (const LetterboxSpan *span);
#endif

G_END_DECLS

#endif
