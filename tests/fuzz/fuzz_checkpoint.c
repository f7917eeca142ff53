/* yolose — libFuzzer target for the checkpoint loader.
 *
 * Opens the input as a .pt archive with yolose_checkpoint_open_bytes(),
 * pokes the lookup helpers the model builder uses, and reads every tensor
 * it can reach from the root (within a budget, so one input costs
 * milliseconds).  A failure must come with an error message; anything else
 * (crash, sanitizer report, leak, GLib critical) is a finding.
 *
 * Mutating a zip byte by byte mostly breaks its CRCs, so the pickle inside
 * would never be reached.  The custom mutator below therefore usually
 * mutates one entry's contents (data.pkl most often) and re-packs the
 * archive with libzip, keeping it valid; now and then it mutates the raw
 * bytes to exercise the zip layer itself.
 *
 * Build (clang):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore \
 *     $(pkg-config --cflags glib-2.0 libzip) tests/fuzz/fuzz_checkpoint.c \
 *     core/checkpoint.c core/pickle.c \
 *     $(pkg-config --libs glib-2.0 libzip) -lm -o fuzz_checkpoint
 * Run: ./fuzz_checkpoint -timeout=30 CORPUS_DIR SEED_DIR */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "checkpoint.h"

/* Bounds per input: values visited in the walk, and tensor elements
 * converted (the real checkpoints hold 2–7 M). */
#define MAX_VISITS 1000000
#define ELEMENT_BUDGET (1 << 18)

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
size_t LLVMFuzzerMutate (uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator (uint8_t *data, size_t size, size_t max_size,
                                unsigned int seed);

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  /* A GLib critical (a g_return_if_fail hit) is a bug: make it abort. */
  g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
  return 0;
}

/* What the model builder does with a checkpoint, on whatever we got. */
static void
poke_helpers (const YolosePyValue *root)
{
  const YolosePyValue *model = yolose_py_dict_get (root, "model");
  const YolosePyValue *layers = yolose_py_attr (model, "model");
  const YolosePyValue *yaml = yolose_py_attr (model, "yaml");
  gint64 integer;
  double number;

  (void)yolose_py_is_class (model, "models.yolo", "Model");
  (void)yolose_py_get_int (yolose_py_attr (model, "nc"), &integer);
  (void)yolose_py_get_number (yolose_py_dict_get (yaml, "depth_multiple"),
                              &number);
  for (gsize i = 0; i < yolose_py_len (yolose_py_attr (model, "names")); i++)
    (void)yolose_py_get_string (
        yolose_py_item (yolose_py_attr (model, "names"), i));
  for (int i = 0; i < 30; i++) {
    char name[16];
    const YolosePyValue *layer;

    g_snprintf (name, sizeof name, "%d", i);
    layer = yolose_py_attr (layers, name);
    (void)yolose_py_attr (yolose_py_attr (layer, "conv"), "weight");
    (void)yolose_py_attr (layer, "anchors");
  }
}

static void
read_tensor (YoloseCheckpoint *ckpt, const YolosePyValue *tensor,
             gint64 *budget)
{
  gint64 numel = yolose_tensor_numel (tensor);
  GError *error = NULL;
  float *values;

  /* Invalid shapes fail before any allocation: always try those. */
  if (numel > *budget)
    return;
  *budget -= MAX (numel, 1);
  values = yolose_checkpoint_tensor_f32 (ckpt, tensor, &error);
  if (values == NULL && (error == NULL || error->message[0] == '\0'))
    abort (); /* a failure without a message */
  if (values != NULL) {
    volatile float sink = 0.0f;
    for (gint64 i = 0; i < numel; i++)
      sink += values[i]; /* touch every element */
    (void)sink;
  }
  g_clear_error (&error);
  g_free (values);
}

/* Depth-first over the value graph, each value once (pickles may hold
 * cycles), without recursion. */
static void
read_every_tensor (YoloseCheckpoint *ckpt, const YolosePyValue *root)
{
  GPtrArray *todo = g_ptr_array_new ();
  GHashTable *seen = g_hash_table_new (NULL, NULL);
  gint64 budget = ELEMENT_BUDGET;
  guint visits = 0;

  g_ptr_array_add (todo, (gpointer)root);
  while (todo->len > 0 && visits++ < MAX_VISITS) {
    const YolosePyValue *v = g_ptr_array_steal_index_fast (todo, todo->len - 1);

    if (v == NULL || !g_hash_table_add (seen, (gpointer)v))
      continue;
    switch (v->kind) {
      case YOLOSE_PY_TENSOR:
        read_tensor (ckpt, v, &budget);
        break;
      case YOLOSE_PY_LIST:
      case YOLOSE_PY_TUPLE:
        for (gsize i = 0; i < v->v.seq.len; i++)
          g_ptr_array_add (todo, v->v.seq.items[i]);
        break;
      case YOLOSE_PY_DICT:
        for (gsize i = 0; i < v->v.dict.len; i++) {
          g_ptr_array_add (todo, v->v.dict.keys[i]);
          g_ptr_array_add (todo, v->v.dict.values[i]);
        }
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
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  YoloseCheckpoint *ckpt = yolose_checkpoint_open_bytes (data, size, &error);

  if (ckpt == NULL) {
    if (error == NULL || error->message[0] == '\0')
      abort ();
    g_error_free (error);
    return 0;
  }
  poke_helpers (yolose_checkpoint_root (ckpt));
  read_every_tensor (ckpt, yolose_checkpoint_root (ckpt));
  yolose_checkpoint_free (ckpt);
  return 0;
}

/* ---- The structure-aware mutator -------------------------------------- */

/* Index of the entry to mutate: data.pkl three times out of four. */
static zip_int64_t
pick_entry (zip_t *zip, GRand *rand)
{
  zip_int64_t n = zip_get_num_entries (zip, 0);

  if (n <= 0)
    return -1;
  if (g_rand_int_range (rand, 0, 4) != 0)
    for (zip_int64_t i = 0; i < n; i++)
      if (g_str_has_suffix (zip_get_name (zip, (zip_uint64_t)i, 0), "data.pkl"))
        return i;
  return g_rand_int_range (rand, 0, (gint32)MIN (n, G_MAXINT32));
}

/* Entry @index's contents, mutated by libFuzzer, or NULL. */
static guint8 *
mutated_entry (zip_t *zip, zip_uint64_t index, size_t max_size, size_t *len)
{
  zip_stat_t st;
  zip_file_t *file;
  guint8 *buffer;
  size_t cap;

  if (zip_stat_index (zip, index, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE)
      || st.size > max_size)
    return NULL;
  cap = (size_t)st.size + 256;
  buffer = g_malloc (cap);
  file = zip_fopen_index (zip, index, 0);
  if (file == NULL
      || zip_fread (file, buffer, st.size) != (zip_int64_t)st.size) {
    if (file != NULL)
      zip_fclose (file);
    g_free (buffer);
    return NULL;
  }
  zip_fclose (file);
  *len = LLVMFuzzerMutate (buffer, (size_t)st.size, cap);
  return buffer;
}

/* @zip with entry @index replaced by @contents, as a new archive in
 * memory; NULL when libzip refuses. */
static GBytes *
repack (zip_t *zip, zip_uint64_t index, const guint8 *contents, size_t len)
{
  zip_error_t zerr;
  zip_source_t *out;
  zip_t *copy;
  zip_int64_t n = zip_get_num_entries (zip, 0), size;
  guint8 *bytes;

  zip_error_init (&zerr);
  out = zip_source_buffer_create (NULL, 0, 0, &zerr);
  zip_source_keep (out);
  copy = zip_open_from_source (out, ZIP_TRUNCATE, &zerr);
  for (zip_int64_t i = 0; copy != NULL && i < n; i++) {
    const char *name = zip_get_name (zip, (zip_uint64_t)i, 0);
    zip_source_t *source
        = (zip_uint64_t)i == index
              ? zip_source_buffer (copy, contents, len, 0)
              : zip_source_zip (copy, zip, (zip_uint64_t)i, 0, 0, -1);
    if (name == NULL || source == NULL
        || zip_file_add (copy, name, source, 0) < 0) {
      zip_source_free (source);
      zip_discard (copy);
      copy = NULL;
    } else {
      zip_set_file_compression (copy, (zip_uint64_t)i, ZIP_CM_STORE, 0);
    }
  }
  if (copy == NULL || zip_close (copy) != 0) {
    if (copy != NULL)
      zip_discard (copy);
    zip_source_free (out);
    return NULL;
  }
  zip_source_open (out);
  zip_source_seek (out, 0, SEEK_END);
  size = zip_source_tell (out);
  zip_source_seek (out, 0, SEEK_SET);
  bytes = g_malloc (MAX (size, 1));
  if (size < 0 || zip_source_read (out, bytes, (zip_uint64_t)size) != size) {
    g_free (bytes);
    zip_source_close (out);
    zip_source_free (out);
    return NULL;
  }
  zip_source_close (out);
  zip_source_free (out);
  return g_bytes_new_take (bytes, (gsize)size);
}

size_t
LLVMFuzzerCustomMutator (uint8_t *data, size_t size, size_t max_size,
                         unsigned int seed)
{
  GRand *rand = g_rand_new_with_seed (seed);
  guint8 *original = g_memdup2 (data, size);
  zip_source_t *source = NULL;
  zip_t *zip = NULL;
  zip_int64_t index = -1;
  guint8 *contents = NULL;
  size_t contents_len = 0, result = 0;
  GBytes *packed = NULL;

  if (g_rand_int_range (rand, 0, 8) != 0 && size > 0) {
    source = zip_source_buffer_create (original, size, 0, NULL);
    zip = source ? zip_open_from_source (source, ZIP_RDONLY, NULL) : NULL;
    if (zip == NULL && source != NULL)
      zip_source_free (source);
  }
  if (zip != NULL)
    index = pick_entry (zip, rand);
  if (index >= 0)
    contents
        = mutated_entry (zip, (zip_uint64_t)index, max_size, &contents_len);
  if (contents != NULL)
    packed = repack (zip, (zip_uint64_t)index, contents, contents_len);
  if (packed != NULL && g_bytes_get_size (packed) <= max_size) {
    result = g_bytes_get_size (packed);
    memcpy (data, g_bytes_get_data (packed, NULL), result);
  } else {
    result = LLVMFuzzerMutate (data, size, max_size);
  }
  if (packed != NULL)
    g_bytes_unref (packed);
  g_free (contents);
  if (zip != NULL)
    zip_discard (zip);
  g_free (original);
  g_rand_free (rand);
  return result;
}
