/* yolose — Winograd F(4x4, 3x3) for the 3x3 stride 1 convolutions.
 *
 * The Bottlenecks' 3x3 convolutions are a third of YOLOv5's work.  Each
 * 4x4 block of outputs (a "tile") is computed from the 6x6 input patch
 * around it: V = B^T d B transforms the patch, U = G g G^T the 3x3 filter
 * (once, at load), and the output is Y = A^T (sum over input channels of
 * U . V) A.  The sum over input channels is, for each of the 36 positions
 * of the 6x6 transform, an ordinary GEMM out[Cout x tiles] = U[Cout x Cin]
 * V[Cin x tiles], run by the same 8x32 microkernel as the direct
 * convolution: 36 x Cin multiply-adds per tile and output channel instead
 * of 16 x 9 x Cin (F(2x2, 3x3), which this replaced, needed 16 for 4
 * outputs: 4 x 9).  The transforms' constants (powers of two, 5, 1/6,
 * 1/24) cost accuracy: test_kernels holds the result within 1e-4 x (1 +
 * |value|) of the direct sum, and yolov5s + SE's raw outputs moved from
 * 0.025 to 0.042 px of upstream's (tolerance 0.25 px).
 *
 * Work is cut into tasks of a band of tile rows x a chunk of output
 * channels; per block of input channels a task transforms its patches
 * into V (kept in L2), runs the 36 GEMMs into per-position sums, and at
 * the end transforms the sums into outputs, adding bias, SiLU and the
 * residual and storing into the output slice.
 *
 *   B^T = | 4  0 -5  0  1  0 |   G = |  1/4    0     0   |
 *         | 0 -4 -4  1  1  0 |       | -1/6  -1/6  -1/6  |
 *         | 0  4 -4 -1  1  0 |       | -1/6   1/6  -1/6  |
 *         | 0 -2 -1  2  1  0 |       |  1/24  1/12  1/6  |
 *         | 0  2 -1 -2  1  0 |       |  1/24 -1/12  1/6  |
 *         | 0  4  0 -5  0  1 |       |  0     0     1    |
 *
 *   A^T = | 1  1  1  1  1  0 |
 *         | 0  1 -1  2 -2  0 |
 *         | 0  1  1  4  4  0 |
 *         | 0  1 -1  8 -8  1 | */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "big_alloc.h"
#include "kernels_avx512.h"
#include "kernels_pool.h"

#define TILE 4          /* outputs per tile side */
#define PATCH 6         /* inputs per patch side */
#define POSITIONS 36    /* 6 x 6 transformed values per tile */
#define TILES_MAX 192   /* tiles per band, at most (before rounding) */
#define CHANNELS_MAX 64 /* input channels per block of V */
/* A task's per-position sums, at most: they stay in L2 (2 MB on the
 * Emerald Rapids this was tuned on) beside V. */
#define SUMS_BYTES_MAX (768 * 1024)
/* How far ahead the GEMM asks for the weights as it streams them: two
 * panels of 64 channels.  It replaced a prefetch of a whole panel two
 * panels ahead before each GEMM, whose 32 back-to-back prefetches waited
 * for fill buffers (an eighth of a 20 x 20 layer's time, by perf).  A
 * 256-channel layer at 20 x 20 (its 9.4 MB of weights used once per
 * frame), best of 10 after evicting the caches: -13% on two threads,
 * -14% on one; 2 KB and 8 KB ahead were in between. */
#define STREAM_A_BYTES 4096

/* The 6x6 stride-2 pad-2 stem is a 3x3 stride-1 pad-1 convolution of its
 * input's space-to-depth: output (y, x) reads input pixels (2 y + ky - 2,
 * 2 x + kx - 2); with ky = 2 a + p and kx = 2 b + q that is pixel (y + a -
 * 1, x + b - 1) of the plane of input pixels (2 Y + p, 2 X + q), one of
 * four for each input channel.  Run so, the stem does a quarter of the
 * multiply-adds.  3 -> 32 channels from 640 x 640, best of 20: 3.29 ms as
 * a direct 6x6 convolution on two threads, 2.15 ms as this (12 -> 32
 * channels, 3x3, 320 x 320); one thread 5.86 and 3.98 ms.  The
 * space-to-depth is never stored: the input transform gathers its rows
 * from the input's (load_patch_rows). */
static gboolean
is_space_to_depth (const YoloseConvDesc *d)
{
  return d->kernel == 6;
}

/* Input channels of the 3x3 convolution run: the stem's four planes per
 * input channel, channel c's (p, q) at 4 c + 2 p + q. */
static int
wino_in_channels (const YoloseConvDesc *d)
{
  return is_space_to_depth (d) ? 4 * d->in_channels : d->in_channels;
}

gboolean
yolose_avx512_wino_applies (const YoloseConvDesc *d)
{
  return d->groups == 1
      && ((d->kernel == 3 && d->stride == 1 && d->pad == 1)
          || (d->kernel == 6 && d->stride == 2 && d->pad == 2));
}

/* Tiles reach the microkernel in runs of 32 (the last one zero padded):
 * on small pictures the padding eats the saving.  Measured against the
 * direct convolution: 20 x 20 (25 tiles, padded 1.28 x) 34-45% faster,
 * 24 x 24 (36, 1.78 x) 15%, 16 x 16 (16, 2 x) about even, 12 x 12 and
 * 10 x 10 (9, 3.6 x) 36% and 130% slower. */
gboolean
yolose_avx512_wino_pays (int out_h, int out_w)
{
  size_t tiles = (size_t)((out_h + TILE - 1) / TILE)
      * (size_t)((out_w + TILE - 1) / TILE);

  return 5 * round_up (tiles, NR) <= 9 * tiles;
}

/* ------------------------------------------------------------ weights */

/* u[6][6] = G g G^T for one 3x3 filter @g, summed in double. */
static void
transform_filter (const float *g, float u[PATCH][PATCH])
{
  static const double G[PATCH][3] = {
    { 1.0 / 4, 0, 0 },
    { -1.0 / 6, -1.0 / 6, -1.0 / 6 },
    { -1.0 / 6, 1.0 / 6, -1.0 / 6 },
    { 1.0 / 24, 1.0 / 12, 1.0 / 6 },
    { 1.0 / 24, -1.0 / 12, 1.0 / 6 },
    { 0, 0, 1 },
  };
  double t[PATCH][3];

  for (int r = 0; r < PATCH; r++)
    for (int c = 0; c < 3; c++)
      t[r][c] = G[r][0] * g[c] + G[r][1] * g[3 + c] + G[r][2] * g[6 + c];
  for (int r = 0; r < PATCH; r++)
    for (int c = 0; c < PATCH; c++)
      u[r][c]
          = (float)(t[r][0] * G[c][0] + t[r][1] * G[c][1] + t[r][2] * G[c][2]);
}

/* Input channels per block of V: as even as the blocks can be, at most
 * CHANNELS_MAX.  A function of the layer alone, so that the weights can
 * be packed in the order the blocks read them. */
static int
channel_block (int cin)
{
  int blocks = (cin + CHANNELS_MAX - 1) / CHANNELS_MAX;

  return (cin + blocks - 1) / blocks;
}

/* Where panel @panel's weights for the input channel block at @c0 start
 * within a position: the blocks one after the other, each holding every
 * panel's [n_ch][MR] slice. */
static size_t
block_offset (int cin, int panels, int c0, int panel)
{
  int n_ch = MIN (channel_block (cin), cin - c0);

  return ((size_t)c0 * panels + (size_t)panel * n_ch) * MR;
}

/* Layout [position][input channel block][panel][channel in block][MR],
 * output channels zero padded to whole panels: the A operand of each
 * position's GEMM, so that a task's panels of one block stream from
 * memory in one run.  In [panel][input channel] order they were 2 KB runs
 * 8 KB apart, too short for the hardware prefetcher: a 256-channel layer
 * at 20 x 20, whose 9.4 MB of weights come from memory every frame (the
 * network's weights and activations outgrow the share of L3 a frame
 * keeps), took 1.45 ms on two threads with its weights evicted from every
 * cache and 0.75 ms with them cached; blocked, 1.19 ms. */
static float *
pack_3x3 (const float *weight, int cin, int cout)
{
  int panels = (cout + MR - 1) / MR, ch_block = channel_block (cin);
  size_t per_position = (size_t)panels * cin * MR;
  float *u = yolose_big_alloc (POSITIONS * per_position * sizeof (float), 64);

  if (u == NULL)
    return NULL;
  memset (u, 0, POSITIONS * per_position * sizeof (float));
  for (int oc = 0; oc < cout; oc++)
    for (int ic = 0; ic < cin; ic++) {
      int c0 = ic - ic % ch_block;
      size_t at = block_offset (cin, panels, c0, oc / MR)
          + (size_t)(ic - c0) * MR + oc % MR;
      float t[PATCH][PATCH];
      transform_filter (weight + ((size_t)oc * cin + ic) * 9, t);
      for (int p = 0; p < POSITIONS; p++)
        u[p * per_position + at] = t[p / PATCH][p % PATCH];
    }
  return u;
}

/* The stem's 6x6 filters as 3x3 filters over its space-to-depth planes
 * (is_space_to_depth): tap (a, b) of plane (c, p, q) is tap (2 a + p,
 * 2 b + q) of channel c.  Freed with g_free. */
static float *
space_to_depth_filters (const YoloseConvDesc *d)
{
  int cin = d->in_channels, cout = d->out_channels;
  float *w3 = g_try_new0 (float, (size_t)cout * 4 * cin * 9);

  if (w3 == NULL)
    return NULL;
  for (int oc = 0; oc < cout; oc++)
    for (int c = 0; c < cin; c++)
      for (int pq = 0; pq < 4; pq++)
        for (int a = 0; a < 3; a++)
          for (int b = 0; b < 3; b++)
            w3[(((size_t)oc * cin + c) * 4 + pq) * 9 + a * 3 + b]
                = d->weight[(((size_t)oc * cin + c) * 6 + 2 * a + pq / 2) * 6
                    + 2 * b + pq % 2];
  return w3;
}

float *
yolose_avx512_wino_pack (const YoloseConvDesc *d)
{
  float *w3, *u;

  if (!is_space_to_depth (d))
    return pack_3x3 (d->weight, d->in_channels, d->out_channels);
  w3 = space_to_depth_filters (d);
  if (w3 == NULL)
    return NULL;
  u = pack_3x3 (w3, wino_in_channels (d), d->out_channels);
  g_free (w3);
  return u;
}

/* ----------------------------------------------------------- geometry */

typedef struct {
  int cin, cout, panels;
  int out_h, out_w;
  int tiles_y, tiles_x;
  int band_rows; /* tile rows per task */
  int n_bands;
  int tiles_pad;    /* tiles per band rounded up to NR */
  int ch_block;     /* input channels per V block */
  int chunk_panels; /* output panels per task */
  int n_chunks;
  /* The last tail_bands bands run as tail_chunks smaller chunks each
   * (split_tail_bands). */
  int tail_bands, tail_chunks;
  size_t v_floats;   /* POSITIONS x ch_block x tiles_pad */
  size_t sum_floats; /* POSITIONS x chunk_panels x MR x tiles_pad */
  size_t row_floats; /* one gathered input row of the stem */
} Wino;

/* What the input transform of a band costs, in output panels' worth of
 * GEMM on the same tiles: every task transforms its band's input for all
 * input channels, so cutting the output channels into more chunks repeats
 * it.  Measured with F(2x2, 3x3) on 128 and 256 channels at 40 x 40,
 * where 4 chunks of a band ran 20% slower than 2 and 2 slower than 1. */
#define TRANSFORM_PANELS 6

/* The work of the busiest thread when @n_chunks chunks of @chunk_panels
 * output panels and bands of @rows tile rows run on @threads threads, in
 * padded tiles x panels (the last round of tasks may leave threads idle);
 * 0 when the band breaks TILES_MAX (unless it is one row) or its sums
 * would not stay within SUMS_BYTES_MAX. */
static size_t
split_cost (const Wino *w, int rows, int chunk_panels, int n_chunks,
    int threads)
{
  size_t padded = round_up ((size_t)rows * w->tiles_x, NR);
  size_t tasks = (size_t)(w->tiles_y + rows - 1) / rows * n_chunks;

  if ((rows > 1 && rows * w->tiles_x > TILES_MAX)
      || (size_t)POSITIONS * chunk_panels * MR * padded * sizeof (float)
          > SUMS_BYTES_MAX)
    return 0;
  return (tasks + threads - 1) / threads * padded
      * (chunk_panels + TRANSFORM_PANELS);
}

static int
gcd (int a, int b)
{
  while (b != 0) {
    int r = a % b;
    a = b;
    b = r;
  }
  return a;
}

/* When the bands, each one task, do not make whole rounds for the
 * threads, the last round's bands are cut into chunks of output panels
 * that do: otherwise one thread runs the last band while the others
 * wait.  A 64-channel layer at 80 x 80 (7 bands of 60 tiles) left one
 * of two threads idle for a tenth of its time. */
static void
split_tail_bands (Wino *w, int threads)
{
  int rest = threads > 1 ? w->n_bands % threads : 0;
  int chunks, panels;

  w->tail_bands = 0;
  w->tail_chunks = 1;
  if (w->n_chunks != 1 || rest == 0)
    return;
  chunks = threads / gcd (rest, threads);
  panels = (w->panels + chunks - 1) / chunks;
  if ((chunks - 1) * panels >= w->panels)
    return; /* too few panels for every chunk to have some */
  w->tail_bands = rest;
  w->tail_chunks = chunks;
}

/* The number of tasks. */
static int
wino_tasks (const Wino *w)
{
  return (w->n_bands - w->tail_bands) * w->n_chunks
      + w->tail_bands * w->tail_chunks;
}

/* How a layer is cut into tasks of a band of tile rows x a chunk of
 * output panels: the cut with the least work for the busiest thread (ties
 * go to larger bands and fewer chunks).  With F(2x2, 3x3) at 40 x 40 and
 * 128 channels on two threads, the old cut (bands of up to 192 tiles,
 * chunks of up to 8 panels, at least 4 tasks a thread: 8 rows x 4 chunks)
 * ran at 130 GFLOP/s, this one (3 rows x all 16 panels) at 280. */
static void
split_wino_work (Wino *w, int threads)
{
  size_t best = SIZE_MAX;

  w->band_rows = 1;
  w->chunk_panels = 1;
  for (int n_chunks = 1; n_chunks <= w->panels; n_chunks++) {
    int chunk_panels = (w->panels + n_chunks - 1) / n_chunks;
    if (n_chunks > 1
        && chunk_panels == (w->panels + n_chunks - 2) / (n_chunks - 1))
      continue; /* the same chunks as n_chunks - 1 */
    for (int rows = 1; rows <= w->tiles_y; rows++) {
      size_t cost = split_cost (w, rows, chunk_panels,
          (w->panels + chunk_panels - 1) / chunk_panels, threads);
      if (cost == 0)
        break; /* larger bands only break the limits further */
      if (cost <= best && (cost < best || chunk_panels >= w->chunk_panels)) {
        best = cost;
        w->band_rows = rows;
        w->chunk_panels = chunk_panels;
      }
    }
  }
  w->n_bands = (w->tiles_y + w->band_rows - 1) / w->band_rows;
  w->n_chunks = (w->panels + w->chunk_panels - 1) / w->chunk_panels;
  split_tail_bands (w, threads);
}

/* The cut of a layer whose output is @out_h x @out_w. */
static Wino
wino_geometry (const YoloseConvDesc *d, int out_h, int out_w, int threads)
{
  Wino w;

  w.cin = wino_in_channels (d);
  w.cout = d->out_channels;
  w.panels = (w.cout + MR - 1) / MR;
  w.out_h = out_h;
  w.out_w = out_w;
  w.tiles_y = (out_h + TILE - 1) / TILE;
  w.tiles_x = (out_w + TILE - 1) / TILE;
  split_wino_work (&w, threads);
  w.tiles_pad = (int)round_up ((size_t)w.band_rows * w.tiles_x, NR);
  w.ch_block = channel_block (w.cin);
  w.v_floats = (size_t)POSITIONS * w.ch_block * w.tiles_pad;
  w.sum_floats = (size_t)POSITIONS * w.chunk_panels * MR * w.tiles_pad;
  /* a gathered row has at most out_w + 1 pixels */
  w.row_floats = round_up ((size_t)TILE * w.tiles_x + 1, ALIGN_FLOATS);
  return w;
}

static size_t
thread_floats (const Wino *w)
{
  return w->v_floats + w->sum_floats + PATCH * w->row_floats;
}

size_t
yolose_avx512_wino_scratch_size (const YoloseConvDesc *desc, int in_h, int in_w,
    int threads)
{
  size_t per_thread = 0;

  /* As for the direct convolution: enough for any count up to @threads. */
  threads = MAX (threads, 1);
  for (int t = 1; t <= threads; t++) {
    Wino w = wino_geometry (desc,
        yolose_conv_out_dim (in_h, desc->kernel, desc->stride, desc->pad),
        yolose_conv_out_dim (in_w, desc->kernel, desc->stride, desc->pad), t);
    per_thread = MAX (per_thread, thread_floats (&w));
  }
  return ((size_t)threads * per_thread + ALIGN_FLOATS) * sizeof (float);
}

/* ---------------------------------------------------- input transform */

typedef struct {
  const Wino *w;
  const YoloseConvDesc *desc;
  const float *u;
  const YoloseTensor *in, *residual;
  YoloseTensor *out;
  float *base;
  size_t per_thread;
} WinoJob;

/* A row of the picture the 3x3 convolution reads: @w pixels at @px, or
 * a row of its zero padding (@px NULL). */
typedef struct {
  const float *px;
  int w;
} PatchRow;

/* Row @iy of the picture the 3x3 convolution reads, for input channel
 * @c of it: the input's row, read in place, or for the stem every other
 * pixel of one of its rows, gathered into @buf (is_space_to_depth).
 * Read in place, not copied into a zero-padded row: the copies and their
 * borders were 15% of a 64-channel layer's time at 80 x 80. */
static PatchRow
picture_row (const WinoJob *job, int c, int iy, float *buf)
{
  const YoloseTensor *in = job->in;
  size_t plane = (size_t)in->h * in->w;
  int p, q, y, n;

  if (!is_space_to_depth (job->desc)) {
    if (iy < 0 || iy >= in->h)
      return (PatchRow){ NULL, 0 };
    return (PatchRow){ in->data + c * plane + (size_t)iy * in->w, in->w };
  }
  p = c / 2 % 2;
  q = c % 2;
  y = 2 * iy + p;
  n = (in->w - q + 1) / 2; /* pixels q, q + 2, ... of the row */
  if (iy < 0 || y >= in->h || n <= 0)
    return (PatchRow){ NULL, 0 };
  gather_row (buf, in->data + (size_t)(c / 4) * plane + (size_t)y * in->w + q,
      n, 2);
  return (PatchRow){ buf, n };
}

/* rows[i] = row TILE ty - 1 + i of input channel @c; @row_mem holds the
 * stem's gathered rows. */
static void
load_patch_rows (const WinoJob *job, int c, int ty, float *row_mem,
    PatchRow rows[PATCH])
{
  for (int i = 0; i < PATCH; i++)
    rows[i] = picture_row (job, c, TILE * ty - 1 + i,
        row_mem + i * job->w->row_floats);
}

/* Pixels [x0, x0 + 16) of @row, zero outside [0, w): masked loads, which
 * read nothing of the masked lanes.  Only the first tiles of a row start
 * left of it, at x0 = -1: that load starts at pixel 0 and moves up a
 * lane, so no pointer before the row is formed. */
static inline __m512
row_pixels (const PatchRow *row, int x0)
{
  const __m512i zero = _mm512_setzero_si512 ();
  __m512 v;

  if (row->px == NULL || x0 >= row->w)
    return _mm512_setzero_ps ();
  if (x0 >= 0)
    return _mm512_maskz_loadu_ps (first_lanes (MIN (16, row->w - x0)),
        row->px + x0);
  v = _mm512_maskz_loadu_ps (first_lanes (MIN (15, row->w)), row->px);
  return _mm512_castsi512_ps (
      _mm512_alignr_epi32 (_mm512_castps_si512 (v), zero, 15));
}

/* Pixel @x of @row, zero outside it. */
static inline float
row_pixel (const PatchRow *row, int x)
{
  return row->px != NULL && x >= 0 && x < row->w ? row->px[x] : 0.0f;
}

/* v = B^T d for six vectors (16 tiles each). */
static inline void
transform_in6 (const __m512 d[PATCH], __m512 v[PATCH])
{
  const __m512 four = _mm512_set1_ps (4.0f), five = _mm512_set1_ps (5.0f);
  __m512 t0 = _mm512_fnmadd_ps (four, d[2], d[4]); /* d4 - 4 d2 */
  __m512 t1 = _mm512_fnmadd_ps (four, d[1], d[3]); /* d3 - 4 d1 */
  __m512 t2 = _mm512_sub_ps (d[4], d[2]);
  __m512 t3 = _mm512_add_ps (_mm512_sub_ps (d[3], d[1]),
      _mm512_sub_ps (d[3], d[1])); /* 2 (d3 - d1) */

  v[0] = _mm512_fmadd_ps (four, d[0], _mm512_fnmadd_ps (five, d[2], d[4]));
  v[1] = _mm512_add_ps (t0, t1);
  v[2] = _mm512_sub_ps (t0, t1);
  v[3] = _mm512_add_ps (t2, t3);
  v[4] = _mm512_sub_ps (t2, t3);
  v[5] = _mm512_fmadd_ps (four, d[1], _mm512_fnmadd_ps (five, d[3], d[5]));
}

/* Column j of 16 tiles' patches in @row, the first tile's patch at
 * pixel @x0: d[j][t] = row[x0 + TILE t + j]. */
static inline void
patch_columns (const PatchRow *row, int x0, __m512 d[PATCH])
{
  const __m512i by4
      = _mm512_setr_epi32 (0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
  __m512 z0 = row_pixels (row, x0), z1 = row_pixels (row, x0 + 16);
  __m512 z2 = row_pixels (row, x0 + 32), z3 = row_pixels (row, x0 + 48);

  for (int j = 0; j < TILE; j++) {
    __m512i idx = _mm512_add_epi32 (by4, _mm512_set1_epi32 (j));
    __m512 lo = _mm512_permutex2var_ps (z0, idx, z1);
    __m512 hi = _mm512_permutex2var_ps (z2, idx, z3);
    d[j] = _mm512_shuffle_f32x4 (lo, hi, 0x44);
  }
  /* columns 4 and 5 are columns 0 and 1 of the next tile */
  for (int j = TILE; j < PATCH; j++)
    d[j] = _mm512_castsi512_ps (
        _mm512_alignr_epi32 (_mm512_castps_si512 (_mm512_set1_ps (
                                 row_pixel (row, x0 + 64 + j - TILE))),
            _mm512_castps_si512 (d[j - TILE]), 1));
}

/* V[p][c][t] for channel @c of the V block, tile row @ty, tiles
 * [0, tiles_x) at tile index @t0 of the band. */
static void
transform_tile_row (const WinoJob *job, const PatchRow rows[PATCH], float *v,
    int c, int t0)
{
  const Wino *w = job->w;
  size_t pos_stride = (size_t)w->ch_block * w->tiles_pad;

  for (int tx = 0; tx < w->tiles_x; tx += 16) {
    __mmask16 live
        = (__mmask16)(w->tiles_x - tx >= 16 ? 0xffff
                                            : (1u << (w->tiles_x - tx)) - 1);
    __m512 u[PATCH][PATCH];
    float *dst = v + (size_t)c * w->tiles_pad + t0 + tx;

    for (int i = 0; i < PATCH; i++) {
      __m512 d[PATCH];
      patch_columns (&rows[i], TILE * tx - 1, d);
      transform_in6 (d, u[i]);
    }
    for (int j = 0; j < PATCH; j++) {
      __m512 col[PATCH], out[PATCH];
      for (int i = 0; i < PATCH; i++)
        col[i] = u[i][j];
      transform_in6 (col, out);
      for (int a = 0; a < PATCH; a++)
        _mm512_mask_storeu_ps (dst + (a * PATCH + j) * pos_stride, live,
            out[a]);
    }
  }
}

/* Fills V for input channels [c0, c0 + n_ch) and the band's tile rows
 * [ty0, ty1); tiles past the band's end stay zero. */
static void
transform_input (const WinoJob *job, int c0, int n_ch, int ty0, int ty1,
    float *v, float *row_mem)
{
  const Wino *w = job->w;
  int live_tiles = (ty1 - ty0) * w->tiles_x;
  PatchRow rows[PATCH];

  for (int c = 0; c < n_ch; c++) {
    for (int ty = ty0; ty < ty1; ty++) {
      load_patch_rows (job, c0 + c, ty, row_mem, rows);
      transform_tile_row (job, rows, v, c, (ty - ty0) * w->tiles_x);
    }
    /* Padding tiles: zeros, not stale values that could be denormals. */
    for (int p = 0; p < POSITIONS; p++)
      zero_floats (v + ((size_t)p * w->ch_block + c) * w->tiles_pad
              + live_tiles,
          (size_t)(w->tiles_pad - live_tiles));
  }
}

/* --------------------------------------------------- output transform */

/* y = A^T m for six vectors. */
static inline void
transform_out6 (const __m512 m[PATCH], __m512 y[TILE])
{
  __m512 s12 = _mm512_add_ps (m[1], m[2]), d12 = _mm512_sub_ps (m[1], m[2]);
  __m512 s34 = _mm512_add_ps (m[3], m[4]), d34 = _mm512_sub_ps (m[3], m[4]);

  y[0] = _mm512_add_ps (_mm512_add_ps (m[0], s12), s34);
  y[1] = _mm512_fmadd_ps (_mm512_set1_ps (2.0f), d34, d12);
  y[2] = _mm512_fmadd_ps (_mm512_set1_ps (4.0f), s34, s12);
  y[3]
      = _mm512_add_ps (_mm512_fmadd_ps (_mm512_set1_ps (8.0f), d34, d12), m[5]);
}

/* px[q] = pixels 16 q .. 16 q + 15 of a row of 16 tiles, whose four
 * columns are @y[0..3]: tile t's pixel dx is y[dx][t]. */
static inline void
interleave_tiles (const __m512 y[TILE], __m512 px[TILE])
{
  const __m512i pair_lo = _mm512_setr_epi32 (0, 16, 1, 17, 2, 18, 3, 19, 4, 20,
      5, 21, 6, 22, 7, 23);
  const __m512i pair_hi = _mm512_setr_epi32 (8, 24, 9, 25, 10, 26, 11, 27, 12,
      28, 13, 29, 14, 30, 15, 31);
  const __m512i quad_lo = _mm512_setr_epi32 (0, 1, 16, 17, 2, 3, 18, 19, 4, 5,
      20, 21, 6, 7, 22, 23);
  const __m512i quad_hi = _mm512_setr_epi32 (8, 9, 24, 25, 10, 11, 26, 27, 12,
      13, 28, 29, 14, 15, 30, 31);
  __m512 ab_lo = _mm512_permutex2var_ps (y[0], pair_lo, y[1]);
  __m512 ab_hi = _mm512_permutex2var_ps (y[0], pair_hi, y[1]);
  __m512 cd_lo = _mm512_permutex2var_ps (y[2], pair_lo, y[3]);
  __m512 cd_hi = _mm512_permutex2var_ps (y[2], pair_hi, y[3]);

  px[0] = _mm512_permutex2var_ps (ab_lo, quad_lo, cd_lo);
  px[1] = _mm512_permutex2var_ps (ab_lo, quad_hi, cd_lo);
  px[2] = _mm512_permutex2var_ps (ab_hi, quad_lo, cd_hi);
  px[3] = _mm512_permutex2var_ps (ab_hi, quad_hi, cd_hi);
}

/* Stores output row TILE ty + dy of tiles [t_first, t_first + 16) of the
 * band (TILE pixels per tile, in @px as interleave_tiles gives them)
 * through the epilogue, clipping at the picture's right and bottom
 * edges. */
static void
store_tile_pixels (const WinoJob *job, const Epilogue *e, int oc, int ty0,
    int live_tiles, int t_first, int dy, const __m512 px[TILE])
{
  const Wino *w = job->w;
  int lane = 0;

  while (lane < 16) {
    int t = t_first + lane;
    int ty = ty0 + t / w->tiles_x, tx = t % w->tiles_x;
    int run = MIN (MIN (16 - lane, w->tiles_x - tx), live_tiles - t);
    int y = TILE * ty + dy;
    /* pixels of this run in the interleaved 64: [TILE lane, + n) */
    int n = MIN (TILE * run, w->out_w - TILE * tx);

    if (t >= live_tiles)
      break;
    if (y < w->out_h) {
      size_t at = (size_t)oc * e->plane + (size_t)y * e->out_w + TILE * tx;
      for (int q = 0; q < TILE; q++) {
        int a = MAX (TILE * lane, 16 * q),
            b = MIN (TILE * lane + n, 16 * q + 16);
        if (a < b)
          store_lanes (e, px[q], a - 16 * q, b - 16 * q,
              at + (a - TILE * lane));
      }
    }
    lane += run;
  }
}

/* Outputs of the task's channels from the per-position sums. */
static void
transform_output (const WinoJob *job, const Epilogue *e, const float *sums,
    int i0, int n_panels, int ty0, int ty1)
{
  const Wino *w = job->w;
  int live_tiles = (ty1 - ty0) * w->tiles_x;
  int groups = w->tiles_pad / NR;
  size_t pos_stride = (size_t)n_panels * groups * MR * NR;

  for (int i = 0; i < n_panels; i++)
    for (int r = 0; r < MR; r++) {
      int oc = (i0 + i) * MR + r;
      __m512 bias;
      if (oc >= w->cout)
        break;
      bias = _mm512_set1_ps (e->bias[oc]);
      for (int t = 0; t < live_tiles; t += 16) {
        const float *m
            = sums + ((size_t)i * groups + t / NR) * MR * NR + r * NR + t % NR;
        __m512 rows[PATCH][TILE];

        /* rows[a] = A^T applied along each row a of the 6x6 sums */
        for (int a = 0; a < PATCH; a++) {
          __m512 ma[PATCH];
          for (int b = 0; b < PATCH; b++)
            ma[b] = _mm512_load_ps (m + (a * PATCH + b) * pos_stride);
          transform_out6 (ma, rows[a]);
        }
        for (int dx = 0; dx < TILE; dx++) {
          __m512 col[PATCH], y[TILE];
          for (int a = 0; a < PATCH; a++)
            col[a] = rows[a][dx];
          transform_out6 (col, y);
          for (int dy = 0; dy < TILE; dy++)
            rows[dy][dx] = y[dy]; /* rows[dy] is done with once read */
        }
        for (int dy = 0; dy < TILE; dy++) {
          __m512 px[TILE];
          for (int dx = 0; dx < TILE; dx++)
            rows[dy][dx] = bias_act512 (rows[dy][dx], bias, e->act);
          interleave_tiles (rows[dy], px);
          store_tile_pixels (job, e, oc, ty0, live_tiles, t, dy, px);
        }
      }
    }
}

/* --------------------------------------------------------------- conv */

/* Output panels [i0, i0 + n_panels) for tile rows [ty0, ty1). */
static void
wino_task_run (const WinoJob *job, int ty0, int ty1, int i0, int n_panels,
    float *scratch)
{
  const Wino *w = job->w;
  const YoloseConvDesc *d = job->desc;
  float *v = scratch, *sums = v + w->v_floats;
  float *row_mem = sums + w->sum_floats;
  /* V's rows are its channels, tiles_pad apart: one tap */
  static const int no_offset = 0;
  int groups = w->tiles_pad / NR;
  size_t u_position = (size_t)w->panels * w->cin * MR;
  size_t v_position = (size_t)w->ch_block * w->tiles_pad;
  size_t s_position = (size_t)n_panels * groups * MR * NR;
  Epilogue e = { d->bias, d->act, job->out->data,
    job->residual ? job->residual->data : NULL, (size_t)w->out_h * w->out_w,
    w->out_w };

  for (int c0 = 0; c0 < w->cin; c0 += w->ch_block) {
    int n_ch = MIN (w->ch_block, w->cin - c0);
    transform_input (job, c0, n_ch, ty0, ty1, v, row_mem);
    /* Per position, each 8 KB tile of V serves every panel while in L1;
     * the task's panels of this block are one run of weights, which the
     * first run of tiles streams (STREAM_A_BYTES ahead).  At 20 x 20
     * that is the only run: each weight is used once a frame, so the
     * GEMM waits on memory unless the weights are on their way. */
    for (int p = 0; p < POSITIONS; p++)
      for (int j = 0; j < groups; j++)
        for (int i = 0; i < n_panels; i++) {
          const float *a = job->u + p * u_position
              + block_offset (w->cin, w->panels, c0, i0 + i);
          yolose_avx512_gemm_8x32 (n_ch,
              &(BRows){ v + p * v_position + (size_t)j * NR, w->tiles_pad,
                  &no_offset, 1 },
              a, sums + p * s_position + ((size_t)i * groups + j) * MR * NR,
              c0 > 0, j == 0 ? STREAM_A_BYTES : 0);
        }
  }
  transform_output (job, &e, sums, i0, n_panels, ty0, ty1);
}

static void
wino_task (void *data, int t, int worker)
{
  const WinoJob *job = data;
  const Wino *w = job->w;
  int full_tasks = (w->n_bands - w->tail_bands) * w->n_chunks;
  int band, chunk_panels, chunk, ty0, i0;

  if (t < full_tasks) {
    band = t / w->n_chunks;
    chunk = t % w->n_chunks;
    chunk_panels = w->chunk_panels;
  } else {
    band = w->n_bands - w->tail_bands + (t - full_tasks) / w->tail_chunks;
    chunk = (t - full_tasks) % w->tail_chunks;
    chunk_panels = (w->panels + w->tail_chunks - 1) / w->tail_chunks;
  }
  ty0 = band * w->band_rows;
  i0 = chunk * chunk_panels;
  wino_task_run (job, ty0, MIN (ty0 + w->band_rows, w->tiles_y), i0,
      MIN (chunk_panels, w->panels - i0),
      job->base + (size_t)worker * job->per_thread);
}

void
yolose_avx512_wino_conv2d (const YoloseConvDesc *desc, const float *u,
    const YoloseTensor *in, const YoloseTensor *residual, YoloseTensor *out,
    void *scratch, int threads)
{
  Wino w = wino_geometry (desc, out->h, out->w, MAX (threads, 1));
  WinoJob job = { &w, desc, u, in, residual, out,
    (float *)round_up ((uintptr_t)scratch, 64), thread_floats (&w) };

  yolose_pool_run (threads, wino_tasks (&w), wino_task, &job);
}
