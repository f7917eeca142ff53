/* yolose — what the AVX-512 convolution files share (private to
 * kernels_avx512.c, kernels_avx512_wino.c and kernels_avx512_strided.c,
 * all built with -mavx512f). */
#ifndef YOLOSE_KERNELS_AVX512_H
#define YOLOSE_KERNELS_AVX512_H

#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "kernels.h"

#define MR 8            /* output channels per microkernel */
#define NR 32           /* pixels per microkernel, 2 zmm */
#define ALIGN_FLOATS 16 /* 64 bytes */

/* exp(-x): 2^n * p(r), n = round(-x / ln 2), r = -x - n ln 2 in two
 * parts, p a degree-6 polynomial fitted to e^r on [-ln 2 / 2, ln 2 / 2]
 * (mpmath's chebyfit, error 2e-9, far below a float's ulp) by Horner's
 * rule; scalef applies 2^n without building the exponent by hand, and
 * gives 0 for a large x.  Only -x is clamped, to 88.37, where e^-x is
 * still finite: 1 + inf would make the reciprocal's Newton step NaN.
 * Taking -x through the constants (a negative log2(e), fnmsub), Horner's
 * rule and the fitted polynomial instead of Cephes' degree 7 (1 ulp)
 * save 4 of the SiLU's 22 instructions, which cost as much as the
 * multiply-adds of a 1x1 convolution with 32 input channels; the same
 * results within 2.64 ulp of SiLU in double precision (2.37 for the
 * sigmoid) over every 37th float in [-80, 200], as before.  (Degree 5
 * gave 4.6 ulp, and ln 2 as one float instead of two parts 5.4.) */
static inline __m512
exp_neg512 (__m512 x)
{
  __m512 n, r, p;

  x = _mm512_max_ps (x, _mm512_set1_ps (-88.3762626647949f));
  n = _mm512_roundscale_ps (
      _mm512_mul_ps (x, _mm512_set1_ps (-1.44269504088896341f)),
      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  r = _mm512_fnmsub_ps (n, _mm512_set1_ps (0.693359375f), x);
  r = _mm512_fnmadd_ps (n, _mm512_set1_ps (-2.12194440e-4f), r);
  p = _mm512_set1_ps (1.3941108481958508e-3f);
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (8.37512593716383e-3f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (4.166635125875473e-2f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (1.6666415333747864e-1f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (0.5f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (1.0f));
  p = _mm512_fmadd_ps (p, r, _mm512_set1_ps (1.0f));
  return _mm512_scalef_ps (p, n);
}

/* 1 / d for d >= 1: the 14-bit estimate and one Newton step, a few times
 * cheaper than a division and within 2 ulp, which the per-pixel SiLU of
 * layers with small K needs (it costs about as much as their FMAs). */
static inline __m512
reciprocal512 (__m512 d)
{
  __m512 r = _mm512_rcp14_ps (d);

  return _mm512_fmadd_ps (r, _mm512_fnmadd_ps (d, r, _mm512_set1_ps (1.0f)), r);
}

static inline __m512
sigmoid512 (__m512 x)
{
  return reciprocal512 (_mm512_add_ps (_mm512_set1_ps (1.0f), exp_neg512 (x)));
}

static inline __m512
silu512 (__m512 x)
{
  return _mm512_mul_ps (x, sigmoid512 (x));
}

/* The end of every convolution's sum: its bias, then its activation. */
static inline __m512
bias_act512 (__m512 sum, __m512 bias, YoloseActivation act)
{
  __m512 v = _mm512_add_ps (sum, bias);

  switch (act) {
    case YOLOSE_ACT_SILU:
      return silu512 (v);
    case YOLOSE_ACT_SIGMOID:
      return sigmoid512 (v);
    case YOLOSE_ACT_NONE:
      break;
  }
  return v;
}

static inline size_t
round_up (size_t x, size_t to)
{
  return (x + to - 1) / to * to;
}

/* The first @n (at most 16) lanes. */
static inline __mmask16
first_lanes (int n)
{
  return (__mmask16)((1u << n) - 1);
}

/* Zeroes @n floats at @dst with whole and masked vector stores: the few
 * floats of a row's padding columns or of a band's padding tiles are not
 * worth a call to memset (36 calls per channel cost a Winograd layer at
 * 40 x 40 5% of its time). */
static inline void
zero_floats (float *dst, size_t n)
{
  const __m512 zero = _mm512_setzero_ps ();

  for (; n >= 16; n -= 16, dst += 16)
    _mm512_storeu_ps (dst, zero);
  if (n > 0)
    _mm512_mask_storeu_ps (dst, first_lanes ((int)n), zero);
}

/* Asks for the cache line @bytes past @p.  The sum is formed by the
 * instruction's addressing, not by C pointer arithmetic: the callers
 * look past the end of their arrays on the last rows or panels, where
 * the arithmetic would be undefined (a prefetch itself never faults).
 * Computed through an integer instead, the address made GCC 12 drop the
 * prefetches altogether. */
static inline void
prefetch_past (const void *p, ptrdiff_t bytes)
{
  __asm__ volatile("prefetcht0 (%0,%1)" : : "r"(p), "r"(bytes));
}

/* dst[x] = src[x * stride] for x in [0, count), the even or odd elements
 * of a row when stride is 2.  The last 16 go through masked loads, which
 * read nothing past src[2 * (count - 1)]; a scalar tail took up to 16
 * elements of every row (a third of a 40-wide phase row). */
static inline void
gather_row (float *dst, const float *src, int count, int stride)
{
  const __m512i even = _mm512_setr_epi32 (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20,
      22, 24, 26, 28, 30);
  int x = 0;

  if (stride == 1) {
    memcpy (dst, src, (size_t)count * sizeof (float));
    return;
  }
  if (stride != 2) {
    for (; x < count; x++)
      dst[x] = src[(size_t)x * stride];
    return;
  }
  for (; x + 16 < count; x += 16) {
    __m512 lo = _mm512_loadu_ps (src + 2 * x);
    __m512 hi = _mm512_loadu_ps (src + 2 * x + 16);
    _mm512_storeu_ps (dst + x, _mm512_permutex2var_ps (lo, even, hi));
  }
  if (x < count) {
    int left = 2 * (count - x) - 1; /* source floats still to read */
    __m512 lo
        = _mm512_maskz_loadu_ps (first_lanes (MIN (left, 16)), src + 2 * x);
    __m512 hi = left > 16
        ? _mm512_maskz_loadu_ps (first_lanes (left - 16), src + 2 * x + 16)
        : _mm512_setzero_ps ();
    _mm512_mask_storeu_ps (dst + x, first_lanes (count - x),
        _mm512_permutex2var_ps (lo, even, hi));
  }
}

/* ---------------------------------------------------------- epilogue */

typedef struct {
  const float *bias; /* this group's first channel */
  YoloseActivation act;
  float *out;            /* this group's first output plane */
  const float *residual; /* same layout as out, or NULL */
  size_t plane;
  int out_w;
} Epilogue;

/* Stores lanes [a, b) of the 16 in @v (lane a is output index @at). */
static inline void
store_lanes (const Epilogue *e, __m512 v, int a, int b, size_t at)
{
  if (a == 0 && b == 16) {
    if (e->residual != NULL)
      v = _mm512_add_ps (v, _mm512_loadu_ps (e->residual + at));
    _mm512_storeu_ps (e->out + at, v);
    return;
  }
  __mmask16 lanes = (__mmask16)(((1u << (b - a)) - 1) << a);
  __mmask16 first = (__mmask16)((1u << (b - a)) - 1);
  v = _mm512_maskz_compress_ps (lanes, v);
  if (e->residual != NULL)
    v = _mm512_add_ps (v, _mm512_maskz_loadu_ps (first, e->residual + at));
  _mm512_mask_storeu_ps (e->out + at, first, v);
}

/* Where the microkernel reads B: row (c, t), for channel c of a block
 * and tap t of the kernel, is the 32 floats at
 * base + c * chan_stride + tap[t]. */
typedef struct {
  const float *base;
  size_t chan_stride;
  const int *tap;
  int taps;
} BRows;

/* c[8][32] (+)= a[n_ch x taps][8] * B, B's rows as @rows says.  With a
 * nonzero @a_ahead (1x1 rows only) it asks, every two steps, for the
 * line of A that many bytes ahead: for weights that stream from memory,
 * each panel used once. */
void yolose_avx512_gemm_8x32 (int n_ch, const BRows *rows,
    const float *restrict a, float *restrict c, gboolean accumulate,
    ptrdiff_t a_ahead);

/* Winograd F(4x4, 3x3) for 3x3, stride 1, pad 1 convolutions, and for
 * the 6x6 stride-2 pad-2 stem read as one of those over its input's
 * space-to-depth (kernels_avx512_wino.c). */
gboolean yolose_avx512_wino_applies (const YoloseConvDesc *desc);
/* Whether it beats the direct convolution for an output of that size. */
gboolean yolose_avx512_wino_pays (int out_h, int out_w);
/* The transformed weights, 64-byte aligned (free ()), or NULL on OOM. */
float *yolose_avx512_wino_pack (const YoloseConvDesc *desc);
size_t yolose_avx512_wino_scratch_size (const YoloseConvDesc *desc, int in_h,
    int in_w, int threads);
void yolose_avx512_wino_conv2d (const YoloseConvDesc *desc, const float *u,
    const YoloseTensor *in, const YoloseTensor *residual, YoloseTensor *out,
    void *scratch, int threads);

/* 3x3 stride-2 convolutions with output channels in the vector
 * (kernels_avx512_strided.c). */
typedef struct _YoloseStrided YoloseStrided;
gboolean yolose_avx512_strided_applies (const YoloseConvDesc *desc);
/* The layer's weights in the kernel's layout, or NULL on OOM. */
YoloseStrided *yolose_avx512_strided_pack (const YoloseConvDesc *desc);
void yolose_avx512_strided_free (YoloseStrided *s);
size_t yolose_avx512_strided_scratch_size (const YoloseConvDesc *desc, int in_h,
    int in_w, int threads);
void yolose_avx512_strided_conv2d (const YoloseConvDesc *desc,
    const YoloseStrided *s, const YoloseTensor *in,
    const YoloseTensor *residual, YoloseTensor *out, void *scratch,
    int threads);

#endif
