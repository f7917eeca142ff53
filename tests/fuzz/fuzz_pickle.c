/* yolose — libFuzzer target for the pickle reader alone.
 *
 * Faster than fuzz_checkpoint (no zip around the bytes), so it reaches the
 * unpickler's corners sooner.  Parses the input, then walks the result
 * with the lookup helpers; a failure must come with a message.
 *
 * Build (clang):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icore \
 *     $(pkg-config --cflags glib-2.0) tests/fuzz/fuzz_pickle.c core/pickle.c \
 *     $(pkg-config --libs glib-2.0) -o fuzz_pickle
 * Seeds: the data.pkl of the real checkpoints, small pickle.dumps() outputs
 * of protocols 2 to 5. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "pickle.h"

#define MAX_VISITS 1000000

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
  return 0;
}

/* Touches what a consumer would read of @v. */
static void
inspect (const YolosePyValue *v)
{
  gint64 integer;
  double number;

  (void)yolose_py_kind_name (v->kind);
  (void)yolose_py_get_int (v, &integer);
  (void)yolose_py_get_number (v, &number);
  (void)yolose_py_get_string (v);
  (void)yolose_py_dict_get (v, "model");
  (void)yolose_py_attr (v, "weight");
  (void)yolose_py_is_class (v, NULL, "Model");
  if (v->kind == YOLOSE_PY_STORAGE)
    (void)yolose_dtype_name (v->v.storage.dtype);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  YolosePickle *pickle = yolose_pickle_parse (data, size, &error);
  GPtrArray *todo;
  GHashTable *seen;
  guint visits = 0;

  if (pickle == NULL) {
    if (error == NULL || error->message[0] == '\0')
      abort ();
    g_error_free (error);
    return 0;
  }
  todo = g_ptr_array_new ();
  seen = g_hash_table_new (NULL, NULL);
  g_ptr_array_add (todo, (gpointer)yolose_pickle_root (pickle));
  while (todo->len > 0 && visits++ < MAX_VISITS) {
    const YolosePyValue *v = g_ptr_array_steal_index_fast (todo, todo->len - 1);

    if (v == NULL || !g_hash_table_add (seen, (gpointer)v))
      continue;
    inspect (v);
    for (gsize i = 0; i < yolose_py_len (v); i++)
      g_ptr_array_add (todo, (gpointer)yolose_py_item (v, i));
    if (v->kind == YOLOSE_PY_DICT) {
      for (gsize i = 0; i < v->v.dict.len; i++) {
        g_ptr_array_add (todo, v->v.dict.keys[i]);
        g_ptr_array_add (todo, v->v.dict.values[i]);
      }
    } else if (v->kind == YOLOSE_PY_OBJECT) {
      g_ptr_array_add (todo, v->v.object.args);
      g_ptr_array_add (todo, v->v.object.state);
    } else if (v->kind == YOLOSE_PY_TENSOR) {
      g_ptr_array_add (todo, v->v.tensor.storage);
    }
  }
  g_hash_table_destroy (seen);
  g_ptr_array_free (todo, TRUE);
  yolose_pickle_free (pickle);
  return 0;
}
