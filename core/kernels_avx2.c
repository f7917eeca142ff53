/* yolose — the AVX2/FMA kernels.
 *
 * Compiled alone with -mavx2 -mfma and only called after
 * yolose_cpu_has_avx2_fma (), so nothing else in the build depends on it.
 *
 * Convolution is a GEMM per group: out[M x N] = W[M x K] * B[K x N], with
 * M output channels, N = out_h * out_w pixels and K = in_channels * k * k.
 * W is packed once (conv_pack) into panels of MR rows, k-major, so the
 * microkernel reads it sequentially.  B is never materialised whole: each
 * thread packs a KC x NC block of it (implicit im2col, zero padding
 * included) into panels of NR pixels in its own scratch, then sweeps the
 * 6 x 16 FMA microkernel over it.  The last K block ends in an epilogue
 * that adds the bias, applies SiLU, adds the residual and stores straight
 * into the output slice, so no extra pass over the output is needed. */
#include "kernels.h"
#include "kernels_pack.h"
#include "kernels_pool.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MR 6       /* rows of W per microkernel (output channels) */
#define NR 16      /* columns of B per microkernel (pixels), 2 ymm */
#define KC 256     /* K block: a 6 x KC W panel stays in L1 */
#define NC_MAX 384 /* pixel block: the KC x NC B block stays in L2 */
#define ALIGN_BYTES 64

const YoloseKernels *yolose_kernels_avx2_table (void);

/* ------------------------------------------------------- vector math */

/* exp(x) for x in float range: 2^n * p(r) with n = round(x / ln 2) and
 * r = x - n ln 2 (ln 2 split in two for an exact reduction), p a degree 6
 * polynomial; about 1 ulp from expf on the clamped range, which is where
 * expf is neither 0 nor inf anyway. */
static inline __m256
exp256 (__m256 x)
{
  const __m256 log2e = _mm256_set1_ps (1.44269504088896341f);
  const __m256 ln2_hi = _mm256_set1_ps (0.693359375f);
  const __m256 ln2_lo = _mm256_set1_ps (-2.12194440e-4f);
  __m256 n, r, r2, p;
  __m256i bits;

  x = _mm256_min_ps (x, _mm256_set1_ps (88.3762626647949f));
  x = _mm256_max_ps (x, _mm256_set1_ps (-87.3365478515625f));
  n = _mm256_round_ps (_mm256_mul_ps (x, log2e),
      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  r = _mm256_fnmadd_ps (n, ln2_hi, x);
  r = _mm256_fnmadd_ps (n, ln2_lo, r);
  r2 = _mm256_mul_ps (r, r);
  p = _mm256_set1_ps (1.9875691500e-4f);
  p = _mm256_fmadd_ps (p, r, _mm256_set1_ps (1.3981999507e-3f));
  p = _mm256_fmadd_ps (p, r, _mm256_set1_ps (8.3334519073e-3f));
  p = _mm256_fmadd_ps (p, r, _mm256_set1_ps (4.1665795894e-2f));
  p = _mm256_fmadd_ps (p, r, _mm256_set1_ps (1.6666665459e-1f));
  p = _mm256_fmadd_ps (p, r, _mm256_set1_ps (5.0000001201e-1f));
  p = _mm256_fmadd_ps (p, r2, r);
  p = _mm256_add_ps (p, _mm256_set1_ps (1.0f));
  /* 2^n built in the exponent field; n is within [-126, 127] here. */
  bits = _mm256_slli_epi32 (
      _mm256_add_epi32 (_mm256_cvtps_epi32 (n), _mm256_set1_epi32 (127)), 23);
  return _mm256_mul_ps (p, _mm256_castsi256_ps (bits));
}

static inline __m256
sigmoid256 (__m256 x)
{
  const __m256 one = _mm256_set1_ps (1.0f);
  __m256 e = exp256 (_mm256_sub_ps (_mm256_setzero_ps (), x));

  return _mm256_div_ps (one, _mm256_add_ps (one, e));
}

static inline __m256
silu256 (__m256 x)
{
  const __m256 one = _mm256_set1_ps (1.0f);
  __m256 e = exp256 (_mm256_sub_ps (_mm256_setzero_ps (), x));

  return _mm256_div_ps (x, _mm256_add_ps (one, e));
}

/* Scalar tails use the exact libm formulas, like the generic kernels. */
static inline float
silu1 (float x)
{
  return x / (1.0f + expf (-x));
}

static inline float
sigmoid1 (float x)
{
  return 1.0f / (1.0f + expf (-x));
}

static inline __m256
activate256 (__m256 x, YoloseActivation act)
{
  switch (act) {
    case YOLOSE_ACT_SILU:
      return silu256 (x);
    case YOLOSE_ACT_SIGMOID:
      return sigmoid256 (x);
    case YOLOSE_ACT_NONE:
      break;
  }
  return x;
}

static inline float
activate1 (float x, YoloseActivation act)
{
  switch (act) {
    case YOLOSE_ACT_SILU:
      return silu1 (x);
    case YOLOSE_ACT_SIGMOID:
      return sigmoid1 (x);
    case YOLOSE_ACT_NONE:
      break;
  }
  return x;
}

static inline size_t
round_up (size_t x, size_t to)
{
  return (x + to - 1) / to * to;
}

static inline void *
align_ptr (void *p)
{
  return (void *)round_up ((uintptr_t)p, ALIGN_BYTES);
}

/* ------------------------------------------------------- conv packing */

typedef struct {
  YoloseConvDesc desc;
  int m;        /* output channels per group */
  int k;        /* K = input channels per group * kernel^2 */
  int m_panels; /* ceil (m / MR) */
  float *a;     /* [groups][m_panels][k][MR], zero padded */
} Avx2Packed;

static void *
avx2_conv_pack (const YoloseConvDesc *desc)
{
  Avx2Packed *p = g_try_new0 (Avx2Packed, 1);

  if (p == NULL)
    return NULL;
  p->desc = *desc;
  p->m = desc->out_channels / desc->groups;
  p->k = desc->in_channels / desc->groups * desc->kernel * desc->kernel;
  p->m_panels = (p->m + MR - 1) / MR;
  p->a = yolose_pack_weight_panels (desc->weight, desc->groups, p->m, p->k, MR);
  if (p->a == NULL) {
    g_free (p);
    return NULL;
  }
  return p;
}

static void
avx2_conv_packed_free (void *packed)
{
  Avx2Packed *p = packed;

  if (p == NULL)
    return;
  free (p->a);
  g_free (p);
}

/* Pixels per block: at most NC_MAX, and enough blocks for every thread to
 * get the same number (the late 20 x 20 layers have only 400 pixels). */
static int
choose_nc (int n, int threads)
{
  int tiles = (n + NC_MAX - 1) / NC_MAX;

  tiles = (tiles + threads - 1) / threads * threads;
  return (int)round_up ((size_t)(n + tiles - 1) / tiles, NR);
}

typedef struct {
  float *b;   /* KC x NC packed B block */
  float *c;   /* m_panels x nc/NR partial sums */
  float *row; /* one im2col row of NC pixels */
} ThreadScratch;

static size_t
thread_scratch_floats (const YoloseConvDesc *desc)
{
  int m_panels = (desc->out_channels / desc->groups + MR - 1) / MR;

  return (size_t)KC * NC_MAX + (size_t)m_panels * MR * NC_MAX + NC_MAX
      + 3 * ALIGN_BYTES / sizeof (float);
}

static size_t
avx2_conv_scratch_size (const YoloseConvDesc *desc, int in_h, int in_w,
    int threads)
{
  return ((size_t)MAX (threads, 1) * thread_scratch_floats (desc)
             + ALIGN_BYTES / sizeof (float))
      * sizeof (float);
}

static ThreadScratch
thread_scratch (const YoloseConvDesc *desc, void *scratch, int thread)
{
  float *base = (float *)align_ptr (scratch)
      + (size_t)thread * thread_scratch_floats (desc);
  int m_panels = (desc->out_channels / desc->groups + MR - 1) / MR;
  ThreadScratch s;

  s.b = align_ptr (base);
  s.c = align_ptr (s.b + (size_t)KC * NC_MAX);
  s.row = align_ptr (s.c + (size_t)m_panels * MR * NC_MAX);
  return s;
}

/* ---------------------------------------------------- B block packing */

static void
copy_strided (float *dst, const float *src, int count, int stride)
{
  int i = 0;

  if (stride == 1) {
    memcpy (dst, src, (size_t)count * sizeof (float));
    return;
  }
  if (stride == 2) {
    /* Even elements of 16 consecutive floats; stop one element early so
     * the last load never reads past src[2 * (count - 1)]. */
    for (; i + 8 < count; i += 8) {
      __m256 lo = _mm256_loadu_ps (src + 2 * i);
      __m256 hi = _mm256_loadu_ps (src + 2 * i + 8);
      __m256 even = _mm256_shuffle_ps (lo, hi, _MM_SHUFFLE (2, 0, 2, 0));
      even = _mm256_castpd_ps (_mm256_permute4x64_pd (_mm256_castps_pd (even),
          _MM_SHUFFLE (3, 1, 2, 0)));
      _mm256_storeu_ps (dst + i, even);
    }
  }
  for (; i < count; i++)
    dst[i] = src[(size_t)i * stride];
}

/* dst[0 .. nc) = the im2col row of tap (ky, kx) of one input plane for the
 * flattened output pixels [n0, n0 + nc); zero where the tap falls in the
 * padding. */
static void
im2col_row (float *dst, const float *plane, const YoloseConvDesc *d, int in_h,
    int in_w, int out_w, int ky, int kx, int n0, int nc)
{
  int s = d->stride, off = kx - d->pad;
  /* output columns whose input column ox * s + off is inside the row */
  int lo = off >= 0 ? 0 : (-off + s - 1) / s;
  int hi = in_w - 1 - off < 0 ? 0 : (in_w - 1 - off) / s + 1;
  int n = n0, end = n0 + nc;

  while (n < end) {
    int oy = n / out_w, ox = n % out_w;
    int len = MIN (out_w - ox, end - n);
    int iy = oy * s + ky - d->pad;
    float *seg = dst + (n - n0);

    if (iy < 0 || iy >= in_h) {
      memset (seg, 0, (size_t)len * sizeof (float));
    } else {
      int a = CLAMP (lo, ox, ox + len), b = CLAMP (hi, a, ox + len);
      memset (seg, 0, (size_t)(a - ox) * sizeof (float));
      copy_strided (seg + (a - ox), plane + (size_t)iy * in_w + a * s + off,
          b - a, s);
      memset (seg + (b - ox), 0, (size_t)(ox + len - b) * sizeof (float));
    }
    n += len;
  }
}

/* Scatters a row of nc pixels into row kk of the NR-wide panels of the
 * block, zero filling the last panel. */
static void
row_to_panels (float *b, int kc, int kk, const float *row, int nc)
{
  int j = 0;

  for (; j + NR <= nc; j += NR) {
    float *dst = b + ((size_t)(j / NR) * kc + kk) * NR;
    _mm256_store_ps (dst, _mm256_loadu_ps (row + j));
    _mm256_store_ps (dst + 8, _mm256_loadu_ps (row + j + 8));
  }
  if (j < nc) {
    float *dst = b + ((size_t)(j / NR) * kc + kk) * NR;
    int t = 0;
    for (; t < nc - j; t++)
      dst[t] = row[j + t];
    for (; t < NR; t++)
      dst[t] = 0.0f;
  }
}

typedef struct {
  const YoloseConvDesc *desc;
  const float *in; /* first plane of this group */
  int in_h, in_w, out_w;
} BSource;

/* Packs rows [k0, k0 + kc) and pixels [n0, n0 + nc) of B into panels. */
static void
pack_b_block (const BSource *src, int k0, int kc, int n0, int nc, float *b,
    float *row)
{
  const YoloseConvDesc *d = src->desc;
  size_t in_plane = (size_t)src->in_h * src->in_w;
  int taps = d->kernel * d->kernel;
  gboolean direct = d->kernel == 1 && d->stride == 1 && d->pad == 0;

  for (int kk = 0; kk < kc; kk++) {
    int k = k0 + kk, ic = k / taps, t = k % taps;
    const float *plane = src->in + (size_t)ic * in_plane;

    /* A 1x1 stride 1 conv reads its B rows straight from the input. */
    if (direct) {
      row_to_panels (b, kc, kk, plane + n0, nc);
    } else {
      im2col_row (row, plane, d, src->in_h, src->in_w, src->out_w,
          t / d->kernel, t % d->kernel, n0, nc);
      row_to_panels (b, kc, kk, row, nc);
    }
  }
}

/* ------------------------------------------------------- microkernel */

/* c[6][16] (+)= a[kc][6] * b[kc][16]: 12 ymm accumulators, two loads of B
 * and six broadcasts of A per step of k. */
static void
gemm_6x16 (int kc, const float *restrict a, const float *restrict b,
    float *restrict c, gboolean accumulate)
{
  __m256 c00 = _mm256_setzero_ps (), c01 = _mm256_setzero_ps ();
  __m256 c10 = _mm256_setzero_ps (), c11 = _mm256_setzero_ps ();
  __m256 c20 = _mm256_setzero_ps (), c21 = _mm256_setzero_ps ();
  __m256 c30 = _mm256_setzero_ps (), c31 = _mm256_setzero_ps ();
  __m256 c40 = _mm256_setzero_ps (), c41 = _mm256_setzero_ps ();
  __m256 c50 = _mm256_setzero_ps (), c51 = _mm256_setzero_ps ();

#pragma GCC unroll 4
  for (int k = 0; k < kc; k++) {
    __m256 b0 = _mm256_load_ps (b), b1 = _mm256_load_ps (b + 8), av;

    av = _mm256_broadcast_ss (a);
    c00 = _mm256_fmadd_ps (av, b0, c00);
    c01 = _mm256_fmadd_ps (av, b1, c01);
    av = _mm256_broadcast_ss (a + 1);
    c10 = _mm256_fmadd_ps (av, b0, c10);
    c11 = _mm256_fmadd_ps (av, b1, c11);
    av = _mm256_broadcast_ss (a + 2);
    c20 = _mm256_fmadd_ps (av, b0, c20);
    c21 = _mm256_fmadd_ps (av, b1, c21);
    av = _mm256_broadcast_ss (a + 3);
    c30 = _mm256_fmadd_ps (av, b0, c30);
    c31 = _mm256_fmadd_ps (av, b1, c31);
    av = _mm256_broadcast_ss (a + 4);
    c40 = _mm256_fmadd_ps (av, b0, c40);
    c41 = _mm256_fmadd_ps (av, b1, c41);
    av = _mm256_broadcast_ss (a + 5);
    c50 = _mm256_fmadd_ps (av, b0, c50);
    c51 = _mm256_fmadd_ps (av, b1, c51);
    a += MR;
    b += NR;
  }

  if (accumulate) {
    c00 = _mm256_add_ps (c00, _mm256_load_ps (c + 0));
    c01 = _mm256_add_ps (c01, _mm256_load_ps (c + 8));
    c10 = _mm256_add_ps (c10, _mm256_load_ps (c + 16));
    c11 = _mm256_add_ps (c11, _mm256_load_ps (c + 24));
    c20 = _mm256_add_ps (c20, _mm256_load_ps (c + 32));
    c21 = _mm256_add_ps (c21, _mm256_load_ps (c + 40));
    c30 = _mm256_add_ps (c30, _mm256_load_ps (c + 48));
    c31 = _mm256_add_ps (c31, _mm256_load_ps (c + 56));
    c40 = _mm256_add_ps (c40, _mm256_load_ps (c + 64));
    c41 = _mm256_add_ps (c41, _mm256_load_ps (c + 72));
    c50 = _mm256_add_ps (c50, _mm256_load_ps (c + 80));
    c51 = _mm256_add_ps (c51, _mm256_load_ps (c + 88));
  }
  _mm256_store_ps (c + 0, c00);
  _mm256_store_ps (c + 8, c01);
  _mm256_store_ps (c + 16, c10);
  _mm256_store_ps (c + 24, c11);
  _mm256_store_ps (c + 32, c20);
  _mm256_store_ps (c + 40, c21);
  _mm256_store_ps (c + 48, c30);
  _mm256_store_ps (c + 56, c31);
  _mm256_store_ps (c + 64, c40);
  _mm256_store_ps (c + 72, c41);
  _mm256_store_ps (c + 80, c50);
  _mm256_store_ps (c + 88, c51);
}

/* ---------------------------------------------------------- epilogue */

typedef struct {
  const float *bias; /* of this group's first channel */
  YoloseActivation act;
  float *out;            /* this group's first output plane */
  const float *residual; /* same layout as out, or NULL */
  size_t plane;          /* out_h * out_w */
} Epilogue;

static inline __m256
finish8 (const Epilogue *e, __m256 v, __m256 bias, size_t at)
{
  v = activate256 (_mm256_add_ps (v, bias), e->act);
  if (e->residual != NULL)
    v = _mm256_add_ps (v, _mm256_loadu_ps (e->residual + at));
  return v;
}

/* Writes rows [oc0, oc0 + rows) x pixels [n, n + cols) of the output from
 * the 6 x 16 tile c. */
static void
store_tile (const Epilogue *e, const float *c, int oc0, int rows, size_t n,
    int cols)
{
  for (int r = 0; r < rows; r++) {
    int oc = oc0 + r;
    size_t at = (size_t)oc * e->plane + n;
    const float *src = c + r * NR;

    if (cols == NR) {
      __m256 bias = _mm256_set1_ps (e->bias[oc]);
      __m256 v0 = finish8 (e, _mm256_load_ps (src), bias, at);
      __m256 v1 = finish8 (e, _mm256_load_ps (src + 8), bias, at + 8);
      _mm256_storeu_ps (e->out + at, v0);
      _mm256_storeu_ps (e->out + at + 8, v1);
    } else {
      for (int j = 0; j < cols; j++) {
        float v = activate1 (src[j] + e->bias[oc], e->act);
        if (e->residual != NULL)
          v += e->residual[at + j];
        e->out[at + j] = v;
      }
    }
  }
}

/* ------------------------------------------------------------- conv */

typedef struct {
  const Avx2Packed *p;
  const YoloseTensor *in;
  const YoloseTensor *residual;
  YoloseTensor *out;
  int n;  /* pixels */
  int nc; /* pixels per block */
} ConvJob;

/* One group, pixels [n0, n0 + nc), every output channel. */
static void
conv_block (const ConvJob *job, int g, int n0, int nc, ThreadScratch *s)
{
  const Avx2Packed *p = job->p;
  const YoloseConvDesc *d = &p->desc;
  int n_panels = (nc + NR - 1) / NR;
  int cin_g = d->in_channels / d->groups;
  size_t plane = (size_t)job->out->h * job->out->w;
  BSource src
      = { d, job->in->data + (size_t)g * cin_g * job->in->h * job->in->w,
          job->in->h, job->in->w, job->out->w };
  Epilogue e = { d->bias + (size_t)g * p->m, d->act,
    job->out->data + (size_t)g * p->m * plane,
    job->residual ? job->residual->data + (size_t)g * p->m * plane : NULL,
    plane };
  const float *a_group = p->a + (size_t)g * p->m_panels * p->k * MR;
  float tile[MR * NR] __attribute__ ((aligned (32)));

  for (int k0 = 0; k0 < p->k; k0 += KC) {
    int kc = MIN (KC, p->k - k0);
    gboolean first = k0 == 0, last = k0 + kc == p->k;

    pack_b_block (&src, k0, kc, n0, nc, s->b, s->row);
    for (int i = 0; i < p->m_panels; i++) {
      const float *a = a_group + ((size_t)i * p->k + k0) * MR;
      int rows = MIN (MR, p->m - i * MR);
      for (int j = 0; j < n_panels; j++) {
        const float *b = s->b + (size_t)j * kc * NR;
        /* Partial sums wait in the per-thread tile buffer between K
         * blocks; the last block's sums go straight to the epilogue. */
        // cppcheck-suppress legacyUninitvar ; written, not read, when first
        float *c = first && last ? tile
                                 : s->c + ((size_t)i * n_panels + j) * MR * NR;
        gemm_6x16 (kc, a, b, c, !first);
        if (last)
          store_tile (&e, c, i * MR, rows, (size_t)n0 + j * NR,
              MIN (NR, nc - j * NR));
      }
    }
  }
}

typedef struct {
  ConvJob job;
  const YoloseConvDesc *desc;
  void *scratch;
} ConvRun;

static void
conv_task (void *data, int blk, int worker)
{
  const ConvRun *run = data;
  ThreadScratch s = thread_scratch (run->desc, run->scratch, worker);
  int n0 = blk * run->job.nc, nc = MIN (run->job.nc, run->job.n - n0);

  for (int g = 0; g < run->desc->groups; g++)
    conv_block (&run->job, g, n0, nc, &s);
}

static void
avx2_conv2d (const YoloseConvDesc *desc, const void *packed,
    const YoloseTensor *in, const YoloseTensor *residual, YoloseTensor *out,
    void *scratch, int threads)
{
  ConvRun run
      = { { packed, in, residual, out, out->h * out->w, 0 }, desc, scratch };

  run.job.nc = choose_nc (run.job.n, threads);
  yolose_pool_run (threads, (run.job.n + run.job.nc - 1) / run.job.nc,
      conv_task, &run);
}

/* ------------------------------------------------------ small kernels */

/* The memory-bound kernels below split [0, n) into a few chunks per
 * thread, none smaller than @grain units. */
typedef void (*RangeFunc) (void *ctx, size_t begin, size_t end);

typedef struct {
  RangeFunc func;
  void *ctx;
  size_t n, chunk;
} RangeRun;

static void
range_task (void *data, int task, int worker)
{
  const RangeRun *run = data;
  size_t begin = (size_t)task * run->chunk;

  run->func (run->ctx, begin, MIN (begin + run->chunk, run->n));
}

static void
parallel_range (int threads, size_t n, size_t grain, RangeFunc func, void *ctx)
{
  size_t tasks = MIN ((n + grain - 1) / MAX (grain, 1), 4 * (size_t)threads);
  RangeRun run = { func, ctx, n, 0 };

  if (n == 0)
    return;
  tasks = MAX (tasks, 1);
  run.chunk = (n + tasks - 1) / tasks;
  yolose_pool_run (threads, (int)((n + run.chunk - 1) / run.chunk), range_task,
      &run);
}

/* ------------------------------------------------------------ maxpool */

/* max (m, v) with the instruction the vector loops use (maxss, as
 * _mm256_max_ps lane by lane), inline rather than a call into libm's
 * fmaxf.  Only maxpool_plane_generic, for the pools the separable path
 * does not take (stride above 1, wide padding or rows), uses it. */
static inline float
max_scalar (float m, float v)
{
  return _mm_cvtss_f32 (_mm_max_ss (_mm_set_ss (m), _mm_set_ss (v)));
}

static void
maxpool_plane_generic (const float *src, float *dst, int in_h, int in_w,
    int out_h, int out_w, int kernel, int stride, int pad)
{
  for (int oy = 0; oy < out_h; oy++)
    for (int ox = 0; ox < out_w; ox++) {
      float m = -INFINITY;
      for (int ky = 0; ky < kernel; ky++) {
        int iy = oy * stride + ky - pad;
        if (iy < 0 || iy >= in_h)
          continue;
        for (int kx = 0; kx < kernel; kx++) {
          int ix = ox * stride + kx - pad;
          if (ix >= 0 && ix < in_w)
            m = max_scalar (m, src[(size_t)iy * in_w + ix]);
        }
      }
      dst[(size_t)oy * out_w + ox] = m;
    }
}

/* A mask of the first @n of 8 lanes (0 < n < 8): a row's last columns
 * load and store through it, so no load reads past the row and no store
 * writes past it. */
static inline __m256i
first_lanes (int n)
{
  return _mm256_cmpgt_epi32 (_mm256_set1_epi32 (n),
      _mm256_setr_epi32 (0, 1, 2, 3, 4, 5, 6, 7));
}

/* Stride 1: max over k rows first (vectorised along the row), then over k
 * columns of that row-max, with -inf padding on both sides. */
static void
maxpool_plane_s1 (const float *src, float *dst, int h, int w, int out_h,
    int out_w, int kernel, int pad, float *rowmax)
{
  float *padded = rowmax + pad;

  for (int i = 0; i < pad; i++) {
    rowmax[i] = -INFINITY;
    padded[w + i] = -INFINITY;
  }
  for (int oy = 0; oy < out_h; oy++) {
    int y0 = MAX (oy - pad, 0), y1 = MIN (oy - pad + kernel, h);
    int x = 0;

    for (; x + 8 <= w; x += 8) {
      __m256 m = _mm256_set1_ps (-INFINITY);
      for (int y = y0; y < y1; y++)
        m = _mm256_max_ps (m, _mm256_loadu_ps (src + (size_t)y * w + x));
      _mm256_storeu_ps (padded + x, m);
    }
    if (x < w) {
      __m256i lanes = first_lanes (w - x);
      __m256 m = _mm256_set1_ps (-INFINITY);
      for (int y = y0; y < y1; y++)
        m = _mm256_max_ps (m,
            _mm256_maskload_ps (src + (size_t)y * w + x, lanes));
      _mm256_maskstore_ps (padded + x, lanes, m);
    }

    float *out_row = dst + (size_t)oy * out_w;
    int ox = 0;
    for (; ox + 8 <= out_w; ox += 8) {
      __m256 m = _mm256_loadu_ps (rowmax + ox);
      for (int kx = 1; kx < kernel; kx++)
        m = _mm256_max_ps (m, _mm256_loadu_ps (rowmax + ox + kx));
      _mm256_storeu_ps (out_row + ox, m);
    }
    if (ox < out_w) {
      __m256i lanes = first_lanes (out_w - ox);
      __m256 m = _mm256_maskload_ps (rowmax + ox, lanes);
      for (int kx = 1; kx < kernel; kx++)
        m = _mm256_max_ps (m, _mm256_maskload_ps (rowmax + ox + kx, lanes));
      _mm256_maskstore_ps (out_row + ox, lanes, m);
    }
  }
}

typedef struct {
  const YoloseTensor *in;
  YoloseTensor *out;
  int kernel, stride, pad;
} PoolJob;

static void
maxpool_channels (void *ctx, size_t begin, size_t end)
{
  const PoolJob *job = ctx;
  const YoloseTensor *in = job->in;
  YoloseTensor *out = job->out;
  size_t in_plane = (size_t)in->h * in->w;
  size_t out_plane = (size_t)out->h * out->w;
  /* The separable path keeps a padded row on the stack; larger rows or
   * padding of half the window or more take the plain loops. */
  gboolean separable = job->stride == 1 && 2 * job->pad < job->kernel
      && job->pad <= 32 && in->w <= 4096;

  for (size_t c = begin; c < end; c++) {
    const float *src = in->data + c * in_plane;
    float *dst = out->data + c * out_plane;
    if (separable) {
      float rowmax[4096 + 64];
      maxpool_plane_s1 (src, dst, in->h, in->w, out->h, out->w, job->kernel,
          job->pad, rowmax);
    } else {
      maxpool_plane_generic (src, dst, in->h, in->w, out->h, out->w,
          job->kernel, job->stride, job->pad);
    }
  }
}

static void
avx2_maxpool2d (const YoloseTensor *in, YoloseTensor *out, int kernel,
    int stride, int pad, int threads)
{
  PoolJob job = { in, out, kernel, stride, pad };
  size_t plane = (size_t)out->h * out->w * kernel * kernel;

  parallel_range (threads, out->c, 1 + 65536 / MAX (plane, 1), maxpool_channels,
      &job);
}

/* ----------------------------------------------------------- upsample */

typedef struct {
  const YoloseTensor *in;
  YoloseTensor *out;
  int scale;
} UpsampleJob;

/* Input rows [begin, end) of all channels taken together. */
static void
upsample_rows (void *ctx, size_t begin, size_t end)
{
  const UpsampleJob *job = ctx;
  const YoloseTensor *in = job->in;
  YoloseTensor *out = job->out;
  int scale = job->scale;

  for (size_t r = begin; r < end; r++) {
    size_t c = r / in->h, iy = r % in->h;
    const float *src = in->data + r * in->w;
    float *first = out->data + (c * out->h + iy * scale) * out->w;
    int x = 0;

    if (scale == 2) {
      for (; x + 8 <= in->w; x += 8) {
        __m256 v = _mm256_loadu_ps (src + x);
        __m256 lo = _mm256_unpacklo_ps (v, v), hi = _mm256_unpackhi_ps (v, v);
        _mm256_storeu_ps (first + 2 * x, _mm256_permute2f128_ps (lo, hi, 0x20));
        _mm256_storeu_ps (first + 2 * x + 8,
            _mm256_permute2f128_ps (lo, hi, 0x31));
      }
    }
    for (; x < in->w; x++)
      for (int s = 0; s < scale; s++)
        first[x * scale + s] = src[x];
    for (int s = 1; s < scale; s++)
      memcpy (first + (size_t)s * out->w, first, out->w * sizeof (float));
  }
}

static void
avx2_upsample_nearest (const YoloseTensor *in, YoloseTensor *out, int scale,
    int threads)
{
  UpsampleJob job = { in, out, scale };

  parallel_range (threads, (size_t)in->c * in->h,
      1 + 16384 / MAX ((size_t)out->w * scale, 1), upsample_rows, &job);
}

/* ----------------------------------------------------- squeeze-excite */

static float
hsum256 (__m256 v)
{
  __m128 s
      = _mm_add_ps (_mm256_castps256_ps128 (v), _mm256_extractf128_ps (v, 1));

  s = _mm_add_ps (s, _mm_movehl_ps (s, s));
  s = _mm_add_ss (s, _mm_movehdup_ps (s));
  return _mm_cvtss_f32 (s);
}

static float
dot (const float *x, const float *y, int n)
{
  __m256 acc = _mm256_setzero_ps ();
  float sum;
  int i = 0;

  for (; i + 8 <= n; i += 8)
    acc = _mm256_fmadd_ps (_mm256_loadu_ps (x + i), _mm256_loadu_ps (y + i),
        acc);
  sum = hsum256 (acc);
  for (; i < n; i++)
    sum += x[i] * y[i];
  return sum;
}

static float
plane_mean (const float *x, size_t n)
{
  __m256 acc = _mm256_setzero_ps ();
  size_t i = 0;
  float sum;

  for (; i + 8 <= n; i += 8)
    acc = _mm256_add_ps (acc, _mm256_loadu_ps (x + i));
  sum = hsum256 (acc);
  for (; i < n; i++)
    sum += x[i];
  return sum / (float)n;
}

typedef struct {
  YoloseTensor *x;
  const float *w2;
  const float *mid;
  float *mean;
  int hidden;
} SeJob;

static void
se_means (void *ctx, size_t begin, size_t end)
{
  const SeJob *job = ctx;
  size_t plane = (size_t)job->x->h * job->x->w;

  for (size_t ch = begin; ch < end; ch++)
    job->mean[ch] = plane_mean (job->x->data + ch * plane, plane);
}

static void
se_scale (void *ctx, size_t begin, size_t end)
{
  const SeJob *job = ctx;
  size_t plane = (size_t)job->x->h * job->x->w;

  for (size_t ch = begin; ch < end; ch++) {
    float *x = job->x->data + ch * plane;
    float gate
        = sigmoid1 (dot (job->w2 + ch * job->hidden, job->mid, job->hidden));
    __m256 g = _mm256_set1_ps (gate);
    size_t i = 0;
    for (; i + 8 <= plane; i += 8)
      _mm256_storeu_ps (x + i, _mm256_mul_ps (_mm256_loadu_ps (x + i), g));
    for (; i < plane; i++)
      x[i] *= gate;
  }
}

static void
avx2_squeeze_excite (YoloseTensor *inout, const float *w1, const float *w2,
    int hidden, float *scratch, int threads)
{
  int c = inout->c;
  size_t grain = 1 + 16384 / MAX ((size_t)inout->h * inout->w, 1);
  float *mean = scratch, *mid = scratch + c;
  SeJob job = { inout, w2, mid, mean, hidden };

  parallel_range (threads, c, grain, se_means, &job);
  /* The squeeze itself is a few thousand multiply-adds. */
  for (int j = 0; j < hidden; j++)
    mid[j] = MAX (dot (w1 + (size_t)j * c, mean, c), 0.0f);
  parallel_range (threads, c, grain, se_scale, &job);
}

static const YoloseKernels avx2_kernels = {
  .name = "avx2",
  .conv_pack = avx2_conv_pack,
  .conv_packed_free = avx2_conv_packed_free,
  .conv_scratch_size = avx2_conv_scratch_size,
  .conv2d = avx2_conv2d,
  .maxpool2d = avx2_maxpool2d,
  .upsample_nearest = avx2_upsample_nearest,
  .squeeze_excite = avx2_squeeze_excite,
};

const YoloseKernels *
yolose_kernels_avx2_table (void)
{
  return &avx2_kernels;
}
