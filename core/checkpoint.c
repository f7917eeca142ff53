/* yolose — an upstream PyTorch checkpoint: the zip archive torch.save
 * writes, its data.pkl, and its raw tensor storages.
 *
 * The whole file is held in memory and opened through a libzip buffer
 * source, so files and the fuzzer's byte strings take the same path.  The
 * archive stays open after loading: storages are read when a tensor is
 * asked for, so the model builder only pays for the tensors it uses. */
#include "checkpoint.h"

#include <string.h>
#include <zip.h>

/* data.pkl of the upstream checkpoints is ~90 kB: see pickle.c. */
#define MAX_PICKLE_BYTES ((zip_uint64_t)64 << 20)
/* A tensor the detector could use is a few MB; this bounds what a hostile
 * shape (stride 0 over a huge size) can make us allocate. */
#define MAX_TENSOR_ELEMENTS ((gint64)1 << 28)
/* Storage entries are read in full up to the last element a tensor uses;
 * the largest upstream YOLOv5 storage is a few MB. */
#define MAX_STORAGE_BYTES ((gint64)1 << 31)
#define MAX_BYTEORDER_BYTES 16

struct _YoloseCheckpoint {
  char *name;    /* for messages: the path, or "<memory>" */
  GBytes *bytes; /* the whole archive, read by libzip */
  zip_t *zip;
  char *prefix; /* top folder, e.g. "archive" */
  YolosePickle *pickle;
  GMutex lock; /* a zip_t is not thread-safe */
};

/* clang-format off */
G_DEFINE_QUARK (yolose-checkpoint-error-quark, yolose_checkpoint_error);
/* clang-format on */

void
yolose_checkpoint_free (YoloseCheckpoint *ckpt)
{
  if (ckpt == NULL)
    return;
  if (ckpt->zip != NULL)
    zip_discard (ckpt->zip);
  yolose_pickle_free (ckpt->pickle);
  g_bytes_unref (ckpt->bytes);
  g_free (ckpt->prefix);
  g_free (ckpt->name);
  g_mutex_clear (&ckpt->lock);
  g_free (ckpt);
}

/* ---- Zip entries ------------------------------------------------------ */

static gboolean
open_archive (YoloseCheckpoint *ckpt, GError **error)
{
  gsize size;
  const void *data = g_bytes_get_data (ckpt->bytes, &size);
  zip_error_t zip_error;
  zip_source_t *source;
  int code;

  /* libzip opens an empty buffer as an empty archive. */
  if (size == 0) {
    g_set_error (error, YOLOSE_CHECKPOINT_ERROR,
        YOLOSE_CHECKPOINT_ERROR_NOT_ZIP, "%s: empty file, not a zip archive",
        ckpt->name);
    return FALSE;
  }
  zip_error_init (&zip_error);
  source = zip_source_buffer_create (data, size, 0, &zip_error);
  if (source != NULL) {
    ckpt->zip
        = zip_open_from_source (source, ZIP_RDONLY | ZIP_CHECKCONS, &zip_error);
    if (ckpt->zip == NULL)
      zip_source_free (source);
  }
  if (ckpt->zip != NULL) {
    zip_error_fini (&zip_error);
    return TRUE;
  }
  code = zip_error_code_zip (&zip_error);
  if (code == ZIP_ER_NOZIP)
    g_set_error (error, YOLOSE_CHECKPOINT_ERROR,
        YOLOSE_CHECKPOINT_ERROR_NOT_ZIP, "%s: not a zip archive", ckpt->name);
  else
    g_set_error (error, YOLOSE_CHECKPOINT_ERROR,
        YOLOSE_CHECKPOINT_ERROR_NOT_ZIP, "%s: unreadable zip archive (%s)",
        ckpt->name, zip_error_strerror (&zip_error));
  zip_error_fini (&zip_error);
  return FALSE;
}

static gboolean
locate_entry (YoloseCheckpoint *ckpt, const char *entry, zip_uint64_t *index,
    zip_uint64_t *size, GError **error)
{
  zip_stat_t stat;
  zip_int64_t found = zip_name_locate (ckpt->zip, entry, 0);

  if (found < 0) {
    g_set_error (error, YOLOSE_CHECKPOINT_ERROR, YOLOSE_CHECKPOINT_ERROR_LAYOUT,
        "%s: no entry '%s' in the archive", ckpt->name, entry);
    return FALSE;
  }
  zip_stat_init (&stat);
  if (zip_stat_index (ckpt->zip, (zip_uint64_t)found, 0, &stat) != 0
      || !(stat.valid & ZIP_STAT_SIZE)) {
    g_set_error (error, YOLOSE_CHECKPOINT_ERROR, YOLOSE_CHECKPOINT_ERROR_LAYOUT,
        "%s: cannot read the size of '%s'", ckpt->name, entry);
    return FALSE;
  }
  *index = (zip_uint64_t)found;
  *size = stat.size;
  return TRUE;
}

/* After the last byte of an entry: libzip checks the CRC when it reaches
 * the end, so a damaged entry is caught here. */
static gboolean
check_entry_end (YoloseCheckpoint *ckpt, zip_file_t *file, const char *entry,
    GError **error)
{
  guint8 extra;
  zip_int64_t n = zip_fread (file, &extra, 1);

  if (n == 0)
    return TRUE;
  g_set_error (error, YOLOSE_CHECKPOINT_ERROR, YOLOSE_CHECKPOINT_ERROR_LAYOUT,
      "%s: reading '%s' failed (%s)", ckpt->name, entry,
      n < 0 ? zip_file_strerror (file) : "entry longer than its declared size");
  return FALSE;
}

/* Reads the first @len bytes of entry @index, and checks its CRC when
 * @len is its whole size.  The buffer grows with the bytes that really
 * arrive, so a size claimed by a hostile zip costs nothing until the data
 * is there.  The bytes are followed by a NUL. */
static guint8 *
read_entry (YoloseCheckpoint *ckpt, zip_uint64_t index, const char *entry,
    gsize len, gboolean whole, GError **error)
{
  zip_file_t *file = zip_fopen_index (ckpt->zip, index, 0);
  gsize cap = MIN (len, (gsize)1 << 20), got = 0;
  guint8 *data;

  if (file == NULL) {
    g_set_error (error, YOLOSE_CHECKPOINT_ERROR, YOLOSE_CHECKPOINT_ERROR_LAYOUT,
        "%s: cannot open '%s' (%s)", ckpt->name, entry,
        zip_strerror (ckpt->zip));
    return NULL;
  }
  data = g_malloc (cap + 1);
  while (got < len) {
    zip_int64_t n;
    if (got == cap) {
      cap = cap > len / 2 ? len : cap * 2;
      data = g_realloc (data, cap + 1);
    }
    n = zip_fread (file, data + got, cap - got);
    if (n <= 0) {
      g_set_error (error, YOLOSE_CHECKPOINT_ERROR,
          YOLOSE_CHECKPOINT_ERROR_LAYOUT, "%s: reading '%s' failed (%s)",
          ckpt->name, entry,
          n < 0 ? zip_file_strerror (file)
                : "entry shorter than its declared size");
      g_clear_pointer (&data, g_free);
      break;
    }
    got += (gsize)n;
  }
  if (data != NULL && whole && !check_entry_end (ckpt, file, entry, error))
    g_clear_pointer (&data, g_free);
  zip_fclose (file);
  if (data != NULL)
    data[len] = '\0';
  return data;
}

/* Whole small entry, NUL-terminated, at most @max_size bytes. */
static guint8 *
read_small_entry (YoloseCheckpoint *ckpt, const char *entry,
    zip_uint64_t max_size, gsize *len, GError **error)
{
  zip_uint64_t index, size;
  guint8 *data;

  if (!locate_entry (ckpt, entry, &index, &size, error))
    return NULL;
  if (size > max_size) {
    g_set_error (error, YOLOSE_CHECKPOINT_ERROR, YOLOSE_CHECKPOINT_ERROR_LAYOUT,
        "%s: '%s' has %" G_GUINT64_FORMAT
        " bytes, more than the limit of %" G_GUINT64_FORMAT,
        ckpt->name, entry, (guint64)size, (guint64)max_size);
    return NULL;
  }
  data = read_entry (ckpt, index, entry, (gsize)size, TRUE, error);
  if (data != NULL)
    *len = (gsize)size;
  return data;
}

/* ---- Layout: <prefix>/data.pkl, <prefix>/byteorder -------------------- */

/* The one "<prefix>/data.pkl" whose prefix is a single folder name. */
static gboolean
find_prefix (YoloseCheckpoint *ckpt, GError **error)
{
  static const char suffix[] = "/data.pkl";
  zip_int64_t n_entries = zip_get_num_entries (ckpt->zip, 0);
  int found = 0;

  for (zip_int64_t i = 0; i < n_entries; i++) {
    const char *entry = zip_get_name (ckpt->zip, (zip_uint64_t)i, 0);
    gsize len = entry ? strlen (entry) : 0;
    gsize prefix_len = len - (sizeof suffix - 1);
    if (len <= sizeof suffix - 1 || strcmp (entry + prefix_len, suffix) != 0
        || memchr (entry, '/', prefix_len) != NULL)
      continue;
    if (found++ == 0)
      ckpt->prefix = g_strndup (entry, prefix_len);
  }
  if (found == 1)
    return TRUE;
  g_set_error (error, YOLOSE_CHECKPOINT_ERROR, YOLOSE_CHECKPOINT_ERROR_LAYOUT,
      "%s: %s", ckpt->name,
      found == 0 ? "no <folder>/data.pkl in the archive, not a "
                   "PyTorch checkpoint"
                 : "several <folder>/data.pkl in the archive");
  return FALSE;
}

/* torch 2.x records the byte order of the storages; older ones were
 * always little-endian. */
static gboolean
check_byteorder (YoloseCheckpoint *ckpt, GError **error)
{
  char *entry = g_strdup_printf ("%s/byteorder", ckpt->prefix);
  gsize len;
  char *order = NULL;
  gboolean ok = TRUE;

  if (zip_name_locate (ckpt->zip, entry, 0) >= 0) {
    order = (char *)read_small_entry (ckpt, entry, MAX_BYTEORDER_BYTES, &len,
        error);
    ok = order != NULL && strcmp (g_strchomp (order), "little") == 0;
    if (order != NULL && !ok) {
      char *printable = g_strescape (order, NULL);
      g_set_error (error, YOLOSE_CHECKPOINT_ERROR,
          YOLOSE_CHECKPOINT_ERROR_LAYOUT,
          "%s: storages are in '%s' byte order, only little-endian "
          "checkpoints are supported",
          ckpt->name, printable);
      g_free (printable);
    }
  }
  g_free (order);
  g_free (entry);
  return ok;
}

static gboolean
load_pickle (YoloseCheckpoint *ckpt, GError **error)
{
  char *entry = g_strdup_printf ("%s/data.pkl", ckpt->prefix);
  GError *pickle_error = NULL;
  gsize len;
  guint8 *data = read_small_entry (ckpt, entry, MAX_PICKLE_BYTES, &len, error);

  if (data != NULL) {
    ckpt->pickle = yolose_pickle_parse (data, len, &pickle_error);
    if (ckpt->pickle == NULL)
      g_set_error (error, YOLOSE_CHECKPOINT_ERROR,
          YOLOSE_CHECKPOINT_ERROR_LAYOUT, "%s: %s: %s", ckpt->name, entry,
          pickle_error->message);
    g_clear_error (&pickle_error);
  }
  g_free (data);
  g_free (entry);
  return ckpt->pickle != NULL;
}

/* Takes @bytes. */
static YoloseCheckpoint *
checkpoint_open (GBytes *bytes, const char *name, GError **error)
{
  YoloseCheckpoint *ckpt = g_new0 (YoloseCheckpoint, 1);

  g_mutex_init (&ckpt->lock);
  ckpt->name = g_strdup (name);
  ckpt->bytes = bytes;
  if (!open_archive (ckpt, error) || !find_prefix (ckpt, error)
      || !check_byteorder (ckpt, error) || !load_pickle (ckpt, error)) {
    yolose_checkpoint_free (ckpt);
    return NULL;
  }
  return ckpt;
}

YoloseCheckpoint *
yolose_checkpoint_open (const char *path, GError **error)
{
  GError *file_error = NULL;
  char *contents;
  gsize len;

  g_return_val_if_fail (path != NULL, NULL);
  /* A private copy rather than a mapping: a file truncated under us must
   * give an error, not SIGBUS. */
  if (!g_file_get_contents (path, &contents, &len, &file_error)) {
    /* GLib's message names the file already. */
    g_set_error_literal (error, YOLOSE_CHECKPOINT_ERROR,
        YOLOSE_CHECKPOINT_ERROR_OPEN, file_error->message);
    g_error_free (file_error);
    return NULL;
  }
  return checkpoint_open (g_bytes_new_take (contents, len), path, error);
}

YoloseCheckpoint *
yolose_checkpoint_open_bytes (const guint8 *data, gsize len, GError **error)
{
  g_return_val_if_fail (data != NULL || len == 0, NULL);
  return checkpoint_open (g_bytes_new (data, len), "<memory>", error);
}

const YolosePyValue *
yolose_checkpoint_root (const YoloseCheckpoint *ckpt)
{
  return ckpt ? yolose_pickle_root (ckpt->pickle) : NULL;
}

/* ---- Tensors ---------------------------------------------------------- */

static gboolean
checked_mul (gint64 a, gint64 b, gint64 *out)
{
  if (a < 0 || b < 0 || (b != 0 && a > G_MAXINT64 / b))
    return FALSE;
  *out = a * b;
  return TRUE;
}

static gboolean
checked_add (gint64 a, gint64 b, gint64 *out)
{
  if (a < 0 || b < 0 || a > G_MAXINT64 - b)
    return FALSE;
  *out = a + b;
  return TRUE;
}

gint64
yolose_tensor_numel (const YolosePyValue *tensor)
{
  gint64 numel = 1;

  if (tensor == NULL || tensor->kind != YOLOSE_PY_TENSOR
      || tensor->v.tensor.ndim < 0
      || tensor->v.tensor.ndim > YOLOSE_TENSOR_MAX_DIMS)
    return -1;
  for (int d = 0; d < tensor->v.tensor.ndim; d++)
    if (!checked_mul (numel, tensor->v.tensor.sizes[d], &numel))
      return -1;
  return numel;
}

static gboolean
is_float_dtype (YoloseDType dtype)
{
  return dtype == YOLOSE_DTYPE_F16 || dtype == YOLOSE_DTYPE_BF16
      || dtype == YOLOSE_DTYPE_F32 || dtype == YOLOSE_DTYPE_F64;
}

static gboolean tensor_fail (YoloseCheckpoint *ckpt, GError **error,
    const char *format, ...) G_GNUC_PRINTF (3, 4);

static gboolean
tensor_fail (YoloseCheckpoint *ckpt, GError **error, const char *format, ...)
{
  va_list args;
  char *cause;

  va_start (args, format);
  cause = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, YOLOSE_CHECKPOINT_ERROR, YOLOSE_CHECKPOINT_ERROR_TENSOR,
      "%s: %s", ckpt->name, cause);
  g_free (cause);
  return FALSE;
}

static gboolean
check_signs (YoloseCheckpoint *ckpt, const YolosePyValue *tensor,
    GError **error)
{
  const char *key = tensor->v.tensor.storage->v.storage.key;

  if (tensor->v.tensor.offset < 0)
    return tensor_fail (ckpt, error,
        "tensor on storage '%s' has negative offset %" G_GINT64_FORMAT, key,
        tensor->v.tensor.offset);
  for (int d = 0; d < tensor->v.tensor.ndim; d++)
    if (tensor->v.tensor.sizes[d] < 0 || tensor->v.tensor.strides[d] < 0)
      return tensor_fail (ckpt, error,
          "tensor on storage '%s' has size %" G_GINT64_FORMAT
          " and stride %" G_GINT64_FORMAT " in dimension %d",
          key, tensor->v.tensor.sizes[d], tensor->v.tensor.strides[d], d);
  return TRUE;
}

/* The largest storage index a non-empty tensor touches:
 * offset + sum of (size - 1) * stride. */
static gboolean
max_storage_index (YoloseCheckpoint *ckpt, const YolosePyValue *tensor,
    gint64 *max_index, GError **error)
{
  gint64 index = tensor->v.tensor.offset;
  gint64 span;

  for (int d = 0; d < tensor->v.tensor.ndim; d++)
    if (!checked_mul (tensor->v.tensor.sizes[d] - 1,
            tensor->v.tensor.strides[d], &span)
        || !checked_add (index, span, &index))
      return tensor_fail (ckpt, error,
          "tensor on storage '%s': offset and strides overflow",
          tensor->v.tensor.storage->v.storage.key);
  *max_index = index;
  return TRUE;
}

/* Everything about @tensor that can be checked without reading data.
 * *max_index is -1 for an empty tensor. */
static gboolean
check_tensor (YoloseCheckpoint *ckpt, const YolosePyValue *tensor,
    gint64 *numel, gint64 *max_index, GError **error)
{
  const YolosePyValue *storage;

  if (tensor == NULL || tensor->kind != YOLOSE_PY_TENSOR)
    return tensor_fail (ckpt, error, "value is a %s, not a tensor",
        tensor ? yolose_py_kind_name (tensor->kind) : "NULL");
  storage = tensor->v.tensor.storage;
  if (storage == NULL || storage->kind != YOLOSE_PY_STORAGE)
    return tensor_fail (ckpt, error, "tensor without a storage");
  if (!is_float_dtype (storage->v.storage.dtype))
    return tensor_fail (ckpt, error,
        "tensor on storage '%s' has dtype %s, not a floating type",
        storage->v.storage.key, yolose_dtype_name (storage->v.storage.dtype));
  if (tensor->v.tensor.ndim < 0
      || tensor->v.tensor.ndim > YOLOSE_TENSOR_MAX_DIMS)
    return tensor_fail (ckpt, error, "tensor has %d dimensions",
        tensor->v.tensor.ndim);
  if (!check_signs (ckpt, tensor, error))
    return FALSE;
  *numel = yolose_tensor_numel (tensor);
  if (*numel < 0 || *numel > MAX_TENSOR_ELEMENTS)
    return tensor_fail (ckpt, error,
        "tensor on storage '%s' has more than %" G_GINT64_FORMAT " elements",
        storage->v.storage.key, MAX_TENSOR_ELEMENTS);
  *max_index = -1;
  if (*numel == 0)
    return TRUE;
  if (!max_storage_index (ckpt, tensor, max_index, error))
    return FALSE;
  if (*max_index >= storage->v.storage.numel)
    return tensor_fail (ckpt, error,
        "tensor reaches element %" G_GINT64_FORMAT
        " of storage '%s', which has %" G_GINT64_FORMAT " elements",
        *max_index, storage->v.storage.key, storage->v.storage.numel);
  return TRUE;
}

/* The bytes of @storage, after checking that its entry holds the whole
 * storage it declares. */
static guint8 *
read_storage (YoloseCheckpoint *ckpt, const YolosePyValue *storage,
    GError **error)
{
  YoloseDType dtype = storage->v.storage.dtype;
  gint64 elem_size = (gint64)yolose_dtype_size (dtype);
  char *entry
      = g_strdup_printf ("%s/data/%s", ckpt->prefix, storage->v.storage.key);
  zip_uint64_t index, entry_size;
  gint64 needed;
  guint8 *data = NULL;

  if (!locate_entry (ckpt, entry, &index, &entry_size, error))
    goto out;
  if (!checked_mul (storage->v.storage.numel, elem_size, &needed)
      || needed > MAX_STORAGE_BYTES) {
    tensor_fail (ckpt, error,
        "tensor storage '%s' declares %" G_GINT64_FORMAT
        " elements of %s, more than the limit of %" G_GINT64_FORMAT " bytes",
        entry, storage->v.storage.numel, yolose_dtype_name (dtype),
        MAX_STORAGE_BYTES);
    goto out;
  }
  if (entry_size < (zip_uint64_t)needed) {
    tensor_fail (ckpt, error,
        "tensor storage '%s' has %" G_GUINT64_FORMAT
        " bytes, needs %" G_GINT64_FORMAT " (%" G_GINT64_FORMAT " %s)",
        entry, (guint64)entry_size, needed, storage->v.storage.numel,
        yolose_dtype_name (dtype));
    goto out;
  }
  /* The whole storage, even for a view of part of it, so that the CRC is
   * checked; torch writes each entry at exactly its storage's size. */
  data = read_entry (ckpt, index, entry, (gsize)needed,
      entry_size == (zip_uint64_t)needed, error);
out:
  g_free (entry);
  return data;
}

static float
half_to_float (guint16 half)
{
  guint32 sign = (guint32)(half & 0x8000) << 16;
  guint32 exponent = (half >> 10) & 0x1f;
  guint32 mantissa = half & 0x3ff;
  guint32 bits;
  float value;

  if (exponent == 0x1f) { /* inf, nan (payload kept) */
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) { /* normal: rebias 15 -> 127 */
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) { /* signed zero */
    bits = sign;
  } else { /* subnormal half: a normal float */
    guint32 float_exponent = 113;
    while ((mantissa & 0x400) == 0) {
      mantissa <<= 1;
      float_exponent--;
    }
    bits = sign | (float_exponent << 23) | ((mantissa & 0x3ff) << 13);
  }
  memcpy (&value, &bits, sizeof value);
  return value;
}

/* Element @index of little-endian storage data @raw, as float. */
static float
load_element (const guint8 *raw, YoloseDType dtype, gint64 index)
{
  gsize size = yolose_dtype_size (dtype);
  const guint8 *p = raw + (gsize)index * size;
  guint64 bits = 0;
  guint32 bits32;
  float f;
  double d;

  for (gsize i = 0; i < size; i++)
    bits |= (guint64)p[i] << (8 * i);
  switch (dtype) {
    case YOLOSE_DTYPE_F16:
      return half_to_float ((guint16)bits);
    case YOLOSE_DTYPE_BF16: /* the top half of a float32 */
      bits32 = (guint32)bits << 16;
      memcpy (&f, &bits32, sizeof f);
      return f;
    case YOLOSE_DTYPE_F32:
      bits32 = (guint32)bits;
      memcpy (&f, &bits32, sizeof f);
      return f;
    case YOLOSE_DTYPE_F64:
      memcpy (&d, &bits, sizeof d);
      return (float)d;
    default:
      return 0.0f; /* excluded by check_tensor */
  }
}

/* Walks the tensor's indices in row-major order with an odometer; the
 * storage index only ever moves within [offset, max_index]. */
static void
gather (const YolosePyValue *tensor, const guint8 *raw, gint64 numel,
    float *out)
{
  YoloseDType dtype = tensor->v.tensor.storage->v.storage.dtype;
  int ndim = tensor->v.tensor.ndim;
  const gint64 *sizes = tensor->v.tensor.sizes;
  const gint64 *strides = tensor->v.tensor.strides;
  gint64 position[YOLOSE_TENSOR_MAX_DIMS] = { 0 };
  gint64 source = tensor->v.tensor.offset;

  for (gint64 i = 0; i < numel; i++) {
    out[i] = load_element (raw, dtype, source);
    for (int d = ndim - 1; d >= 0; d--) {
      if (position[d] + 1 < sizes[d]) {
        position[d]++;
        source += strides[d];
        break;
      }
      source -= position[d] * strides[d];
      position[d] = 0;
    }
  }
}

float *
yolose_checkpoint_tensor_f32 (YoloseCheckpoint *ckpt,
    const YolosePyValue *tensor, GError **error)
{
  gint64 numel = 0, max_index = -1;
  guint8 *raw = NULL;
  float *out = NULL;

  g_return_val_if_fail (ckpt != NULL, NULL);
  g_mutex_lock (&ckpt->lock);
  if (!check_tensor (ckpt, tensor, &numel, &max_index, error))
    goto out;
  raw = read_storage (ckpt, tensor->v.tensor.storage, error);
  if (raw == NULL)
    goto out;
  out = g_try_new (float, MAX (numel, 1));
  if (out == NULL) {
    tensor_fail (ckpt, error,
        "out of memory for a tensor of %" G_GINT64_FORMAT " elements", numel);
    goto out;
  }
  gather (tensor, raw, numel, out);
out:
  g_mutex_unlock (&ckpt->lock);
  g_free (raw);
  return out;
}
