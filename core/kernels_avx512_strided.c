/* yolose — the AVX-512 convolution for 3x3 stride-2 layers: output
 * channels in the vector.
 *
 * The direct convolution (kernels_avx512.c) puts 32 pixels in its
 * vectors.  Its rows of B must then be contiguous runs of pixels, so a
 * stride-2 layer first copies its input into stride phases, a band at a
 * time, with a halo of rows per band, and runs K in blocks whose partial
 * sums go through memory.  Those were the layers where it lost to ONNX
 * Runtime (1.1-1.3x on yolov5s + SE, 1.3-1.8x on yolov5n + SE).
 *
 * Here a vector holds 16 output channels of one pixel.  A tile is 16 or
 * 32 output channels x PIXELS consecutive pixels of an output row; each
 * step loads the weights of one (input channel, tap) for its channels and
 * broadcasts the PIXELS input values that tap reads, straight from the
 * NCHW planes: the stride is an address step and nothing is copied.  The
 * first tile of a row, when only the padding column left of the picture
 * is outside it, skips that column's multiply-adds (a variant compiled
 * for it).  Other tiles whose taps reach past the picture (the first row,
 * the last ones when the kernel overhangs them) first copy what they read
 * into a zero-padded patch.  A task is a band of output rows x one block
 * of output channels; it walks the input channels in blocks whose
 * weights stay in L1 over all the band's tiles, and the tiles' sums wait
 * in a buffer of [pixel][channel] vectors.  At the end 16 x 16
 * transposes turn that buffer into the output planes' rows.
 *
 * Against the direct convolution, in the networks (per-layer fastest of 4
 * interleaved rounds of yolose-bench -p): the 3x3 stride-2 layers -9.5 to
 * -29.5% on two threads and -12 to -23.5% on one (yolov5s + SE), -16 to
 * -37% and -11 to -27.5% (yolov5n + SE). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_avx512.h"
#include "kernels_pack.h"
#include "kernels_pool.h"

#define KERNEL 3 /* 3 x 3 kernels only (yolose_avx512_strided_applies) */
#define TAPS (KERNEL * KERNEL)
#define PIXELS 10 /* output pixels per tile: 2 span a 20-wide row */
/* A block of input channels' weights for one tile stays in L1 (48 KB)
 * while the band's tiles use it; each tile carries its partial sums from
 * one block to the next through the band's buffer. */
#define WEIGHT_BLOCK_BYTES (24 * 1024)
/* How far ahead along its input rows a tile asks for what the next
 * tiles will read: 64 floats, 3 tiles of 2 * PIXELS columns.  A tile
 * reads 3 rows of each of its block's input channels, 48 or more runs
 * at once: more than the hardware prefetcher follows, so when the input
 * comes from memory (the 13 MB 320 x 320 picture of yolov5s + SE's layer
 * 1) every row stalled on its next line.  Layer 1 alone after evicting
 * the caches: -8% on two threads, -5 to -10% on one; 32 and 128 floats
 * ahead were in between. */
#define PREFETCH_BYTES (64 * sizeof (float))
/* Pixels per band, at most: the band's sums (128 KB for 32 channels)
 * stay in L2 beside its input rows until they are transposed out, and
 * they bound the scratch.  Uncapped, a one-thread run of yolov5n + SE's
 * 320 x 320 layer made one band of the whole picture, and the scratch
 * (sized for every thread count up to the run's) grew the process by
 * 4 MB. */
#define BAND_PIXELS 1024

struct _YoloseStrided {
  int m;        /* output channels per group */
  int cin;      /* input channels per group */
  int oc_block; /* output channels per tile: 16 or 32, oc_block_for */
  int n_blocks; /* ceil (m / oc_block) */
  float *w;     /* [groups][n_blocks][cin][ky][kx][oc_block], zero padded */
};

/* The stem's 6 x 6 kernel (3 input channels) stays with the direct
 * convolution: on yolov5n + SE's stem (16 output channels) this kernel
 * was 19% slower, its 16 channels a vector and its 11 loads per 10
 * multiply-adds bound by loads. */
gboolean
yolose_avx512_strided_applies (const YoloseConvDesc *desc)
{
  return desc->stride == 2 && desc->kernel == 3;
}

/* Output channels per tile for @m per group: 16 fill one vector; 32
 * halve the broadcasts per multiply-add, but padding 16 to 32 would waste
 * half the work. */
static int
oc_block_for (int m)
{
  return m > 16 ? 32 : 16;
}

YoloseStrided *
yolose_avx512_strided_pack (const YoloseConvDesc *desc)
{
  YoloseStrided *s = g_try_new0 (YoloseStrided, 1);

  if (s == NULL)
    return NULL;
  s->m = desc->out_channels / desc->groups;
  s->cin = desc->in_channels / desc->groups;
  s->oc_block = oc_block_for (s->m);
  s->n_blocks = (s->m + s->oc_block - 1) / s->oc_block;
  s->w = yolose_pack_weight_panels (desc->weight, desc->groups, s->m,
      s->cin * TAPS, s->oc_block);
  if (s->w == NULL) {
    g_free (s);
    return NULL;
  }
  return s;
}

void
yolose_avx512_strided_free (YoloseStrided *s)
{
  if (s != NULL)
    free (s->w);
  g_free (s);
}

/* ----------------------------------------------------------- geometry */

typedef struct {
  int out_h, out_w;
  int ch_block;        /* input channels per block */
  int span;            /* input columns a tile reads in one row */
  size_t patch_floats; /* a zero-padded copy of what an edge tile reads */
  size_t row_floats;   /* one output row, [pixel][oc_block], whole tiles */
  int band_rows, n_bands;
} StridedGeometry;

static StridedGeometry
strided_geometry (const YoloseConvDesc *d, int in_h, int in_w, int threads)
{
  int m = d->out_channels / d->groups, cin = d->in_channels / d->groups;
  int oc_block = oc_block_for (m);
  int tasks_per_band = d->groups * ((m + oc_block - 1) / oc_block);
  int want = threads > 1 ? 4 * threads : 1;
  size_t channel_bytes = (size_t)KERNEL * KERNEL * oc_block * sizeof (float);
  int n_ch_blocks = (int)MAX (
      (cin * channel_bytes + WEIGHT_BLOCK_BYTES - 1) / WEIGHT_BLOCK_BYTES, 1);
  StridedGeometry g;

  /* at least one row and column, so that an empty output divides nothing
   * by zero (conv2d then does nothing) */
  g.out_h = MAX (yolose_conv_out_dim (in_h, KERNEL, 2, d->pad), 1);
  g.out_w = MAX (yolose_conv_out_dim (in_w, KERNEL, 2, d->pad), 1);
  g.ch_block = (cin + n_ch_blocks - 1) / n_ch_blocks;
  g.span = 2 * (PIXELS - 1) + KERNEL;
  g.patch_floats = (size_t)g.ch_block * KERNEL * g.span;
  g.row_floats = round_up ((size_t)g.out_w, PIXELS) * oc_block;
  /* Enough tasks for the threads to share them out dynamically (see
   * split_work in kernels_avx512.c); output channels first, since a band
   * of rows costs its input rows once more. */
  g.n_bands = CLAMP ((want + tasks_per_band - 1) / tasks_per_band, 1, g.out_h);
  g.band_rows = (g.out_h + g.n_bands - 1) / g.n_bands;
  g.band_rows = MIN (g.band_rows, MAX (BAND_PIXELS / g.out_w, 1));
  g.n_bands = (g.out_h + g.band_rows - 1) / g.band_rows;
  return g;
}

static size_t
thread_floats (const StridedGeometry *g)
{
  return round_up (g->patch_floats, ALIGN_FLOATS)
      + (size_t)g->band_rows * g->row_floats;
}

size_t
yolose_avx512_strided_scratch_size (const YoloseConvDesc *desc, int in_h,
    int in_w, int threads)
{
  size_t per_thread = 0;

  /* Fewer threads cut fewer, longer bands: take the largest area a
   * thread needs for any count up to @threads, as the other convolutions
   * do, so that the scratch serves every run with fewer threads. */
  threads = MAX (threads, 1);
  for (int t = 1; t <= threads; t++) {
    StridedGeometry g = strided_geometry (desc, in_h, in_w, t);
    per_thread = MAX (per_thread, thread_floats (&g));
  }
  return ((size_t)threads * per_thread + ALIGN_FLOATS) * sizeof (float);
}

/* ------------------------------------------------------- microkernel */

/* Where a tile's inputs are: tap (ky, kx) of input channel c for the
 * tile's pixel j is base[c * chan_stride + ky * row_stride + kx + 2 j]. */
typedef struct {
  const float *base;
  size_t chan_stride, row_stride;
} TileInput;

/* One tap (@r: the tap's input row, @kx its column) for all pixels:
 * the weights of its 16 @nv output channels, then per pixel one
 * broadcast and @nv multiply-adds into aJ (and bJ).  With @left, pixel 0
 * skips column 0, which is the padding left of the picture. */
#define PIXEL(j)                                                               \
  do {                                                                         \
    if (!(left && (j) == 0 && kx_ == 0)) {                                     \
      __m512 x = _mm512_set1_ps (r_[kx_ + 2 * (j)]);                           \
      a##j = _mm512_fmadd_ps (w0, x, a##j);                                    \
      if (nv == 2)                                                             \
        b##j = _mm512_fmadd_ps (w1, x, b##j);                                  \
    }                                                                          \
  } while (0)

#define TAP(r, kx)                                                             \
  do {                                                                         \
    const float *r_ = (r);                                                     \
    const int kx_ = (kx);                                                      \
    __m512 w0 = _mm512_load_ps (w), w1 = w0;                                   \
    if (nv == 2)                                                               \
      w1 = _mm512_load_ps (w + 16);                                            \
    PIXEL (0);                                                                 \
    PIXEL (1);                                                                 \
    PIXEL (2);                                                                 \
    PIXEL (3);                                                                 \
    PIXEL (4);                                                                 \
    PIXEL (5);                                                                 \
    PIXEL (6);                                                                 \
    PIXEL (7);                                                                 \
    PIXEL (8);                                                                 \
    PIXEL (9);                                                                 \
    w += 16 * nv;                                                              \
  } while (0)

/* Pixel j's sums to or from @sums, [pixel][16 @nv]. */
#define LOAD(j)                                                                \
  do {                                                                         \
    a##j = accumulate ? _mm512_load_ps (sums + 16 * nv * (j)) : zero;          \
    if (nv == 2)                                                               \
      b##j = accumulate ? _mm512_load_ps (sums + 16 * nv * (j) + 16) : zero;   \
  } while (0)

#define STORE(j)                                                               \
  do {                                                                         \
    _mm512_store_ps (sums + 16 * nv * (j),                                     \
        finish ? bias_act512 (a##j, bias[0], act) : a##j);                     \
    if (nv == 2)                                                               \
      _mm512_store_ps (sums + 16 * nv * (j) + 16,                              \
          finish ? bias_act512 (b##j, bias[1], act) : b##j);                   \
  } while (0)

/* The sums of output channels 16 v .. 16 v + 15 (aJ for v = 0, bJ for
 * v = 1) for pixel J of a tile over @n_ch input channels and their 3 x 3
 * taps, added to what @sums holds when @accumulate; @w is the block's
 * weights, [n_ch][ky][kx][16 @nv].  With @finish they get their bias and
 * activation.  Inlined with constant @nv and @left: 20 accumulators, 2
 * weight vectors and a broadcast stay in registers, and every broadcast
 * is a fixed offset from one of the channel's three row pointers.  (Loops
 * over arrays of accumulators left GCC moving registers and reloading
 * offsets from the stack: 3 instructions per 2 multiply-adds.) */
static inline __attribute__ ((always_inline)) void
tile_sums (int nv, gboolean left, const TileInput *in, int n_ch, const float *w,
    float *sums, gboolean accumulate, const __m512 bias[2],
    YoloseActivation act, gboolean finish)
{
  const __m512 zero = _mm512_setzero_ps ();
  const float *r0 = in->base, *r1 = r0 + in->row_stride;
  const float *r2 = r1 + in->row_stride;
  const size_t chan_stride = in->chan_stride;
  __m512 a0, a1, a2, a3, a4, a5, a6, a7, a8, a9;
  __m512 b0 = zero, b1 = zero, b2 = zero, b3 = zero, b4 = zero;
  __m512 b5 = zero, b6 = zero, b7 = zero, b8 = zero, b9 = zero;

  LOAD (0);
  LOAD (1);
  LOAD (2);
  LOAD (3);
  LOAD (4);
  LOAD (5);
  LOAD (6);
  LOAD (7);
  LOAD (8);
  LOAD (9);
  for (int c = 0; c < n_ch; c++) {
    TAP (r0, 0);
    TAP (r0, 1);
    TAP (r0, 2);
    TAP (r1, 0);
    TAP (r1, 1);
    TAP (r1, 2);
    TAP (r2, 0);
    TAP (r2, 1);
    TAP (r2, 2);
    prefetch_past (r0, PREFETCH_BYTES);
    prefetch_past (r1, PREFETCH_BYTES);
    prefetch_past (r2, PREFETCH_BYTES);
    r0 += chan_stride;
    r1 += chan_stride;
    r2 += chan_stride;
  }
  STORE (0);
  STORE (1);
  STORE (2);
  STORE (3);
  STORE (4);
  STORE (5);
  STORE (6);
  STORE (7);
  STORE (8);
  STORE (9);
}

#undef PIXEL
#undef TAP
#undef LOAD
#undef STORE

/* One instance per number of channels per tile, and for the first tile
 * of a row when only the padding column left of the picture is outside
 * it. */
typedef void (*TileFunc) (const TileInput *in, int n_ch, const float *w,
    float *sums, gboolean accumulate, const __m512 bias[2],
    YoloseActivation act, gboolean finish);

#define TILE_FUNC(name, nv, left)                                              \
  static void name (const TileInput *in, int n_ch, const float *w,             \
      float *sums, gboolean accumulate, const __m512 bias[2],                  \
      YoloseActivation act, gboolean finish)                                   \
  {                                                                            \
    tile_sums (nv, left, in, n_ch, w, sums, accumulate, bias, act, finish);    \
  }

TILE_FUNC (tile_16, 1, FALSE)
TILE_FUNC (tile_32, 2, FALSE)
TILE_FUNC (tile_16_left, 1, TRUE)
TILE_FUNC (tile_32_left, 2, TRUE)

#undef TILE_FUNC

/* ---------------------------------------------------------- epilogue */

/* r[i] becomes column i of the 16 x 16 matrix whose rows were r[0..15]. */
static inline void
transpose16 (__m512 r[16])
{
  __m512 t[16];

  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps (r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps (r[2 * i], r[2 * i + 1]);
  }
  /* t[2i], lane L: rows 2i, 2i+1 of columns 4L, 4L+1; t[2i+1]: 4L+2, 4L+3 */
  for (int g = 0; g < 4; g++) {
    __m512d a = _mm512_castps_pd (t[4 * g]),
            b = _mm512_castps_pd (t[4 * g + 2]);
    __m512d c = _mm512_castps_pd (t[4 * g + 1]);
    __m512d d = _mm512_castps_pd (t[4 * g + 3]);
    r[4 * g] = _mm512_castpd_ps (_mm512_unpacklo_pd (a, b));
    r[4 * g + 1] = _mm512_castpd_ps (_mm512_unpackhi_pd (a, b));
    r[4 * g + 2] = _mm512_castpd_ps (_mm512_unpacklo_pd (c, d));
    r[4 * g + 3] = _mm512_castpd_ps (_mm512_unpackhi_pd (c, d));
  }
  /* r[4g + q], lane L: rows 4g .. 4g+3 of column 4L + q */
  for (int q = 0; q < 4; q++) {
    __m512 p0 = _mm512_shuffle_f32x4 (r[q], r[4 + q], _MM_SHUFFLE (2, 0, 2, 0));
    __m512 p1 = _mm512_shuffle_f32x4 (r[q], r[4 + q], _MM_SHUFFLE (3, 1, 3, 1));
    __m512 p2
        = _mm512_shuffle_f32x4 (r[8 + q], r[12 + q], _MM_SHUFFLE (2, 0, 2, 0));
    __m512 p3
        = _mm512_shuffle_f32x4 (r[8 + q], r[12 + q], _MM_SHUFFLE (3, 1, 3, 1));
    t[q] = _mm512_shuffle_f32x4 (p0, p2, _MM_SHUFFLE (2, 0, 2, 0));
    t[4 + q] = _mm512_shuffle_f32x4 (p1, p3, _MM_SHUFFLE (2, 0, 2, 0));
    t[8 + q] = _mm512_shuffle_f32x4 (p0, p2, _MM_SHUFFLE (3, 1, 3, 1));
    t[12 + q] = _mm512_shuffle_f32x4 (p1, p3, _MM_SHUFFLE (3, 1, 3, 1));
  }
  memcpy (r, t, sizeof t);
}

typedef struct {
  const YoloseStrided *s;
  const YoloseConvDesc *desc;
  const YoloseTensor *in, *residual;
  YoloseTensor *out;
  StridedGeometry geo;
  TileFunc tile, left_tile;
  float *base;
  size_t per_thread;
} StridedJob;

/* Output row @oy of channels [oc0, oc0 + n_oc) of @out (and @residual,
 * the same layout, or NULL) from @row, [pixel][oc_block] with the
 * channels at @lane0: 16 pixels at a time, transposed in registers. */
static void
store_row (const StridedJob *job, const float *row, int oc_block, int lane0,
    float *out, const float *residual, int n_oc, int oy)
{
  const StridedGeometry *g = &job->geo;
  size_t plane = (size_t)g->out_h * g->out_w;

  for (int x0 = 0; x0 < g->out_w; x0 += 16) {
    int n_px = MIN (16, g->out_w - x0);
    __mmask16 px = first_lanes (n_px);
    size_t at = (size_t)oy * g->out_w + x0;
    __m512 v[16];

    for (int i = 0; i < 16; i++)
      v[i] = i < n_px
          ? _mm512_load_ps (row + (size_t)(x0 + i) * oc_block + lane0)
          : _mm512_setzero_ps ();
    transpose16 (v);
    for (int r = 0; r < n_oc; r++) {
      __m512 y = v[r];
      if (residual != NULL)
        y = _mm512_add_ps (y,
            _mm512_maskz_loadu_ps (px, residual + (size_t)r * plane + at));
      _mm512_mask_storeu_ps (out + (size_t)r * plane + at, px, y);
    }
  }
}

/* --------------------------------------------------------------- conv */

/* Copies @n <= 32 floats from @src to lanes [lo, lo + n) of the @span
 * <= 32 floats at @dst and zeroes the others: masked expanding loads, a
 * few instructions where memset, memcpy, memset cost three calls per
 * row, more than the tile's multiply-adds on small pictures. */
static inline void
copy_span (float *dst, const float *src, int lo, int n, int span)
{
  for (int h = 0; h < 2 && 16 * h < span; h++) {
    int a = CLAMP (lo - 16 * h, 0, 16), b = CLAMP (lo + n - 16 * h, a, 16);
    __mmask16 lanes = (__mmask16)(first_lanes (b) & ~first_lanes (a));
    __m512 v = _mm512_maskz_expandloadu_ps (lanes, src);
    _mm512_mask_storeu_ps (dst + 16 * h, first_lanes (MIN (span - 16 * h, 16)),
        v);
    src += b - a;
  }
}

/* Copies what the tile at output (@oy, @ox0) reads of the @n_ch planes
 * at @in into @patch, [n_ch][ky][span], zero outside the picture. */
static void
fill_patch (const StridedJob *job, const float *in, int n_ch, int oy, int ox0,
    float *patch)
{
  const YoloseConvDesc *d = job->desc;
  const StridedGeometry *g = &job->geo;
  int in_h = job->in->h, in_w = job->in->w, span = g->span;
  int iy0 = 2 * oy - d->pad, ix0 = 2 * ox0 - d->pad;
  int lo = CLAMP (-ix0, 0, span), hi = CLAMP (in_w - ix0, lo, span);
  size_t plane = (size_t)in_h * in_w;

  for (int c = 0; c < n_ch; c++)
    for (int ky = 0; ky < KERNEL; ky++) {
      float *dst = patch + ((size_t)c * KERNEL + ky) * span;
      int iy = iy0 + ky;
      /* a row above or below the picture copies nothing */
      gboolean inside = iy >= 0 && iy < in_h;
      int n = inside ? hi - lo : 0;
      const float *src
          = inside ? in + c * plane + (size_t)iy * in_w + ix0 + lo : in;
      copy_span (dst, src, lo, n, span);
    }
}

typedef enum {
  TILE_INSIDE,  /* every tap inside the picture: read the planes in place */
  TILE_LEFT,    /* only column -1 outside: in place, the left variant */
  TILE_PATCHED, /* read from a zero-padded patch */
} TileKind;

/* Where the tile at output (@oy, @ox0) can read its inputs from. */
static TileKind
tile_kind (const StridedJob *job, int oy, int ox0)
{
  const YoloseConvDesc *d = job->desc;
  int iy0 = 2 * oy - d->pad, ix0 = 2 * ox0 - d->pad;

  if (iy0 < 0 || iy0 + KERNEL > job->in->h || ix0 < -1
      || ix0 + job->geo.span > job->in->w)
    return TILE_PATCHED;
  return ix0 == -1 ? TILE_LEFT : TILE_INSIDE;
}

/* Sums input channels [c0, c0 + n_ch) into the sums of output rows
 * [oy0, oy1) in @sums, the band's rows of [pixel][oc_block].  Meanwhile
 * the tiles ask, a share each, for the next block's weights: its first
 * tile would otherwise read them from memory faster than one core can
 * (20 multiply-adds per 128 bytes of weights), and on 20 x 20 outputs
 * (yolov5s + SE's 4.7 MB layer 7) every task's every block did.  Layers
 * alone after evicting the caches, two threads: 256 -> 512 and 256 ->
 * 256 from 40 x 40 -3 to -9% and -5%; in the network on one thread
 * layers 5, 7 and 22 -5 to -7%. */
static void
band_block (const StridedJob *job, const float *in, int c0, int n_ch,
    const float *w, int oy0, int oy1, float *sums, float *patch,
    const __m512 bias[2])
{
  const YoloseStrided *s = job->s;
  const YoloseConvDesc *d = job->desc;
  const StridedGeometry *g = &job->geo;
  size_t in_plane = (size_t)job->in->h * job->in->w;
  gboolean first = c0 == 0, last = c0 + n_ch == s->cin;
  size_t next_lines = 0, per_tile = 0, line = 0;
  const char *next = NULL;

  in += (size_t)c0 * in_plane;
  w += (size_t)c0 * TAPS * s->oc_block;
  if (c0 + n_ch < s->cin) {
    int n_next = MIN (g->ch_block, s->cin - c0 - n_ch);
    int n_tiles = (oy1 - oy0) * ((g->out_w + PIXELS - 1) / PIXELS);
    next = (const char *)(w + (size_t)n_ch * TAPS * s->oc_block);
    next_lines = (size_t)n_next * TAPS * s->oc_block * sizeof (float) / 64;
    per_tile = (next_lines + n_tiles - 1) / n_tiles;
  }
  for (int oy = oy0; oy < oy1; oy++)
    for (int ox0 = 0; ox0 < g->out_w; ox0 += PIXELS) {
      for (size_t l = 0; l < per_tile && line < next_lines; l++, line++)
        _mm_prefetch (next + 64 * line, _MM_HINT_T0);
      TileInput t = { patch, (size_t)KERNEL * g->span, (size_t)g->span };
      float *tile_sums_at = sums + (size_t)(oy - oy0) * g->row_floats
          + (size_t)ox0 * s->oc_block;
      TileKind kind = tile_kind (job, oy, ox0);
      if (kind == TILE_PATCHED) {
        fill_patch (job, in, n_ch, oy, ox0, patch);
      } else {
        /* for TILE_LEFT, column -1 of input row iy0 >= 1 (odd when the
         * padding is), never read: the last of the row above */
        t.base = in + (size_t)(2 * oy - d->pad) * job->in->w + 2 * ox0 - d->pad;
        t.chan_stride = in_plane;
        t.row_stride = (size_t)job->in->w;
      }
      (kind == TILE_LEFT ? job->left_tile : job->tile) (&t, n_ch, w,
          tile_sums_at, !first, bias, d->act, last);
    }
}

/* Output rows [oy0, oy1) of block @blk of group @grp. */
static void
strided_band (const StridedJob *job, int grp, int blk, int oy0, int oy1,
    float *scratch)
{
  const YoloseStrided *s = job->s;
  const YoloseConvDesc *d = job->desc;
  const StridedGeometry *g = &job->geo;
  float *patch = scratch;
  float *sums = patch + round_up (g->patch_floats, ALIGN_FLOATS);
  size_t in_plane = (size_t)job->in->h * job->in->w;
  size_t out_plane = (size_t)g->out_h * g->out_w;
  const float *in = job->in->data + (size_t)grp * s->cin * in_plane;
  const float *w
      = s->w + (size_t)(grp * s->n_blocks + blk) * s->oc_block * s->cin * TAPS;
  int oc0 = blk * s->oc_block, n_oc = MIN (s->oc_block, s->m - oc0);
  size_t first = (size_t)grp * s->m + oc0;
  __m512 bias[2];

  for (int v = 0; v < 2; v++) {
    int n = CLAMP (n_oc - 16 * v, 0, 16);
    bias[v] = _mm512_maskz_loadu_ps (first_lanes (n), d->bias + first + 16 * v);
  }
  for (int c0 = 0; c0 < s->cin; c0 += g->ch_block)
    band_block (job, in, c0, MIN (g->ch_block, s->cin - c0), w, oy0, oy1, sums,
        patch, bias);
  for (int oy = oy0; oy < oy1; oy++)
    for (int v = 0; 16 * v < n_oc; v++)
      store_row (job, sums + (size_t)(oy - oy0) * g->row_floats, s->oc_block,
          16 * v, job->out->data + (first + 16 * v) * out_plane,
          job->residual ? job->residual->data + (first + 16 * v) * out_plane
                        : NULL,
          MIN (16, n_oc - 16 * v), oy);
}

static void
strided_task (void *data, int t, int worker)
{
  const StridedJob *job = data;
  const StridedGeometry *g = &job->geo;
  int band = t % g->n_bands, blk = t / g->n_bands % job->s->n_blocks;
  int grp = t / (g->n_bands * job->s->n_blocks);
  int oy0 = band * g->band_rows;

  strided_band (job, grp, blk, oy0, MIN (oy0 + g->band_rows, g->out_h),
      job->base + (size_t)worker * job->per_thread);
}

void
yolose_avx512_strided_conv2d (const YoloseConvDesc *desc,
    const YoloseStrided *s, const YoloseTensor *in,
    const YoloseTensor *residual, YoloseTensor *out, void *scratch, int threads)
{
  StridedJob job = { s, desc, in, residual, out };

  if (out->h <= 0 || out->w <= 0)
    return;
  threads = MAX (threads, 1);
  job.geo = strided_geometry (desc, in->h, in->w, threads);
  job.tile = s->oc_block == 32 ? tile_32 : tile_16;
  job.left_tile = s->oc_block == 32 ? tile_32_left : tile_16_left;
  job.per_thread = thread_floats (&job.geo);
  job.base = (float *)round_up ((uintptr_t)scratch, 64);
  yolose_pool_run (threads, desc->groups * s->n_blocks * job.geo.n_bands,
      strided_task, &job);
}
