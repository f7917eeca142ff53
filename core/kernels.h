/* yolose — the one kernel interface.
 *
 * The graph runs every operation through a YoloseKernels table; the loader
 * and the graph never know which implementation is behind it.  The generic
 * table (kernels_generic.c, plain C11 + OpenMP) is always built and is the
 * test oracle; the AVX2/FMA table (kernels_avx2.c, compiled with -mavx2
 * -mfma in its own static library) is chosen at run time when the CPU and
 * the OS support it.
 *
 * Tensors are batch-1 NCHW float32 with contiguous planes: channel c of a
 * tensor starts at data + c * h * w.  A view of channels [a, b) of a larger
 * tensor is therefore just a pointer offset, which is how Concat is done
 * without copying: producers write straight into their slice. */
#ifndef YOLOSE_KERNELS_H
#define YOLOSE_KERNELS_H

#include <stddef.h>
#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  float *data;
  int c, h, w;
} YoloseTensor;

typedef enum {
  YOLOSE_ACT_NONE,
  YOLOSE_ACT_SILU,    /* x * sigmoid(x) */
  YOLOSE_ACT_SIGMOID, /* 1 / (1 + exp(-x)): Detect's outputs */
} YoloseActivation;

/* A convolution with BatchNorm already folded in (weight, bias). */
typedef struct {
  int in_channels, out_channels;
  int kernel; /* square kernel k x k */
  int stride, pad, groups;
  YoloseActivation act;
  const float *weight; /* [out][in/groups][k][k] */
  const float *bias;   /* [out] */
} YoloseConvDesc;

static inline int
yolose_conv_out_dim (int in, int kernel, int stride, int pad)
{
  return (in + 2 * pad - kernel) / stride + 1;
}

typedef struct _YoloseKernels YoloseKernels;

struct _YoloseKernels {
  const char *name; /* "generic", "avx2" */

  /* Repacks the weights once at load into whatever layout conv2d wants.
   * The returned block is owned by the caller (conv_packed_free).  It may
   * keep pointers to desc->weight/bias, which outlive it. NULL on OOM. */
  void *(*conv_pack) (const YoloseConvDesc *desc);
  void (*conv_packed_free) (void *packed);

  /* Scratch bytes conv2d needs for an input of in_h x in_w run with
   * @threads threads (0 if none).  The same scratch serves any run with
   * at most @threads threads; more threads need a new size. */
  size_t (*conv_scratch_size) (const YoloseConvDesc *desc, int in_h, int in_w,
      int threads);

  /* out = act(conv(in) + bias) [+ residual]
   * @residual (may be NULL) has out's shape and is added after the
   * activation (YOLOv5's Bottleneck shortcut).  @out may be a channel slice
   * of a larger tensor.  @out never aliases @in; it may alias @residual. */
  void (*conv2d) (const YoloseConvDesc *desc, const void *packed,
      const YoloseTensor *in, const YoloseTensor *residual, YoloseTensor *out,
      void *scratch, int threads);

  /* Max pooling, k x k, stride and symmetric padding (padding never wins:
   * it counts as -inf, like torch). */
  void (*maxpool2d) (const YoloseTensor *in, YoloseTensor *out, int kernel,
      int stride, int pad, int threads);

  /* Nearest-neighbour upsampling by an integer factor. */
  void (*upsample_nearest) (const YoloseTensor *in, YoloseTensor *out,
      int scale, int threads);

  /* Squeeze-and-Excitation, in place: z = mean over h,w of each channel;
   * s = sigmoid(w2 . relu(w1 . z)); x[c] *= s[c].
   * @w1 is [hidden][c], @w2 is [c][hidden] (torch Linear, no bias).
   * @scratch holds at least c + hidden floats. */
  void (*squeeze_excite) (YoloseTensor *inout, const float *w1, const float *w2,
      int hidden, float *scratch, int threads);
};

#define YOLOSE_KERNELS_ERROR (yolose_kernels_error_quark ())
GQuark yolose_kernels_error_quark (void);

typedef enum {
  YOLOSE_KERNELS_ERROR_UNKNOWN,     /* no table has that name */
  YOLOSE_KERNELS_ERROR_UNAVAILABLE, /* not in this build or on this CPU */
} YoloseKernelsError;

const YoloseKernels *yolose_kernels_generic (void);
/* NULL when the build has no AVX2 path or this CPU/OS cannot run it. */
const YoloseKernels *yolose_kernels_avx2 (void);
/* The AVX2 table with an AVX-512 convolution; NULL like the above. */
const YoloseKernels *yolose_kernels_avx512 (void);
/* @name: NULL or "auto" picks the fastest this machine supports;
 * "generic", "avx2" or "avx512" forces one (NULL with @error when
 * unavailable). */
const YoloseKernels *yolose_kernels_select (const char *name, GError **error);

G_END_DECLS

#endif
