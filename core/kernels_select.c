/* yolose — choosing the kernel table.
 *
 * Only the configuration decides (never the environment): "auto" takes the
 * fastest table this build and this CPU can run. */
#include "kernels.h"

#include "cpu_features.h"

G_DEFINE_QUARK (yolose - kernels - error - quark, yolose_kernels_error);

#ifdef YOLOSE_HAVE_AVX2
/* Defined in kernels_avx2.c, which is built with -mavx2 -mfma: call it only
 * once the CPU is known to run that code.  NULL while that table is not
 * complete. */
const YoloseKernels *yolose_kernels_avx2_table (void);
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

const YoloseKernels *
yolose_kernels_select (const char *name, GError **error)
{
  const YoloseKernels *avx2;

  if (name == NULL || g_str_equal (name, "auto")) {
    avx2 = yolose_kernels_avx2 ();
    return avx2 != NULL ? avx2 : yolose_kernels_generic ();
  }
  if (g_str_equal (name, "generic"))
    return yolose_kernels_generic ();
  if (g_str_equal (name, "avx2")) {
    avx2 = yolose_kernels_avx2 ();
    if (avx2 == NULL) {
#ifdef YOLOSE_HAVE_AVX2
      g_set_error_literal (
          error, YOLOSE_KERNELS_ERROR, YOLOSE_KERNELS_ERROR_UNAVAILABLE,
          "kernels \"avx2\" were requested but this CPU or OS does not "
          "support AVX2 and FMA");
#else
      g_set_error_literal (
          error, YOLOSE_KERNELS_ERROR, YOLOSE_KERNELS_ERROR_UNAVAILABLE,
          "kernels \"avx2\" were requested but this build has no AVX2 "
          "kernels");
#endif
    }
    return avx2;
  }
  g_set_error (error, YOLOSE_KERNELS_ERROR, YOLOSE_KERNELS_ERROR_UNKNOWN,
               "unknown kernels \"%s\" (expected auto, generic or avx2)", name);
  return NULL;
}
