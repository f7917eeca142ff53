/* yolose — the portable kernels: plain C11 + OpenMP.
 *
 * This table is the test oracle for every optimised table and the path
 * taken on CPUs without AVX2, so clarity and exactness come first; speed
 * comes from loop shapes the compiler can vectorise on its own (an inner
 * loop over contiguous output pixels, `omp simd` where it helps). */
#include "kernels.h"

#include <math.h>
#include <omp.h>
#include <string.h>

/* Output channels computed together, so that one input row feeds several
 * accumulator rows while it is in L1. */
#define GENERIC_OC_BLOCK 4

typedef struct {
  YoloseConvDesc desc;
} GenericPacked;

static float
silu (float x)
{
  return x / (1.0f + expf (-x));
}

static float
sigmoid (float x)
{
  return 1.0f / (1.0f + expf (-x));
}

static void *
generic_conv_pack (const YoloseConvDesc *desc)
{
  GenericPacked *packed = g_try_new0 (GenericPacked, 1);

  /* The generic conv reads the torch layout as is; the block only exists
   * because NULL means out of memory. */
  if (packed != NULL)
    packed->desc = *desc;
  return packed;
}

static void
generic_conv_packed_free (void *packed)
{
  g_free (packed);
}

static int
conv_out_w (const YoloseConvDesc *desc, int in_w)
{
  return yolose_conv_out_dim (in_w, desc->kernel, desc->stride, desc->pad);
}

static size_t
generic_conv_scratch_size (const YoloseConvDesc *desc, int in_h, int in_w,
                           int threads)
{
  size_t per_thread = (size_t)GENERIC_OC_BLOCK * conv_out_w (desc, in_w);

  return per_thread * (size_t)MAX (threads, 1) * sizeof (float);
}

/* The range [first, end) of output columns whose input column
 * ox * stride + kx - pad lies inside [0, in_w). */
static void
valid_columns (int in_w, int out_w, int stride, int offset, int *first,
               int *end)
{
  int lo = 0, hi = out_w;

  while (lo < out_w && lo * stride + offset < 0)
    lo++;
  while (hi > lo && (hi - 1) * stride + offset >= in_w)
    hi--;
  *first = lo;
  *end = hi;
}

/* acc[j][ox] += w[j] * in_row[ox * stride + offset] for the valid ox. */
static void
accumulate_tap (float *acc, int out_w, int n_oc, const float *w,
                size_t w_oc_stride, const float *in_row, int in_w, int stride,
                int offset)
{
  int first, end;

  valid_columns (in_w, out_w, stride, offset, &first, &end);
  for (int j = 0; j < n_oc; j++) {
    float wj = w[j * w_oc_stride];
    float *a = acc + (size_t)j * out_w;

    if (stride == 1) {
      const float *src = in_row + offset;
#pragma omp simd
      for (int ox = first; ox < end; ox++)
        a[ox] += wj * src[ox];
    } else {
      for (int ox = first; ox < end; ox++)
        a[ox] += wj * in_row[ox * stride + offset];
    }
  }
}

/* One block of up to GENERIC_OC_BLOCK output channels of one group, for
 * one output row. */
static void
conv_block_row (const YoloseConvDesc *desc, const YoloseTensor *in,
                const YoloseTensor *residual, YoloseTensor *out, int oc0,
                int n_oc, int oy, float *acc)
{
  int k = desc->kernel;
  int cin_g = desc->in_channels / desc->groups;
  int cout_g = desc->out_channels / desc->groups;
  int ic0 = (oc0 / cout_g) * cin_g;
  size_t w_oc_stride = (size_t)cin_g * k * k;
  size_t in_plane = (size_t)in->h * in->w;
  size_t out_plane = (size_t)out->h * out->w;

  for (int j = 0; j < n_oc; j++)
    for (int ox = 0; ox < out->w; ox++)
      acc[(size_t)j * out->w + ox] = desc->bias[oc0 + j];

  for (int ic = 0; ic < cin_g; ic++) {
    const float *plane = in->data + (size_t)(ic0 + ic) * in_plane;
    for (int ky = 0; ky < k; ky++) {
      int iy = oy * desc->stride + ky - desc->pad;
      if (iy < 0 || iy >= in->h)
        continue;
      for (int kx = 0; kx < k; kx++) {
        const float *w = desc->weight + (size_t)oc0 * w_oc_stride
                         + ((size_t)ic * k + ky) * k + kx;
        accumulate_tap (acc, out->w, n_oc, w, w_oc_stride,
                        plane + (size_t)iy * in->w, in->w, desc->stride,
                        kx - desc->pad);
      }
    }
  }

  for (int j = 0; j < n_oc; j++) {
    size_t row = (size_t)(oc0 + j) * out_plane + (size_t)oy * out->w;
    float *dst = out->data + row;
    const float *a = acc + (size_t)j * out->w;
    for (int ox = 0; ox < out->w; ox++) {
      float v = desc->act == YOLOSE_ACT_SILU ? silu (a[ox]) : a[ox];
      if (residual != NULL)
        v += residual->data[row + ox];
      dst[ox] = v;
    }
  }
}

static void
generic_conv2d (const YoloseConvDesc *desc, const void *packed,
                const YoloseTensor *in, const YoloseTensor *residual,
                YoloseTensor *out, void *scratch, int threads)
{
  int cout_g = desc->out_channels / desc->groups;
  int blocks_per_group = (cout_g + GENERIC_OC_BLOCK - 1) / GENERIC_OC_BLOCK;
  int n_blocks = blocks_per_group * desc->groups;
  int n_tasks = n_blocks * out->h;
  float *scratch_f = scratch;

#pragma omp parallel num_threads(threads)
  {
    float *acc
        = scratch_f + (size_t)omp_get_thread_num () * GENERIC_OC_BLOCK * out->w;
#pragma omp for schedule(static)
    for (int task = 0; task < n_tasks; task++) {
      int block = task / out->h, oy = task % out->h;
      int group = block / blocks_per_group;
      int first = (block % blocks_per_group) * GENERIC_OC_BLOCK;
      int n_oc = MIN (GENERIC_OC_BLOCK, cout_g - first);
      conv_block_row (desc, in, residual, out, group * cout_g + first, n_oc, oy,
                      acc);
    }
  }
}

static void
generic_maxpool2d (const YoloseTensor *in, YoloseTensor *out, int kernel,
                   int stride, int pad, int threads)
{
  size_t in_plane = (size_t)in->h * in->w;
  size_t out_plane = (size_t)out->h * out->w;

#pragma omp parallel for num_threads(threads) schedule(static)
  for (int c = 0; c < out->c; c++) {
    const float *src = in->data + (size_t)c * in_plane;
    float *dst = out->data + (size_t)c * out_plane;
    for (int oy = 0; oy < out->h; oy++) {
      for (int ox = 0; ox < out->w; ox++) {
        float m = -INFINITY;
        for (int ky = 0; ky < kernel; ky++) {
          int iy = oy * stride + ky - pad;
          if (iy < 0 || iy >= in->h)
            continue;
          for (int kx = 0; kx < kernel; kx++) {
            int ix = ox * stride + kx - pad;
            if (ix >= 0 && ix < in->w)
              m = fmaxf (m, src[(size_t)iy * in->w + ix]);
          }
        }
        dst[(size_t)oy * out->w + ox] = m;
      }
    }
  }
}

static void
generic_upsample_nearest (const YoloseTensor *in, YoloseTensor *out, int scale,
                          int threads)
{
  int n_rows = out->c * out->h;

#pragma omp parallel for num_threads(threads) schedule(static)
  for (int r = 0; r < n_rows; r++) {
    int c = r / out->h, oy = r % out->h;
    const float *src = in->data + ((size_t)c * in->h + oy / scale) * in->w;
    float *dst = out->data + (size_t)r * out->w;
    for (int ox = 0; ox < out->w; ox++)
      dst[ox] = src[ox / scale];
  }
}

static void
generic_squeeze_excite (YoloseTensor *inout, const float *w1, const float *w2,
                        int hidden, float *scratch, int threads)
{
  int c = inout->c;
  size_t plane = (size_t)inout->h * inout->w;
  float *mean = scratch, *mid = scratch + c;

#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int ch = 0; ch < c; ch++) {
      const float *x = inout->data + (size_t)ch * plane;
      double sum = 0.0;
      for (size_t i = 0; i < plane; i++)
        sum += x[i];
      mean[ch] = (float)(sum / (double)plane);
    }
#pragma omp for schedule(static)
    for (int h = 0; h < hidden; h++) {
      float acc = 0.0f;
      for (int ch = 0; ch < c; ch++)
        acc += w1[(size_t)h * c + ch] * mean[ch];
      mid[h] = acc > 0.0f ? acc : 0.0f;
    }
#pragma omp for schedule(static)
    for (int ch = 0; ch < c; ch++) {
      float acc = 0.0f;
      float *x = inout->data + (size_t)ch * plane;
      for (int h = 0; h < hidden; h++)
        acc += w2[(size_t)ch * hidden + h] * mid[h];
      float gate = sigmoid (acc);
      for (size_t i = 0; i < plane; i++)
        x[i] *= gate;
    }
  }
}

static void
generic_sigmoid (float *x, size_t n, int threads)
{
  ptrdiff_t count = (ptrdiff_t)n;

#pragma omp parallel for num_threads(threads) schedule(static)
  for (ptrdiff_t i = 0; i < count; i++)
    x[i] = sigmoid (x[i]);
}

static const YoloseKernels generic_kernels = {
  .name = "generic",
  .conv_pack = generic_conv_pack,
  .conv_packed_free = generic_conv_packed_free,
  .conv_scratch_size = generic_conv_scratch_size,
  .conv2d = generic_conv2d,
  .maxpool2d = generic_maxpool2d,
  .upsample_nearest = generic_upsample_nearest,
  .squeeze_excite = generic_squeeze_excite,
  .sigmoid = generic_sigmoid,
};

const YoloseKernels *
yolose_kernels_generic (void)
{
  return &generic_kernels;
}
