/* yolose — resampling one span of a letterboxed row (see letterbox_span.h
 * and, for the arithmetic and why it is OpenCV's, letterbox.c).
 *
 * Built twice: plainly (yolose_letterbox_span_generic), and with -mavx2
 * and LETTERBOX_SPAN_FUNC naming the entry point yolose_letterbox_span_avx2.
 * Each pass is a loop over plain int arrays that the compiler turns into vector
 * code: per output pixel the four taps are fetched (the only scalar part: the
 * taps are scattered bytes), converted from YUV where needed, blended
 * horizontally and vertically, and scaled to 0..1. */
#include "letterbox_span.h"

#include <stddef.h>
#include <string.h>

#ifndef LETTERBOX_SPAN_FUNC
#define LETTERBOX_SPAN_FUNC yolose_letterbox_span_generic
#endif

#define TAPS                                                                   \
  4 /* (row 0, col 0), (row 0, col 1), (row 1, col 0), (row 1, col 1) */

/* ch[channel][tap][pixel]: the fetched samples, later B, G, R. */
typedef int SpanSamples[3][TAPS][LETTERBOX_SPAN];

/* ---- fetch ------------------------------------------------------------ */

/* The samples of source column @x of @row: B, G, R or Y, U, V (only the
 * first for gray).  @layout is a constant at every call, so each layout
 * gets its own switch-free loop. */
static inline __attribute__ ((always_inline)) void
fetch_pixel (const YoloseImage *im, YoloseImageLayout layout,
    const LetterboxSourceRow *row, int x, int *c0, int *c1, int *c2)
{
  const guint8 *p;

  switch (layout) {
    case YOLOSE_IMAGE_PACKED_RGB:
      p = row->p[0] + (ptrdiff_t)x * im->pixel_stride;
      *c0 = p[im->b_offset];
      *c1 = p[im->g_offset];
      *c2 = p[im->r_offset];
      break;
    case YOLOSE_IMAGE_GRAY8:
      *c0 = row->p[0][x];
      break;
    case YOLOSE_IMAGE_YUV420_PLANAR:
      *c0 = row->p[0][x];
      *c1 = row->p[1][x / 2];
      *c2 = row->p[2][x / 2];
      break;
    case YOLOSE_IMAGE_YUV420_SEMIPLANAR:
      p = row->p[1] + (ptrdiff_t)(x / 2) * 2;
      *c0 = row->p[0][x];
      *c1 = p[im->u_offset];
      *c2 = p[im->v_offset];
      break;
    case YOLOSE_IMAGE_YUV422_PACKED:
      p = row->p[0] + (ptrdiff_t)(x / 2) * 4;
      *c0 = p[im->y_offset + (x & 1) * 2];
      *c1 = p[im->u_offset];
      *c2 = p[im->v_offset];
      break;
  }
}

/* The four taps of every pixel of the span. */
static inline __attribute__ ((always_inline)) void
fetch_as (const LetterboxSpan *s, YoloseImageLayout layout, SpanSamples ch)
{
  /* A copy the sample stores cannot alias: read from s->image, its
   * offsets would be loaded again after every store. */
  YoloseImage im = *s->image;
  int count = s->count;

  for (int t = 0; t < TAPS; t++) {
    /* taps 0 and 2 read column src0, 1 and 3 src1; 0 and 1 row 0 */
    const int *col = t & 1 ? s->cols->src1 : s->cols->src0;
    const LetterboxSourceRow *row = &s->rows[t >> 1];
    for (int i = 0; i < count; i++)
      fetch_pixel (&im, layout, row, col[i], &ch[0][t][i], &ch[1][t][i],
          &ch[2][t][i]);
  }
}

static void
fetch (const LetterboxSpan *s, SpanSamples ch)
{
  switch (s->image->layout) {
    case YOLOSE_IMAGE_PACKED_RGB:
      fetch_as (s, YOLOSE_IMAGE_PACKED_RGB, ch);
      break;
    case YOLOSE_IMAGE_GRAY8:
      fetch_as (s, YOLOSE_IMAGE_GRAY8, ch);
      break;
    case YOLOSE_IMAGE_YUV420_PLANAR:
      fetch_as (s, YOLOSE_IMAGE_YUV420_PLANAR, ch);
      break;
    case YOLOSE_IMAGE_YUV420_SEMIPLANAR:
      fetch_as (s, YOLOSE_IMAGE_YUV420_SEMIPLANAR, ch);
      break;
    case YOLOSE_IMAGE_YUV422_PACKED:
      fetch_as (s, YOLOSE_IMAGE_YUV422_PACKED, ch);
      break;
  }
}

/* ---- convert ---------------------------------------------------------- */

/* A 16-bit fixed-point value rounded to a level and clamped to 0..255;
 * clamping at 0 first means a negative number is never shifted. */
static inline int
fixed_to_level (int v)
{
  v += 1 << 15;
  v = v < 0 ? 0 : v >> 16;
  return v > 255 ? 255 : v;
}

/* Y, U, V samples into B, G, R, in place. */
static void
convert_yuv (const LetterboxYuv *k, int count, SpanSamples ch)
{
  for (int t = 0; t < TAPS; t++) {
    int *py = ch[0][t], *pu = ch[1][t], *pv = ch[2][t];
    for (int i = 0; i < count; i++) {
      int luma = k->y_gain * (py[i] - k->y_offset);
      int u = pu[i] - 128, v = pv[i] - 128;
      int b = fixed_to_level (luma + k->b_u * u);
      int g = fixed_to_level (luma + k->g_u * u + k->g_v * v);
      int r = fixed_to_level (luma + k->r_v * v);
      py[i] = b;
      pu[i] = g;
      pv[i] = r;
    }
  }
}

/* ---- blend and store -------------------------------------------------- */

/* Channel @c's taps blended as OpenCV does (letterbox.c), as 0..1 floats
 * into @out.  The division (not a multiplication by 1 / 255) gives exactly
 * the values of upstream's `/ 255`. */
static void
blend_channel (const LetterboxSpan *s, int (*c)[LETTERBOX_SPAN], float *out)
{
  /* locals: @out could alias the span's fields as far as the compiler
   * knows, which would keep the loop scalar */
  const int *restrict w0 = s->cols->w0, *restrict w1 = s->cols->w1;
  int row_w0 = s->row_w0, row_w1 = s->row_w1, count = s->count;

  for (int i = 0; i < count; i++) {
    int h0 = c[0][i] * w0[i] + c[1][i] * w1[i];
    int h1 = c[2][i] * w0[i] + c[3][i] * w1[i];
    int t0 = ((h0 >> 4) * row_w0) >> 16;
    int t1 = ((h1 >> 4) * row_w1) >> 16;
    int v = (t0 + t1 + 2) >> 2;
    /* clamped apart from the division: with the division in the same
     * expression GCC keeps the loop scalar */
    v = v > 255 ? 255 : v;
    out[i] = (float)v / 255.0f;
  }
}

void
LETTERBOX_SPAN_FUNC (const LetterboxSpan *span)
{
  SpanSamples ch;
  YoloseImageLayout layout = span->image->layout;

  fetch (span, ch);
  if (layout == YOLOSE_IMAGE_GRAY8) {
    blend_channel (span, ch[0], span->out[0]);
    memcpy (span->out[1], span->out[0], span->count * sizeof (float));
    memcpy (span->out[2], span->out[0], span->count * sizeof (float));
    return;
  }
  if (layout != YOLOSE_IMAGE_PACKED_RGB)
    convert_yuv (span->yuv, span->count, ch);
  /* out[] is R, G, B; ch[] is B, G, R */
  for (int plane = 0; plane < 3; plane++)
    blend_channel (span, ch[2 - plane], span->out[plane]);
}
