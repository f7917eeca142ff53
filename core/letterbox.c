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
 * before resampling, so a YUV frame gives what its RGB conversion would.
 * This file computes the taps and cuts the output into spans; the pixels
 * of a span are computed in letterbox_span.c, which has an AVX2 build. */
#include "letterbox.h"
#include "cpu_features.h"
#include "kernels_pool.h"
#include "letterbox_span.h"

#include <math.h>
#include <stddef.h>

#define PAD_LEVEL 114
#define COEF_BITS 11
#define COEF_ONE (1 << COEF_BITS)

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

static void
yuv_coeffs_init (LetterboxYuv *k, YoloseYuvMatrix matrix, gboolean full_range)
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

static inline const guint8 *
plane_row (const YoloseImage *image, int plane, int y)
{
  return image->planes[plane] + (ptrdiff_t)y * image->strides[plane];
}

static LetterboxSourceRow
source_row (const YoloseImage *image, int y)
{
  LetterboxSourceRow row = { { NULL, NULL, NULL } };

  row.p[0] = plane_row (image, 0, y);
  if (image->layout == YOLOSE_IMAGE_YUV420_PLANAR) {
    row.p[1] = plane_row (image, 1, y / 2);
    row.p[2] = plane_row (image, 2, y / 2);
  } else if (image->layout == YOLOSE_IMAGE_YUV420_SEMIPLANAR) {
    row.p[1] = plane_row (image, 1, y / 2);
  }
  return row;
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

/* ---- rows -------------------------------------------------------------- */

typedef struct {
  const YoloseImage *image;
  const YoloseLetterbox *box;
  const LetterboxYuv *yuv;
  LetterboxSpanFunc span_func;
  float gray;       /* PAD_LEVEL / 255 */
  float *planes[3]; /* R, G, B */
} FillJob;

static inline float *
out_at (const FillJob *job, int plane, int x, int y)
{
  return job->planes[plane] + (gsize)y * job->box->size + x;
}

/* Output columns [x0, x0 + count) of the picture: OpenCV's taps, or, when
 * the frame already has the resized size (upstream then skips cv::resize),
 * the pixel itself with weights (1, 0), which the blend returns exactly. */
static void
span_columns (const YoloseLetterbox *box, gboolean same_size, int x0, int count,
    LetterboxColumns *cols)
{
  double inv_ratio = inverse_ratio (box->src_w, box->resized_w);

  for (int i = 0; i < count; i++) {
    Tap tap = { x0 + i, x0 + i, COEF_ONE, 0 };
    if (!same_size)
      tap = linear_tap (x0 + i, inv_ratio, box->src_w, TRUE);
    cols->src0[i] = tap.src0;
    cols->src1[i] = tap.src1;
    cols->w0[i] = tap.w0;
    cols->w1[i] = tap.w1;
  }
}

/* Resized row @dy, output columns [x0, x0 + count). */
static void
resample_span (const FillJob *job, const LetterboxColumns *cols,
    gboolean same_size, int x0, int count, int dy)
{
  const YoloseLetterbox *box = job->box;
  Tap row_tap = { dy, dy, COEF_ONE, 0 };
  LetterboxSpan span;

  if (!same_size)
    row_tap = linear_tap (dy, inverse_ratio (box->src_h, box->resized_h),
        box->src_h, FALSE);
  span.image = job->image;
  span.yuv = job->yuv;
  span.cols = cols;
  span.count = count;
  span.rows[0] = source_row (job->image, row_tap.src0);
  span.rows[1] = source_row (job->image, row_tap.src1);
  span.row_w0 = row_tap.w0;
  span.row_w1 = row_tap.w1;
  for (int plane = 0; plane < 3; plane++)
    span.out[plane] = out_at (job, plane, box->left + x0, box->top + dy);
  job->span_func (&span);
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
  float gray = job->gray;
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
 * LETTERBOX_SPAN columns, whose horizontal taps are computed once per
 * span. */
static void
fill_rows (void *data, int task, int worker)
{
  const FillRun *run = data;
  const YoloseLetterbox *box = run->job.box;
  int y0 = task * run->rows_per_task;
  int y1 = MIN (y0 + run->rows_per_task, box->size);
  int dy0 = MAX (y0 - box->top, 0);
  int dy1 = MIN (y1 - box->top, box->resized_h);
  LetterboxColumns cols;

  (void)worker;
  for (int y = y0; y < y1; y++)
    pad_row (&run->job, y);
  for (int x0 = 0; x0 < box->resized_w && dy0 < dy1; x0 += LETTERBOX_SPAN) {
    int count = MIN (LETTERBOX_SPAN, box->resized_w - x0);

    span_columns (box, run->same_size, x0, count, &cols);
    for (int dy = dy0; dy < dy1; dy++)
      resample_span (&run->job, &cols, run->same_size, x0, count, dy);
  }
}

gboolean
yolose_letterbox_path_available (YoloseLetterboxPath path)
{
  switch (path) {
    case YOLOSE_LETTERBOX_AUTO:
    case YOLOSE_LETTERBOX_PORTABLE:
      return TRUE;
    case YOLOSE_LETTERBOX_AVX2:
#ifdef YOLOSE_HAVE_AVX2
      return yolose_cpu_has_avx2_fma ();
#else
      return FALSE;
#endif
  }
  return FALSE;
}

static LetterboxSpanFunc
span_func_for (YoloseLetterboxPath path)
{
#ifdef YOLOSE_HAVE_AVX2
  if (path != YOLOSE_LETTERBOX_PORTABLE && yolose_cpu_has_avx2_fma ())
    return yolose_letterbox_span_avx2;
#endif
  (void)path;
  return yolose_letterbox_span_generic;
}

void
yolose_letterbox_fill (const YoloseImage *image, const YoloseLetterbox *box,
    float *dst, int threads)
{
  yolose_letterbox_fill_with (image, box, dst, threads, YOLOSE_LETTERBOX_AUTO);
}

/* Runs on the kernels' pool, like the network that follows: an OpenMP
 * region's threads would go on spinning into its first layers. */
void
yolose_letterbox_fill_with (const YoloseImage *image,
    const YoloseLetterbox *box, float *dst, int threads,
    YoloseLetterboxPath path)
{
  gsize plane_size;
  LetterboxYuv yuv;
  FillRun run;
  int n_threads = threads > 0 ? threads : (int)g_get_num_processors ();
  int n_tasks;

  g_return_if_fail (image != NULL && box != NULL && dst != NULL);
  g_return_if_fail (image_matches (image, box));
  g_return_if_fail (yolose_letterbox_path_available (path));

  yuv_coeffs_init (&yuv, image->matrix, image->full_range);
  plane_size = (gsize)box->size * box->size;
  run.job.image = image;
  run.job.box = box;
  run.job.yuv = &yuv;
  run.job.span_func = span_func_for (path);
  run.job.gray = (float)PAD_LEVEL / 255.0f;
  for (int plane = 0; plane < 3; plane++)
    run.job.planes[plane] = dst + plane * plane_size;
  run.same_size = box->resized_w == box->src_w && box->resized_h == box->src_h;
  /* a few tasks per thread, so that a preempted thread delays little */
  n_tasks = MIN (box->size, 4 * n_threads);
  run.rows_per_task = (box->size + n_tasks - 1) / n_tasks;
  n_tasks = (box->size + run.rows_per_task - 1) / run.rows_per_task;
  yolose_pool_run (n_threads, n_tasks, fill_rows, &run);
}
