/* yolose — conv weights repacked once for the SIMD GEMM microkernels.
 *
 * kernels_avx2.c and kernels_avx512.c read W in the same layout and
 * differ only in the panel height MR, so the packing lives here, in the
 * plain core library (it needs no vector instructions).  The generic
 * kernels keep their own packing on purpose: they are the oracle the SIMD
 * kernels are tested against, and a shared mistake would pass that test. */
#ifndef YOLOSE_KERNELS_PACK_H
#define YOLOSE_KERNELS_PACK_H

#include <glib.h>

G_BEGIN_DECLS

/* What the panels are aligned to: one AVX-512 register, one cache line. */
#define YOLOSE_PANEL_ALIGN_BYTES 64

/* @weight is @groups row-major @m x @k matrices (output channels x K).
 * Returns them as [groups][ceil (m / mr)][k][mr] panels: panel i holds
 * rows i * mr .. i * mr + mr - 1, k-major, so that the microkernel loads
 * the mr weights of one K row at once; rows past @m are zero, so the last
 * panel needs no tail code.  Aligned to YOLOSE_PANEL_ALIGN_BYTES; free
 * with free().  NULL when out of memory. */
float *yolose_pack_weight_panels (const float *weight, int groups, int m, int k,
    int mr);

G_END_DECLS

#endif
