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

/* Conv is a small GEMM per group, out[M x N] = W[M x K] * B[K x N] (M
 * output channels, N pixels, K = input channels x taps).  Weights are
 * packed once into G_MR-row panels; each thread copies a G_KC x G_NC block
 * of B (implicit im2col with the zero padding) into its scratch and adds
 * its products into per-thread sums for all output channels of the block,
 * which the last K block finishes (bias, SiLU, residual) into the output. */
#define G_MR 4   /* output channels per pass over B */
#define G_NC 64  /* pixels per block */
#define G_KC 256 /* rows of K per B block */

typedef struct {
  YoloseConvDesc desc;
  int m, k, m_panels;
  float *a; /* [groups][m_panels][k][G_MR], zero padded */
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

static float
activate (float x, YoloseActivation act)
{
  switch (act) {
    case YOLOSE_ACT_SILU:
      return silu (x);
    case YOLOSE_ACT_SIGMOID:
      return sigmoid (x);
    case YOLOSE_ACT_NONE:
      break;
  }
  return x;
}

static void *
generic_conv_pack (const YoloseConvDesc *desc)
{
  GenericPacked *p = g_try_new0 (GenericPacked, 1);
  size_t panel;

  if (p == NULL)
    return NULL;
  p->desc = *desc;
  p->m = desc->out_channels / desc->groups;
  p->k = desc->in_channels / desc->groups * desc->kernel * desc->kernel;
  p->m_panels = (p->m + G_MR - 1) / G_MR;
  panel = (size_t)p->k * G_MR;
  p->a = g_try_malloc0_n ((size_t)desc->groups * p->m_panels * panel,
      sizeof (float));
  if (p->a == NULL) {
    g_free (p);
    return NULL;
  }
  for (int g = 0; g < desc->groups; g++)
    for (int oc = 0; oc < p->m; oc++) {
      float *dst
          = p->a + ((size_t)g * p->m_panels + oc / G_MR) * panel + oc % G_MR;
      const float *src = desc->weight + ((size_t)g * p->m + oc) * p->k;
      for (int kk = 0; kk < p->k; kk++)
        dst[(size_t)kk * G_MR] = src[kk];
    }
  return p;
}

static void
generic_conv_packed_free (void *packed)
{
  GenericPacked *p = packed;

  if (p != NULL)
    g_free (p->a);
  g_free (p);
}

/* Per thread: a B block, then the sums of every output channel of one
 * group for one pixel block. */
static size_t
thread_scratch_floats (const YoloseConvDesc *desc)
{
  int m_panels = (desc->out_channels / desc->groups + G_MR - 1) / G_MR;

  return (size_t)G_KC * G_NC + (size_t)m_panels * G_MR * G_NC;
}

static size_t
generic_conv_scratch_size (const YoloseConvDesc *desc, int in_h, int in_w,
    int threads)
{
  return (size_t)MAX (threads, 1) * thread_scratch_floats (desc)
      * sizeof (float);
}

/* row[0 .. nc) = input values under tap (ky, kx) of one input plane for the
 * flattened output pixels [n0, n0 + nc), 0 in the padding.  Works one
 * output row segment at a time so the copy itself is a plain loop. */
static void
im2col_row (float *row, const float *plane, const YoloseConvDesc *d, int in_h,
    int in_w, int out_w, int ky, int kx, int n0, int nc)
{
  int s = d->stride, off = kx - d->pad;
  /* output columns whose input column ox * s + off is inside the row */
  int lo = off >= 0 ? 0 : (-off + s - 1) / s;
  int hi = in_w - 1 - off < 0 ? 0 : (in_w - 1 - off) / s + 1;

  for (int n = n0; n < n0 + nc;) {
    int oy = n / out_w, ox = n % out_w;
    int len = MIN (out_w - ox, n0 + nc - n);
    int iy = oy * s + ky - d->pad;
    float *seg = row + (n - n0);
    int a = CLAMP (lo, ox, ox + len), b = CLAMP (hi, a, ox + len);

    if (iy < 0 || iy >= in_h)
      a = b = ox + len;
    for (int x = ox; x < a; x++)
      seg[x - ox] = 0.0f;
    if (b > a) {
      const float *src = plane + (size_t)iy * in_w + off;
      for (int x = a; x < b; x++)
        seg[x - ox] = src[x * s];
    }
    for (int x = b; x < ox + len; x++)
      seg[x - ox] = 0.0f;
    n += len;
  }
}

/* b[kk][0 .. G_NC) for rows [k0, k0 + kc) of B, zero beyond nc pixels. */
static void
pack_b_block (float *b, const YoloseConvDesc *d, const YoloseTensor *in,
    const float *in_group, int out_w, int k0, int kc, int n0, int nc)
{
  int taps = d->kernel * d->kernel;
  size_t in_plane = (size_t)in->h * in->w;
  gboolean direct = d->kernel == 1 && d->stride == 1 && d->pad == 0;

  for (int kk = 0; kk < kc; kk++) {
    int k = k0 + kk, t = k % taps;
    const float *plane = in_group + (size_t)(k / taps) * in_plane;
    float *row = b + (size_t)kk * G_NC;

    if (direct)
      memcpy (row, plane + n0, (size_t)nc * sizeof (float));
    else
      im2col_row (row, plane, d, in->h, in->w, out_w, t / d->kernel,
          t % d->kernel, n0, nc);
    for (int j = nc; j < G_NC; j++)
      row[j] = 0.0f;
  }
}

/* acc[G_MR][G_NC] += a[kc][G_MR] * b[kc][G_NC]: the sums stay in L1 and
 * the inner loop runs over G_NC contiguous pixels, which vectorises. */
static void
tile_multiply (int kc, const float *a, const float *b, float *acc)
{
  float *c0 = acc, *c1 = acc + G_NC, *c2 = acc + 2 * G_NC;
  float *c3 = acc + 3 * G_NC;

  for (int k = 0; k < kc; k++) {
    const float *bk = b + (size_t)k * G_NC;
    float a0 = a[4 * k], a1 = a[4 * k + 1], a2 = a[4 * k + 2];
    float a3 = a[4 * k + 3];
#pragma omp simd
    for (int j = 0; j < G_NC; j++) {
      c0[j] += a0 * bk[j];
      c1[j] += a1 * bk[j];
      c2[j] += a2 * bk[j];
      c3[j] += a3 * bk[j];
    }
  }
}

typedef struct {
  const GenericPacked *p;
  const YoloseTensor *in, *residual;
  YoloseTensor *out;
} GenericConvJob;

/* Finishes rows [oc0, oc0 + rows) x pixels [n0, n0 + nc) of group @g from
 * sums laid out [row][G_NC]. */
static void
store_panel (const GenericConvJob *job, int g, int oc0, int rows, int n0,
    int nc, const float *sums)
{
  size_t plane = (size_t)job->out->h * job->out->w;
  const YoloseConvDesc *d = &job->p->desc;

  for (int r = 0; r < rows; r++) {
    int oc = g * job->p->m + oc0 + r;
    size_t at = (size_t)oc * plane + n0;
    for (int j = 0; j < nc; j++) {
      float v = activate (sums[r * G_NC + j] + d->bias[oc], d->act);
      if (job->residual != NULL)
        v += job->residual->data[at + j];
      job->out->data[at + j] = v;
    }
  }
}

/* Every output channel of group @g for pixels [n0, n0 + nc). */
static void
conv_block (const GenericConvJob *job, int g, int n0, int nc, float *b,
    float *sums)
{
  const GenericPacked *p = job->p;
  const YoloseConvDesc *d = &p->desc;
  int cin_g = d->in_channels / d->groups;
  const float *in_group
      = job->in->data + (size_t)g * cin_g * job->in->h * job->in->w;
  const float *a_group = p->a + (size_t)g * p->m_panels * p->k * G_MR;
  size_t panel_sums = (size_t)G_MR * G_NC;

  memset (sums, 0, p->m_panels * panel_sums * sizeof (float));
  for (int k0 = 0; k0 < p->k; k0 += G_KC) {
    int kc = MIN (G_KC, p->k - k0);
    pack_b_block (b, d, job->in, in_group, job->out->w, k0, kc, n0, nc);
    for (int i = 0; i < p->m_panels; i++)
      tile_multiply (kc, a_group + ((size_t)i * p->k + k0) * G_MR, b,
          sums + i * panel_sums);
  }
  for (int i = 0; i < p->m_panels; i++)
    store_panel (job, g, i * G_MR, MIN (G_MR, p->m - i * G_MR), n0, nc,
        sums + i * panel_sums);
}

static void
generic_conv2d (const YoloseConvDesc *desc, const void *packed,
    const YoloseTensor *in, const YoloseTensor *residual, YoloseTensor *out,
    void *scratch, int threads)
{
  GenericConvJob job = { packed, in, residual, out };
  int n = out->h * out->w;
  int n_blocks = (n + G_NC - 1) / G_NC;
  int n_tasks = n_blocks * desc->groups;

#pragma omp parallel num_threads(threads)
  {
    float *b = (float *)scratch
        + (size_t)omp_get_thread_num () * thread_scratch_floats (desc);
    float *sums = b + (size_t)G_KC * G_NC;
#pragma omp for schedule(static)
    for (int task = 0; task < n_tasks; task++) {
      int g = task / n_blocks, n0 = (task % n_blocks) * G_NC;
      conv_block (&job, g, n0, MIN (G_NC, n - n0), b, sums);
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

static const YoloseKernels generic_kernels = {
  .name = "generic",
  .conv_pack = generic_conv_pack,
  .conv_packed_free = generic_conv_packed_free,
  .conv_scratch_size = generic_conv_scratch_size,
  .conv2d = generic_conv2d,
  .maxpool2d = generic_maxpool2d,
  .upsample_nearest = generic_upsample_nearest,
  .squeeze_excite = generic_squeeze_excite,
};

const YoloseKernels *
yolose_kernels_generic (void)
{
  return &generic_kernels;
}
