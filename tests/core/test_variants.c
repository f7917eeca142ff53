/* yolose tests — exact variants of the upstream checkpoints.
 *
 * tests/core/make_variant_checkpoint.py rewrites each real checkpoint, at
 * test time, as
 *   fuse: what upstream's Model.fuse() leaves before saving (every Conv has
 *         a Conv2d with a float32 bias and no BatchNorm), and
 *   spp:  its SPPF (k=5) replaced by the SPP (5, 9, 13) upstream says is the
 *         same function.
 * Each must load and give upstream's reference output for the original
 * (0.25 px, 1e-3) on every kernel table this CPU can run, and must really
 * be what it claims, which is checked in the written file itself and
 * through the public API.
 *
 * Arguments (from tests/core/meson.build): the script, then python3 (empty
 * when meson found none: the test is skipped). */
#include <check.h>
#include <stdio.h>
#include <glib/gstdio.h>

#include "checkpoint.h"
#include "parity.h"
#include "slowcheck.h"
#include "testdata.h"
#include "yolose.h"

#define SPPF_LAYER 10 /* both checkpoints: SElayer at 9, then SPPF */

typedef struct {
  const char *name;
  const char *image; /* of its reference tensors */
} Model;

static const Model models[] = {
  { "yolov5n-se-coco", "bus" },
  { "yolov5s-se-voc-random", "zidane" },
};

enum { VARIANT_FUSE, VARIANT_SPP, N_VARIANTS };
static const char *const variant_names[] = { "fuse", "spp" };

/* Written in main() before the tests fork: path, or why it is missing. */
static char *scratch_dir;
static char *variant_path[G_N_ELEMENTS (models)][N_VARIANTS];
static char *variant_error[G_N_ELEMENTS (models)][N_VARIANTS];

/* ---- the variants ----------------------------------------------------- */

static void
write_variant (const char *python, const char *script, int m, int v)
{
  char *src_rel = g_strdup_printf ("models/%s.pt", models[m].name);
  char *src = yolose_test_data_path (src_rel);
  char *dst = g_strdup_printf ("%s/%s-%s.pt", scratch_dir, models[m].name,
      variant_names[v]);
  char *flag = g_strdup_printf ("--%s", variant_names[v]);
  const char *argv[] = { python, script, src, dst, flag, NULL };
  char *out = NULL, *err = NULL;
  GError *error = NULL;
  gint64 start = g_get_monotonic_time ();
  int status = 0;

  if (!g_spawn_sync (NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
          &out, &err, &status, &error)
      || !g_spawn_check_wait_status (status, &error)) {
    variant_error[m][v] = g_strdup_printf ("%s %s %s: %s\n%s", script, src,
        flag, error->message, err ? err : "");
    g_error_free (error);
    g_free (dst);
  } else {
    printf ("%.2f s: %s", (g_get_monotonic_time () - start) / 1e6, out);
    variant_path[m][v] = dst;
  }
  g_free (out);
  g_free (err);
  g_free (flag);
  g_free (src);
  g_free (src_rel);
}

static const char *
variant (int m, int v)
{
  ck_assert_msg (variant_path[m][v] != NULL, "no %s variant of %s: %s",
      variant_names[v], models[m].name, variant_error[m][v]);
  return variant_path[m][v];
}

/* ---- what is in the written file -------------------------------------- */

static const YolosePyValue *
model_of (const YoloseCheckpoint *ckpt)
{
  const YolosePyValue *model
      = yolose_py_dict_get (yolose_checkpoint_root (ckpt), "model");

  ck_assert_ptr_nonnull (model);
  ck_assert_int_eq (model->kind, YOLOSE_PY_OBJECT);
  return model;
}

static YoloseDType
dtype_of (const YolosePyValue *tensor)
{
  ck_assert_ptr_nonnull (tensor);
  ck_assert_int_eq (tensor->kind, YOLOSE_PY_TENSOR);
  return tensor->v.tensor.storage->v.storage.dtype;
}

typedef struct {
  int convs;          /* models.common.Conv modules */
  int with_bn;        /* ... that still have a `bn` */
  int fused;          /* ... without `bn`, with a float32 bias */
  gint64 bias_values; /* elements of those biases */
  int batchnorms;     /* BatchNorm2d modules anywhere */
  int sppf, spp;
} ModuleCounts;

/* Counts the modules under @module, through torch's `_modules` dicts. */
static void
count_modules (const YolosePyValue *module, ModuleCounts *counts)
{
  const YolosePyValue *children = yolose_py_attr (module, "_modules");
  const char *name = module->v.object.name;

  if (g_strcmp0 (name, "BatchNorm2d") == 0)
    counts->batchnorms++;
  counts->sppf += g_strcmp0 (name, "SPPF") == 0;
  counts->spp += g_strcmp0 (name, "SPP") == 0;
  if (yolose_py_is_class (module, "models.common", "Conv")) {
    const YolosePyValue *conv = yolose_py_attr (module, "conv");
    const YolosePyValue *bias = yolose_py_attr (conv, "bias");

    counts->convs++;
    if (yolose_py_attr (module, "bn") != NULL)
      counts->with_bn++;
    else if (bias != NULL && bias->kind == YOLOSE_PY_TENSOR) {
      ck_assert_int_eq (dtype_of (bias), YOLOSE_DTYPE_F32);
      ck_assert_int_eq (dtype_of (yolose_py_attr (conv, "weight")),
          YOLOSE_DTYPE_F32);
      counts->fused++;
      counts->bias_values += yolose_tensor_numel (bias);
    }
  }
  if (children == NULL || children->kind != YOLOSE_PY_DICT)
    return;
  for (gsize i = 0; i < children->v.dict.len; i++)
    if (children->v.dict.values[i]->kind == YOLOSE_PY_OBJECT)
      count_modules (children->v.dict.values[i], counts);
}

static ModuleCounts
count_checkpoint (const char *path)
{
  GError *error = NULL;
  YoloseCheckpoint *ckpt = yolose_checkpoint_open (path, &error);
  ModuleCounts counts = { 0 };

  ck_assert_msg (ckpt != NULL, "%s", error ? error->message : "");
  count_modules (model_of (ckpt), &counts);
  yolose_checkpoint_free (ckpt);
  return counts;
}

/* The fused variant has no BatchNorm left: every Conv of the original is a
 * Conv2d with a float32 bias, and the loader counts those biases instead of
 * BatchNorm's weight and bias (upstream's parameter count after fuse()). */
START_TEST (test_fused_has_no_batchnorm)
{
  char *orig_rel = g_strdup_printf ("models/%s.pt", models[_i].name);
  char *orig = yolose_test_data_path (orig_rel);
  const char *path = variant (_i, VARIANT_FUSE);
  ModuleCounts before = count_checkpoint (orig);
  ModuleCounts after = count_checkpoint (path);
  YoloseDetector *det_orig
      = yolose_test_detector_new (orig, 128, yolose_test_kernels_default ());
  YoloseDetector *det_fused
      = yolose_test_detector_new (path, 128, yolose_test_kernels_default ());
  gint64 params_orig = yolose_detector_get_num_parameters (det_orig);
  gint64 params_fused = yolose_detector_get_num_parameters (det_fused);

  printf ("%s: %d Convs, %d with BatchNorm -> %d fused, %d BatchNorm2d "
          "left; parameters %" G_GINT64_FORMAT " -> %" G_GINT64_FORMAT "\n",
      models[_i].name, before.convs, before.with_bn, after.fused,
      after.batchnorms, params_orig, params_fused);
  ck_assert_int_gt (before.with_bn, 0);
  ck_assert_int_eq (before.with_bn, before.convs);
  ck_assert_int_eq (after.convs, before.convs);
  ck_assert_int_eq (after.fused, before.convs);
  ck_assert_int_eq (after.with_bn, 0);
  ck_assert_int_eq (after.batchnorms, 0);
  /* BatchNorm brought 2 parameters per channel, the bias brings 1 */
  ck_assert_int_eq (params_orig - params_fused, after.bias_values);
  /* upstream prints "213 layers, 1867405 parameters" for yolov5n after
   * fuse(); the SE block adds two 256x16 Linear weights */
  if (_i == 0)
    ck_assert_int_eq (params_fused, 1867405 + 2 * 256 * 16);

  yolose_detector_free (det_orig);
  yolose_detector_free (det_fused);
  g_free (orig);
  g_free (orig_rel);
}
END_TEST

/* Reads int attribute @name of @module. */
static gint64
int_attr (const YolosePyValue *module, const char *name)
{
  gint64 x = -1;

  ck_assert_msg (yolose_py_get_int (yolose_py_attr (module, name), &x),
      "no int %s", name);
  return x;
}

/* The SPP variant's layer 10 is an SPP of MaxPool2d 5, 9 and 13 in the
 * file, its yaml row says so, no SPPF is left, and the loader builds the
 * layer as SPP. */
START_TEST (test_spp_replaces_sppf)
{
  static const gint64 kernels[] = { 5, 9, 13 };
  GError *error = NULL;
  const char *path = variant (_i, VARIANT_SPP);
  YoloseCheckpoint *ckpt = yolose_checkpoint_open (path, &error);
  const YolosePyValue *model, *layers, *spp, *pools, *row, *args;
  ModuleCounts counts = { 0 };
  YoloseDetector *det;
  char key[16];

  ck_assert_msg (ckpt != NULL, "%s", error ? error->message : "");
  model = model_of (ckpt);
  count_modules (model, &counts);
  ck_assert_int_eq (counts.sppf, 0);
  ck_assert_int_eq (counts.spp, 1);
  layers = yolose_py_attr (model, "model");
  g_snprintf (key, sizeof key, "%d", SPPF_LAYER);
  spp = yolose_py_attr (layers, key);
  ck_assert (yolose_py_is_class (spp, "models.common", "SPP"));
  pools = yolose_py_attr (spp, "m");
  ck_assert (yolose_py_is_class (pools, NULL, "ModuleList"));
  for (guint i = 0; i < G_N_ELEMENTS (kernels); i++) {
    const YolosePyValue *pool;
    g_snprintf (key, sizeof key, "%u", i);
    pool = yolose_py_attr (pools, key);
    ck_assert (yolose_py_is_class (pool, NULL, "MaxPool2d"));
    ck_assert_int_eq (int_attr (pool, "kernel_size"), kernels[i]);
    ck_assert_int_eq (int_attr (pool, "padding"), kernels[i] / 2);
    ck_assert_int_eq (int_attr (pool, "stride"), 1);
  }
  ck_assert_ptr_null (yolose_py_attr (pools, "3"));

  row = yolose_py_item (
      yolose_py_dict_get (yolose_py_attr (model, "yaml"), "backbone"),
      SPPF_LAYER);
  ck_assert_str_eq (yolose_py_get_string (yolose_py_item (row, 2)), "SPP");
  args = yolose_py_item (yolose_py_item (row, 3), 1);
  ck_assert_uint_eq (yolose_py_len (args), 3);
  for (guint i = 0; i < G_N_ELEMENTS (kernels); i++) {
    gint64 k = -1;
    ck_assert (yolose_py_get_int (yolose_py_item (args, i), &k));
    ck_assert_int_eq (k, kernels[i]);
  }
  yolose_checkpoint_free (ckpt);

  det = yolose_test_detector_new (path, 128, yolose_test_kernels_default ());
  ck_assert_str_eq (yolose_detector_get_layer_type (det, SPPF_LAYER), "SPP");
  yolose_detector_free (det);
}
END_TEST

/* ---- parity ------------------------------------------------------------ */

/* One case of the parity loop: variant, model, kernel table.  The generic
 * kernels run yolov5n only: yolov5s takes them a minute per forward under
 * ASan, and they compute the same layers as on yolov5n. */
typedef struct {
  int v, m, k;
} ParityCase;

static const ParityCase parity_cases[] = {
  { VARIANT_FUSE, 0, YOLOSE_TEST_KERNELS_GENERIC },
  { VARIANT_FUSE, 0, YOLOSE_TEST_KERNELS_AVX2 },
  { VARIANT_FUSE, 0, YOLOSE_TEST_KERNELS_AVX512 },
  { VARIANT_FUSE, 1, YOLOSE_TEST_KERNELS_AVX2 },
  { VARIANT_FUSE, 1, YOLOSE_TEST_KERNELS_AVX512 },
  { VARIANT_SPP, 0, YOLOSE_TEST_KERNELS_GENERIC },
  { VARIANT_SPP, 0, YOLOSE_TEST_KERNELS_AVX2 },
  { VARIANT_SPP, 0, YOLOSE_TEST_KERNELS_AVX512 },
  { VARIANT_SPP, 1, YOLOSE_TEST_KERNELS_AVX2 },
  { VARIANT_SPP, 1, YOLOSE_TEST_KERNELS_AVX512 },
};

/* The variant's raw output equals upstream's for the original checkpoint:
 * boxes within 0.25 px, scores within 1e-3. */
START_TEST (test_variant_parity)
{
  const ParityCase *pc = &parity_cases[_i];
  const Model *model = &models[pc->m];
  char *label;
  YoloseDetector *det;

  /* Quick mode: the variants of yolov5n + SE (the seed's are the same
   * layers, 4x the work). */
  if (pc->m > 0 && yolose_test_quick ()) {
    yolose_test_quick_note ("no parity of %s's variants", model->name);
    return;
  }
  if (yolose_test_kernels_excluded (yolose_test_kernels_name (pc->k))
      || !yolose_test_kernels_available (pc->k))
    return;
  det = yolose_test_detector_new (variant (pc->m, pc->v),
      YOLOSE_TEST_REFERENCE_SIZE, yolose_test_kernels_name (pc->k));
  label = g_strdup_printf ("%s %s", model->name, variant_names[pc->v]);
  yolose_test_check_raw_parity (det, model->name, model->image, label);
  g_free (label);
  yolose_detector_free (det);
}
END_TEST

/* ---- main -------------------------------------------------------------- */

static Suite *
variants_suite (void)
{
  Suite *s = suite_create ("variants");
  TCase *what = tcase_create ("what");
  TCase *parity = tcase_create ("parity");

  tcase_add_loop_test (what, test_fused_has_no_batchnorm, 0,
      G_N_ELEMENTS (models));
  tcase_add_loop_test (what, test_spp_replaces_sppf, 0, G_N_ELEMENTS (models));
  tcase_set_timeout (what, 300);
  suite_add_tcase (s, what);
  tcase_add_loop_test (parity, test_variant_parity, 0,
      G_N_ELEMENTS (parity_cases));
  tcase_set_timeout (parity, 600);
  suite_add_tcase (s, parity);
  return s;
}

static void
remove_variants (void)
{
  for (guint m = 0; m < G_N_ELEMENTS (models); m++)
    for (int v = 0; v < N_VARIANTS; v++) {
      if (variant_path[m][v] != NULL)
        g_unlink (variant_path[m][v]);
      g_free (variant_path[m][v]);
      g_free (variant_error[m][v]);
    }
  g_rmdir (scratch_dir);
  g_free (scratch_dir);
}

int
main (int argc, char **argv)
{
  const char *python = argc > 2 ? argv[2] : "";
  SRunner *runner;
  int failed;

  yolose_test_require_data ("models/yolov5n-se-coco.pt",
      "models/yolov5s-se-voc-random.pt",
      "reference/yolov5n-se-coco-bus.input.f32",
      "reference/yolov5n-se-coco-bus.output.f32",
      "reference/yolov5s-se-voc-random-zidane.input.f32",
      "reference/yolov5s-se-voc-random-zidane.output.f32", NULL);
  if (argc < 2) {
    fprintf (stderr, "usage: %s make_variant_checkpoint.py [python3]\n",
        argv[0]);
    return 1;
  }
  if (*python == '\0') {
    printf ("SKIP: no python3 (meson found none) to run %s\n", argv[1]);
    return YOLOSE_TEST_SKIP;
  }
  scratch_dir = g_dir_make_tmp ("yolose-variants-XXXXXX", NULL);
  if (scratch_dir == NULL) {
    fprintf (stderr, "cannot make a temporary folder\n");
    return 1;
  }
  for (guint m = 0; m < G_N_ELEMENTS (models); m++)
    for (int v = 0; v < N_VARIANTS; v++)
      write_variant (python, argv[1], m, v);
  fflush (stdout);

  runner = srunner_create (variants_suite ());
  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  remove_variants ();
  return failed == 0 ? 0 : 1;
}
