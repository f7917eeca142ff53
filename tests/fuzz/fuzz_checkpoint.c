/* yolose — libFuzzer target for the whole model loading path.
 *
 * Feeds the input to yolose_fuzz_checkpoint() (fuzz_entry.c): the .pt
 * archive, its pickle, every reachable tensor, the model builder, the
 * graph's memory plan and weight packing, and one forward pass at 64x64.
 * A refusal must come with an error message; anything else (crash,
 * sanitizer report, leak, GLib critical) is a finding.  Every file in
 * tests/fuzz/regressions/checkpoint/ is replayed through the same function
 * by tests/core/test_fuzz_regressions.c on every build.
 *
 * Mutating a zip byte by byte mostly breaks its CRCs, so the pickle inside
 * would never be reached.  The custom mutator below therefore usually
 * mutates one entry's contents (data.pkl most often) and re-packs the
 * archive with libzip, keeping it valid; now and then it mutates the raw
 * bytes to exercise the zip layer itself.
 *
 * Build: meson setup build-fuzz -Dfuzzing=true -Db_sanitize=address,undefined
 *   -Db_lundef=false (with CC=clang); ninja -C build-fuzz.
 * (UBSan reports abort there: -fno-sanitize-recover=all.)
 * Run: build-fuzz/tests/fuzz/fuzz_checkpoint -timeout=30 -max_len=65536 \
 *   -dict=tests/fuzz/checkpoint.dict CORPUS_DIR tests/fuzz/seeds/checkpoint \
 *   tests/fuzz/regressions/checkpoint */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "fuzz_entry.h"

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

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  (void)yolose_fuzz_checkpoint (data, size, NULL);
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
    zip_source_t *source = (zip_uint64_t)i == index
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
