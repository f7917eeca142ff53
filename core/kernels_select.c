/* yolose — choosing the kernel table.
 *
 * Only the configuration decides (never the environment): "auto" takes the
 * fastest table this build and this CPU can run. */
#include "kernels.h"

#include <string.h>

#include "cpu_features.h"

G_DEFINE_QUARK (yolose - kernels - error - quark, yolose_kernels_error);

/* Defined in kernels_avx2.c and kernels_avx512.c, each built with its own
 * -m flags: call them only once the CPU is known to run that code. */
#ifdef YOLOSE_HAVE_AVX2
const YoloseKernels *yolose_kernels_avx2_table (void);
#endif
#ifdef YOLOSE_HAVE_AVX512
const YoloseKernels *yolose_kernels_avx512_conv (void);
#endif

const YoloseKernels *
yolose_kernels_avx2 (void)
{
#ifdef YOLOSE_HAVE_AVX2
  if (yolose_cpu_has_avx2_fma ())
    return yolose_kernels_avx2_table ();
#endif
  return NULL;
}

#if defined(YOLOSE_HAVE_AVX2) && defined(YOLOSE_HAVE_AVX512)
/* The AVX-512 file only has a convolution (the rest is memory bound): the
 * AVX2 table with its conv entries replaced. */
static YoloseKernels avx512_table;

static void
build_avx512_table (void)
{
  const YoloseKernels *conv = yolose_kernels_avx512_conv ();

  avx512_table = *yolose_kernels_avx2_table ();
  avx512_table.name = conv->name;
  avx512_table.conv_pack = conv->conv_pack;
  avx512_table.conv_packed_free = conv->conv_packed_free;
  avx512_table.conv_scratch_size = conv->conv_scratch_size;
  avx512_table.conv2d = conv->conv2d;
}
#endif

const YoloseKernels *
yolose_kernels_avx512 (void)
{
#if defined(YOLOSE_HAVE_AVX2) && defined(YOLOSE_HAVE_AVX512)
  static gsize built = 0;

  if (!yolose_cpu_has_avx512 ())
    return NULL;
  if (g_once_init_enter (&built)) {
    build_avx512_table ();
    g_once_init_leave (&built, 1);
  }
  return &avx512_table;
#else
  return NULL;
#endif
}

static const YoloseKernels *
fastest (void)
{
  const YoloseKernels *k = yolose_kernels_avx512 ();

  if (k == NULL)
    k = yolose_kernels_avx2 ();
  return k != NULL ? k : yolose_kernels_generic ();
}

static void
set_unavailable (const char *name, gboolean built, GError **error)
{
  if (built)
    g_set_error (error, YOLOSE_KERNELS_ERROR, YOLOSE_KERNELS_ERROR_UNAVAILABLE,
        "kernels \"%s\" were requested but this CPU or OS does not support "
        "them",
        name);
  else
    g_set_error (error, YOLOSE_KERNELS_ERROR, YOLOSE_KERNELS_ERROR_UNAVAILABLE,
        "kernels \"%s\" were requested but this build does not have them",
        name);
}

const YoloseKernels *
yolose_kernels_select (const char *name, GError **error)
{
  const YoloseKernels *k;
  gboolean built;

  if (name == NULL || strcmp (name, "auto") == 0)
    return fastest ();
  if (strcmp (name, "generic") == 0)
    return yolose_kernels_generic ();
  if (strcmp (name, "avx2") == 0) {
#ifdef YOLOSE_HAVE_AVX2
    built = TRUE;
#else
    built = FALSE;
#endif
    k = yolose_kernels_avx2 ();
  } else if (strcmp (name, "avx512") == 0) {
#if defined(YOLOSE_HAVE_AVX2) && defined(YOLOSE_HAVE_AVX512)
    built = TRUE;
#else
    built = FALSE;
#endif
    k = yolose_kernels_avx512 ();
  } else {
    g_set_error (error, YOLOSE_KERNELS_ERROR, YOLOSE_KERNELS_ERROR_UNKNOWN,
        "unknown kernels \"%s\" (expected auto, generic, avx2 or avx512)",
        name);
    return NULL;
  }
  if (k == NULL)
    set_unavailable (name, built, error);
  return k;
}
