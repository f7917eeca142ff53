/* yolose — the AVX-512 convolution.
 *
 * Compiled alone with -mavx512f and only called after
 * yolose_cpu_has_avx512 ().  It provides the convolution entries of the
 * "avx512" table; kernels_select.c completes that table with the AVX2
 * pooling, upsampling and SE, which are memory bound and gain
 * nothing from wider vectors.
 *
 * Convolution is a GEMM per group, out[M x N] = W[M x K] * B[K x N], as in
 * kernels_avx2.c, but B is never packed in im2col form.  The work is cut
 * into tasks (a band of output rows x a chunk of output channels) that the
 * pool's threads take one at a time.  Per block of input channels a task
 * copies the input rows its band needs into a zero-padded buffer split
 * into stride phases (for stride s, phase (py, px) holds padded pixels
 * (s y + py, s x + px)).
 * In that buffer every tap (ky, kx) of a channel is the same picture
 * shifted by a fixed offset, so row k of B for a run of output pixels is a
 * contiguous run of the buffer: the microkernel reads B straight from it,
 * row (c, t) at c * chan_stride + tap[t] (BRows).  Output pixels are numbered
 * in the buffer's geometry ("virtual" pixels, phase width per row); the few
 * columns past the output width are computed and never stored.  This
 * trades those columns (2 of 42 at 40 x 40) for the 9x copy that im2col
 * costs, which dominated the layers with few output channels.  1x1
 * stride-1 layers skip the buffer: they read B from the input planes
 * (Geometry.flat).  3x3 stride-1 layers on pictures of 20 x 20 and more
 * go to Winograd instead (kernels_avx512_wino.c,
 * yolose_avx512_wino_pays), as does the 6x6
 * stride-2 stem read as a 3x3 convolution of its space-to-depth; 3x3
 * stride-2 layers go to a kernel with output channels in the vector,
 * which reads its input in place (kernels_avx512_strided.c). */
#include "kernels.h"
#include "kernels_avx512.h"
#include "kernels_pack.h"
#include "kernels_pool.h"

#include <immintrin.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef KC_TARGET
#define KC_TARGET 256 /* rows of K per block */
#endif
#ifndef NV_TARGET
#define NV_TARGET 1024 /* virtual pixels per band (cache block) */
#endif

const YoloseKernels *yolose_kernels_avx512_conv (void);

/* ------------------------------------------------------------ packing */

typedef struct {
  YoloseConvDesc desc;
  int m;                  /* output channels per group */
  int cin;                /* input channels per group */
  int taps;               /* kernel * kernel */
  int k;                  /* K = cin * taps */
  int m_panels;           /* ceil (m / MR) */
  int ch_block;           /* input channels per K block */
  float *a;               /* [groups][m_panels][k][MR], zero padded */
  float *wino;            /* Winograd weights as well, or NULL */
  YoloseStrided *strided; /* 3x3 stride 2: used instead of a (NULL) */
} Packed512;

/* Everything about the layer's GEMM except the packed weights. */
static void
describe_layer (Packed512 *p, const YoloseConvDesc *desc)
{
  int n_blocks, kc;

  p->desc = *desc;
  p->m = desc->out_channels / desc->groups;
  p->cin = desc->in_channels / desc->groups;
  p->taps = desc->kernel * desc->kernel;
  p->k = p->cin * p->taps;
  p->m_panels = (p->m + MR - 1) / MR;
  /* K blocks of about KC_TARGET rows (half that where a channel's taps
   * spread over more cache lines: stride phases; or where each row is a
   * whole input row: 1x1), all the same size: a short last block (4 of 32
   * channels) would cost a pass of partial sums for little work. */
  kc = desc->kernel > 1 && desc->stride == 1 ? KC_TARGET : KC_TARGET / 2;
  n_blocks = MAX ((p->k + kc / 2) / kc, 1);
  p->ch_block = (p->cin + n_blocks - 1) / n_blocks;
}

static void *
avx512_conv_pack (const YoloseConvDesc *desc)
{
  Packed512 *p = g_try_new0 (Packed512, 1);

  if (p == NULL)
    return NULL;
  if (yolose_avx512_strided_applies (desc)) {
    p->strided = yolose_avx512_strided_pack (desc);
    if (p->strided == NULL) {
      g_free (p);
      return NULL;
    }
    return p;
  }
  describe_layer (p, desc);
  p->a = yolose_pack_weight_panels (desc->weight, desc->groups, p->m, p->k, MR);
  if (p->a == NULL) {
    g_free (p);
    return NULL;
  }
  /* Both forms for 3x3 stride 1: which one is faster depends on the
   * picture size, known only when the layer runs. */
  if (yolose_avx512_wino_applies (desc)) {
    p->wino = yolose_avx512_wino_pack (desc);
    if (p->wino == NULL) {
      free (p->a);
      g_free (p);
      return NULL;
    }
  }
  return p;
}

static void
avx512_conv_packed_free (void *packed)
{
  Packed512 *p = packed;

  if (p != NULL) {
    free (p->a);
    free (p->wino);
    yolose_avx512_strided_free (p->strided);
  }
  g_free (p);
}

/* ----------------------------------------------------------- geometry */

/* How one call lays out its bands and buffers; a pure function of the
 * layer, the input size and the thread count, so that the scratch size
 * computed ahead covers what conv2d uses. */
typedef struct {
  int out_h, out_w;
  size_t pixels; /* per output plane (flat layers regrid them, below) */
  int phases;    /* stride^2 */
  int wv;        /* phase width = virtual pixels per row */
  int band_rows; /* output rows per band, at most (band_first_row) */
  int n_bands;
  int chunk_panels;     /* weight panels per task */
  int n_chunks;         /* ceil (m_panels / chunk_panels) */
  int nv_pad;           /* virtual pixels per band, NR multiple */
  int rows_needed;      /* phase rows per band buffer */
  size_t phase_stride;  /* floats between phases of a channel */
  size_t chan_stride;   /* floats between channels */
  size_t buffer_floats; /* one channel block, per thread */
  size_t sums_floats;   /* partial sums of one band, or 0 */
  /* When the whole picture is one band cut into several channel chunks,
   * every task would copy the same input: it is copied once, for all
   * input channels, into a buffer the tasks share. */
  gboolean shared;
  size_t shared_floats;
  /* A 1x1 stride-1 convolution without padding maps pixel i of the input
   * planes to pixel i of the output planes, so it runs on the planes cut
   * into rows of NR pixels (out_w = wv = NR, the last row short): no tile
   * straddles two picture rows, so every tile is finished in the
   * microkernel and bands are never padded.  In picture rows, a band of
   * 40 x 40 wasted 12% on padding and half its tiles went through
   * store_tile; at 20 x 20 all did.  Such a layer reads B from the input
   * planes, not from a band buffer: in place, or where a tile's rows
   * would crowd a few L1 sets (copy_tiles), copied tile by tile into a
   * NR-wide buffer (tail_floats) while the next tile's are fetched.  In
   * place or not, a tile that would run past the end of a plane is
   * copied there too. */
  gboolean flat;
  gboolean copy_tiles;
  size_t tail_floats;
} Geometry;

/* Pixels computed for @n_bands bands of @rows rows, rounded up to whole
 * microkernels. */
static int
padded_pixels (const Geometry *g, int rows)
{
  int n_bands = (g->out_h + rows - 1) / rows;
  int last = g->out_h - (n_bands - 1) * rows;

  return (n_bands - 1) * (int)round_up ((size_t)rows * g->wv, NR)
      + (int)round_up ((size_t)last * g->wv, NR);
}

/* A flat layer's rows are NR pixels each, so no cut into bands wastes
 * anything: its bands are cut as evenly as the rows allow
 * (band_first_row), into whole rounds of tasks for the threads.  Cut
 * into bands of equal height with a short last one, a 40 x 40 layer's 50
 * rows ran as 7 bands of 7 and one of 1, on two threads one of them idle
 * for a seventh of the layer, and 160 x 160 ran as 25 bands, 13 on one
 * thread and 12 on the other. */
static void
even_out_flat_bands (Geometry *g, int threads)
{
  if (threads > 1 && g->n_chunks == 1 && g->n_bands % threads != 0) {
    int whole_rounds = (g->n_bands + threads - 1) / threads * threads;
    if (whole_rounds <= g->out_h)
      g->n_bands = whole_rounds;
  }
  g->band_rows = (g->out_h + g->n_bands - 1) / g->n_bands;
}

/* Cuts the output into tasks (bands of rows x chunks of output channels)
 * that the threads take dynamically: with several tasks per thread, a
 * thread that the OS preempts (this runs next to a video pipeline) delays
 * the layer by one task, not by its whole share.  Bands hold about
 * NV_TARGET pixels; when that gives too few, the picture is cut into more
 * bands as long as rounding them to whole microkernels wastes little, and
 * the output channels are split for the rest.  Except when the whole
 * picture fits one band and the layer copies its input (@copies_input):
 * then it stays one band, copied once for all tasks (Geometry.shared),
 * and only the output channels are split.  Cut into bands, every band
 * copied its rows plus the kernel's reach, once per chunk: 3x the input
 * for a 20 x 20 output.  Two threads, stride 2 from 40 x 40 (best of 8
 * alternating runs): 128 -> 128 -10.5%, 128 -> 256 -2.7%, 256 -> 256
 * -7.3%, 256 -> 512 +1.6% (its mean -7%); in the networks the last
 * stride-2 layer -14% (yolov5s + SE) and -23% (yolov5n + SE).  For 40 x
 * 40 outputs (two bands) one shared copy was slower: it outgrows L2. */
static void
split_work (Geometry *g, int m_panels, int threads, gboolean copies_input)
{
  int want = threads > 1 ? 4 * threads : 1;

  g->band_rows = CLAMP (NV_TARGET / g->wv, 1, g->out_h);
  g->n_bands = (g->out_h + g->band_rows - 1) / g->band_rows;
  if (g->n_bands < want && !(copies_input && g->n_bands == 1)) {
    int best_rows = g->band_rows;
    double best_waste = 1e9;
    for (int n = MIN (want, g->out_h); n >= 1; n--) {
      int rows = (g->out_h + n - 1) / n;
      double waste
          = (double)padded_pixels (g, rows) / ((double)g->out_h * g->wv) - 1;
      if (waste < best_waste - 1e-9) {
        best_waste = waste;
        best_rows = rows;
      }
      if (waste <= 0.05)
        break;
    }
    g->band_rows = MIN (best_rows, g->band_rows);
    g->n_bands = (g->out_h + g->band_rows - 1) / g->band_rows;
  }
  g->n_chunks = 1;
  if (g->n_bands < want)
    g->n_chunks = CLAMP ((want + g->n_bands - 1) / g->n_bands, 1,
        MAX (m_panels / 2, 1));
  g->chunk_panels = (m_panels + g->n_chunks - 1) / g->n_chunks;
  g->n_chunks = (m_panels + g->chunk_panels - 1) / g->chunk_panels;
  if (g->flat)
    even_out_flat_bands (g, threads);
}

/* The first output row of band @band.  A flat layer's first bands take
 * a row more than the others: the threads take the tasks in turns, so
 * the longer bands spread over them (a 40 x 40 layer's 50 rows in 8
 * bands: 7 7 6 6 6 6 6 6, 25 rows for each of two threads). */
static int
band_first_row (const Geometry *g, int band)
{
  if (g->flat)
    return band * (g->out_h / g->n_bands) + MIN (band, g->out_h % g->n_bands);
  return band * g->band_rows;
}

/* Whether a tile's rows of B, NR floats of each of @n_ch consecutive
 * input planes of @plane floats read in place, crowd into few of L1's 64
 * sets (more than 4 lines in one), where they evict each other and the
 * weights.  A 40 x 40 plane is 100 lines, so the rows of 128 channels
 * share 32 sets, 8 lines each; a 20 x 20 one (25 lines) spreads them
 * over all 64, 4 each; planes of a multiple of 512 bytes (80 x 80,
 * 160 x 160) put them all in one to four sets.  Copied tile by tile
 * instead (copy_tiles), 1x1 layers at 40 x 40 took 6-10% less time alone
 * on two threads, 2-4% on one; at 20 x 20 the copies only cost (up to
 * +12%).  At 80 x 80 and 160 x 160 the copies replaced a band buffer
 * (a copy of the band's rows, channels skewed, through L2; in place they
 * were 10-15% slower): in the networks on two threads the C3 blocks at
 * 80 x 80 -2.2 to -7.6% (8 interleaved rounds, both orders), at
 * 160 x 160 -2.2% to +3.2%, yolov5s + SE -1.3 to -1.6%.  On one thread
 * layer 18 -4 to -8% and yolov5s + SE between +0.4% and -8% in four
 * runs, both orders (two runs earlier, before 40 x 40 was copied too,
 * had it +1.9% and +3.7%: the noise of this machine). */
static gboolean
tile_rows_crowd_cache_sets (size_t plane, int n_ch)
{
  int lines[64] = { 0 };

  for (int c = 0; c < n_ch; c++) {
    size_t line = (size_t)c * plane * sizeof (float) / 64;
    for (int k = 0; k < (int)(NR * sizeof (float) / 64); k++)
      if (++lines[(line + k) % 64] > 4)
        return TRUE;
  }
  return FALSE;
}

static Geometry
geometry (const Packed512 *p, int in_h, int in_w, int threads)
{
  const YoloseConvDesc *d = &p->desc;
  int s = d->stride, reach = (d->kernel - 1) / s;
  Geometry g;

  g.out_h = yolose_conv_out_dim (in_h, d->kernel, s, d->pad);
  g.out_w = yolose_conv_out_dim (in_w, d->kernel, s, d->pad);
  g.pixels = (size_t)g.out_h * g.out_w;
  g.phases = s * s;
  g.wv = (in_w + 2 * d->pad + s - 1) / s;
  g.flat = d->kernel == 1 && s == 1 && d->pad == 0 && g.pixels <= INT_MAX;
  g.copy_tiles = g.flat && tile_rows_crowd_cache_sets (g.pixels, p->ch_block);
  if (g.flat) {
    g.out_h = (int)((g.pixels + NR - 1) / NR);
    g.out_w = g.wv = NR;
  }
  split_work (&g, p->m_panels, threads, !g.flat);
  g.nv_pad = (int)round_up ((size_t)g.band_rows * g.wv, NR);
  /* The last microkernel of a band reads up to nv_pad - 1 plus the
   * largest tap offset, reach rows and reach columns further. */
  g.rows_needed = (g.nv_pad + reach * g.wv + reach + g.wv - 1) / g.wv;
  g.phase_stride = (size_t)g.rows_needed * g.wv;
  g.chan_stride = round_up ((size_t)g.phases * g.phase_stride, ALIGN_FLOATS)
      + ALIGN_FLOATS;
  g.tail_floats = g.flat ? (size_t)p->ch_block * NR : 0;
  g.shared = !g.flat && g.n_bands == 1 && g.n_chunks > 1;
  g.shared_floats
      = g.shared ? (size_t)d->in_channels * g.chan_stride + ALIGN_FLOATS : 0;
  g.buffer_floats
      = g.shared || g.flat ? 0 : (size_t)p->ch_block * g.chan_stride;
  g.sums_floats
      = p->ch_block < p->cin ? (size_t)g.chunk_panels * MR * g.nv_pad : 0;
  return g;
}

static size_t
thread_floats (const Geometry *g)
{
  return g->buffer_floats + g->tail_floats + g->sums_floats + ALIGN_FLOATS;
}

/* Scratch for a run with @threads threads: their own areas, the shared
 * input copy if any, then the taps' offsets (ints, one float each). */
static size_t
run_floats (const Packed512 *p, const Geometry *g, int threads)
{
  return (size_t)threads * thread_floats (g) + g->shared_floats
      + round_up ((size_t)p->taps, ALIGN_FLOATS);
}

static size_t
avx512_conv_scratch_size (const YoloseConvDesc *desc, int in_h, int in_w,
    int threads)
{
  Packed512 p = { 0 };
  Geometry g;
  size_t floats = 0;

  if (yolose_avx512_wino_applies (desc)
      && yolose_avx512_wino_pays (
          yolose_conv_out_dim (in_h, desc->kernel, desc->stride, desc->pad),
          yolose_conv_out_dim (in_w, desc->kernel, desc->stride, desc->pad)))
    return yolose_avx512_wino_scratch_size (desc, in_h, in_w, threads);
  if (yolose_avx512_strided_applies (desc))
    return yolose_avx512_strided_scratch_size (desc, in_h, in_w, threads);
  describe_layer (&p, desc);
  threads = MAX (threads, 1);
  /* The cut into tasks depends on the thread count: take the largest need
   * of any count up to @threads, so the scratch serves every run with
   * fewer threads too. */
  for (int t = 1; t <= threads; t++) {
    g = geometry (&p, in_h, in_w, t);
    floats = MAX (floats, run_floats (&p, &g, t));
  }
  return (floats + ALIGN_FLOATS) * sizeof (float);
}

/* ------------------------------------------------------ band buffers */

typedef struct {
  const Packed512 *p;
  const YoloseTensor *in, *residual;
  YoloseTensor *out;
  Geometry geo;
  const int *tap; /* fill_taps, once per call */
} Job;

/* Fills the band buffer for input channels [c0, c0 + n_ch) of group @grp
 * and the band starting at output row @oy0: zero-padded input split into
 * stride phases. */
static void
fill_band (const Job *job, int grp, int c0, int n_ch, int oy0, float *buf)
{
  const YoloseConvDesc *d = &job->p->desc;
  const Geometry *g = &job->geo;
  int s = d->stride, in_h = job->in->h, in_w = job->in->w;
  size_t in_plane = (size_t)in_h * in_w;

  for (int c = 0; c < n_ch; c++) {
    const float *plane
        = job->in->data + (size_t)(grp * job->p->cin + c0 + c) * in_plane;
    for (int py = 0; py < s; py++)
      for (int px = 0; px < s; px++) {
        float *phase = buf + c * g->chan_stride
            + (size_t)(py * s + px) * g->phase_stride;
        /* phase column x is input column x * s + px - pad */
        int off = px - d->pad;
        int lo = off >= 0 ? 0 : (-off + s - 1) / s;
        int hi = in_w - 1 - off < 0 ? 0 : (in_w - 1 - off) / s + 1;
        hi = MIN (hi, g->wv);
        lo = MIN (lo, hi);
        for (int r = 0; r < g->rows_needed; r++) {
          float *row = phase + (size_t)r * g->wv;
          int iy = (oy0 + r) * s + py - d->pad;
          if (iy < 0 || iy >= in_h || hi <= lo) {
            memset (row, 0, (size_t)g->wv * sizeof (float));
            continue;
          }
          zero_floats (row, lo);
          gather_row (row + lo, plane + (size_t)iy * in_w + lo * s + off,
              hi - lo, s);
          zero_floats (row + hi, g->wv - hi);
        }
      }
  }
}

/* tap[t] for the kernel's taps (ky, kx): where the tap's picture starts
 * in a channel of the band buffer, from the channel's start. */
static void
fill_taps (const Packed512 *p, const Geometry *g, int *tap)
{
  const YoloseConvDesc *d = &p->desc;
  int s = d->stride, t = 0;

  for (int ky = 0; ky < d->kernel; ky++)
    for (int kx = 0; kx < d->kernel; kx++)
      tap[t++] = (int)((size_t)((ky % s) * s + kx % s) * g->phase_stride
          + (size_t)(ky / s) * g->wv + kx / s);
}

/* ------------------------------------------------------- microkernel */

#define ROW(r)                                                                 \
  do {                                                                         \
    __m512 av = _mm512_set1_ps (a[r]);                                         \
    c##r##0 = _mm512_fmadd_ps (av, b0, c##r##0);                               \
    c##r##1 = _mm512_fmadd_ps (av, b1, c##r##1);                               \
  } while (0)

#define LOAD(r)                                                                \
  do {                                                                         \
    c##r##0 = accumulate ? _mm512_load_ps (c + r * NR) : zero;                 \
    c##r##1 = accumulate ? _mm512_load_ps (c + r * NR + 16) : zero;            \
  } while (0)

#define STORE(r)                                                               \
  do {                                                                         \
    _mm512_store_ps (c + r * NR, c##r##0);                                     \
    _mm512_store_ps (c + r * NR + 16, c##r##1);                                \
  } while (0)

/* Where a tile whose 32 pixels are one run of an output row goes when
 * the microkernel finishes it: row r to out + r * plane, after bias[r],
 * the activation and the residual (the same layout as out) if any. */
typedef struct {
  float *out;
  const float *residual;
  size_t plane;
  const float *bias;
  YoloseActivation act;
} TileStore;

static inline __m512
finish_half (const TileStore *ts, int r, int half, __m512 acc)
{
  __m512 v = bias_act512 (acc, _mm512_set1_ps (ts->bias[r]), ts->act);
  size_t at = (size_t)r * ts->plane + 16 * half;

  if (ts->residual != NULL)
    v = _mm512_add_ps (v, _mm512_loadu_ps (ts->residual + at));
  return v;
}

#define FINISH(r)                                                              \
  do {                                                                         \
    _mm512_storeu_ps (ts->out + (size_t)r * ts->plane,                         \
        finish_half (ts, r, 0, c##r##0));                                      \
    _mm512_storeu_ps (ts->out + (size_t)r * ts->plane + 16,                    \
        finish_half (ts, r, 1, c##r##1));                                      \
  } while (0)

#define STEP(bk)                                                               \
  do {                                                                         \
    const float *bk_ = (bk);                                                   \
    __m512 b0 = _mm512_loadu_ps (bk_), b1 = _mm512_loadu_ps (bk_ + 16);        \
    ROW (0);                                                                   \
    ROW (1);                                                                   \
    ROW (2);                                                                   \
    ROW (3);                                                                   \
    ROW (4);                                                                   \
    ROW (5);                                                                   \
    ROW (6);                                                                   \
    ROW (7);                                                                   \
    a += MR;                                                                   \
  } while (0)

/* c[8][32] (+)= a[n_ch x taps][8] * B, B's rows as @rows says: 16 zmm
 * accumulators, two loads and eight broadcasts per row of B.  The rows
 * are walked channel by channel, with the taps' offsets in registers for
 * 1x1 and 3x3 kernels: a table of one offset per row cost a load and an
 * address computation per step, 5-15% of the microkernel's time (up to
 * 30% while the machine was busy).  The sums go
 * to c, or with @ts straight to the output: through c they would cost a
 * store and a load per accumulator, and the scalar bookkeeping of
 * store_tile, which took a third of the time of the 1x1 layers with few
 * input channels. */
static inline __attribute__ ((always_inline)) void
gemm_8x32 (int n_ch, const BRows *rows, const float *restrict a,
    float *restrict c, gboolean accumulate, const TileStore *ts,
    ptrdiff_t a_ahead)
{
  const __m512 zero = _mm512_setzero_ps ();
  const float *b = rows->base;
  size_t chan_stride = rows->chan_stride;
  __m512 c00, c01, c10, c11, c20, c21, c30, c31;
  __m512 c40, c41, c50, c51, c60, c61, c70, c71;

  LOAD (0);
  LOAD (1);
  LOAD (2);
  LOAD (3);
  LOAD (4);
  LOAD (5);
  LOAD (6);
  LOAD (7);
  if (rows->taps == 1 && a_ahead != 0) {
    int ch = 0;
    b += rows->tap[0];
    /* one line of A per two steps */
    for (; ch + 2 <= n_ch; ch += 2, b += 2 * chan_stride) {
      prefetch_past (a, a_ahead);
      STEP (b);
      STEP (b + chan_stride);
    }
    if (ch < n_ch)
      STEP (b);
  } else if (rows->taps == 1) {
    b += rows->tap[0];
#pragma GCC unroll 2
    for (int ch = 0; ch < n_ch; ch++, b += chan_stride)
      STEP (b);
  } else if (rows->taps == 9) {
    const ptrdiff_t t0 = rows->tap[0], t1 = rows->tap[1], t2 = rows->tap[2];
    const ptrdiff_t t3 = rows->tap[3], t4 = rows->tap[4], t5 = rows->tap[5];
    const ptrdiff_t t6 = rows->tap[6], t7 = rows->tap[7], t8 = rows->tap[8];
    for (int ch = 0; ch < n_ch; ch++, b += chan_stride) {
      STEP (b + t0);
      STEP (b + t1);
      STEP (b + t2);
      STEP (b + t3);
      STEP (b + t4);
      STEP (b + t5);
      STEP (b + t6);
      STEP (b + t7);
      STEP (b + t8);
    }
  } else {
    for (int ch = 0; ch < n_ch; ch++, b += chan_stride)
      for (int t = 0; t < rows->taps; t++)
        STEP (b + rows->tap[t]);
  }
  if (ts != NULL) {
    FINISH (0);
    FINISH (1);
    FINISH (2);
    FINISH (3);
    FINISH (4);
    FINISH (5);
    FINISH (6);
    FINISH (7);
    return;
  }
  STORE (0);
  STORE (1);
  STORE (2);
  STORE (3);
  STORE (4);
  STORE (5);
  STORE (6);
  STORE (7);
}

void
yolose_avx512_gemm_8x32 (int n_ch, const BRows *rows, const float *restrict a,
    float *restrict c, gboolean accumulate, ptrdiff_t a_ahead)
{
  gemm_8x32 (n_ch, rows, a, c, accumulate, NULL, a_ahead);
}

/* The same, finishing the tile into the output as @ts says; c holds the
 * partial sums to start from when @accumulate. */
static void
gemm_8x32_store (int n_ch, const BRows *rows, const float *restrict a,
    const float *restrict c, gboolean accumulate, const TileStore *ts,
    ptrdiff_t a_ahead)
{
  gemm_8x32 (n_ch, rows, a, (float *)c, accumulate, ts, a_ahead);
}

#undef ROW
#undef LOAD
#undef STORE
#undef FINISH
#undef STEP

/* ---------------------------------------------------------- epilogue */

/* A run of output pixels inside one microkernel tile: lanes [lane,
 * lane + len) are output row @oy, columns from @ox. */
typedef struct {
  int lane, len, oy, ox;
} Segment;

/* Splits virtual pixels [v0, v0 + NR) of the band at row @oy0 into runs
 * of real output pixels; returns how many. */
static int
tile_segments (const Geometry *g, int oy0, int band_end, int v0, Segment *seg)
{
  int n = 0, v = v0;

  while (v < v0 + NR) {
    int oy = oy0 + v / g->wv, ox = v % g->wv;
    size_t at;
    if (oy >= band_end)
      break;
    if (ox >= g->out_w) {
      v += g->wv - ox;
      continue;
    }
    at = (size_t)oy * g->out_w + ox;
    if (at >= g->pixels)
      break; /* the short last row of a flat layer */
    seg[n].lane = v - v0;
    seg[n].len = MIN (g->out_w - ox, v0 + NR - v);
    seg[n].len = (int)MIN ((size_t)seg[n].len, g->pixels - at);
    seg[n].oy = oy;
    seg[n].ox = ox;
    v += seg[n].len;
    n++;
  }
  return n;
}

static void
store_tile (const Epilogue *e, const float *c, int oc0, int rows,
    const Segment *seg, int n_seg)
{
  for (int r = 0; r < rows; r++) {
    int oc = oc0 + r;
    __m512 bias = _mm512_set1_ps (e->bias[oc]);
    __m512 half[2];

    for (int h = 0; h < 2; h++)
      half[h]
          = bias_act512 (_mm512_load_ps (c + r * NR + 16 * h), bias, e->act);
    for (int i = 0; i < n_seg; i++) {
      size_t at
          = (size_t)oc * e->plane + (size_t)seg[i].oy * e->out_w + seg[i].ox;
      int first = seg[i].lane, end = seg[i].lane + seg[i].len;
      for (int h = 0; h < 2; h++) {
        int a = MAX (first, 16 * h), b = MIN (end, 16 * h + 16);
        if (a < b)
          store_lanes (e, half[h], a - 16 * h, b - 16 * h, at + (a - first));
      }
    }
  }
}

/* Sets @ts for the microkernel to finish the tile itself, when the tile
 * is MR whole channels and its NR pixels one run of an output row, which
 * most tiles are; otherwise store_tile sorts it out. */
static gboolean
tile_store (const Epilogue *e, int oc0, int rows, const Segment *seg, int n_seg,
    TileStore *ts)
{
  size_t at;

  if (rows != MR || n_seg != 1 || seg[0].len != NR)
    return FALSE;
  at = (size_t)oc0 * e->plane + (size_t)seg[0].oy * e->out_w + seg[0].ox;
  ts->out = e->out + at;
  ts->residual = e->residual != NULL ? e->residual + at : NULL;
  ts->plane = e->plane;
  ts->bias = e->bias + oc0;
  ts->act = e->act;
  return TRUE;
}

/* --------------------------------------------------------------- conv */

/* Where the rows of B come from for one channel block: @rows, or a copy
 * in @tail, for every tile with @copy_tiles and otherwise for a tile of
 * a flat layer that would run past the end of its planes (zero padded). */
typedef struct {
  BRows rows;
  float *tail;
  int n_ch;
  size_t plane;       /* flat: floats per input plane */
  size_t first_pixel; /* flat: the band's first pixel in its plane */
  gboolean copy_tiles;
} BandSource;

/* dst[0, NR) = src[0, @have), zero past it: masked loads, which read
 * nothing of the masked lanes (nor is a pointer past the plane formed). */
static inline void
copy_tile_row (float *dst, const float *src, size_t have)
{
  int lo = (int)MIN (have, 16), hi = (int)(have > 16 ? have - 16 : 0);

  _mm512_store_ps (dst, _mm512_maskz_loadu_ps (first_lanes (lo), src));
  _mm512_store_ps (dst + 16,
      hi > 0 ? _mm512_maskz_loadu_ps (first_lanes (hi), src + 16)
             : _mm512_setzero_ps ());
}

/* The rows of B for tile @j of the band. */
static BRows
tile_source (const BandSource *src, int j)
{
  size_t pixel = src->first_pixel + (size_t)j * NR;
  BRows rows = src->rows;
  size_t have;

  rows.base += (size_t)j * NR;
  if (src->tail == NULL || (pixel + NR <= src->plane && !src->copy_tiles))
    return rows;
  have = MIN (src->plane - pixel, NR);
  for (int k = 0; k < src->n_ch; k++) {
    const float *from = rows.base + k * rows.chan_stride;
    if (src->copy_tiles) {
      /* the next tile's row (past the plane's end after its last tile) */
      prefetch_past (from, NR * sizeof (float));
      prefetch_past (from, NR * sizeof (float) + 64);
    }
    copy_tile_row (src->tail + (size_t)k * NR, from, have);
  }
  rows.base = src->tail;
  rows.chan_stride = NR;
  return rows;
}

/* Points @src at input channels [c0, c0 + n_ch) of group @grp for the
 * band at output row @oy0: straight at the input for flat layers,
 * otherwise at a band buffer (filled here unless @shared holds it). */
static void
prepare_source (const Job *job, int grp, int c0, int n_ch, int oy0, float *buf,
    float *shared, BandSource *src)
{
  const Packed512 *p = job->p;
  const Geometry *g = &job->geo;

  src->n_ch = n_ch;
  src->copy_tiles = g->copy_tiles;
  if (g->flat) {
    src->plane = (size_t)job->in->h * job->in->w;
    src->first_pixel = (size_t)oy0 * g->wv;
    src->rows.base = job->in->data + (size_t)(grp * p->cin + c0) * src->plane
        + src->first_pixel;
    src->rows.chan_stride = src->plane;
    return;
  }
  if (shared != NULL)
    buf = shared + (size_t)(grp * p->cin + c0) * g->chan_stride;
  else
    fill_band (job, grp, c0, n_ch, oy0, buf);
  src->rows.base = buf;
  src->rows.chan_stride = g->chan_stride;
}

/* How far ahead the microkernel asks for A (bytes; 0: not at all) on
 * panel @i of [i0, @i1), tile @j, in the band at output row @oy0.  The
 * first tile of the first band reads each panel's weights from memory:
 * then the next panel's, one panel stride further, are fetched as it
 * goes; each panel a new 4 KB run, too short for the hardware prefetcher
 * to catch up.  Later bands and tiles find the panels cached.  1x1
 * layers alone after evicting the caches, two threads: 1024 -> 512 at 20
 * x 20 -5 to -13%, 512 -> 256 at 40 x 40 -3 to -7%; at 80 x 80 and 160 x
 * 160, where the weights are small, no change.  (On every tile's first
 * pass it made the 80 x 80 layers 7% slower.) */
static ptrdiff_t
a_ahead (const Packed512 *p, int oy0, int j, int i, int i1)
{
  if (oy0 != 0 || j != 0 || i + 1 >= i1 || p->taps != 1)
    return 0;
  return (ptrdiff_t)((size_t)p->k * MR * sizeof (float));
}

/* Output channels of weight panels [i0, i1) of group @grp for output rows
 * [oy0, band_end). */
static void
conv_band (const Job *job, int grp, int oy0, int band_end, int i0, int i1,
    float *scratch, float *shared)
{
  const Packed512 *p = job->p;
  const YoloseConvDesc *d = &p->desc;
  const Geometry *g = &job->geo;
  int nv = (band_end - oy0) * g->wv;
  int n_tiles = (nv + NR - 1) / NR;
  float *buf = scratch, *tail = buf + g->buffer_floats;
  float *sums = tail + g->tail_floats;
  BandSource src
      = { { NULL, 0, job->tap, p->taps }, g->flat ? tail : NULL, 0, 0, 0 };
  const float *a_group = p->a + (size_t)grp * p->m_panels * p->k * MR;
  Epilogue e = { d->bias + (size_t)grp * p->m, d->act,
    job->out->data + (size_t)grp * p->m * g->pixels,
    job->residual ? job->residual->data + (size_t)grp * p->m * g->pixels : NULL,
    g->pixels, g->out_w };
  float tile[MR * NR] __attribute__ ((aligned (64)));

  for (int c0 = 0; c0 < p->cin; c0 += p->ch_block) {
    int n_ch = MIN (p->ch_block, p->cin - c0);
    int k0 = c0 * p->taps;
    gboolean first = c0 == 0, last = c0 + n_ch == p->cin;

    prepare_source (job, grp, c0, n_ch, oy0, buf, shared, &src);
    for (int j = 0; j < n_tiles; j++) {
      Segment seg[NR];
      int n_seg = last ? tile_segments (g, oy0, band_end, j * NR, seg) : 0;
      BRows b_rows = tile_source (&src, j);
      for (int i = i0; i < i1; i++) {
        const float *a = a_group + ((size_t)i * p->k + k0) * MR;
        float *partial = sums + ((size_t)(i - i0) * n_tiles + j) * MR * NR;
        int rows = MIN (MR, p->m - i * MR);
        TileStore ts;
        /* tile is written, not read, by a first block (!first is FALSE) */
        // cppcheck-suppress legacyUninitvar
        float *c = first && last ? tile : partial;

        ptrdiff_t ahead = a_ahead (p, oy0, j, i, i1);

        if (last && tile_store (&e, i * MR, rows, seg, n_seg, &ts)) {
          gemm_8x32_store (n_ch, &b_rows, a, partial, !first, &ts, ahead);
          continue;
        }
        yolose_avx512_gemm_8x32 (n_ch, &b_rows, a, c, !first, ahead);
        if (last)
          store_tile (&e, c, i * MR, rows, seg, n_seg);
      }
    }
  }
}

typedef struct {
  Job job;
  float *base;
  size_t per_thread;
  float *shared; /* the shared input copy, or NULL */
} ConvRun;

/* Task @t of the shared copy: one channel block of one group. */
static void
fill_task (void *data, int t, int worker)
{
  const ConvRun *run = data;
  const Packed512 *p = run->job.p;
  int blocks = (p->cin + p->ch_block - 1) / p->ch_block;
  int grp = t / blocks, c0 = t % blocks * p->ch_block;

  fill_band (&run->job, grp, c0, MIN (p->ch_block, p->cin - c0), 0,
      run->shared + (size_t)(grp * p->cin + c0) * run->job.geo.chan_stride);
}

static void
conv_task (void *data, int t, int worker)
{
  const ConvRun *run = data;
  const Geometry *g = &run->job.geo;
  int chunk = t % g->n_chunks, band = t / g->n_chunks % g->n_bands;
  int grp = t / (g->n_chunks * g->n_bands);
  int oy0 = band_first_row (g, band), i0 = chunk * g->chunk_panels;
  int end = band + 1 < g->n_bands ? band_first_row (g, band + 1) : g->out_h;

  conv_band (&run->job, grp, oy0, end, i0,
      MIN (i0 + g->chunk_panels, run->job.p->m_panels),
      run->base + (size_t)worker * run->per_thread, run->shared);
}

static void
avx512_conv2d (const YoloseConvDesc *desc, const void *packed,
    const YoloseTensor *in, const YoloseTensor *residual, YoloseTensor *out,
    void *scratch, int threads)
{
  const Packed512 *p = packed;
  ConvRun run = { { packed, in, residual, out } };
  int *tap;

  if (p->wino != NULL && yolose_avx512_wino_pays (out->h, out->w)) {
    yolose_avx512_wino_conv2d (desc, p->wino, in, residual, out, scratch,
        threads);
    return;
  }
  if (p->strided != NULL) {
    yolose_avx512_strided_conv2d (desc, p->strided, in, residual, out, scratch,
        threads);
    return;
  }
  run.job.geo = geometry (packed, in->h, in->w, threads);
  run.per_thread = thread_floats (&run.job.geo);
  run.base = (float *)round_up ((uintptr_t)scratch, 64);
  /* the scratch is untyped memory: its end holds ints */
  tap = (int *)(void *)(run.base + (size_t)threads * run.per_thread
      + run.job.geo.shared_floats);
  fill_taps (p, &run.job.geo, tap);
  run.job.tap = tap;
  if (run.job.geo.shared) {
    run.shared = run.base + (size_t)threads * run.per_thread;
    yolose_pool_run (threads,
        desc->groups * ((p->cin + p->ch_block - 1) / p->ch_block), fill_task,
        &run);
  }
  yolose_pool_run (threads,
      desc->groups * run.job.geo.n_bands * run.job.geo.n_chunks, conv_task,
      &run);
}

static const YoloseKernels avx512_conv = {
  .name = "avx512",
  .conv_pack = avx512_conv_pack,
  .conv_packed_free = avx512_conv_packed_free,
  .conv_scratch_size = avx512_conv_scratch_size,
  .conv2d = avx512_conv2d,
};

/* The convolution entries of the "avx512" table; the other entries are
 * NULL for kernels_select.c to fill. */
const YoloseKernels *
yolose_kernels_avx512_conv (void)
{
  return &avx512_conv;
}
