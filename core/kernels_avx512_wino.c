/* yolose — Winograd F(2x2, 3x3) for the 3x3 stride 1 convolutions.
 *
 * The Bottlenecks' 3x3 convolutions are a third of YOLOv5's work.  Each
 * 2x2 block of outputs (a "tile") is computed from the 4x4 input patch
 * around it: V = B^T d B transforms the patch, U = G g G^T the 3x3 filter
 * (once, at load), and the output is Y = A^T (sum over input channels of
 * U . V) A.  The sum over input channels is, for each of the 16 positions
 * of the 4x4 transform, an ordinary GEMM out[Cout x tiles] = U[Cout x Cin]
 * V[Cin x tiles], run by the same 8x32 microkernel as the direct
 * convolution: 16 x Cin multiply-adds per tile and output channel instead
 * of 4 x 9 x Cin.  The transforms only add and subtract (and halve, in G),
 * so the result is as accurate as the direct sum.
 *
 * Work is cut into tasks of a band of tile rows x a chunk of output
 * channels; per block of input channels a task transforms its patches
 * into V (kept in L2), runs the 16 GEMMs into per-position sums, and at
 * the end transforms the sums into outputs, adding bias, SiLU and the
 * residual and storing into the output slice.
 *
 *   B^T = | 1  0 -1  0 |   G = | 1    0    0  |   A^T = | 1  1  1  0 |
 *         | 0  1  1  0 |       | 1/2  1/2  1/2 |         | 0  1 -1 -1 |
 *         | 0 -1  1  0 |       | 1/2 -1/2  1/2 |
 *         | 0  1  0 -1 |       | 0    0    1  | */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_avx512.h"
#include "kernels_pool.h"

#define POSITIONS 16    /* 4 x 4 transformed values per tile */
#define TILES_MAX 192   /* tiles per band, at most (before rounding) */
#define CHANNELS_MAX 64 /* input channels per block of V */
/* A task's per-position sums, at most: they stay in L2 (2 MB on the
 * Emerald Rapids this was tuned on) beside V. */
#define SUMS_BYTES_MAX (768 * 1024)

gboolean
yolose_avx512_wino_applies (const YoloseConvDesc *d)
{
  return d->kernel == 3 && d->stride == 1 && d->pad == 1 && d->groups == 1;
}

/* The transforms work on 16 tiles (32 pixels) of a row at a time; on
 * narrower pictures (YOLOv5's 20 x 20 layers) lanes idle, tiles round up
 * badly to the microkernel's 32, and the direct convolution wins. */
gboolean
yolose_avx512_wino_pays (int in_h, int in_w)
{
  return in_w >= 32 && in_h >= 2;
}

/* ------------------------------------------------------------ weights */

/* u[4][4] = G g G^T for one 3x3 filter @g. */
static void
transform_filter (const float *g, float u[4][4])
{
  float t[4][3];

  for (int c = 0; c < 3; c++) {
    t[0][c] = g[c];
    t[1][c] = 0.5f * (g[c] + g[3 + c] + g[6 + c]);
    t[2][c] = 0.5f * (g[c] - g[3 + c] + g[6 + c]);
    t[3][c] = g[6 + c];
  }
  for (int r = 0; r < 4; r++) {
    u[r][0] = t[r][0];
    u[r][1] = 0.5f * (t[r][0] + t[r][1] + t[r][2]);
    u[r][2] = 0.5f * (t[r][0] - t[r][1] + t[r][2]);
    u[r][3] = t[r][2];
  }
}

/* Layout [position][panel][input channel][MR], output channels zero
 * padded to whole panels: the A operand of each position's GEMM. */
float *
yolose_avx512_wino_pack (const YoloseConvDesc *d)
{
  int cin = d->in_channels, cout = d->out_channels;
  int panels = (cout + MR - 1) / MR;
  size_t per_position = (size_t)panels * cin * MR;
  void *mem = NULL;
  float *u;

  if (posix_memalign (&mem, 64, POSITIONS * per_position * sizeof (float)) != 0)
    return NULL;
  u = mem;
  memset (u, 0, POSITIONS * per_position * sizeof (float));
  for (int oc = 0; oc < cout; oc++)
    for (int ic = 0; ic < cin; ic++) {
      float t[4][4];
      transform_filter (d->weight + ((size_t)oc * cin + ic) * 9, t);
      for (int p = 0; p < POSITIONS; p++)
        u[p * per_position + ((size_t)(oc / MR) * cin + ic) * MR + oc % MR]
            = t[p / 4][p % 4];
    }
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
  size_t v_floats;   /* POSITIONS x ch_block x tiles_pad */
  size_t sum_floats; /* POSITIONS x chunk_panels x MR x tiles_pad */
  size_t row_floats; /* one zero-padded input row */
} Wino;

/* What the input transform of a band costs, in output panels' worth of
 * GEMM on the same tiles: every task transforms its band's input for all
 * input channels, so cutting the output channels into more chunks repeats
 * it.  Measured on 128 and 256 channels at 40 x 40, where 4 chunks of a
 * band ran 20% slower than 2 and 2 slower than 1. */
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

/* How a layer is cut into tasks of a band of tile rows x a chunk of
 * output panels: the cut with the least work for the busiest thread (ties
 * go to larger bands and fewer chunks).  At 40 x 40 with 128 channels on
 * two threads, the old cut (bands of up to 192 tiles, chunks of up to 8
 * panels, at least 4 tasks a thread: 8 rows x 4 chunks) ran at 130
 * GFLOP/s, this one (3 rows x all 16 panels) at 280. */
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
}

static Wino
wino_geometry (const YoloseConvDesc *d, int in_h, int in_w, int threads)
{
  Wino w;
  int blocks;

  w.cin = d->in_channels;
  w.cout = d->out_channels;
  w.panels = (w.cout + MR - 1) / MR;
  w.out_h = in_h;
  w.out_w = in_w;
  w.tiles_y = (in_h + 1) / 2;
  w.tiles_x = (in_w + 1) / 2;
  split_wino_work (&w, threads);
  w.tiles_pad = (int)round_up ((size_t)w.band_rows * w.tiles_x, NR);
  blocks = (w.cin + CHANNELS_MAX - 1) / CHANNELS_MAX;
  w.ch_block = (w.cin + blocks - 1) / blocks;
  w.v_floats = (size_t)POSITIONS * w.ch_block * w.tiles_pad;
  w.sum_floats = (size_t)POSITIONS * w.chunk_panels * MR * w.tiles_pad;
  w.row_floats = round_up (2 * round_up (w.tiles_x, 16) + 64, ALIGN_FLOATS);
  return w;
}

static size_t
thread_floats (const Wino *w)
{
  return w->v_floats + w->sum_floats + 4 * w->row_floats;
}

size_t
yolose_avx512_wino_scratch_size (const YoloseConvDesc *desc, int in_h, int in_w,
    int threads)
{
  size_t per_thread = 0;

  /* As for the direct convolution: enough for any count up to @threads. */
  threads = MAX (threads, 1);
  for (int t = 1; t <= threads; t++) {
    Wino w = wino_geometry (desc, in_h, in_w, t);
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

/* rows[i] = input row 2 ty - 1 + i of @plane with one zero column on each
 * side (and zeros past the end, for whole-vector loads); all zero outside
 * the picture. */
static void
load_patch_rows (const WinoJob *job, const float *plane, int ty, float *rows[4])
{
  int h = job->in->h, wdt = job->in->w;

  for (int i = 0; i < 4; i++) {
    int iy = 2 * ty - 1 + i;
    float *r = rows[i];
    if (iy < 0 || iy >= h) {
      memset (r, 0, job->w->row_floats * sizeof (float));
      continue;
    }
    /* Only the borders need zeroing: column 0 and past the row's end. */
    r[0] = 0.0f;
    memcpy (r + 1, plane + (size_t)iy * wdt, (size_t)wdt * sizeof (float));
    memset (r + 1 + wdt, 0, (job->w->row_floats - 1 - wdt) * sizeof (float));
  }
}

/* V[p][c][t] for channel @c of the V block, tile row @ty, tiles
 * [0, tiles_x) at tile index @t0 of the band. */
static void
transform_tile_row (const WinoJob *job, float *rows[4], float *v, int c, int t0)
{
  const Wino *w = job->w;
  const __m512i even = _mm512_setr_epi32 (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20,
      22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32 (1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21,
      23, 25, 27, 29, 31);
  size_t pos_stride = (size_t)w->ch_block * w->tiles_pad;

  for (int tx = 0; tx < w->tiles_x; tx += 16) {
    __mmask16 live
        = (__mmask16)(w->tiles_x - tx >= 16 ? 0xffff
                                            : (1u << (w->tiles_x - tx)) - 1);
    __m512 u[4][4];
    float *dst = v + (size_t)c * w->tiles_pad + t0 + tx;

    /* Patch column j of tile tx is padded column 2 tx + j. */
    for (int i = 0; i < 4; i++) {
      const float *r = rows[i] + 2 * tx;
      __m512 a0 = _mm512_loadu_ps (r), a1 = _mm512_loadu_ps (r + 16);
      __m512 b0 = _mm512_loadu_ps (r + 2), b1 = _mm512_loadu_ps (r + 18);
      __m512 d0 = _mm512_permutex2var_ps (a0, even, a1);
      __m512 d1 = _mm512_permutex2var_ps (a0, odd, a1);
      __m512 d2 = _mm512_permutex2var_ps (b0, even, b1);
      __m512 d3 = _mm512_permutex2var_ps (b0, odd, b1);
      u[i][0] = _mm512_sub_ps (d0, d2);
      u[i][1] = _mm512_add_ps (d1, d2);
      u[i][2] = _mm512_sub_ps (d2, d1);
      u[i][3] = _mm512_sub_ps (d1, d3);
    }
    for (int j = 0; j < 4; j++) {
      __m512 col[4] = { _mm512_sub_ps (u[0][j], u[2][j]),
        _mm512_add_ps (u[1][j], u[2][j]), _mm512_sub_ps (u[2][j], u[1][j]),
        _mm512_sub_ps (u[1][j], u[3][j]) };
      for (int a = 0; a < 4; a++)
        _mm512_mask_storeu_ps (dst + (a * 4 + j) * pos_stride, live, col[a]);
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
  size_t in_plane = (size_t)job->in->h * job->in->w;
  int live_tiles = (ty1 - ty0) * w->tiles_x;
  float *rows[4];

  for (int i = 0; i < 4; i++)
    rows[i] = row_mem + i * w->row_floats;
  for (int c = 0; c < n_ch; c++) {
    const float *plane = job->in->data + (size_t)(c0 + c) * in_plane;
    for (int ty = ty0; ty < ty1; ty++) {
      load_patch_rows (job, plane, ty, rows);
      transform_tile_row (job, rows, v, c, (ty - ty0) * w->tiles_x);
    }
    /* Padding tiles: zeros, not stale values that could be denormals. */
    for (int p = 0; p < POSITIONS; p++)
      memset (v + ((size_t)p * w->ch_block + c) * w->tiles_pad + live_tiles, 0,
          (w->tiles_pad - live_tiles) * sizeof (float));
  }
}

/* --------------------------------------------------- output transform */

/* Stores output rows 2 ty + dy of tiles [lane0, lane0 + 16) of the band
 * (two pixels per tile, interleaved from @left and @right) through the
 * epilogue, clipping at the picture's right and bottom edges. */
static void
store_tile_pixels (const WinoJob *job, const Epilogue *e, int oc, int ty0,
    int live_tiles, int t_first, int dy, __m512 left, __m512 right)
{
  const Wino *w = job->w;
  const __m512i lo_idx = _mm512_setr_epi32 (0, 16, 1, 17, 2, 18, 3, 19, 4, 20,
      5, 21, 6, 22, 7, 23);
  const __m512i hi_idx = _mm512_setr_epi32 (8, 24, 9, 25, 10, 26, 11, 27, 12,
      28, 13, 29, 14, 30, 15, 31);
  __m512 half[2] = { _mm512_permutex2var_ps (left, lo_idx, right),
    _mm512_permutex2var_ps (left, hi_idx, right) };
  int lane = 0;

  while (lane < 16) {
    int t = t_first + lane;
    int ty = ty0 + t / w->tiles_x, tx = t % w->tiles_x;
    int run = MIN (MIN (16 - lane, w->tiles_x - tx), live_tiles - t);
    int y = 2 * ty + dy;
    /* pixels of this run in the interleaved 32: [2 lane, 2 lane + n) */
    int n = MIN (2 * run, w->out_w - 2 * tx);

    if (t >= live_tiles)
      break;
    if (y < w->out_h) {
      size_t at = (size_t)oc * e->plane + (size_t)y * e->out_w + 2 * tx;
      for (int h = 0; h < 2; h++) {
        int a = MAX (2 * lane, 16 * h), b = MIN (2 * lane + n, 16 * h + 16);
        if (a < b)
          store_lanes (e, half[h], a - 16 * h, b - 16 * h, at + (a - 2 * lane));
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
        __m512 row[4][2];

        /* t[a] = m[a][0] + m[a][1] + m[a][2], m[a][1] - m[a][2] - m[a][3] */
        for (int a = 0; a < 4; a++) {
          __m512 m0 = _mm512_load_ps (m + (a * 4 + 0) * pos_stride);
          __m512 m1 = _mm512_load_ps (m + (a * 4 + 1) * pos_stride);
          __m512 m2 = _mm512_load_ps (m + (a * 4 + 2) * pos_stride);
          __m512 m3 = _mm512_load_ps (m + (a * 4 + 3) * pos_stride);
          row[a][0] = _mm512_add_ps (_mm512_add_ps (m0, m1), m2);
          row[a][1] = _mm512_sub_ps (_mm512_sub_ps (m1, m2), m3);
        }
        for (int dy = 0; dy < 2; dy++) {
          __m512 px[2];
          for (int dx = 0; dx < 2; dx++) {
            __m512 y = dy == 0
                ? _mm512_add_ps (_mm512_add_ps (row[0][dx], row[1][dx]),
                    row[2][dx])
                : _mm512_sub_ps (_mm512_sub_ps (row[1][dx], row[2][dx]),
                    row[3][dx]);
            y = _mm512_add_ps (y, bias);
            px[dx] = e->act == YOLOSE_ACT_SILU ? silu512 (y) : y;
          }
          store_tile_pixels (job, e, oc, ty0, live_tiles, t, dy, px[0], px[1]);
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
    /* Per position, each 8 KB tile of V serves every panel while in L1. */
    for (int p = 0; p < POSITIONS; p++)
      for (int j = 0; j < groups; j++)
        for (int i = 0; i < n_panels; i++)
          yolose_avx512_gemm_8x32 (n_ch,
              &(BRows){ v + p * v_position + (size_t)j * NR, w->tiles_pad,
                  &no_offset, 1 },
              job->u + p * u_position + ((size_t)(i0 + i) * w->cin + c0) * MR,
              sums + p * s_position + ((size_t)i * groups + j) * MR * NR,
              c0 > 0);
  }
  transform_output (job, &e, sums, i0, n_panels, ty0, ty1);
}

static void
wino_task (void *data, int t, int worker)
{
  const WinoJob *job = data;
  const Wino *w = job->w;
  int chunk = t % w->n_chunks, band = t / w->n_chunks;
  int ty0 = band * w->band_rows, i0 = chunk * w->chunk_panels;

  wino_task_run (job, ty0, MIN (ty0 + w->band_rows, w->tiles_y), i0,
      MIN (w->chunk_panels, w->panels - i0),
      job->base + (size_t)worker * job->per_thread);
}

void
yolose_avx512_wino_conv2d (const YoloseConvDesc *desc, const float *u,
    const YoloseTensor *in, const YoloseTensor *residual, YoloseTensor *out,
    void *scratch, int threads)
{
  Wino w = wino_geometry (desc, in->h, in->w, MAX (threads, 1));
  WinoJob job = { &w, desc, u, in, residual, out,
    (float *)round_up ((uintptr_t)scratch, 64), thread_floats (&w) };

  yolose_pool_run (threads, w.n_bands * w.n_chunks, wino_task, &job);
}
