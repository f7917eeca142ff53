/* yolose tests — core/checkpoint.c: the real upstream checkpoints, and
 * small archives built here with libzip to exercise every refusal.
 *
 * The tests that read /work/shared/testdata are in their own test case and
 * exit with SKIP (77) when $YOLOSE_TESTDATA is not set; the synthetic ones
 * always run. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zip.h>
#include <glib/gstdio.h>

#include "checkpoint.h"
#include "pickle_builder.h"
#include "testdata.h"

static const char *const real_models[] = {
  "models/yolov5n-coco.pt",
  "models/yolov5n-se-coco.pt",
  "models/yolov5s-se-voc-random.pt",
};

/* ---- independent decoding --------------------------------------------- */

/* IEEE half by its definition, with ldexp, not bit surgery. */
static double
reference_half (guint16 h)
{
  int sign = h >> 15, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  double magnitude;

  if (exponent == 0x1f)
    magnitude = mantissa ? NAN : INFINITY;
  else if (exponent == 0)
    magnitude = ldexp (mantissa, -24);
  else
    magnitude = ldexp (1024 + mantissa, exponent - 25);
  return sign ? -magnitude : magnitude;
}

/* Entry "<anything>/data/<key>" of the zip at @path, read with libzip
 * directly. */
static guint8 *
raw_storage (const char *path, const char *key, gsize *len)
{
  int err = 0;
  zip_t *zip = zip_open (path, ZIP_RDONLY, &err);
  char *suffix = g_strdup_printf ("/data/%s", key);
  guint8 *data = NULL;

  ck_assert_ptr_nonnull (zip);
  for (zip_int64_t i = 0; i < zip_get_num_entries (zip, 0); i++) {
    zip_stat_t st;
    zip_file_t *file;
    if (!g_str_has_suffix (zip_get_name (zip, (zip_uint64_t)i, 0), suffix))
      continue;
    ck_assert_int_eq (zip_stat_index (zip, (zip_uint64_t)i, 0, &st), 0);
    data = g_malloc (st.size);
    file = zip_fopen_index (zip, (zip_uint64_t)i, 0);
    ck_assert_int_eq (zip_fread (file, data, st.size), (zip_int64_t)st.size);
    zip_fclose (file);
    *len = st.size;
    break;
  }
  zip_close (zip);
  g_free (suffix);
  ck_assert_msg (data != NULL, "no storage %s in %s", key, path);
  return data;
}

/* ---- in-memory archives ----------------------------------------------- */

typedef struct {
  const char *name;
  const void *data;
  gsize len;
} Entry;

static GBytes *
build_zip (const Entry *entries, gsize n_entries, zip_int32_t method)
{
  zip_error_t zerr;
  zip_source_t *source;
  zip_t *zip;
  zip_int64_t size;
  guint8 *buffer;

  zip_error_init (&zerr);
  source = zip_source_buffer_create (NULL, 0, 0, &zerr);
  ck_assert_ptr_nonnull (source);
  zip_source_keep (source);
  zip = zip_open_from_source (source, ZIP_TRUNCATE, &zerr);
  ck_assert_ptr_nonnull (zip);
  for (gsize i = 0; i < n_entries; i++) {
    zip_source_t *file
        = zip_source_buffer (zip, entries[i].data, entries[i].len, 0);
    zip_int64_t index = zip_file_add (zip, entries[i].name, file, 0);
    ck_assert_int_ge (index, 0);
    zip_set_file_compression (zip, (zip_uint64_t)index, method, 0);
  }
  ck_assert_int_eq (zip_close (zip), 0);
  ck_assert_int_eq (zip_source_open (source), 0);
  zip_source_seek (source, 0, SEEK_END);
  size = zip_source_tell (source);
  zip_source_seek (source, 0, SEEK_SET);
  buffer = g_malloc (MAX (size, 1));
  ck_assert_int_eq (zip_source_read (source, buffer, (zip_uint64_t)size), size);
  zip_source_close (source);
  zip_source_free (source);
  zip_error_fini (&zerr);
  return g_bytes_new_take (buffer, (gsize)size);
}

static YoloseCheckpoint *
open_zip (const Entry *entries, gsize n_entries, zip_int32_t method,
    GError **error)
{
  GBytes *bytes = build_zip (entries, n_entries, method);
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  YoloseCheckpoint *ckpt = yolose_checkpoint_open_bytes (data, len, error);

  g_bytes_unref (bytes);
  return ckpt;
}

/* {'t': Parameter on storage '0' of class @cls}, STOP included. */
static GByteArray *
tensor_pickle (const char *cls, gint32 storage_numel, gint32 offset, int ndim,
    const gint64 *sizes, const gint64 *strides)
{
  GByteArray *b = g_byte_array_new ();

  pb_proto (b, 2);
  pb_op (b, PB_EMPTY_DICT);
  pb_str (b, "t");
  pb_parameter (b, cls, "0", storage_numel, offset, ndim, sizes, strides);
  pb_op (b, PB_SETITEM);
  pb_op (b, PB_STOP);
  return b;
}

/* A checkpoint "ckpt/data.pkl" = @pickle, "ckpt/data/0" = @storage. */
static YoloseCheckpoint *
open_tensor_zip (GByteArray *pickle, const void *storage, gsize storage_len,
    zip_int32_t method)
{
  Entry entries[] = {
    { "ckpt/data.pkl", pickle->data, pickle->len },
    { "ckpt/data/0", storage, storage_len },
    { "ckpt/version", "3\n", 2 },
  };
  GError *error = NULL;
  YoloseCheckpoint *ckpt
      = open_zip (entries, G_N_ELEMENTS (entries), method, &error);

  ck_assert_msg (ckpt != NULL, "open failed: %s", error ? error->message : "");
  g_byte_array_unref (pickle);
  return ckpt;
}

static const YolosePyValue *
the_tensor (YoloseCheckpoint *ckpt)
{
  const YolosePyValue *t
      = yolose_py_dict_get (yolose_checkpoint_root (ckpt), "t");

  ck_assert_ptr_nonnull (t);
  ck_assert_int_eq (t->kind, YOLOSE_PY_TENSOR);
  return t;
}

/* Reads the tensor and insists it fails with a TENSOR/LAYOUT error whose
 * message contains @part. */
static void
assert_tensor_fails (YoloseCheckpoint *ckpt, const YolosePyValue *t, int code,
    const char *part)
{
  GError *error = NULL;
  float *data = yolose_checkpoint_tensor_f32 (ckpt, t, &error);

  ck_assert_msg (data == NULL, "a bad tensor was read");
  ck_assert_ptr_nonnull (error);
  ck_assert_msg (g_error_matches (error, YOLOSE_CHECKPOINT_ERROR, code),
      "code %d instead of %d: %s", error->code, code, error->message);
  ck_assert_msg (strstr (error->message, part) != NULL, "'%s' not in '%s'",
      part, error->message);
  g_error_free (error);
}

static void
assert_open_fails (const Entry *entries, gsize n, int code, const char *part)
{
  GError *error = NULL;
  YoloseCheckpoint *ckpt = open_zip (entries, n, ZIP_CM_STORE, &error);

  ck_assert_msg (ckpt == NULL, "a bad archive was opened");
  ck_assert_msg (g_error_matches (error, YOLOSE_CHECKPOINT_ERROR, code),
      "code %d instead of %d: %s", error->code, code, error->message);
  ck_assert_msg (strstr (error->message, part) != NULL, "'%s' not in '%s'",
      part, error->message);
  g_error_free (error);
}

/* ---- real checkpoints ------------------------------------------------- */

/* Each real checkpoint opens; model.0's conv weight has the upstream shape,
 * is contiguous fp16, and every element equals an independent decoding of
 * the raw storage bytes. */
START_TEST (test_real_first_conv)
{
  char *path = yolose_test_data_path (real_models[_i]);
  GError *error = NULL;
  gint64 t0 = g_get_monotonic_time ();
  YoloseCheckpoint *ckpt = yolose_checkpoint_open (path, &error);
  const YolosePyValue *root, *model, *conv, *w, *names;
  gint64 expected_out = strstr (path, "yolov5s") ? 32 : 16, nc = 0;
  guint8 *raw;
  gsize raw_len;
  float *data;

  ck_assert_msg (ckpt != NULL, "%s", error ? error->message : "");
  printf ("%s: opened in %.1f ms\n", real_models[_i],
      (g_get_monotonic_time () - t0) / 1000.0);
  root = yolose_checkpoint_root (ckpt);
  ck_assert_int_eq (root->kind, YOLOSE_PY_DICT);
  model = yolose_py_dict_get (root, "model");
  ck_assert (yolose_py_is_class (model, "models.yolo", "Model"));
  ck_assert (yolose_py_get_int (yolose_py_attr (model, "nc"), &nc));
  names = yolose_py_attr (model, "names");
  ck_assert_uint_eq (yolose_py_len (names), (gsize)nc);
  conv = yolose_py_attr (yolose_py_attr (yolose_py_attr (model, "model"), "0"),
      "conv");
  ck_assert (yolose_py_is_class (conv, "torch.nn.modules.conv", "Conv2d"));
  w = yolose_py_attr (conv, "weight");
  ck_assert_ptr_nonnull (w);
  ck_assert_int_eq (w->kind, YOLOSE_PY_TENSOR);
  ck_assert_int_eq (w->v.tensor.ndim, 4);
  ck_assert_int_eq (w->v.tensor.sizes[0], expected_out);
  ck_assert_int_eq (w->v.tensor.sizes[1], 3);
  ck_assert_int_eq (w->v.tensor.sizes[2], 6);
  ck_assert_int_eq (w->v.tensor.sizes[3], 6);
  ck_assert_int_eq (w->v.tensor.strides[0], 108);
  ck_assert_int_eq (w->v.tensor.strides[3], 1);
  ck_assert_int_eq (w->v.tensor.storage->v.storage.dtype, YOLOSE_DTYPE_F16);
  ck_assert_int_eq (yolose_tensor_numel (w), expected_out * 108);
  ck_assert_int_eq (yolose_py_attr (conv, "bias")->kind, YOLOSE_PY_NONE);

  data = yolose_checkpoint_tensor_f32 (ckpt, w, &error);
  ck_assert_msg (data != NULL, "%s", error ? error->message : "");
  raw = raw_storage (path, w->v.tensor.storage->v.storage.key, &raw_len);
  ck_assert_uint_ge (raw_len, (gsize)(expected_out * 108 * 2));
  for (gint64 i = 0; i < expected_out * 108; i++) {
    guint16 h = (guint16)(raw[2 * i] | raw[2 * i + 1] << 8);
    ck_assert_msg (isfinite (data[i]), "element %" G_GINT64_FORMAT, i);
    ck_assert_msg ((double)data[i] == reference_half (h),
        "element %" G_GINT64_FORMAT ": %.9g vs half 0x%04x = %.9g", i, data[i],
        h, reference_half (h));
  }
  g_free (raw);
  g_free (data);
  yolose_checkpoint_free (ckpt);
  g_free (path);
}
END_TEST

/* Collects every TENSOR reachable from @root, each once, without
 * recursion. */
static GPtrArray *
all_tensors (const YolosePyValue *root)
{
  GPtrArray *tensors = g_ptr_array_new ();
  GPtrArray *todo = g_ptr_array_new ();
  GHashTable *seen = g_hash_table_new (NULL, NULL);

  g_ptr_array_add (todo, (gpointer)root);
  while (todo->len > 0) {
    const YolosePyValue *v = g_ptr_array_steal_index_fast (todo, todo->len - 1);
    if (v == NULL || !g_hash_table_add (seen, (gpointer)v))
      continue;
    switch (v->kind) {
      case YOLOSE_PY_TENSOR:
        g_ptr_array_add (tensors, (gpointer)v);
        break;
      case YOLOSE_PY_LIST:
      case YOLOSE_PY_TUPLE:
        for (gsize i = 0; i < v->v.seq.len; i++)
          g_ptr_array_add (todo, v->v.seq.items[i]);
        break;
      case YOLOSE_PY_DICT:
        for (gsize i = 0; i < v->v.dict.len; i++)
          g_ptr_array_add (todo, v->v.dict.values[i]);
        break;
      case YOLOSE_PY_OBJECT:
        g_ptr_array_add (todo, v->v.object.args);
        g_ptr_array_add (todo, v->v.object.state);
        break;
      default:
        break;
    }
  }
  g_hash_table_destroy (seen);
  g_ptr_array_free (todo, TRUE);
  return tensors;
}

/* Every floating tensor of each real checkpoint converts, and all values
 * are finite (trained or calibrated weights, no inf/nan); the int64
 * BatchNorm counters are refused as not floating. */
START_TEST (test_real_every_tensor)
{
  char *path = yolose_test_data_path (real_models[_i]);
  YoloseCheckpoint *ckpt = yolose_checkpoint_open (path, NULL);
  GPtrArray *tensors;
  gint64 total = 0, t0;
  guint n_int = 0;
  gint64 n_bad = 0;

  ck_assert_ptr_nonnull (ckpt);
  tensors = all_tensors (yolose_checkpoint_root (ckpt));
  ck_assert_uint_gt (tensors->len, 300);
  t0 = g_get_monotonic_time ();
  for (guint i = 0; i < tensors->len; i++) {
    const YolosePyValue *t = g_ptr_array_index (tensors, i);
    GError *error = NULL;
    float *data = yolose_checkpoint_tensor_f32 (ckpt, t, &error);
    gint64 numel = yolose_tensor_numel (t);
    if (t->v.tensor.storage->v.storage.dtype == YOLOSE_DTYPE_I64) {
      ck_assert_ptr_null (data);
      ck_assert_int_eq (error->code, YOLOSE_CHECKPOINT_ERROR_TENSOR);
      g_clear_error (&error);
      n_int++;
      continue;
    }
    ck_assert_msg (data != NULL, "tensor %u: %s", i, error->message);
    for (gint64 j = 0; j < numel; j++)
      n_bad += !isfinite (data[j]);
    total += numel;
    g_free (data);
  }
  ck_assert_uint_gt (n_int, 0);
  ck_assert_int_eq (n_bad, 0);
  printf ("%s: %u tensors (%u int64 refused), %" G_GINT64_FORMAT
          " values converted in %.1f ms\n",
      real_models[_i], tensors->len, n_int, total,
      (g_get_monotonic_time () - t0) / 1000.0);
  g_ptr_array_free (tensors, TRUE);
  yolose_checkpoint_free (ckpt);
  g_free (path);
}
END_TEST

/* A real checkpoint cut anywhere is refused, never crashes. */
START_TEST (test_real_truncated)
{
  char *path = yolose_test_data_path (real_models[0]);
  char *contents;
  gsize len;

  ck_assert (g_file_get_contents (path, &contents, &len, NULL));
  gsize cuts[] = { 1, 4, 30, 100, 1000, 82000, len / 2, len - 1000, len - 100,
    len - 22, len - 1 };
  for (gsize i = 0; i < G_N_ELEMENTS (cuts); i++) {
    GError *error = NULL;
    YoloseCheckpoint *ckpt = yolose_checkpoint_open_bytes (
        (const guint8 *)contents, cuts[i], &error);
    ck_assert_msg (ckpt == NULL, "cut at %zu accepted", cuts[i]);
    ck_assert_msg (error != NULL && error->domain == YOLOSE_CHECKPOINT_ERROR,
        "cut at %zu", cuts[i]);
    g_error_free (error);
  }
  g_free (contents);
  g_free (path);
}
END_TEST

/* ---- synthetic archives: conversion ----------------------------------- */

/* A transposed, offset float32 view reads in row-major order of its
 * sizes; a stride-0 dimension repeats. */
START_TEST (test_strided_f32)
{
  float storage[12];
  const gint64 sizes[] = { 3, 2 }, strides[] = { 1, 3 };
  YoloseCheckpoint *ckpt;
  float *data;

  for (int i = 0; i < 12; i++)
    storage[i] = (float)i * 1.5f;
  ckpt = open_tensor_zip (
      tensor_pickle ("FloatStorage", 12, 1, 2, sizes, strides), storage,
      sizeof storage, ZIP_CM_STORE);
  data = yolose_checkpoint_tensor_f32 (ckpt, the_tensor (ckpt), NULL);
  ck_assert_ptr_nonnull (data);
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 2; j++)
      ck_assert_float_eq (data[i * 2 + j], storage[1 + i + 3 * j]);
  g_free (data);
  yolose_checkpoint_free (ckpt);

  ckpt = open_tensor_zip (tensor_pickle ("FloatStorage", 12, 5, 2,
                              (const gint64[]){ 2, 4 },
                              (const gint64[]){ 0, 2 }),
      storage, sizeof storage, ZIP_CM_DEFLATE);
  data = yolose_checkpoint_tensor_f32 (ckpt, the_tensor (ckpt), NULL);
  ck_assert_ptr_nonnull (data);
  for (int j = 0; j < 4; j++) {
    ck_assert_float_eq (data[j], storage[5 + 2 * j]);
    ck_assert_float_eq (data[4 + j], storage[5 + 2 * j]);
  }
  g_free (data);
  yolose_checkpoint_free (ckpt);
}
END_TEST

/* float16 specials (±0, subnormals, max, ±inf, nan) convert exactly. */
START_TEST (test_half_values)
{
  static const struct {
    guint16 half;
    float value;
  } cases[] = {
    { 0x0000, 0.0f },
    { 0x3c00, 1.0f },
    { 0xc000, -2.0f },
    { 0x7bff, 65504.0f },
    { 0x0001, 5.9604644775390625e-8f },
    { 0x03ff, 6.09755516052246094e-5f },
    { 0x0400, 6.103515625e-5f },
    { 0x3555, 0.333251953125f },
    { 0x8001, -5.9604644775390625e-8f },
    { 0x7c00, INFINITY },
    { 0xfc00, -INFINITY },
  };
  guint8 storage[2 * (G_N_ELEMENTS (cases) + 2)];
  const gsize n = G_N_ELEMENTS (cases) + 2;
  YoloseCheckpoint *ckpt;
  float *data;

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    storage[2 * i] = cases[i].half & 0xff;
    storage[2 * i + 1] = cases[i].half >> 8;
  }
  storage[2 * n - 4] = 0x00; /* -0 */
  storage[2 * n - 3] = 0x80;
  storage[2 * n - 2] = 0x00; /* nan */
  storage[2 * n - 1] = 0x7e;
  ckpt = open_tensor_zip (tensor_pickle ("HalfStorage", (gint32)n, 0, 1,
                              (const gint64[]){ (gint64)n },
                              (const gint64[]){ 1 }),
      storage, sizeof storage, ZIP_CM_STORE);
  data = yolose_checkpoint_tensor_f32 (ckpt, the_tensor (ckpt), NULL);
  ck_assert_ptr_nonnull (data);
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    ck_assert_msg (data[i] == cases[i].value, "half 0x%04x gave %.9g",
        cases[i].half, data[i]);
  ck_assert (data[n - 2] == 0.0f && signbit (data[n - 2]));
  ck_assert (isnan (data[n - 1]));
  g_free (data);
  yolose_checkpoint_free (ckpt);
}
END_TEST

/* bfloat16 and float64 storages convert to the nearest float. */
START_TEST (test_bf16_and_f64)
{
  static const guint8 bf16[] = { 0x80, 0x3f, 0x40, 0xc0, 0x49, 0x40 };
  static const double f64[] = { 0.1, -1e300, 3.0 };
  YoloseCheckpoint *ckpt;
  float *data;

  ckpt = open_tensor_zip (tensor_pickle ("BFloat16Storage", 3, 0, 1,
                              (const gint64[]){ 3 }, (const gint64[]){ 1 }),
      bf16, sizeof bf16, ZIP_CM_STORE);
  data = yolose_checkpoint_tensor_f32 (ckpt, the_tensor (ckpt), NULL);
  ck_assert_ptr_nonnull (data);
  ck_assert_float_eq (data[0], 1.0f);
  ck_assert_float_eq (data[1], -3.0f);
  ck_assert_float_eq (data[2], 3.140625f);
  g_free (data);
  yolose_checkpoint_free (ckpt);

  ckpt = open_tensor_zip (tensor_pickle ("DoubleStorage", 3, 0, 1,
                              (const gint64[]){ 3 }, (const gint64[]){ 1 }),
      f64, sizeof f64, ZIP_CM_STORE);
  data = yolose_checkpoint_tensor_f32 (ckpt, the_tensor (ckpt), NULL);
  ck_assert_ptr_nonnull (data);
  ck_assert_float_eq (data[0], 0.1f);
  ck_assert (isinf (data[1]) && data[1] < 0);
  ck_assert_float_eq (data[2], 3.0f);
  g_free (data);
  yolose_checkpoint_free (ckpt);
}
END_TEST

/* A 0-d tensor has one element; a tensor with a zero size has none but
 * still gives a valid pointer. */
START_TEST (test_scalar_and_empty)
{
  static const float storage[] = { 7.0f, 8.0f };
  YoloseCheckpoint *ckpt;
  float *data;

  ckpt = open_tensor_zip (tensor_pickle ("FloatStorage", 2, 1, 0, NULL, NULL),
      storage, sizeof storage, ZIP_CM_STORE);
  ck_assert_int_eq (yolose_tensor_numel (the_tensor (ckpt)), 1);
  data = yolose_checkpoint_tensor_f32 (ckpt, the_tensor (ckpt), NULL);
  ck_assert_ptr_nonnull (data);
  ck_assert_float_eq (data[0], 8.0f);
  g_free (data);
  yolose_checkpoint_free (ckpt);

  /* stride 1000 is harmless in a dimension of size 0 */
  ckpt = open_tensor_zip (tensor_pickle ("FloatStorage", 2, 0, 2,
                              (const gint64[]){ 0, 3 },
                              (const gint64[]){ 1000, 1 }),
      storage, sizeof storage, ZIP_CM_STORE);
  ck_assert_int_eq (yolose_tensor_numel (the_tensor (ckpt)), 0);
  data = yolose_checkpoint_tensor_f32 (ckpt, the_tensor (ckpt), NULL);
  ck_assert_ptr_nonnull (data);
  g_free (data);
  yolose_checkpoint_free (ckpt);
}
END_TEST

/* ---- synthetic archives: tensor refusals ------------------------------ */

/* A storage entry shorter than its declared numel is refused, naming the
 * entry and both sizes. */
START_TEST (test_storage_too_small)
{
  static const guint8 storage[3456] = { 0 };
  YoloseCheckpoint *ckpt
      = open_tensor_zip (tensor_pickle ("HalfStorage", 3456, 0, 1,
                             (const gint64[]){ 10 }, (const gint64[]){ 1 }),
          storage, sizeof storage, ZIP_CM_STORE);

  assert_tensor_fails (ckpt, the_tensor (ckpt), YOLOSE_CHECKPOINT_ERROR_TENSOR,
      "storage 'ckpt/data/0' has 3456 bytes, needs 6912");
  yolose_checkpoint_free (ckpt);
}
END_TEST

/* A view reaching past its storage's numel is refused. */
START_TEST (test_view_out_of_bounds)
{
  static const float storage[6] = { 0 };
  YoloseCheckpoint *ckpt = open_tensor_zip (tensor_pickle ("FloatStorage", 6, 1,
                                                2, (const gint64[]){ 2, 3 },
                                                (const gint64[]){ 3, 1 }),
      storage, sizeof storage, ZIP_CM_STORE);

  assert_tensor_fails (ckpt, the_tensor (ckpt), YOLOSE_CHECKPOINT_ERROR_TENSOR,
      "reaches element 6 of storage '0'");
  yolose_checkpoint_free (ckpt);
}
END_TEST

/* Negative sizes, strides or offsets, and strides whose span overflows
 * 64 bits, are refused. */
START_TEST (test_bad_strides)
{
  static const float storage[4] = { 0 };
  static const struct {
    gint32 offset;
    gint64 sizes[2], strides[2];
    const char *message;
  } cases[] = {
    { 0, { 2, 2 }, { -1, 1 }, "stride -1" },
    { 0, { -2, 2 }, { 1, 1 }, "size -2" },
    { -1, { 1, 1 }, { 1, 1 }, "negative offset" },
    { 0, { 2, 2 }, { 2147483647, 1 }, "reaches element" },
    { 0, { 2, 2 }, { G_MAXINT64, 1 }, "overflow" },
  };
  YoloseCheckpoint *ckpt;

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++) {
    ckpt = open_tensor_zip (tensor_pickle ("FloatStorage", 4, cases[i].offset,
                                2, cases[i].sizes, cases[i].strides),
        storage, sizeof storage, ZIP_CM_STORE);
    assert_tensor_fails (ckpt, the_tensor (ckpt),
        YOLOSE_CHECKPOINT_ERROR_TENSOR, cases[i].message);
    yolose_checkpoint_free (ckpt);
  }
}
END_TEST

/* 2^31 x 2^31 x 2^31 x 4 elements overflow; 2^29 elements of stride 0 exceed
 * the element limit. */
START_TEST (test_huge_shapes)
{
  static const float storage[1] = { 0 };
  const gint64 big[] = { 2147483647, 2147483647, 2147483647, 4 };
  const gint64 zero[] = { 0, 0, 0, 0 };
  YoloseCheckpoint *ckpt;

  ckpt = open_tensor_zip (tensor_pickle ("FloatStorage", 1, 0, 4, big, zero),
      storage, sizeof storage, ZIP_CM_STORE);
  ck_assert_int_eq (yolose_tensor_numel (the_tensor (ckpt)), -1);
  assert_tensor_fails (ckpt, the_tensor (ckpt), YOLOSE_CHECKPOINT_ERROR_TENSOR,
      "elements");
  yolose_checkpoint_free (ckpt);

  ckpt = open_tensor_zip (tensor_pickle ("FloatStorage", 1, 0, 2,
                              (const gint64[]){ 1 << 15, 1 << 14 }, zero),
      storage, sizeof storage, ZIP_CM_STORE);
  assert_tensor_fails (ckpt, the_tensor (ckpt), YOLOSE_CHECKPOINT_ERROR_TENSOR,
      "more than 268435456 elements");
  yolose_checkpoint_free (ckpt);
}
END_TEST

/* Integer dtypes and values that are not tensors are refused. */
START_TEST (test_not_float_or_not_tensor)
{
  static const gint64 storage[2] = { 1, 2 };
  YoloseCheckpoint *ckpt
      = open_tensor_zip (tensor_pickle ("LongStorage", 2, 0, 1,
                             (const gint64[]){ 2 }, (const gint64[]){ 1 }),
          storage, sizeof storage, ZIP_CM_STORE);

  assert_tensor_fails (ckpt, the_tensor (ckpt), YOLOSE_CHECKPOINT_ERROR_TENSOR,
      "dtype int64");
  assert_tensor_fails (ckpt, yolose_checkpoint_root (ckpt),
      YOLOSE_CHECKPOINT_ERROR_TENSOR, "dict, not a tensor");
  assert_tensor_fails (ckpt, NULL, YOLOSE_CHECKPOINT_ERROR_TENSOR,
      "not a tensor");
  yolose_checkpoint_free (ckpt);
}
END_TEST

/* A tensor whose storage entry is missing is refused, naming the entry. */
START_TEST (test_missing_storage)
{
  GByteArray *pickle = tensor_pickle ("FloatStorage", 1, 0, 0, NULL, NULL);
  Entry entries[] = { { "ckpt/data.pkl", pickle->data, pickle->len } };
  YoloseCheckpoint *ckpt = open_zip (entries, 1, ZIP_CM_STORE, NULL);

  ck_assert_ptr_nonnull (ckpt);
  assert_tensor_fails (ckpt, the_tensor (ckpt), YOLOSE_CHECKPOINT_ERROR_LAYOUT,
      "no entry 'ckpt/data/0'");
  yolose_checkpoint_free (ckpt);
  g_byte_array_unref (pickle);
}
END_TEST

/* Flips one byte inside the stored copy of @needle in the archive. */
static GBytes *
damage (GBytes *zip, const void *needle, gsize needle_len)
{
  gsize len;
  guint8 *bytes = g_bytes_unref_to_data (zip, &len);
  guint8 *at = memmem (bytes, len, needle, needle_len);

  ck_assert_ptr_nonnull (at);
  at[needle_len / 2] ^= 0x40;
  return g_bytes_new_take (bytes, len);
}

/* A storage or data.pkl damaged after zipping fails its CRC and is
 * refused, instead of giving wrong weights. */
START_TEST (test_damaged_entries)
{
  static const float storage[4] = { 1.25f, 2.5f, -3.75f, 4.125f };
  GByteArray *pickle = tensor_pickle ("FloatStorage", 4, 0, 1,
      (const gint64[]){ 4 }, (const gint64[]){ 1 });
  const Entry entries[] = {
    { "ckpt/data.pkl", pickle->data, pickle->len },
    { "ckpt/data/0", storage, sizeof storage },
  };
  GBytes *zip
      = damage (build_zip (entries, 2, ZIP_CM_STORE), storage, sizeof storage);
  GError *error = NULL;
  YoloseCheckpoint *ckpt = yolose_checkpoint_open_bytes (
      g_bytes_get_data (zip, NULL), g_bytes_get_size (zip), &error);

  ck_assert_msg (ckpt != NULL, "%s", error ? error->message : "");
  assert_tensor_fails (ckpt, the_tensor (ckpt), YOLOSE_CHECKPOINT_ERROR_LAYOUT,
      "reading 'ckpt/data/0' failed (CRC error)");
  yolose_checkpoint_free (ckpt);
  g_bytes_unref (zip);

  zip = damage (build_zip (entries, 2, ZIP_CM_STORE), "_rebuild_tensor_v2", 18);
  ck_assert_ptr_null (yolose_checkpoint_open_bytes (
      g_bytes_get_data (zip, NULL), g_bytes_get_size (zip), &error));
  ck_assert_msg (strstr (error->message, "reading 'ckpt/data.pkl' failed"),
      "%s", error->message);
  g_clear_error (&error);
  g_bytes_unref (zip);
  g_byte_array_unref (pickle);
}
END_TEST

/* ---- synthetic archives: layout refusals ------------------------------ */

/* Empty, missing and non-zip files are refused with the file named. */
START_TEST (test_not_a_checkpoint)
{
  GError *error = NULL;
  char *tmp = NULL;
  int fd = g_file_open_tmp ("yolose-ckpt-XXXXXX", &tmp, NULL);

  ck_assert_int_ge (fd, 0);
  close (fd);
  ck_assert_ptr_null (yolose_checkpoint_open (tmp, &error));
  ck_assert (g_error_matches (error, YOLOSE_CHECKPOINT_ERROR,
      YOLOSE_CHECKPOINT_ERROR_NOT_ZIP));
  ck_assert (strstr (error->message, tmp) && strstr (error->message, "empty"));
  g_clear_error (&error);

  ck_assert (g_file_set_contents (tmp,
      "PK\3\4 but not really a zip file at "
      "all, just some text",
      -1, NULL));
  ck_assert_ptr_null (yolose_checkpoint_open (tmp, &error));
  ck_assert (g_error_matches (error, YOLOSE_CHECKPOINT_ERROR,
      YOLOSE_CHECKPOINT_ERROR_NOT_ZIP));
  ck_assert (strstr (error->message, "not a zip archive"));
  g_clear_error (&error);
  g_unlink (tmp);

  ck_assert_ptr_null (yolose_checkpoint_open (tmp, &error));
  ck_assert (g_error_matches (error, YOLOSE_CHECKPOINT_ERROR,
      YOLOSE_CHECKPOINT_ERROR_OPEN));
  ck_assert (strstr (error->message, tmp) != NULL);
  g_clear_error (&error);
  g_free (tmp);

  ck_assert_ptr_null (yolose_checkpoint_open_bytes (NULL, 0, &error));
  ck_assert (strstr (error->message, "<memory>: empty file"));
  g_clear_error (&error);
}
END_TEST

/* Archives without exactly one <folder>/data.pkl are refused. */
START_TEST (test_pickle_entry_layout)
{
  static const guint8 none_pickle[] = { 0x80, 2, 'N', '.' };
  const Entry no_pickle[] = { { "archive/data/0", "abcd", 4 } };
  const Entry root_pickle[] = { { "data.pkl", none_pickle, 4 } };
  const Entry nested_pickle[] = { { "a/b/data.pkl", none_pickle, 4 } };
  const Entry two_pickles[] = {
    { "a/data.pkl", none_pickle, 4 },
    { "b/data.pkl", none_pickle, 4 },
  };
  const Entry good[] = { { "my model/data.pkl", none_pickle, 4 } };
  GError *error = NULL;
  YoloseCheckpoint *ckpt;

  assert_open_fails (no_pickle, 1, YOLOSE_CHECKPOINT_ERROR_LAYOUT,
      "no <folder>/data.pkl");
  assert_open_fails (root_pickle, 1, YOLOSE_CHECKPOINT_ERROR_LAYOUT,
      "no <folder>/data.pkl");
  assert_open_fails (nested_pickle, 1, YOLOSE_CHECKPOINT_ERROR_LAYOUT,
      "no <folder>/data.pkl");
  assert_open_fails (two_pickles, 2, YOLOSE_CHECKPOINT_ERROR_LAYOUT, "several");
  ckpt = open_zip (good, 1, ZIP_CM_DEFLATE, &error);
  ck_assert_msg (ckpt != NULL, "%s", error ? error->message : "");
  ck_assert_int_eq (yolose_checkpoint_root (ckpt)->kind, YOLOSE_PY_NONE);
  yolose_checkpoint_free (ckpt);
}
END_TEST

/* A bad data.pkl is refused with the entry and the pickle's own cause. */
START_TEST (test_bad_pickle_entry)
{
  static const guint8 inst[] = { 0x80, 2, 'i', 'o', 's', '\n' };
  const Entry entries[] = { { "x/data.pkl", inst, sizeof inst } };

  assert_open_fails (entries, 1, YOLOSE_CHECKPOINT_ERROR_LAYOUT,
      "<memory>: x/data.pkl: unsupported pickle opcode 0x69 (INST) at "
      "offset 2");
}
END_TEST

/* torch 2.x's byteorder entry: "little" is fine, "big" and garbage are
 * refused. */
START_TEST (test_byteorder)
{
  static const guint8 none_pickle[] = { 0x80, 2, 'N', '.' };
  Entry entries[] = {
    { "archive/data.pkl", none_pickle, 4 },
    { "archive/byteorder", "little", 6 },
    { "archive/.data/serialization_id", "1234", 4 },
  };
  GError *error = NULL;
  YoloseCheckpoint *ckpt = open_zip (entries, 3, ZIP_CM_STORE, &error);

  ck_assert_msg (ckpt != NULL, "%s", error ? error->message : "");
  yolose_checkpoint_free (ckpt);
  entries[1].data = "big";
  entries[1].len = 3;
  assert_open_fails (entries, 3, YOLOSE_CHECKPOINT_ERROR_LAYOUT,
      "'big' byte order");
  entries[1].data = "middle-endian-and-long";
  entries[1].len = 22;
  assert_open_fails (entries, 3, YOLOSE_CHECKPOINT_ERROR_LAYOUT, "byteorder");
}
END_TEST

/* A synthetic archive cut at every length is refused, never crashes. */
START_TEST (test_synthetic_truncated_everywhere)
{
  static const float storage[4] = { 1, 2, 3, 4 };
  GByteArray *pickle = tensor_pickle ("FloatStorage", 4, 0, 1,
      (const gint64[]){ 4 }, (const gint64[]){ 1 });
  const Entry entries[] = {
    { "ckpt/data.pkl", pickle->data, pickle->len },
    { "ckpt/data/0", storage, sizeof storage },
  };
  GBytes *bytes = build_zip (entries, 2, ZIP_CM_STORE);
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);

  for (gsize cut = 0; cut < len; cut++) {
    GError *error = NULL;
    YoloseCheckpoint *ckpt = yolose_checkpoint_open_bytes (data, cut, &error);
    ck_assert_msg (ckpt == NULL, "cut at %zu of %zu accepted", cut, len);
    ck_assert_ptr_nonnull (error);
    g_error_free (error);
  }
  g_bytes_unref (bytes);
  g_byte_array_unref (pickle);
}
END_TEST

static Suite *
checkpoint_suite (gboolean with_real_data)
{
  Suite *s = suite_create ("checkpoint");
  TCase *synthetic = tcase_create ("synthetic");
  TCase *real = tcase_create ("real");

  tcase_add_test (synthetic, test_strided_f32);
  tcase_add_test (synthetic, test_half_values);
  tcase_add_test (synthetic, test_bf16_and_f64);
  tcase_add_test (synthetic, test_scalar_and_empty);
  tcase_add_test (synthetic, test_storage_too_small);
  tcase_add_test (synthetic, test_view_out_of_bounds);
  tcase_add_test (synthetic, test_bad_strides);
  tcase_add_test (synthetic, test_huge_shapes);
  tcase_add_test (synthetic, test_not_float_or_not_tensor);
  tcase_add_test (synthetic, test_missing_storage);
  tcase_add_test (synthetic, test_damaged_entries);
  tcase_add_test (synthetic, test_not_a_checkpoint);
  tcase_add_test (synthetic, test_pickle_entry_layout);
  tcase_add_test (synthetic, test_bad_pickle_entry);
  tcase_add_test (synthetic, test_byteorder);
  tcase_add_test (synthetic, test_synthetic_truncated_everywhere);
  suite_add_tcase (s, synthetic);
  if (!with_real_data)
    return s;

  tcase_set_timeout (real, 300);
  tcase_add_loop_test (real, test_real_first_conv, 0,
      G_N_ELEMENTS (real_models));
  tcase_add_loop_test (real, test_real_every_tensor, 0,
      G_N_ELEMENTS (real_models));
  tcase_add_test (real, test_real_truncated);
  suite_add_tcase (s, real);
  return s;
}

int
main (void)
{
  gboolean with_real_data = TRUE;
  SRunner *runner;
  int failed;

  for (gsize i = 0; i < G_N_ELEMENTS (real_models); i++) {
    char *path = yolose_test_data_path (real_models[i]);
    with_real_data = with_real_data && path != NULL;
    g_free (path);
  }
  runner = srunner_create (checkpoint_suite (with_real_data));
  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  if (failed != 0)
    return 1;
  /* The synthetic cases passed; without the models the run is a SKIP. */
  yolose_test_require_data (real_models[0], real_models[1], real_models[2],
      NULL);
  return 0;
}
