/* yolose — upstream YOLOv5's letterbox, bit for bit.
 *
 * Upstream resizes with OpenCV's cv::resize (INTER_LINEAR, 8-bit, 3
 * channels).  What OpenCV really computes there is not the textbook
 * fixed-point formula but its SIMD one, and the reference tensors only match
 * that one, so this file reproduces it exactly:
 *
 *  - coefficients: f = (float) ((d + 0.5) * (1 / (dst / src)) - 0.5),
 *    s = floor (f), f -= s, weights round ((1 - f) * 2048), round (f * 2048)
 *    (half to even).  Horizontally, taps outside the picture are clamped to
 *    the edge pixel with weights (2048, 0); vertically the weights are kept
 *    and only the row indices are clamped.
 *  - horizontal pass: h = p[s] * a0 + p[s + 1] * a1 (exact integers);
 *  - vertical pass, as VResizeLinearVec_32s8u computes it for every element
 *    of a row: ((((h0 >> 4) * b0) >> 16) + (((h1 >> 4) * b1) >> 16) + 2) >> 2,
 *    which is up to one level below the exact (h0 b0 + h1 b1 + 2^21) >> 22.
 *
 * An exact 2x downscale, where OpenCV switches to INTER_AREA, gives the same
 * numbers ((a + b + c + d + 2) >> 2), so it needs no special case.  Checked
 * against cv2.resize of OpenCV 4.6 on hundreds of random geometries and
 * against the upstream reference tensors (bit-identical).
 *
 * Every layout of image.h is read in place; YUV taps are converted to RGB
 * before resampling, so a YUV frame gives what its RGB conversion would. */
#include "letterbox.h"
#include "kernels_pool.h"

#include <math.h>
#include <stddef.h>

#define PAD_LEVEL 114
#define COEF_BITS 11
#define COEF_ONE (1 << COEF_BITS)
/* Output columns whose taps are computed at once (a few kB of stack). */
#define SPAN 256

void
yolose_letterbox_compute (int width, int height, int size, YoloseLetterbox *box)
{
  double r, dw, dh;

  g_return_if_fail (width >= 1 && height >= 1 && size >= 1);

  /* Python: r = min(S / h, S / w); round() rounds half to even, which is
   * nearbyint() in the default rounding mode. */
  r = MIN ((double)size / height, (double)size / width);
  box->size = size;
  box->src_w = width;
  box->src_h = height;
  box->scale = r;
  /* Extreme aspect ratios would round a side to 0, which cv::resize
   * refuses; one pixel is the closest picture that exists. */
  box->resized_w = CLAMP ((int)nearbyint (width * r), 1, size);
  box->resized_h = CLAMP ((int)nearbyint (height * r), 1, size);
  dw = (size - box->resized_w) / 2.0;
  dh = (size - box->resized_h) / 2.0;
  box->left = (int)nearbyint (dw - 0.1);
  box->top = (int)nearbyint (dh - 0.1);
}

/* ---- pixel access ------------------------------------------------------ */

/* Fixed-point (16 fractional bits) YUV -> RGB matrix for one colour
 * standard and range, as videoconvert applies it. */
typedef struct {
  int y_offset;
  int y_gain, r_v, g_u, g_v, b_u;
} YuvCoeffs;

static void
yuv_coeffs_init (YuvCoeffs *k, YoloseYuvMatrix matrix, gboolean full_range)
{
  double kr = matrix == YOLOSE_YUV_BT709 ? 0.2126 : 0.299;
  double kb = matrix == YOLOSE_YUV_BT709 ? 0.0722 : 0.114;
  double kg = 1.0 - kr - kb;
  double y_range = full_range ? 255.0 : 219.0;
  double c_range = full_range ? 255.0 : 224.0;
  double c = 255.0 / c_range * 65536.0;

  k->y_offset = full_range ? 0 : 16;
  k->y_gain = (int)lround (255.0 / y_range * 65536.0);
  k->r_v = (int)lround (2.0 * (1.0 - kr) * c);
  k->b_u = (int)lround (2.0 * (1.0 - kb) * c);
  k->g_u = (int)lround (-2.0 * kb * (1.0 - kb) / kg * c);
  k->g_v = (int)lround (-2.0 * kr * (1.0 - kr) / kg * c);
}

static inline int
fixed_to_level (int v)
{
  /* v has 16 fractional bits; round, then clamp to 0..255 without ever
   * shifting a negative number. */
  v += 1 << 15;
  if (v < 0)
    return 0;
  v >>= 16;
  return v > 255 ? 255 : v;
}

/* Writes the pixel as B, G, R (OpenCV's order: the arithmetic does not
 * depend on it, but it keeps the emulated image honest). */
static inline void
yuv_to_bgr (const YuvCoeffs *k, int y, int u, int v, int bgr[3])
{
  int luma = k->y_gain * (y - k->y_offset);

  u -= 128;
  v -= 128;
  bgr[2] = fixed_to_level (luma + k->r_v * v);
  bgr[1] = fixed_to_level (luma + k->g_u * u + k->g_v * v);
  bgr[0] = fixed_to_level (luma + k->b_u * u);
}

/* The rows of every plane that hold source row y. */
typedef struct {
  const guint8 *p[3];
} SourceRow;

static inline const guint8 *
plane_row (const YoloseImage *image, int plane, int y)
{
  return image->planes[plane] + (ptrdiff_t)y * image->strides[plane];
}

static inline SourceRow
source_row (const YoloseImage *image, YoloseImageLayout layout, int y)
{
  SourceRow row = { { NULL, NULL, NULL } };

  row.p[0] = plane_row (image, 0, y);
  if (layout == YOLOSE_IMAGE_YUV420_PLANAR) {
    row.p[1] = plane_row (image, 1, y / 2);
    row.p[2] = plane_row (image, 2, y / 2);
  } else if (layout == YOLOSE_IMAGE_YUV420_SEMIPLANAR) {
    row.p[1] = plane_row (image, 1, y / 2);
  }
  return row;
}

/* @layout is always a constant at the call site, so each caller gets its
 * own switch-free copy. */
static inline __attribute__ ((always_inline)) void
fetch_bgr (const YoloseImage *image, YoloseImageLayout layout,
    const YuvCoeffs *k, const SourceRow *row, int x, int bgr[3])
{
  const guint8 *p;

  switch (layout) {
    case YOLOSE_IMAGE_PACKED_RGB:
      p = row->p[0] + (ptrdiff_t)x * image->pixel_stride;
      bgr[0] = p[image->b_offset];
      bgr[1] = p[image->g_offset];
      bgr[2] = p[image->r_offset];
      break;
    case YOLOSE_IMAGE_GRAY8:
      bgr[0] = bgr[1] = bgr[2] = row->p[0][x];
      break;
    case YOLOSE_IMAGE_YUV420_PLANAR:
      yuv_to_bgr (k, row->p[0][x], row->p[1][x / 2], row->p[2][x / 2], bgr);
      break;
    case YOLOSE_IMAGE_YUV420_SEMIPLANAR:
      p = row->p[1] + (ptrdiff_t)(x / 2) * 2;
      yuv_to_bgr (k, row->p[0][x], p[image->u_offset], p[image->v_offset], bgr);
      break;
    case YOLOSE_IMAGE_YUV422_PACKED:
      p = row->p[0] + (ptrdiff_t)(x / 2) * 4;
      yuv_to_bgr (k, p[image->y_offset + (x & 1) * 2], p[image->u_offset],
          p[image->v_offset], bgr);
      break;
  }
}

/* ---- OpenCV's linear coefficients ------------------------------------- */

typedef struct {
  int src0, src1; /* the two source columns or rows */
  int w0, w1;     /* their weights, out of COEF_ONE */
} Tap;

/* @clamp_weights: horizontally OpenCV moves an outside tap onto the edge
 * with weight (1, 0); vertically it keeps the weights and only clamps the
 * row indices.  Both give the edge value, but not always the same
 * rounding, so the difference is kept. */
static Tap
linear_tap (int d, double inv_ratio, int src_len, gboolean clamp_weights)
{
  float f = (float)((d + 0.5) * inv_ratio - 0.5);
  int s = (int)floorf (f);
  Tap tap;

  f -= (float)s;
  if (clamp_weights && s < 0) {
    s = 0;
    f = 0.f;
  }
  if (clamp_weights && s >= src_len - 1) {
    s = src_len - 1;
    f = 0.f;
  }
  tap.src0 = CLAMP (s, 0, src_len - 1);
  tap.src1 = CLAMP (s + 1, 0, src_len - 1);
  tap.w0 = (int)lrintf ((1.f - f) * COEF_ONE);
  tap.w1 = (int)lrintf (f * COEF_ONE);
  return tap;
}

/* OpenCV: scale_x = 1. / inv_scale_x with inv_scale_x = dst / src. */
static double
inverse_ratio (int src_len, int dst_len)
{
  return 1.0 / ((double)dst_len / src_len);
}

/* VResizeLinearVec_32s8u for one element (see the top of the file). */
static inline int
vertical_blend (int h0, int h1, const Tap *row_tap)
{
  int t0 = ((h0 >> 4) * row_tap->w0) >> 16;
  int t1 = ((h1 >> 4) * row_tap->w1) >> 16;
  int v = (t0 + t1 + 2) >> 2;

  return v > 255 ? 255 : v;
}

/* ---- rows -------------------------------------------------------------- */

typedef struct {
  const YoloseImage *image;
  const YoloseLetterbox *box;
  const YuvCoeffs *yuv;
  const float *level; /* level[v] = v / 255.0f */
  float *planes[3];   /* R, G, B */
} FillJob;

static inline float *
out_at (const FillJob *job, int plane, int x, int y)
{
  return job->planes[plane] + (gsize)y * job->box->size + x;
}

static inline void
store_bgr (const FillJob *job, int x, int y, const int bgr[3])
{
  *out_at (job, 0, x, y) = job->level[bgr[2]];
  *out_at (job, 1, x, y) = job->level[bgr[1]];
  *out_at (job, 2, x, y) = job->level[bgr[0]];
}

/* Output columns [x0, x0 + count) of resized row @dy. */
static inline __attribute__ ((always_inline)) void
resample_span_as (const FillJob *job, YoloseImageLayout layout, const Tap *cols,
    int x0, int count, int dy)
{
  const YoloseLetterbox *box = job->box;
  Tap row_tap = linear_tap (dy, inverse_ratio (box->src_h, box->resized_h),
      box->src_h, FALSE);
  SourceRow r0 = source_row (job->image, layout, row_tap.src0);
  SourceRow r1 = source_row (job->image, layout, row_tap.src1);

  for (int i = 0; i < count; i++) {
    const Tap *c = &cols[i];
    int a[3], b[3], d[3], e[3], out[3];

    fetch_bgr (job->image, layout, job->yuv, &r0, c->src0, a);
    fetch_bgr (job->image, layout, job->yuv, &r0, c->src1, b);
    fetch_bgr (job->image, layout, job->yuv, &r1, c->src0, d);
    fetch_bgr (job->image, layout, job->yuv, &r1, c->src1, e);
    for (int ch = 0; ch < 3; ch++) {
      int h0 = a[ch] * c->w0 + b[ch] * c->w1;
      int h1 = d[ch] * c->w0 + e[ch] * c->w1;
      out[ch] = vertical_blend (h0, h1, &row_tap);
    }
    store_bgr (job, box->left + x0 + i, box->top + dy, out);
  }
}

/* Same size: upstream skips cv::resize, so pixels are copied. */
static inline __attribute__ ((always_inline)) void
copy_span_as (const FillJob *job, YoloseImageLayout layout, int x0, int count,
    int dy)
{
  SourceRow row = source_row (job->image, layout, dy);

  for (int x = x0; x < x0 + count; x++) {
    int bgr[3];

    fetch_bgr (job->image, layout, job->yuv, &row, x, bgr);
    store_bgr (job, job->box->left + x, job->box->top + dy, bgr);
  }
}

static void
resample_span (const FillJob *job, const Tap *cols, int x0, int count, int dy)
{
  switch (job->image->layout) {
    case YOLOSE_IMAGE_PACKED_RGB:
      resample_span_as (job, YOLOSE_IMAGE_PACKED_RGB, cols, x0, count, dy);
      break;
    case YOLOSE_IMAGE_GRAY8:
      resample_span_as (job, YOLOSE_IMAGE_GRAY8, cols, x0, count, dy);
      break;
    case YOLOSE_IMAGE_YUV420_PLANAR:
      resample_span_as (job, YOLOSE_IMAGE_YUV420_PLANAR, cols, x0, count, dy);
      break;
    case YOLOSE_IMAGE_YUV420_SEMIPLANAR:
      resample_span_as (job, YOLOSE_IMAGE_YUV420_SEMIPLANAR, cols, x0, count,
          dy);
      break;
    case YOLOSE_IMAGE_YUV422_PACKED:
      resample_span_as (job, YOLOSE_IMAGE_YUV422_PACKED, cols, x0, count, dy);
      break;
  }
}

static void
copy_span (const FillJob *job, int x0, int count, int dy)
{
  switch (job->image->layout) {
    case YOLOSE_IMAGE_PACKED_RGB:
      copy_span_as (job, YOLOSE_IMAGE_PACKED_RGB, x0, count, dy);
      break;
    case YOLOSE_IMAGE_GRAY8:
      copy_span_as (job, YOLOSE_IMAGE_GRAY8, x0, count, dy);
      break;
    case YOLOSE_IMAGE_YUV420_PLANAR:
      copy_span_as (job, YOLOSE_IMAGE_YUV420_PLANAR, x0, count, dy);
      break;
    case YOLOSE_IMAGE_YUV420_SEMIPLANAR:
      copy_span_as (job, YOLOSE_IMAGE_YUV420_SEMIPLANAR, x0, count, dy);
      break;
    case YOLOSE_IMAGE_YUV422_PACKED:
      copy_span_as (job, YOLOSE_IMAGE_YUV422_PACKED, x0, count, dy);
      break;
  }
}

static void
fill_range (float *p, int count, float value)
{
  for (int i = 0; i < count; i++)
    p[i] = value;
}

/* The gray border of output row @y: all of it above and below the
 * picture, the left and right margins beside it. */
static void
pad_row (const FillJob *job, int y)
{
  const YoloseLetterbox *box = job->box;
  float gray = job->level[PAD_LEVEL];
  int right = box->left + box->resized_w;

  for (int plane = 0; plane < 3; plane++) {
    if (y < box->top || y >= box->top + box->resized_h) {
      fill_range (out_at (job, plane, 0, y), box->size, gray);
    } else {
      fill_range (out_at (job, plane, 0, y), box->left, gray);
      fill_range (out_at (job, plane, right, y), box->size - right, gray);
    }
  }
}

static gboolean
image_matches (const YoloseImage *image, const YoloseLetterbox *box)
{
  if (image->width != box->src_w || image->height != box->src_h)
    return FALSE;
  if (image->width < 1 || image->height < 1 || image->planes[0] == NULL)
    return FALSE;
  if (image->layout < YOLOSE_IMAGE_PACKED_RGB
      || image->layout > YOLOSE_IMAGE_YUV422_PACKED)
    return FALSE;
  if (image->layout == YOLOSE_IMAGE_YUV420_PLANAR)
    return image->planes[1] != NULL && image->planes[2] != NULL;
  if (image->layout == YOLOSE_IMAGE_YUV420_SEMIPLANAR)
    return image->planes[1] != NULL;
  return TRUE;
}

typedef struct {
  FillJob job;
  gboolean same_size;
  int rows_per_task;
} FillRun;

/* Output rows [y0, y1): their gray margins, then the picture in spans of
 * SPAN columns, whose horizontal taps are computed once per span. */
static void
fill_rows (void *data, int task, int worker)
{
  const FillRun *run = data;
  const YoloseLetterbox *box = run->job.box;
  int y0 = task * run->rows_per_task;
  int y1 = MIN (y0 + run->rows_per_task, box->size);
  int dy0 = MAX (y0 - box->top, 0);
  int dy1 = MIN (y1 - box->top, box->resized_h);
  double inv_ratio_x = inverse_ratio (box->src_w, box->resized_w);
  Tap cols[SPAN];

  (void)worker;
  for (int y = y0; y < y1; y++)
    pad_row (&run->job, y);
  for (int x0 = 0; x0 < box->resized_w && dy0 < dy1; x0 += SPAN) {
    int count = MIN (SPAN, box->resized_w - x0);

    if (!run->same_size)
      for (int i = 0; i < count; i++)
        cols[i] = linear_tap (x0 + i, inv_ratio_x, box->src_w, TRUE);
    for (int dy = dy0; dy < dy1; dy++) {
      if (run->same_size)
        copy_span (&run->job, x0, count, dy);
      else
        resample_span (&run->job, cols, x0, count, dy);
    }
  }
}

/* Runs on the kernels' pool, like the network that follows: an OpenMP
 * region's threads would go on spinning into its first layers. */
void
yolose_letterbox_fill (const YoloseImage *image, const YoloseLetterbox *box,
    float *dst, int threads)
{
  gsize plane_size;
  float level[256];
  YuvCoeffs yuv;
  FillRun run;
  int n_threads = threads > 0 ? threads : (int)g_get_num_processors ();
  int n_tasks;

  g_return_if_fail (image != NULL && box != NULL && dst != NULL);
  g_return_if_fail (image_matches (image, box));

  for (int v = 0; v < 256; v++)
    level[v] = (float)v / 255.0f;
  yuv_coeffs_init (&yuv, image->matrix, image->full_range);
  plane_size = (gsize)box->size * box->size;
  run.job.image = image;
  run.job.box = box;
  run.job.yuv = &yuv;
  run.job.level = level;
  for (int plane = 0; plane < 3; plane++)
    run.job.planes[plane] = dst + plane * plane_size;
  run.same_size = box->resized_w == box->src_w && box->resized_h == box->src_h;
  /* a few tasks per thread, so that a preempted thread delays little */
  n_tasks = MIN (box->size, 4 * n_threads);
  run.rows_per_task = (box->size + n_tasks - 1) / n_tasks;
  n_tasks = (box->size + run.rows_per_task - 1) / run.rows_per_task;
  yolose_pool_run (n_threads, n_tasks, fill_rows, &run);
}
