/* yolose tests — the detector against upstream PyTorch's own outputs, and
 * its refusals of broken checkpoints.
 *
 * Raw parity: the reference tensors in testdata/reference were produced by
 * upstream's code from the same checkpoints; every box value must be within
 * 0.25 px and every score within 1e-3, on every kernel implementation this
 * machine can run. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <zip.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "parity.h"
#include "slowcheck.h"
#include "testdata.h"
#include "yolose.h"

/* The detector of the test data's models/@model.pt, at the default input
 * size 640, on the kernel table @kernels (NULL: the best this CPU runs). */
static YoloseDetector *
load (const char *model, const char *kernels)
{
  char *rel = g_strdup_printf ("models/%s.pt", model);
  char *path = yolose_test_data_path (rel);
  YoloseDetector *det;

  ck_assert_msg (path != NULL, "missing %s", rel);
  det = yolose_test_detector_new (path, YOLOSE_DEFAULT_INPUT_SIZE, kernels);
  g_free (path);
  g_free (rel);
  return det;
}

/* Upstream's raw output from @model on the reference input for @image,
 * on kernel table @k. */
static void
check_raw_parity (const char *model, const char *image, int k)
{
  YoloseDetector *det = load (model, yolose_test_kernels_name (k));

  yolose_test_check_raw_parity (det, model, image, model);
  yolose_detector_free (det);
}

/* yolov5n + SE (a trained COCO detector) equals upstream's raw output. */
START_TEST (test_parity_yolov5n_se)
{
  if (!yolose_test_kernels_excluded (yolose_test_kernels_name (_i))
      && yolose_test_kernels_available (_i))
    check_raw_parity ("yolov5n-se-coco", "bus", _i);
}
END_TEST

/* The seed's own architecture (yolov5s + SE at 9, 20 VOC classes, strong
 * SE gates) equals upstream's raw output. */
START_TEST (test_parity_yolov5s_se_seed)
{
  /* Quick mode: yolov5n + SE above takes the same layers, 4x cheaper. */
  if (yolose_test_quick ()) {
    yolose_test_quick_note ("no parity of the yolov5s seed (16 GFLOPs)");
    return;
  }
  if (!yolose_test_kernels_excluded (yolose_test_kernels_name (_i))
      && yolose_test_kernels_available (_i))
    check_raw_parity ("yolov5s-se-voc-random", "zidane", _i);
}
END_TEST

/* The architecture is read from the checkpoint: names, classes, layers. */
START_TEST (test_architecture_from_checkpoint)
{
  YoloseDetector *det = load ("yolov5s-se-voc-random", NULL);
  char *desc;

  ck_assert_int_eq (yolose_detector_get_num_classes (det), 20);
  ck_assert_int_eq (yolose_detector_get_output_cols (det), 25);
  ck_assert_uint_eq (yolose_detector_get_output_rows (det), 25200);
  ck_assert_int_eq (yolose_detector_get_num_layers (det), 26);
  ck_assert_str_eq (yolose_detector_get_layer_type (det, 9), "SElayer");
  ck_assert_str_eq (yolose_detector_get_layer_type (det, 10), "SPPF");
  ck_assert_str_eq (yolose_detector_get_class_name (det, 0), "aeroplane");
  ck_assert_ptr_null (yolose_detector_get_class_name (det, 20));
  /* upstream's summary of the seed's model: 16.4 GFLOPs at 640 */
  ck_assert_msg (fabs (yolose_detector_get_gflops (det) - 16.4) < 0.3,
      "%.2f GFLOPs", yolose_detector_get_gflops (det));
  desc = yolose_detector_describe (det);
  ck_assert_ptr_nonnull (strstr (desc, "SElayer"));
  printf ("%s", desc);
  g_free (desc);
  yolose_detector_free (det);
}
END_TEST

/* The same checkpoint at a smaller input size runs and has 3 levels. */
START_TEST (test_other_input_size)
{
  YoloseConfig config;
  char *path = yolose_test_data_path ("models/yolov5n-coco.pt");
  GError *error = NULL;
  YoloseDetector *det;
  const float *out;
  gsize i, n;

  yolose_config_init (&config);
  config.model_path = path;
  config.input_size = 320;
  config.threads = 1;
  config.kernels = yolose_test_kernels_default ();
  det = yolose_detector_new (&config, &error);
  ck_assert_msg (det != NULL, "%s", error ? error->message : "");
  /* more threads than it was created with: the kernels' scratch must still
   * fit (ASan proves it) */
  yolose_detector_set_threads (det, 64);
  n = yolose_detector_get_output_rows (det);
  ck_assert_uint_eq (n, 3 * (40 * 40 + 20 * 20 + 10 * 10));
  memset (yolose_detector_get_input (det), 0, sizeof (float) * 3 * 320 * 320);
  out = yolose_detector_forward (det);
  for (i = 0; i < n * 85; i++)
    ck_assert (isfinite (out[i]));
  yolose_detector_free (det);
  g_free (path);
}
END_TEST

/* ---- refusals --------------------------------------------------------- */

typedef struct {
  const char *find;
  gsize find_len;
  const char *replace;
  gsize replace_len;
} Patch;

/* Writes a copy of @model with its data.pkl patched (first occurrence of
 * each pattern) to a temporary file; returns its path. */
static char *
write_patched_checkpoint (const char *model, const Patch *patches,
    int n_patches)
{
  char *src_path = yolose_test_data_path (model);
  int err = 0;
  zip_t *src, *dst;
  char *dst_path;
  int fd;
  zip_int64_t i, n;

  ck_assert (src_path != NULL);
  fd = g_file_open_tmp ("yolose-patched-XXXXXX.pt", &dst_path, NULL);
  ck_assert (fd >= 0);
  close (fd);
  src = zip_open (src_path, ZIP_RDONLY, &err);
  ck_assert (src != NULL);
  dst = zip_open (dst_path, ZIP_TRUNCATE, &err);
  ck_assert (dst != NULL);
  n = zip_get_num_entries (src, 0);
  for (i = 0; i < n; i++) {
    const char *name = zip_get_name (src, i, 0);
    zip_stat_t st;
    zip_file_t *f;
    guint8 *buf;
    zip_source_t *s;

    ck_assert (zip_stat_index (src, i, 0, &st) == 0);
    buf = g_malloc (st.size + 64);
    f = zip_fopen_index (src, i, 0);
    ck_assert ((zip_uint64_t)zip_fread (f, buf, st.size) == st.size);
    zip_fclose (f);
    if (g_str_has_suffix (name, "/data.pkl")) {
      GByteArray *bytes = g_byte_array_new_take (buf, st.size);
      int p;
      for (p = 0; p < n_patches; p++) {
        guint8 *at = memmem (bytes->data, bytes->len, patches[p].find,
            patches[p].find_len);
        gsize off;
        ck_assert_msg (at != NULL, "pattern %d not found in %s", p, model);
        off = at - bytes->data;
        g_byte_array_remove_range (bytes, off, patches[p].find_len);
        /* g_byte_array has no insert: rebuild around the hole */
        {
          GByteArray *next = g_byte_array_sized_new (bytes->len + 16);
          g_byte_array_append (next, bytes->data, off);
          g_byte_array_append (next, (const guint8 *)patches[p].replace,
              patches[p].replace_len);
          g_byte_array_append (next, bytes->data + off, bytes->len - off);
          g_byte_array_free (bytes, TRUE);
          bytes = next;
        }
      }
      st.size = bytes->len;
      buf = g_byte_array_free (bytes, FALSE);
    }
    s = zip_source_buffer (dst, buf, st.size, 1);
    ck_assert (s != NULL);
    ck_assert (zip_file_add (dst, name, s, ZIP_FL_ENC_UTF_8) >= 0);
    zip_set_file_compression (dst, zip_get_num_entries (dst, 0) - 1,
        ZIP_CM_STORE, 0);
    /* libzip frees buf when it is done with the source */
  }
  ck_assert (zip_close (dst) == 0);
  zip_discard (src);
  g_free (src_path);
  return dst_path;
}

static void
expect_refusal_at_size (const char *path, int size, const char *needle)
{
  GError *error = NULL;
  YoloseDetector *det = yolose_test_detector_try_new (path, size, NULL, &error);

  ck_assert_msg (det == NULL, "%s loaded but should have been refused", path);
  ck_assert (error != NULL);
  printf ("refused as expected: %s\n", error->message);
  ck_assert_msg (strstr (error->message, needle) != NULL,
      "error '%s' does not mention '%s'", error->message, needle);
  g_error_free (error);
}

static void
expect_refusal (const char *path, const char *needle)
{
  expect_refusal_at_size (path, YOLOSE_DEFAULT_INPUT_SIZE, needle);
}

static char *
write_bytes (const void *data, gsize len)
{
  char *path;
  int fd = g_file_open_tmp ("yolose-bad-XXXXXX.pt", &path, NULL);

  ck_assert (fd >= 0);
  close (fd);
  ck_assert (g_file_set_contents (path, data, len, NULL));
  return path;
}

/* The seed's yaml as printed (SPPF [512, 512]) is refused, naming the
 * kernel and the fix. */
START_TEST (test_refuses_seed_sppf_defect)
{
  /* args [1024, 5] -> [512, 512] in the yaml only */
  static const Patch p = { "M\x00\x04K\x05"
                           "e",
    6,
    "M\x00\x02M\x00\x02"
    "e",
    7 };
  char *path = write_patched_checkpoint ("models/yolov5n-se-coco.pt", &p, 1);

  expect_refusal (path, "kernel 512");
  expect_refusal (path, "SPPF");
  g_unlink (path);
  g_free (path);
}
END_TEST

/* yolov5n-se-coco with SPPF's kernel patched from 5 to @k (an odd k < 256),
 * in the yaml only: the pooling layers take their kernel from it. */
static char *
write_sppf_kernel_checkpoint (int k)
{
  /* args [1024, 5]: BININT2 1024, BININT1 5, APPENDS */
  const char replace[] = { 'M', 0x00, 0x04, 'K', (char)k, 'e' };
  const Patch p = { "M\x00\x04K\x05"
                    "e",
    6, replace, sizeof replace };

  return write_patched_checkpoint ("models/yolov5n-se-coco.pt", &p, 1);
}

/* Loads @path at @size and runs it on a gray input: rows for 3 levels and
 * finite outputs. */
static void
expect_runs_at_size (const char *path, int size)
{
  YoloseDetector *det
      = yolose_test_detector_new (path, size, yolose_test_kernels_default ());
  const float *out;
  gsize rows, i;
  int s8 = size / 8, s16 = size / 16, s32 = size / 32;

  rows = yolose_detector_get_output_rows (det);
  ck_assert_uint_eq (rows, 3 * (s8 * s8 + s16 * s16 + s32 * s32));
  for (i = 0; i < (gsize)3 * size * size; i++)
    yolose_detector_get_input (det)[i] = 114.0f / 255.0f;
  out = yolose_detector_forward (det);
  for (i = 0; i < rows * yolose_detector_get_output_cols (det); i++)
    ck_assert (isfinite (out[i]));
  yolose_detector_free (det);
}

/* A pooling kernel wider than the map its layer pools at upstream's
 * training size 640 is refused at any input size, naming the layer, the
 * kernel and that map: SPPF k=21 on the 20x20 map of stride 32. */
START_TEST (test_refuses_pool_wider_than_trained_map)
{
  char *path = write_sppf_kernel_checkpoint (21);

  expect_refusal_at_size (path, 640, "layer 10 (SPPF): max pooling kernel 21");
  expect_refusal_at_size (path, 640, "20x20 feature map");
  expect_refusal_at_size (path, 128, "20x20 feature map");
  expect_refusal_at_size (path, 1280, "20x20 feature map");
  g_unlink (path);
  g_free (path);
}
END_TEST

/* Kernels no wider than the map at 640 load and run, even at an input size
 * where the map is smaller than the kernel: upstream's k=5 and k=19 at 128
 * (a 4x4 map), as torch pools them. */
START_TEST (test_pool_kernel_judged_at_training_size)
{
  char *original = yolose_test_data_path ("models/yolov5n-se-coco.pt");
  char *path = write_sppf_kernel_checkpoint (19);

  expect_runs_at_size (original, 128);
  expect_runs_at_size (path, 128);
  expect_runs_at_size (path, 64);
  g_unlink (path);
  g_free (path);
  g_free (original);
}
END_TEST

/* A module yolose does not know is refused with its name and layer. */
START_TEST (test_refuses_unknown_module)
{
  static const Patch p = { "X\x07\x00\x00\x00SElayer", 12,
    "X\x07\x00\x00\x00"
    "CBAMxyz",
    12 };
  char *path = write_patched_checkpoint ("models/yolov5n-se-coco.pt", &p, 1);

  expect_refusal (path, "layer 9 (CBAMxyz)");
  g_unlink (path);
  g_free (path);
}
END_TEST

/* A tensor whose shape disagrees with the yaml is refused. */
START_TEST (test_refuses_wrong_tensor_shape)
{
  /* model.0.conv.weight sizes (16, 3, 6, 6) -> (16, 3, 5, 5) */
  static const Patch p
      = { "K\x10K\x03K\x06K\x06t", 9, "K\x10K\x03K\x05K\x05t", 9 };
  char *path = write_patched_checkpoint ("models/yolov5n-se-coco.pt", &p, 1);

  expect_refusal (path, "shape");
  g_unlink (path);
  g_free (path);
}
END_TEST

/* A corrupted pickle is refused. */
START_TEST (test_refuses_corrupted_pickle)
{
  /* the first SETITEMS of the checkpoint dict becomes an unknown opcode */
  static const Patch p = { "X\x05\x00\x00\x00"
                           "epoch",
    10,
    "\xff\x05\x00\x00\x00"
    "epoch",
    10 };
  char *path = write_patched_checkpoint ("models/yolov5n-se-coco.pt", &p, 1);

  expect_refusal (path, "0xff");
  g_unlink (path);
  g_free (path);
}
END_TEST

/* Empty, not-a-zip, truncated and missing files are refused, naming the
 * file. */
START_TEST (test_refuses_bad_files)
{
  char *good = yolose_test_data_path ("models/yolov5n-coco.pt");
  gchar *data;
  gsize len;
  char *path;
  static const gsize cuts[] = { 1, 22, 4096, 1 << 20 };
  guint i;

  path = write_bytes ("", 0);
  expect_refusal (path, path);
  g_unlink (path);
  g_free (path);

  path = write_bytes ("this is not a checkpoint\n", 25);
  expect_refusal (path, path);
  g_unlink (path);
  g_free (path);

  expect_refusal ("/nonexistent/yolose/model.pt",
      "/nonexistent/yolose/"
      "model.pt");

  ck_assert (g_file_get_contents (good, &data, &len, NULL));
  for (i = 0; i < G_N_ELEMENTS (cuts); i++) {
    path = write_bytes (data, MIN (cuts[i], len - 1));
    expect_refusal (path, path);
    g_unlink (path);
    g_free (path);
  }
  /* the tail cut off: the zip directory is gone */
  path = write_bytes (data, len - 100);
  expect_refusal (path, path);
  g_unlink (path);
  g_free (path);
  g_free (data);
  g_free (good);
}
END_TEST

/* Bad configuration is refused before anything is read. */
START_TEST (test_refuses_bad_config)
{
  YoloseConfig config;
  GError *error = NULL;

  yolose_config_init (&config);
  ck_assert_ptr_null (yolose_detector_new (&config, &error));
  ck_assert_ptr_nonnull (strstr (error->message, "no model"));
  g_clear_error (&error);
  config.model_path = "x.pt";
  config.input_size = 100;
  ck_assert_ptr_null (yolose_detector_new (&config, &error));
  ck_assert_ptr_nonnull (strstr (error->message, "multiple of 32"));
  g_clear_error (&error);
  config.input_size = 640;
  config.kernels = "quantum";
  ck_assert_ptr_null (yolose_detector_new (&config, &error));
  ck_assert_ptr_nonnull (strstr (error->message, "quantum"));
  g_clear_error (&error);
}
END_TEST

static Suite *
detector_suite (void)
{
  Suite *s = suite_create ("detector");
  TCase *parity = tcase_create ("parity");
  TCase *refusals = tcase_create ("refusals");

  tcase_add_loop_test (parity, test_parity_yolov5n_se, 0,
      YOLOSE_TEST_N_KERNELS);
  tcase_add_loop_test (parity, test_parity_yolov5s_se_seed, 0,
      YOLOSE_TEST_N_KERNELS);
  tcase_add_test (parity, test_architecture_from_checkpoint);
  tcase_add_test (parity, test_other_input_size);
  tcase_set_timeout (parity, 900);
  suite_add_tcase (s, parity);

  tcase_add_test (refusals, test_refuses_seed_sppf_defect);
  tcase_add_test (refusals, test_refuses_pool_wider_than_trained_map);
  tcase_add_test (refusals, test_pool_kernel_judged_at_training_size);
  tcase_add_test (refusals, test_refuses_unknown_module);
  tcase_add_test (refusals, test_refuses_wrong_tensor_shape);
  tcase_add_test (refusals, test_refuses_corrupted_pickle);
  tcase_add_test (refusals, test_refuses_bad_files);
  tcase_add_test (refusals, test_refuses_bad_config);
  tcase_set_timeout (refusals, 300);
  suite_add_tcase (s, refusals);
  return s;
}

int
main (void)
{
  SRunner *runner;
  int failed;

  yolose_test_require_data ("models/yolov5n-coco.pt",
      "models/yolov5n-se-coco.pt", "models/yolov5s-se-voc-random.pt",
      "reference/yolov5n-se-coco-bus.input.f32",
      "reference/yolov5n-se-coco-bus.output.f32",
      "reference/yolov5s-se-voc-random-zidane.input.f32",
      "reference/yolov5s-se-voc-random-zidane.output.f32", NULL);
  runner = srunner_create (detector_suite ());
  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? 0 : 1;
}
