/* yolose tests — the detector's raw output against upstream's.
 *
 * The reference tensors in testdata/reference were produced by upstream's
 * own code from the same checkpoints, on a 1 x 3 x 640 x 640 input.  Every
 * box value must be within 0.25 px and every score within 1e-3, on every
 * kernel table this machine can run: looser would hide a wrong layer,
 * tighter would fail on float summation order alone. */
#ifndef YOLOSE_TESTS_PARITY_H
#define YOLOSE_TESTS_PARITY_H

#include <check.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels.h"
#include "testdata.h"
#include "yolose.h"

#define YOLOSE_TEST_BOX_TOLERANCE_PX 0.25
#define YOLOSE_TEST_SCORE_TOLERANCE 1e-3
#define YOLOSE_TEST_REFERENCE_SIZE 640

/* The kernel tables, in the order the parity tests loop over them. */
enum {
  YOLOSE_TEST_KERNELS_GENERIC,
  YOLOSE_TEST_KERNELS_AVX2,
  YOLOSE_TEST_KERNELS_AVX512,
  YOLOSE_TEST_N_KERNELS
};

/* The name YoloseConfig.kernels takes for table @k. */
static inline const char *
yolose_test_kernels_name (int k)
{
  static const char *const names[] = { "generic", "avx2", "avx512" };

  return names[k];
}

/* Whether this CPU runs table @k; says so when it does not, so that a
 * parity test that checked nothing is visible in the log. */
static inline gboolean
yolose_test_kernels_available (int k)
{
  if (k == YOLOSE_TEST_KERNELS_GENERIC
      || (k == YOLOSE_TEST_KERNELS_AVX2 && yolose_kernels_avx2 () != NULL)
      || (k == YOLOSE_TEST_KERNELS_AVX512 && yolose_kernels_avx512 () != NULL))
    return TRUE;
  printf ("note: this CPU cannot run the %s kernels\n",
      yolose_test_kernels_name (k));
  return FALSE;
}

/* A detector of the checkpoint at @model_path, at @input_size (a multiple
 * of 32), on the kernel table @kernels_name (NULL: the best this CPU runs)
 * and 2 threads, the machine's cores; NULL and @error set when the
 * detector refuses it. */
static inline YoloseDetector *
yolose_test_detector_try_new (const char *model_path, int input_size,
    const char *kernels_name, GError **error)
{
  YoloseConfig config;

  yolose_config_init (&config);
  config.model_path = model_path;
  config.input_size = input_size;
  config.kernels = kernels_name;
  config.threads = 2;
  return yolose_detector_new (&config, error);
}

/* The same detector, which must build: fails the test otherwise, naming
 * the checkpoint, the input size, the kernels and the loader's error. */
static inline YoloseDetector *
yolose_test_detector_new (const char *model_path, int input_size,
    const char *kernels_name)
{
  GError *error = NULL;
  YoloseDetector *det = yolose_test_detector_try_new (model_path, input_size,
      kernels_name, &error);

  ck_assert_msg (det != NULL, "%s at input size %d on the %s kernels: %s",
      model_path, input_size, kernels_name ? kernels_name : "auto",
      error ? error->message : "no error set");
  return det;
}

/* The float32 tensor at @relative in the test data folder, which must hold
 * exactly @n_floats values.  Free with g_free(). */
static inline float *
yolose_test_read_f32 (const char *relative, gsize n_floats)
{
  char *path = yolose_test_data_path (relative);
  gchar *data = NULL;
  gsize len = 0;

  ck_assert_msg (path != NULL, "missing %s", relative);
  ck_assert (g_file_get_contents (path, &data, &len, NULL));
  ck_assert_msg (len == n_floats * sizeof (float),
      "%s has %" G_GSIZE_FORMAT " bytes, expected %" G_GSIZE_FORMAT, relative,
      len, n_floats * sizeof (float));
  g_free (path);
  return (float *)data;
}

/* Runs @det (at input size 640) on upstream's reference input for @model
 * on @image and asserts that its raw output is upstream's within the
 * tolerances; prints the largest errors, under @label. */
static inline void
yolose_test_check_raw_parity (YoloseDetector *det, const char *model,
    const char *image, const char *label)
{
  const gsize n_in
      = (gsize)3 * YOLOSE_TEST_REFERENCE_SIZE * YOLOSE_TEST_REFERENCE_SIZE;
  gsize rows = yolose_detector_get_output_rows (det);
  int cols = yolose_detector_get_output_cols (det);
  char *in_rel = g_strdup_printf ("reference/%s-%s.input.f32", model, image);
  char *out_rel = g_strdup_printf ("reference/%s-%s.output.f32", model, image);
  float *input = yolose_test_read_f32 (in_rel, n_in);
  float *expected = yolose_test_read_f32 (out_rel, rows * cols);
  double max_box = 0, max_score = 0, forward_s;
  gint64 start;
  const float *got;

  ck_assert_int_eq (yolose_detector_get_input_size (det),
      YOLOSE_TEST_REFERENCE_SIZE);
  memcpy (yolose_detector_get_input (det), input, sizeof (float) * n_in);
  start = g_get_monotonic_time ();
  got = yolose_detector_forward (det);
  forward_s = (g_get_monotonic_time () - start) / 1e6;
  for (gsize i = 0; i < rows * cols; i++) {
    double d = fabs ((double)got[i] - expected[i]);

    ck_assert_msg (isfinite (got[i]),
        "row %" G_GSIZE_FORMAT " col %" G_GSIZE_FORMAT " is not finite",
        i / cols, i % cols);
    /* columns 0-3 are the box (cx, cy, w, h), the rest scores */
    if (i % cols < 4)
      max_box = MAX (max_box, d);
    else
      max_score = MAX (max_score, d);
  }
  printf ("%s on %s (%s kernels, forward %.2f s): max |box error| %.5f px, "
          "max |score error| %.2e over %" G_GSIZE_FORMAT " x %d outputs\n",
      label, image, yolose_detector_get_kernels_name (det), forward_s, max_box,
      max_score, rows, cols);
  ck_assert_msg (max_box <= YOLOSE_TEST_BOX_TOLERANCE_PX, "box error %.5f px",
      max_box);
  ck_assert_msg (max_score <= YOLOSE_TEST_SCORE_TOLERANCE, "score error %.2e",
      max_score);

  g_free (input);
  g_free (expected);
  g_free (in_rel);
  g_free (out_rel);
}

#endif /* YOLOSE_TESTS_PARITY_H */
