/* yolose tests — every kernel table against naive references.
 *
 * The references below are the textbook loops (a direct seven-loop
 * convolution in double precision, and so on), independent of any table.
 * Each table runs on odd shapes, strides, paddings, groups, residuals,
 * outputs inside a channel slice of a larger tensor and several thread
 * counts.  Tolerance: |got - ref| <= TOL * (1 + |ref|) with TOL = 1e-4 for
 * convolutions and SE (float accumulation over up to a few thousand terms) and
 * 2e-6 for element-wise kernels (a few ulp of expf).  A failure prints the
 * table and the configuration. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels.h"
#include "cpu_features.h"
#include "kernels_pool.h"
#include "slowcheck.h"

#define CONV_TOL 1e-4
#define ELEMENTWISE_TOL 2e-6
/* Value of the channels of a larger tensor that a slice must not touch. */
#define SENTINEL 12345.0f

enum { TABLE_GENERIC, TABLE_AVX2, TABLE_AVX512, N_TABLES };

/* The table under test for loop index @i, or NULL (with a note) when this
 * build or CPU cannot run it. */
static const YoloseKernels *
table_for (int i)
{
  static const char *names[N_TABLES] = { "generic", "avx2", "avx512" };
  const YoloseKernels *k;

  if (yolose_test_kernels_excluded (names[i]))
    return NULL;
  k = i == TABLE_GENERIC ? yolose_kernels_generic ()
      : i == TABLE_AVX2  ? yolose_kernels_avx2 ()
                         : yolose_kernels_avx512 ();
  if (k == NULL)
    printf ("NOTE: the %s kernels are not available in this build or on "
            "this CPU; their tests are skipped\n",
        names[i]);
  return k;
}

static void
fill_random (GRand *rand, float *x, size_t n, double lo, double hi)
{
  for (size_t i = 0; i < n; i++)
    x[i] = (float)g_rand_double_range (rand, lo, hi);
}

static gboolean
close_enough (double got, double ref, double tol)
{
  return fabs (got - ref) <= tol * (1.0 + fabs (ref));
}

/* ---------------------------------------------------------------- conv */

typedef struct {
  int cin, cout, h, w, k, stride, pad, groups;
  YoloseActivation act;
  gboolean residual;
  gboolean alias_residual;       /* out is the residual tensor itself */
  int slice_before, slice_after; /* extra channels around out */
  int threads;
} ConvCase;

static const char *
activation_name (YoloseActivation act)
{
  switch (act) {
    case YOLOSE_ACT_SILU:
      return "silu";
    case YOLOSE_ACT_SIGMOID:
      return "sigmoid";
    case YOLOSE_ACT_NONE:
      break;
  }
  return "none";
}

static char *
conv_case_to_string (const YoloseKernels *kernels, const ConvCase *c)
{
  return g_strdup_printf (
      "%s conv: cin %d cout %d in %dx%d k %d stride %d "
      "pad %d groups %d act %s residual %s%s slice +%d/+%d threads %d",
      kernels->name, c->cin, c->cout, c->h, c->w, c->k, c->stride, c->pad,
      c->groups, activation_name (c->act), c->residual ? "yes" : "no",
      c->alias_residual ? " (aliased)" : "", c->slice_before, c->slice_after,
      c->threads);
}

static double
reference_silu (double x)
{
  return x / (1.0 + exp (-x));
}

/* Direct convolution in double: out[oc][oy][ox] for one element. */
static double
reference_conv_at (const YoloseConvDesc *d, const float *in, int h, int w,
    int oc, int oy, int ox)
{
  int cin_g = d->in_channels / d->groups;
  int cout_g = d->out_channels / d->groups;
  int g = oc / cout_g;
  double sum = d->bias[oc];

  for (int ic = 0; ic < cin_g; ic++)
    for (int ky = 0; ky < d->kernel; ky++)
      for (int kx = 0; kx < d->kernel; kx++) {
        int iy = oy * d->stride + ky - d->pad;
        int ix = ox * d->stride + kx - d->pad;
        if (iy < 0 || iy >= h || ix < 0 || ix >= w)
          continue;
        sum += (double)
                   d->weight[((oc * cin_g + ic) * d->kernel + ky) * d->kernel
                       + kx]
            * in[((size_t)(g * cin_g + ic) * h + iy) * w + ix];
      }
  if (d->act == YOLOSE_ACT_SILU)
    sum = reference_silu (sum);
  if (d->act == YOLOSE_ACT_SIGMOID)
    sum = 1.0 / (1.0 + exp (-sum));
  return sum;
}

/* Runs one case through @kernels; returns a description of the first
 * mismatch (newly allocated) or NULL. */
static char *
run_conv_case (const YoloseKernels *kernels, const ConvCase *c, GRand *rand)
{
  YoloseConvDesc d = {
    .in_channels = c->cin,
    .out_channels = c->cout,
    .kernel = c->k,
    .stride = c->stride,
    .pad = c->pad,
    .groups = c->groups,
    .act = c->act,
  };
  int oh = yolose_conv_out_dim (c->h, c->k, c->stride, c->pad);
  int ow = yolose_conv_out_dim (c->w, c->k, c->stride, c->pad);
  size_t plane = (size_t)oh * ow;
  int total_c = c->slice_before + c->cout + c->slice_after;
  size_t n_weight = (size_t)c->cout * (c->cin / c->groups) * c->k * c->k;
  float *weight = g_new (float, n_weight);
  float *bias = g_new (float, c->cout);
  float *input = g_new (float, (size_t)c->cin * c->h * c->w);
  float *big = g_new (float, total_c *plane);
  float *res_copy = NULL;
  YoloseTensor in = { input, c->cin, c->h, c->w };
  YoloseTensor out = { big + c->slice_before * plane, c->cout, oh, ow };
  YoloseTensor res = out;
  char *failure = NULL;
  void *packed, *scratch;
  size_t scratch_bytes;
  double scale = 1.0 / sqrt ((double)(c->cin / c->groups) * c->k * c->k);

  fill_random (rand, weight, n_weight, -2.0 * scale, 2.0 * scale);
  fill_random (rand, bias, c->cout, -1.0, 1.0);
  fill_random (rand, input, (size_t)c->cin * c->h * c->w, -3.0, 3.0);
  for (size_t i = 0; i < total_c * plane; i++)
    big[i] = SENTINEL;
  if (c->residual) {
    res_copy = g_new (float, c->cout *plane);
    fill_random (rand, res_copy, c->cout * plane, -1.0, 1.0);
    if (c->alias_residual) {
      memcpy (out.data, res_copy, c->cout * plane * sizeof (float));
    } else {
      res.data = g_new (float, c->cout *plane);
      memcpy (res.data, res_copy, c->cout * plane * sizeof (float));
      /* Garbage in the output proves every element gets written. */
      fill_random (rand, out.data, c->cout * plane, 1e6, 2e6);
    }
  } else {
    fill_random (rand, out.data, c->cout * plane, 1e6, 2e6);
  }
  d.weight = weight;
  d.bias = bias;

  packed = kernels->conv_pack (&d);
  ck_assert_ptr_nonnull (packed);
  scratch_bytes = kernels->conv_scratch_size (&d, c->h, c->w, c->threads);
  scratch = scratch_bytes ? g_malloc (scratch_bytes) : NULL;
  kernels->conv2d (&d, packed, &in, c->residual ? &res : NULL, &out, scratch,
      c->threads);

  for (int oc = 0; oc < c->cout && failure == NULL; oc++)
    for (size_t i = 0; i < plane && failure == NULL; i++) {
      int oy = i / ow, ox = i % ow;
      double ref = reference_conv_at (&d, input, c->h, c->w, oc, oy, ox);
      float got = out.data[oc * plane + i];
      if (c->residual)
        ref += res_copy[oc * plane + i];
      if (!close_enough (got, ref, CONV_TOL))
        failure = g_strdup_printf ("out[%d][%d][%d] = %.7g, expected %.7g", oc,
            oy, ox, got, ref);
    }
  for (size_t i = 0; i < total_c * plane && failure == NULL; i++) {
    gboolean inside = i >= c->slice_before * plane
        && i < (c->slice_before + c->cout) * plane;
    if (!inside && big[i] != SENTINEL)
      failure = g_strdup_printf ("wrote outside its slice at float %zu", i);
  }

  g_free (scratch);
  kernels->conv_packed_free (packed);
  if (c->residual && !c->alias_residual)
    g_free (res.data);
  g_free (res_copy);
  g_free (big);
  g_free (input);
  g_free (bias);
  g_free (weight);
  return failure;
}

static void
check_conv_case (const YoloseKernels *kernels, const ConvCase *c, GRand *rand)
{
  char *failure = run_conv_case (kernels, c, rand);

  if (failure != NULL) {
    char *config = conv_case_to_string (kernels, c);
    ck_abort_msg ("%s: %s", config, failure);
  }
}

/* The layer shapes of YOLOv5 (scaled down in size), with SiLU, sigmoid or
 * no activation, with and without residual and slice, on 1, 2 and 3
 * threads. */
static const ConvCase yolo_like_cases[] = {
  /* stem: k 6 s 2 p 2 */
  { 3, 32, 64, 64, 6, 2, 2, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 0, 0, 2 },
  { 3, 16, 13, 17, 6, 2, 2, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 0, 0, 1 },
  /* the stem as Winograd over its space-to-depth (avx512, outputs of 20 x
   * 20 and more): odd sizes, whose last input row and column belong to
   * one phase only, a residual and a slice, more input channels */
  { 3, 16, 83, 85, 6, 2, 2, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 0, 0, 2 },
  { 5, 24, 70, 67, 6, 2, 2, 1, YOLOSE_ACT_NONE, TRUE, FALSE, 8, 3, 3 },
  /* k 3 s 2 p 1 downsampling */
  { 32, 64, 32, 32, 3, 2, 1, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 0, 0, 2 },
  { 64, 128, 21, 19, 3, 2, 1, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 0, 0, 3 },
  /* the AVX-512 stride-2 kernel's cases: several channel blocks with
   * partial sums and bands of capped size (128 in, 70 x 66), a partial
   * block of 32 output channels (48), blocks of 16 (16), tiles past the
   * right and bottom edges (odd sizes), a slice, rows longer than a
   * band's 1024 pixels (bands of one row) */
  { 128, 48, 40, 40, 3, 2, 1, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 0, 0, 2 },
  { 32, 16, 70, 66, 3, 2, 1, 1, YOLOSE_ACT_SILU, TRUE, FALSE, 0, 0, 3 },
  { 96, 64, 23, 41, 3, 2, 1, 1, YOLOSE_ACT_NONE, FALSE, FALSE, 8, 0, 1 },
  { 8, 24, 5, 2101, 3, 2, 1, 1, YOLOSE_ACT_SILU, TRUE, FALSE, 0, 0, 2 },
  /* Bottleneck k 3 s 1 p 1, residual added in place */
  { 32, 32, 40, 40, 3, 1, 1, 1, YOLOSE_ACT_SILU, TRUE, TRUE, 0, 0, 2 },
  { 64, 64, 20, 20, 3, 1, 1, 1, YOLOSE_ACT_SILU, TRUE, FALSE, 0, 0, 1 },
  { 128, 128, 10, 10, 3, 1, 1, 1, YOLOSE_ACT_SILU, TRUE, TRUE, 0, 0, 3 },
  /* odd sizes and channel counts for the Winograd path (3x3 s1 p1 on
   * pictures at least 32 wide in the avx512 table) */
  { 16, 24, 13, 33, 3, 1, 1, 1, YOLOSE_ACT_SILU, TRUE, FALSE, 0, 0, 2 },
  { 40, 8, 5, 47, 3, 1, 1, 1, YOLOSE_ACT_NONE, FALSE, FALSE, 2, 1, 3 },
  { 3, 5, 2, 32, 3, 1, 1, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 0, 0, 1 },
  { 70, 130, 31, 35, 3, 1, 1, 1, YOLOSE_ACT_SILU, TRUE, TRUE, 0, 0, 2 },
  { 64, 64, 81, 33, 3, 1, 1, 1, YOLOSE_ACT_SILU, TRUE, FALSE, 0, 3, 3 },
  { 16, 16, 9, 11, 3, 1, 1, 1, YOLOSE_ACT_SILU, TRUE, FALSE, 0, 0, 2 },
  /* rows of several runs of 16 tiles, read in place: the last run's
   * pixels end within, or just past, a vector (133 and 129 wide), and
   * the stem's gathered rows likewise */
  { 8, 16, 6, 133, 3, 1, 1, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 0, 0, 2 },
  { 12, 8, 9, 129, 3, 1, 1, 1, YOLOSE_ACT_SILU, TRUE, FALSE, 0, 0, 1 },
  { 3, 16, 44, 259, 6, 2, 2, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 0, 0, 2 },
  /* Winograd weights in input channel blocks of unequal size (44, 44, 42) */
  { 130, 40, 24, 26, 3, 1, 1, 1, YOLOSE_ACT_SILU, TRUE, FALSE, 0, 0, 2 },
  /* 1x1 on planes of a multiple of 512 bytes (24 x 16, 384 pixels),
   * whose tiles the avx512 table copies one by one */
  { 96, 40, 24, 16, 1, 1, 0, 1, YOLOSE_ACT_SILU, TRUE, FALSE, 0, 0, 2 },
  { 300, 24, 16, 8, 1, 1, 0, 1, YOLOSE_ACT_NONE, FALSE, FALSE, 8, 0, 3 },
  { 96, 40, 24, 16, 1, 1, 0, 1, YOLOSE_ACT_SILU, TRUE, FALSE, 0, 0, 1 },
  /* 40 x 40 planes, whose rows of many channels crowd a few L1 sets:
   * copied tile by tile too */
  { 160, 24, 40, 40, 1, 1, 0, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 0, 0, 1 },
  /* 1x1 into a Concat slice */
  { 64, 32, 40, 40, 1, 1, 0, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 32, 0, 2 },
  { 64, 32, 40, 40, 1, 1, 0, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 0, 32, 2 },
  { 256, 128, 20, 20, 1, 1, 0, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 128, 64, 3 },
  { 1024, 512, 7, 5, 1, 1, 0, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 0, 0, 2 },
  /* Detect: 1x1 with bias and sigmoid, odd channel count, also on rows
   * of whole 32-pixel tiles */
  { 128, 75, 10, 10, 1, 1, 0, 1, YOLOSE_ACT_SIGMOID, FALSE, FALSE, 0, 0, 2 },
  { 64, 255, 8, 8, 1, 1, 0, 1, YOLOSE_ACT_SIGMOID, FALSE, FALSE, 0, 0, 1 },
  { 64, 255, 3, 64, 1, 1, 0, 1, YOLOSE_ACT_SIGMOID, FALSE, FALSE, 0, 0, 2 },
  /* deep K (several cache blocks) with a residual */
  { 512, 64, 9, 11, 3, 1, 1, 1, YOLOSE_ACT_SILU, TRUE, FALSE, 0, 0, 2 },
  /* rows a multiple of 32 wide: tiles of one whole output row, which the
   * avx512 microkernel finishes straight into the output, after one K
   * block or several, with a residual (also in place) */
  { 300, 64, 6, 64, 1, 1, 0, 1, YOLOSE_ACT_SILU, TRUE, TRUE, 0, 8, 2 },
  { 40, 24, 5, 96, 1, 1, 0, 1, YOLOSE_ACT_SILU, TRUE, FALSE, 8, 0, 3 },
  { 24, 16, 7, 34, 3, 1, 0, 1, YOLOSE_ACT_NONE, TRUE, FALSE, 0, 0, 1 },
  { 160, 32, 9, 64, 3, 2, 1, 1, YOLOSE_ACT_SILU, TRUE, TRUE, 0, 0, 2 },
  /* 1x1 on planes of a multiple of 128 floats (80 x 80, 160 x 160 in the
   * network), which the avx512 table copies band by band as runs of the
   * planes rather than reading them in place: one band shared by all
   * tasks, several bands, several K blocks */
  { 48, 40, 16, 16, 1, 1, 0, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 8, 8, 2 },
  { 64, 64, 32, 48, 1, 1, 0, 1, YOLOSE_ACT_SILU, TRUE, FALSE, 0, 0, 3 },
  { 320, 24, 40, 32, 1, 1, 0, 1, YOLOSE_ACT_NONE, TRUE, TRUE, 0, 0, 2 },
  /* degenerate shapes */
  { 1, 1, 1, 1, 1, 1, 0, 1, YOLOSE_ACT_NONE, FALSE, FALSE, 0, 0, 1 },
  { 1, 1, 1, 1, 3, 1, 1, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 0, 0, 3 },
  { 5, 7, 7, 5, 5, 1, 2, 1, YOLOSE_ACT_SILU, FALSE, FALSE, 1, 2, 2 },
  { 6, 4, 13, 17, 3, 2, 0, 2, YOLOSE_ACT_SILU, TRUE, FALSE, 0, 0, 2 },
  { 8, 8, 13, 17, 3, 1, 1, 4, YOLOSE_ACT_NONE, FALSE, FALSE, 0, 0, 3 },
  { 8, 8, 6, 6, 1, 1, 0, 8, YOLOSE_ACT_SILU, FALSE, FALSE, 0, 0, 1 },
};

/* The table's conv matches the direct reference on YOLOv5's layer shapes
 * and on degenerate ones. */
START_TEST (test_conv_layer_shapes)
{
  const YoloseKernels *kernels = table_for (_i);
  GRand *rand = g_rand_new_with_seed (1234);

  if (kernels == NULL) {
    g_rand_free (rand);
    return;
  }
  for (gsize i = 0; i < G_N_ELEMENTS (yolo_like_cases); i++)
    check_conv_case (kernels, &yolo_like_cases[i], rand);
  g_rand_free (rand);
}
END_TEST

/* The table's conv matches the reference on random shapes (sizes, kernel
 * 1/3/5/6, strides 1/2, paddings, groups 1/2/4, residual, slices,
 * threads 1-3). */
START_TEST (test_conv_random_shapes)
{
  const YoloseKernels *kernels = table_for (_i);
  guint32 seed = 20240611;
  GRand *rand = g_rand_new_with_seed (seed);
  static const int kernel_sizes[] = { 1, 3, 5, 6 };
  static const int group_counts[] = { 1, 1, 2, 4 };
  static const YoloseActivation activations[]
      = { YOLOSE_ACT_NONE, YOLOSE_ACT_SILU, YOLOSE_ACT_SIGMOID };

  if (kernels == NULL) {
    g_rand_free (rand);
    return;
  }
  printf ("random conv shapes for %s, seed %u\n", kernels->name, seed);
  for (int n = 0; n < 150; n++) {
    ConvCase c = { 0 };
    c.k = kernel_sizes[g_rand_int_range (rand, 0, 4)];
    c.stride = g_rand_int_range (rand, 1, 3);
    c.pad = g_rand_int_range (rand, 0, c.k / 2 + 2);
    c.groups = group_counts[g_rand_int_range (rand, 0, 4)];
    c.cin = c.groups * g_rand_int_range (rand, 1, 40);
    c.cout = c.groups * g_rand_int_range (rand, 1, 30);
    c.h = g_rand_int_range (rand, 1, 30);
    c.w = g_rand_int_range (rand, 1, 30);
    if (c.h + 2 * c.pad < c.k || c.w + 2 * c.pad < c.k)
      continue;
    c.act = activations[g_rand_int_range (rand, 0, 3)];
    c.residual = g_rand_boolean (rand);
    c.alias_residual = c.residual && g_rand_boolean (rand);
    c.slice_before = g_rand_boolean (rand) ? g_rand_int_range (rand, 1, 5) : 0;
    c.slice_after = g_rand_boolean (rand) ? g_rand_int_range (rand, 1, 5) : 0;
    c.threads = g_rand_int_range (rand, 1, 4);
    check_conv_case (kernels, &c, rand);
  }
  g_rand_free (rand);
}
END_TEST

/* One packed weight block serves inputs of different sizes, each with its
 * own scratch size (the graph packs once and may change the input size). */
START_TEST (test_conv_packed_reused_across_sizes)
{
  const YoloseKernels *kernels = table_for (_i);
  GRand *rand = g_rand_new_with_seed (99);
  float weight[16 * 8 * 9], bias[16];
  YoloseConvDesc d = { 8, 16, 3, 1, 1, 1, YOLOSE_ACT_SILU, weight, bias };
  void *packed;
  static const int sizes[][2] = { { 4, 4 }, { 33, 31 }, { 1, 50 }, { 16, 16 } };

  if (kernels == NULL) {
    g_rand_free (rand);
    return;
  }
  fill_random (rand, weight, G_N_ELEMENTS (weight), -0.3, 0.3);
  fill_random (rand, bias, G_N_ELEMENTS (bias), -1.0, 1.0);
  packed = kernels->conv_pack (&d);
  ck_assert_ptr_nonnull (packed);
  for (gsize s = 0; s < G_N_ELEMENTS (sizes); s++) {
    int h = sizes[s][0], w = sizes[s][1];
    float *input = g_new (float, 8 * h * w);
    float *output = g_new (float, 16 * h * w);
    YoloseTensor in = { input, 8, h, w }, out = { output, 16, h, w };
    size_t bytes = kernels->conv_scratch_size (&d, h, w, 2);
    void *scratch = bytes ? g_malloc (bytes) : NULL;

    fill_random (rand, input, 8 * h * w, -1.0, 1.0);
    kernels->conv2d (&d, packed, &in, NULL, &out, scratch, 2);
    for (int i = 0; i < 16 * h * w; i++) {
      int oc = i / (h * w), oy = i % (h * w) / w, ox = i % w;
      double ref = reference_conv_at (&d, input, h, w, oc, oy, ox);
      ck_assert_msg (close_enough (output[i], ref, CONV_TOL),
          "%s conv at %dx%d: out[%d][%d][%d] = %g, expected %g", kernels->name,
          h, w, oc, oy, ox, output[i], ref);
    }
    g_free (scratch);
    g_free (output);
    g_free (input);
  }
  kernels->conv_packed_free (packed);
  g_rand_free (rand);
}
END_TEST

/* A scratch sized for 3 threads serves runs with 1, 2 and 3 threads (the
 * graph sizes it once; ASan catches any overrun). */
START_TEST (test_conv_scratch_serves_fewer_threads)
{
  const YoloseKernels *kernels = table_for (_i);
  GRand *rand = g_rand_new_with_seed (5);
  static const int shapes[][5] = {
    /* cin, cout, size, kernel, stride */
    { 256, 256, 20, 3, 1 },
    { 64, 64, 40, 3, 1 },
    { 512, 256, 20, 1, 1 },
    { 64, 128, 33, 3, 2 },
    { 3, 16, 64, 6, 2 },
  };

  if (kernels == NULL) {
    g_rand_free (rand);
    return;
  }
  for (gsize n = 0; n < G_N_ELEMENTS (shapes); n++) {
    int cin = shapes[n][0], cout = shapes[n][1], size = shapes[n][2];
    int k = shapes[n][3], stride = shapes[n][4], pad = k == 6 ? 2 : k / 2;
    int os = yolose_conv_out_dim (size, k, stride, pad);
    size_t n_w = (size_t)cout * cin * k * k;
    float *weight = g_new (float, n_w), *bias = g_new (float, cout);
    float *input = g_new (float, (size_t)cin *size *size);
    float *output = g_new (float, (size_t)cout *os *os);
    YoloseConvDesc d
        = { cin, cout, k, stride, pad, 1, YOLOSE_ACT_SILU, weight, bias };
    YoloseTensor in = { input, cin, size, size },
                 out = { output, cout, os, os };
    size_t bytes = kernels->conv_scratch_size (&d, size, size, 3);
    void *scratch = bytes ? g_malloc (bytes) : NULL;
    void *packed;

    fill_random (rand, weight, n_w, -0.1, 0.1);
    fill_random (rand, bias, cout, -1.0, 1.0);
    fill_random (rand, input, (size_t)cin * size * size, -1.0, 1.0);
    packed = kernels->conv_pack (&d);
    for (int threads = 1; threads <= 3; threads++) {
      kernels->conv2d (&d, packed, &in, NULL, &out, scratch, threads);
      for (int i = 0; i < cout * os * os; i += 97) {
        int oc = i / (os * os), oy = i % (os * os) / os, ox = i % os;
        double ref = reference_conv_at (&d, input, size, size, oc, oy, ox);
        ck_assert_msg (close_enough (output[i], ref, CONV_TOL),
            "%s conv %d->%d %dx%d k %d s %d with %d threads on a "
            "3-thread scratch: out[%d][%d][%d] = %g, expected %g",
            kernels->name, cin, cout, size, size, k, stride, threads, oc, oy,
            ox, output[i], ref);
      }
    }
    kernels->conv_packed_free (packed);
    g_free (scratch);
    g_free (output);
    g_free (input);
    g_free (bias);
    g_free (weight);
  }
  g_rand_free (rand);
}
END_TEST

/* SiLU stays exact far out in both tails, where exp over- or underflows. */
START_TEST (test_conv_silu_extremes)
{
  const YoloseKernels *kernels = table_for (_i);
  enum { N = 64 };
  float input[N], output[N], weight = 1.0f, bias = 0.0f;
  YoloseConvDesc d = { 1, 1, 1, 1, 0, 1, YOLOSE_ACT_SILU, &weight, &bias };
  YoloseTensor in = { input, 1, 1, N }, out = { output, 1, 1, N };
  void *packed, *scratch;
  size_t bytes;

  if (kernels == NULL)
    return;
  for (int i = 0; i < N; i++)
    input[i] = (float)((i - N / 2) * (i - N / 2)) * (i < N / 2 ? -0.1 : 0.1);
  input[0] = -1000.0f;
  input[1] = -89.0f;
  input[2] = 1000.0f;
  input[3] = 89.0f;
  packed = kernels->conv_pack (&d);
  bytes = kernels->conv_scratch_size (&d, 1, N, 1);
  scratch = bytes ? g_malloc (bytes) : NULL;
  kernels->conv2d (&d, packed, &in, NULL, &out, scratch, 1);
  for (int i = 0; i < N; i++) {
    double ref = reference_silu (input[i]);
    ck_assert_msg (close_enough (output[i], ref, ELEMENTWISE_TOL),
        "%s silu(%g) = %.9g, expected %.9g", kernels->name, input[i], output[i],
        ref);
  }
  g_free (scratch);
  kernels->conv_packed_free (packed);
}
END_TEST

/* ------------------------------------------------------------- maxpool */

static float
reference_maxpool_at (const float *in, int h, int w, int k, int s, int p,
    int oy, int ox)
{
  float m = -INFINITY;

  for (int ky = 0; ky < k; ky++)
    for (int kx = 0; kx < k; kx++) {
      int iy = oy * s + ky - p, ix = ox * s + kx - p;
      if (iy >= 0 && iy < h && ix >= 0 && ix < w && in[iy * w + ix] > m)
        m = in[iy * w + ix];
    }
  return m;
}

/* Max pooling (SPPF's k 5 s 1 p 2 and others) matches the reference, also
 * when writing into a channel slice. */
START_TEST (test_maxpool)
{
  const YoloseKernels *kernels = table_for (_i);
  GRand *rand = g_rand_new_with_seed (7);
  static const int cases[][7] = {
    /* c, h, w, k, s, p, threads */
    { 16, 20, 20, 5, 1, 2, 2 },
    { 3, 13, 17, 5, 1, 2, 3 },
    { 5, 1, 1, 5, 1, 2, 1 },
    { 4, 7, 5, 3, 2, 1, 2 },
    { 2, 9, 9, 2, 2, 0, 1 },
    { 7, 31, 3, 5, 1, 2, 2 },
    { 3, 8, 40, 5, 1, 2, 1 },
    { 1, 6, 6, 1, 1, 0, 3 },
  };

  if (kernels == NULL) {
    g_rand_free (rand);
    return;
  }
  for (gsize n = 0; n < G_N_ELEMENTS (cases); n++) {
    int c = cases[n][0], h = cases[n][1], w = cases[n][2], k = cases[n][3];
    int s = cases[n][4], p = cases[n][5], threads = cases[n][6];
    int oh = yolose_conv_out_dim (h, k, s, p);
    int ow = yolose_conv_out_dim (w, k, s, p);
    size_t plane = (size_t)oh * ow;
    float *input = g_new (float, c *h *w);
    float *big = g_new (float, (c + 2) * plane);
    YoloseTensor in = { input, c, h, w }, out = { big + plane, c, oh, ow };

    /* Negative values only: a padding counted as 0 would win. */
    fill_random (rand, input, c * h * w, -10.0, -1.0);
    for (size_t i = 0; i < (c + 2) * plane; i++)
      big[i] = SENTINEL;
    kernels->maxpool2d (&in, &out, k, s, p, threads);
    for (int ch = 0; ch < c; ch++)
      for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
          float ref = reference_maxpool_at (input + ch * h * w, h, w, k, s, p,
              oy, ox);
          float got = out.data[ch * plane + oy * ow + ox];
          ck_assert_msg (got == ref,
              "%s maxpool c %d %dx%d k %d s %d p %d "
              "threads %d: out[%d][%d][%d] = %g, expected %g",
              kernels->name, c, h, w, k, s, p, threads, ch, oy, ox, got, ref);
        }
    for (size_t i = 0; i < plane; i++)
      ck_assert_msg (big[i] == SENTINEL && big[(c + 1) * plane + i] == SENTINEL,
          "%s maxpool wrote outside its slice", kernels->name);
    g_free (big);
    g_free (input);
  }
  g_rand_free (rand);
}
END_TEST

/* ------------------------------------------------------------ upsample */

/* Nearest upsampling by 2 (and 3) copies each input pixel to its block,
 * also into a channel slice. */
START_TEST (test_upsample_nearest)
{
  const YoloseKernels *kernels = table_for (_i);
  GRand *rand = g_rand_new_with_seed (8);
  static const int cases[][5] = {
    /* c, h, w, scale, threads */
    { 8, 20, 20, 2, 2 },
    { 3, 7, 5, 2, 3 },
    { 2, 1, 1, 2, 1 },
    { 4, 3, 9, 3, 2 },
    { 5, 13, 17, 2, 1 },
  };

  if (kernels == NULL) {
    g_rand_free (rand);
    return;
  }
  for (gsize n = 0; n < G_N_ELEMENTS (cases); n++) {
    int c = cases[n][0], h = cases[n][1], w = cases[n][2];
    int scale = cases[n][3], threads = cases[n][4];
    int oh = h * scale, ow = w * scale;
    size_t plane = (size_t)oh * ow;
    float *input = g_new (float, c *h *w);
    float *big = g_new (float, (c + 1) * plane);
    YoloseTensor in = { input, c, h, w }, out = { big, c, oh, ow };

    fill_random (rand, input, c * h * w, -1.0, 1.0);
    for (size_t i = 0; i < (c + 1) * plane; i++)
      big[i] = SENTINEL;
    kernels->upsample_nearest (&in, &out, scale, threads);
    for (int ch = 0; ch < c; ch++)
      for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
          float ref = input[(ch * h + oy / scale) * w + ox / scale];
          float got = big[ch * plane + oy * ow + ox];
          ck_assert_msg (got == ref,
              "%s upsample c %d %dx%d x%d threads %d: "
              "out[%d][%d][%d] = %g, expected %g",
              kernels->name, c, h, w, scale, threads, ch, oy, ox, got, ref);
        }
    for (size_t i = 0; i < plane; i++)
      ck_assert_msg (big[c * plane + i] == SENTINEL,
          "%s upsample wrote outside its slice", kernels->name);
    g_free (big);
    g_free (input);
  }
  g_rand_free (rand);
}
END_TEST

/* ----------------------------------------------------- squeeze-excite */

/* SE (mean, FC, ReLU, FC, sigmoid, scale) matches the reference in place,
 * with gates far from 0.5 so a wrong formula shows. */
START_TEST (test_squeeze_excite)
{
  const YoloseKernels *kernels = table_for (_i);
  GRand *rand = g_rand_new_with_seed (9);
  static const int cases[][5] = {
    /* c, hidden, h, w, threads */
    { 512, 32, 20, 20, 2 },
    { 64, 4, 7, 5, 3 },
    { 16, 1, 1, 1, 1 },
    { 48, 3, 13, 17, 2 },
  };

  if (kernels == NULL) {
    g_rand_free (rand);
    return;
  }
  for (gsize n = 0; n < G_N_ELEMENTS (cases); n++) {
    int c = cases[n][0], hidden = cases[n][1], h = cases[n][2];
    int w = cases[n][3], threads = cases[n][4];
    size_t plane = (size_t)h * w;
    float *x = g_new (float, c *plane), *orig = g_new (float, c *plane);
    float *w1 = g_new (float, hidden *c), *w2 = g_new (float, c *hidden);
    float *scratch = g_new (float, c + hidden);
    double *mean = g_new (double, c), *mid = g_new (double, hidden);
    YoloseTensor t = { x, c, h, w };

    fill_random (rand, x, c * plane, -1.0, 3.0);
    fill_random (rand, w1, hidden * c, -0.5, 0.5);
    fill_random (rand, w2, c * hidden, -2.0, 2.0);
    memcpy (orig, x, c * plane * sizeof (float));
    kernels->squeeze_excite (&t, w1, w2, hidden, scratch, threads);

    for (int ch = 0; ch < c; ch++) {
      mean[ch] = 0.0;
      for (size_t i = 0; i < plane; i++)
        mean[ch] += orig[ch * plane + i];
      mean[ch] /= plane;
    }
    for (int j = 0; j < hidden; j++) {
      mid[j] = 0.0;
      for (int ch = 0; ch < c; ch++)
        mid[j] += w1[j * c + ch] * mean[ch];
      mid[j] = MAX (mid[j], 0.0);
    }
    for (int ch = 0; ch < c; ch++) {
      double z = 0.0, gate;
      for (int j = 0; j < hidden; j++)
        z += w2[ch * hidden + j] * mid[j];
      gate = 1.0 / (1.0 + exp (-z));
      for (size_t i = 0; i < plane; i++) {
        double ref = orig[ch * plane + i] * gate;
        ck_assert_msg (close_enough (x[ch * plane + i], ref, CONV_TOL),
            "%s SE c %d hidden %d %dx%d threads %d: x[%d][%zu] = %g, "
            "expected %g",
            kernels->name, c, hidden, h, w, threads, ch, i, x[ch * plane + i],
            ref);
      }
    }
    g_free (mid);
    g_free (mean);
    g_free (scratch);
    g_free (w2);
    g_free (w1);
    g_free (orig);
    g_free (x);
  }
  g_rand_free (rand);
}
END_TEST

/* ----------------------------------------------------- sigmoid epilogue */

/* A convolution whose activation is the sigmoid (Detect's) gives 1 / (1 +
 * exp(-x)) over the whole float range: a 1x1 conv with unit weights
 * passes the input through to the epilogue, on rows of odd lengths and
 * of whole 32-pixel tiles (the avx512 microkernel's fused store), to one
 * whole panel of 8 output channels and to a partial one. */
START_TEST (test_conv_sigmoid_range)
{
  const YoloseKernels *kernels = table_for (_i);
  GRand *rand = g_rand_new_with_seed (10);
  static const int sizes[][2]
      = { { 1, 1 }, { 1, 7 }, { 2, 9 }, { 1, 31 }, { 3, 64 }, { 25, 41 } };
  static const int couts[] = { 8, 3 };

  if (kernels == NULL) {
    g_rand_free (rand);
    return;
  }
  for (gsize n = 0; n < G_N_ELEMENTS (sizes) * G_N_ELEMENTS (couts); n++) {
    int h = sizes[n / 2][0], w = sizes[n / 2][1], cout = couts[n % 2];
    size_t len = (size_t)h * w;
    float weight[8], bias[8] = { 0 };
    float *x = g_new (float, len), *y = g_new (float, cout *len + 1);
    YoloseConvDesc d
        = { 1, cout, 1, 1, 0, 1, YOLOSE_ACT_SIGMOID, weight, bias };
    YoloseTensor in = { x, 1, h, w }, out = { y, cout, h, w };
    int threads = 1 + (int)(n % 3);
    size_t scratch_bytes;
    void *packed, *scratch;

    for (int i = 0; i < 8; i++)
      weight[i] = 1.0f;
    fill_random (rand, x, len, -20.0, 20.0);
    if (len > 4) {
      x[0] = -1000.0f;
      x[1] = 1000.0f;
      x[2] = -88.5f;
      x[3] = 0.0f;
    }
    y[cout * len] = SENTINEL;
    packed = kernels->conv_pack (&d);
    ck_assert_ptr_nonnull (packed);
    scratch_bytes = kernels->conv_scratch_size (&d, h, w, threads);
    scratch = scratch_bytes ? g_malloc (scratch_bytes) : NULL;
    kernels->conv2d (&d, packed, &in, NULL, &out, scratch, threads);
    for (int oc = 0; oc < cout; oc++)
      for (size_t i = 0; i < len; i++) {
        double ref = 1.0 / (1.0 + exp (-(double)x[i]));
        float got = y[oc * len + i];
        ck_assert_msg (close_enough (got, ref, ELEMENTWISE_TOL),
            "%s sigmoid(%g) = %.9g, expected %.9g (%dx%d, channel %d of %d)",
            kernels->name, x[i], got, ref, h, w, oc, cout);
      }
    ck_assert_msg (y[cout * len] == SENTINEL, "%s conv wrote past the end",
        kernels->name);
    g_free (scratch);
    kernels->conv_packed_free (packed);
    g_free (y);
    g_free (x);
  }
  g_rand_free (rand);
}
END_TEST

/* ------------------------------------------------------------- select */

/* "auto" (and NULL) picks the widest table available: avx512, then avx2,
 * then generic. */
START_TEST (test_select_auto)
{
  const YoloseKernels *expected = yolose_kernels_avx512 ();
  GError *error = NULL;

  if (expected == NULL)
    expected = yolose_kernels_avx2 ();
  if (expected == NULL)
    expected = yolose_kernels_generic ();
  ck_assert_ptr_eq (yolose_kernels_select (NULL, &error), expected);
  ck_assert_ptr_null (error);
  ck_assert_ptr_eq (yolose_kernels_select ("auto", &error), expected);
  ck_assert_ptr_null (error);
  printf ("auto kernels on this machine: %s (cpu avx2+fma: %s, avx512: %s)\n",
      expected->name, yolose_cpu_has_avx2_fma () ? "yes" : "no",
      yolose_cpu_has_avx512 () ? "yes" : "no");
}
END_TEST

/* Forcing @name gives @table when it is available, and otherwise NULL with
 * an error that names it. */
static void
check_forced (const char *name, const YoloseKernels *table)
{
  GError *error = NULL;
  const YoloseKernels *k = yolose_kernels_select (name, &error);

  if (table != NULL) {
    ck_assert_ptr_eq (k, table);
    ck_assert_str_eq (k->name, name);
    ck_assert_ptr_null (error);
  } else {
    ck_assert_ptr_null (k);
    ck_assert (g_error_matches (error, YOLOSE_KERNELS_ERROR,
        YOLOSE_KERNELS_ERROR_UNAVAILABLE));
    ck_assert_ptr_nonnull (strstr (error->message, name));
    g_clear_error (&error);
  }
}

/* Forcing "generic" always works; forcing "avx2" or "avx512" works exactly
 * when the CPU supports it, or explains why not. */
START_TEST (test_select_forced)
{
  check_forced ("generic", yolose_kernels_generic ());
  check_forced ("avx2", yolose_kernels_avx2 ());
  check_forced ("avx512", yolose_kernels_avx512 ());
  if (yolose_kernels_avx2 () != NULL)
    ck_assert (yolose_cpu_has_avx2_fma ());
  if (yolose_kernels_avx512 () != NULL)
    ck_assert (yolose_cpu_has_avx512 () && yolose_kernels_avx2 () != NULL);
}
END_TEST

/* An unknown name is an error that names it. */
START_TEST (test_select_unknown)
{
  GError *error = NULL;

  ck_assert_ptr_null (yolose_kernels_select ("neon512", &error));
  ck_assert (g_error_matches (error, YOLOSE_KERNELS_ERROR,
      YOLOSE_KERNELS_ERROR_UNKNOWN));
  ck_assert_ptr_nonnull (strstr (error->message, "neon512"));
  g_clear_error (&error);
  ck_assert_ptr_null (yolose_kernels_select ("", &error));
  ck_assert_ptr_nonnull (error);
  g_clear_error (&error);
}
END_TEST

/* The cached feature answer is stable and agrees with the avx2 table. */
START_TEST (test_cpu_features_cached)
{
  gboolean first = yolose_cpu_has_avx2_fma ();

  ck_assert_int_eq (first, yolose_cpu_has_avx2_fma ());
  ck_assert_int_eq (yolose_cpu_has_avx512 (), yolose_cpu_has_avx512 ());
  if (yolose_kernels_avx2 () != NULL)
    ck_assert (first);
  /* AVX-512 here always comes on top of AVX2 + FMA. */
  if (yolose_cpu_has_avx512 ())
    ck_assert (first);
}
END_TEST

/* ---------------------------------------------------------------- pool */

typedef struct {
  int threads;
  int n_tasks;
  gint *runs; /* per task */
  gint bad_worker;
} PoolCount;

static void
count_task (void *data, int task, int worker)
{
  PoolCount *c = data;

  g_atomic_int_inc (&c->runs[task]);
  if (worker < 0 || worker >= c->threads)
    g_atomic_int_set (&c->bad_worker, 1);
}

static void
check_pool_run (int threads, int n_tasks)
{
  PoolCount c = { threads, n_tasks, g_new0 (gint, MAX (n_tasks, 1)), 0 };

  yolose_pool_run (threads, n_tasks, count_task, &c);
  for (int t = 0; t < n_tasks; t++)
    ck_assert_msg (c.runs[t] == 1,
        "pool, %d threads, %d tasks: task %d ran "
        "%d times",
        threads, n_tasks, t, c.runs[t]);
  ck_assert_msg (!c.bad_worker, "pool: a worker index was >= %d", threads);
  g_free (c.runs);
}

static gpointer
pool_caller (gpointer data)
{
  for (int i = 0; i < 300; i++)
    check_pool_run (1 + i % 3, i % 50);
  return data;
}

/* The pool runs every task exactly once with worker indices below the
 * thread count, also with two callers at the same time (one of them then
 * runs its tasks alone). */
START_TEST (test_pool_runs_every_task_once)
{
  GThread *other;

  for (int threads = 1; threads <= 4; threads++)
    for (int n = 0; n < 40; n++)
      check_pool_run (threads, n);
  check_pool_run (2, 100000);
  other = g_thread_new ("second-caller", pool_caller, NULL);
  pool_caller (NULL);
  g_thread_join (other);
}
END_TEST

typedef struct {
  gint started[2];
  gint partner_seen;
} MeetTask;

/* Task 0 waits up to 2 s for task 1 to start: it can only do so on
 * another thread, as the caller claims task 0 first. */
static void
meet_task (void *data, int task, int worker)
{
  MeetTask *m = data;

  (void)worker;
  g_atomic_int_set (&m->started[task], 1);
  if (task != 0)
    return;
  for (int ms = 0; ms < 2000; ms++) {
    if (g_atomic_int_get (&m->started[1])) {
      g_atomic_int_set (&m->partner_seen, 1);
      return;
    }
    g_usleep (1000);
  }
}

/* A worker that has slept between jobs (the pause between frames is
 * longer than its spin) is woken for the next job and takes a task. */
START_TEST (test_pool_wakes_sleeping_workers)
{
  for (int round = 0; round < 5; round++) {
    MeetTask m = { { 0, 0 }, 0 };

    g_usleep (50000); /* far beyond the workers' spin */
    yolose_pool_run (2, 2, meet_task, &m);
    ck_assert_msg (m.started[0] && m.started[1], "a task did not run");
    ck_assert_msg (m.partner_seen,
        "round %d: no worker took task 1 while the caller ran task 0", round);
  }
}
END_TEST

/* After yolose_pool_rest () (a frame is done) a worker waiting for the
 * next step sleeps at once instead of spinning: here it would spin 10 s. */
START_TEST (test_pool_rest_puts_workers_to_sleep)
{
  int waited_ms = 0;

  yolose_pool_set_spin_us (10 * G_USEC_PER_SEC);
  check_pool_run (2, 64); /* the worker now spins for the next job */
  yolose_pool_rest ();
  while (yolose_pool_sleeping_workers () < 1 && waited_ms < 2000) {
    g_usleep (1000);
    waited_ms++;
  }
  yolose_pool_set_spin_us (0);
  ck_assert_msg (yolose_pool_sleeping_workers () >= 1,
      "no worker sleeps %d ms after the pool was told to rest", waited_ms);
}
END_TEST

static Suite *
kernels_suite (void)
{
  Suite *s = suite_create ("kernels");
  TCase *tc = tcase_create ("tables");
  TCase *sel = tcase_create ("select");

  tcase_set_timeout (tc, 300);
  tcase_add_loop_test (tc, test_conv_layer_shapes, 0, N_TABLES);
  tcase_add_loop_test (tc, test_conv_random_shapes, 0, N_TABLES);
  tcase_add_loop_test (tc, test_conv_packed_reused_across_sizes, 0, N_TABLES);
  tcase_add_loop_test (tc, test_conv_silu_extremes, 0, N_TABLES);
  tcase_add_loop_test (tc, test_conv_scratch_serves_fewer_threads, 0, N_TABLES);
  tcase_add_loop_test (tc, test_maxpool, 0, N_TABLES);
  tcase_add_loop_test (tc, test_upsample_nearest, 0, N_TABLES);
  tcase_add_loop_test (tc, test_squeeze_excite, 0, N_TABLES);
  tcase_add_loop_test (tc, test_conv_sigmoid_range, 0, N_TABLES);
  suite_add_tcase (s, tc);

  tcase_add_test (sel, test_select_auto);
  tcase_add_test (sel, test_select_forced);
  tcase_add_test (sel, test_select_unknown);
  tcase_add_test (sel, test_cpu_features_cached);
  tcase_add_test (sel, test_pool_runs_every_task_once);
  tcase_add_test (sel, test_pool_wakes_sleeping_workers);
  tcase_add_test (sel, test_pool_rest_puts_workers_to_sleep);
  suite_add_tcase (s, sel);
  return s;
}

int
main (void)
{
  SRunner *runner = srunner_create (kernels_suite ());
  int failed;

  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? 0 : 1;
}
