/* yolose — a data-only reader for Python pickles (protocols 2–5).
 *
 * The unpickler mirrors CPython's: a loop over opcodes, one value stack, a
 * stack of MARK positions and a memo.  It never recurses, so a hostile
 * nesting depth costs heap, not C stack, and every resource it uses (input
 * size, values, container items, stack, marks, memo) has a fixed ceiling.
 *
 * Values live in blocks owned by the document; containers only point at
 * them.  That is what lets the memo share one value among many parents (and
 * lets a hostile pickle build cycles) without any reference counting: the
 * document frees every value exactly once, whatever points where. */
#include "pickle.h"

#include <string.h>

/* The upstream checkpoints' data.pkl are ~90 kB with ~37k opcodes, ~7k memo
 * entries and a stack that never holds more than a few hundred values.
 * Every ceiling below leaves at least 100x headroom while keeping the memory
 * a hostile file can make us allocate under about 1 GiB. */
#define MAX_INPUT_BYTES ((gsize)64 << 20)
#define MAX_VALUES ((gsize)4 << 20)
#define MAX_ITEMS ((gsize)16 << 20) /* container slots, all containers */
#define MAX_STACK ((gsize)1 << 20)
#define MAX_MARKS ((gsize)1 << 16)
#define MAX_MEMO ((gsize)4 << 20)
/* Bytes of str, bytes, global names and storage keys the document owns: a
 * memoised string can be reused as a GLOBAL name or storage key for a few
 * bytes of input each time, so copies are counted, not just input. */
#define MAX_TEXT_BYTES ((gsize)256 << 20)
/* Dict writes cost 1 plus the key bytes they hash or compare; bounds the
 * time of hostile BUILD merges and OrderedDict(pairs) replays to about a
 * second. */
#define MAX_DICT_WORK ((guint64)1 << 30)
#define MAX_LONG_BYTES 8

#define CELLS_PER_BLOCK 1024
/* Dicts with more keys than this get a hash index so that SETITEM stays
 * O(1) on a hostile million-key dict; small ones are scanned. */
#define DICT_INDEX_MIN_KEYS 16

enum {
  OP_MARK = 0x28,
  OP_STOP = 0x2e,
  OP_POP = 0x30,
  OP_POP_MARK = 0x31,
  OP_DUP = 0x32,
  OP_FLOAT = 0x46,
  OP_INT = 0x49,
  OP_BININT = 0x4a,
  OP_BININT1 = 0x4b,
  OP_LONG = 0x4c,
  OP_BININT2 = 0x4d,
  OP_NONE = 0x4e,
  OP_PERSID = 0x50,
  OP_BINPERSID = 0x51,
  OP_REDUCE = 0x52,
  OP_STRING = 0x53,
  OP_BINSTRING = 0x54,
  OP_SHORT_BINSTRING = 0x55,
  OP_UNICODE = 0x56,
  OP_BINUNICODE = 0x58,
  OP_APPEND = 0x61,
  OP_BUILD = 0x62,
  OP_GLOBAL = 0x63,
  OP_DICT = 0x64,
  OP_EMPTY_DICT = 0x7d,
  OP_APPENDS = 0x65,
  OP_GET = 0x67,
  OP_BINGET = 0x68,
  OP_INST = 0x69,
  OP_LONG_BINGET = 0x6a,
  OP_LIST = 0x6c,
  OP_EMPTY_LIST = 0x5d,
  OP_OBJ = 0x6f,
  OP_PUT = 0x70,
  OP_BINPUT = 0x71,
  OP_LONG_BINPUT = 0x72,
  OP_SETITEM = 0x73,
  OP_TUPLE = 0x74,
  OP_EMPTY_TUPLE = 0x29,
  OP_SETITEMS = 0x75,
  OP_BINFLOAT = 0x47,
  OP_PROTO = 0x80,
  OP_NEWOBJ = 0x81,
  OP_EXT1 = 0x82,
  OP_EXT2 = 0x83,
  OP_EXT4 = 0x84,
  OP_TUPLE1 = 0x85,
  OP_TUPLE2 = 0x86,
  OP_TUPLE3 = 0x87,
  OP_NEWTRUE = 0x88,
  OP_NEWFALSE = 0x89,
  OP_LONG1 = 0x8a,
  OP_LONG4 = 0x8b,
  OP_BINBYTES = 0x42,
  OP_SHORT_BINBYTES = 0x43,
  OP_SHORT_BINUNICODE = 0x8c,
  OP_BINUNICODE8 = 0x8d,
  OP_BINBYTES8 = 0x8e,
  OP_EMPTY_SET = 0x8f,
  OP_ADDITEMS = 0x90,
  OP_FROZENSET = 0x91,
  OP_NEWOBJ_EX = 0x92,
  OP_STACK_GLOBAL = 0x93,
  OP_MEMOIZE = 0x94,
  OP_FRAME = 0x95,
  OP_BYTEARRAY8 = 0x96,
  OP_NEXT_BUFFER = 0x97,
  OP_READONLY_BUFFER = 0x98,
};

/* A value plus what only the parser needs.  The value comes first so a
 * cell pointer is a value pointer; only values the parser made are ever
 * cast back. */
typedef struct {
  YolosePyValue value;
  GHashTable *dict_index; /* key value -> position + 1, big dicts */
} PyCell;

struct _YolosePickle {
  GPtrArray *blocks; /* of PyCell[CELLS_PER_BLOCK] */
  gsize cells_used_in_last_block;
  gsize n_values;
  gsize n_items;
  gsize text_bytes;
  YolosePyValue *none; /* immutable singletons */
  YolosePyValue *true_value;
  YolosePyValue *false_value;
  YolosePyValue *root;
};

typedef struct {
  YolosePickle *doc;
  const guint8 *data;
  gsize len;
  gsize pos;
  gsize op_offset;
  guint8 op;
  GPtrArray *stack;
  GArray *marks;   /* of gsize: stack length at each MARK */
  GPtrArray *memo; /* NULL slots are unset */
  gsize memo_count;
  guint64 dict_work;
  YolosePyValue *result;
  GError **error;
} Unpickler;

/* clang-format off */
G_DEFINE_QUARK (yolose-pickle-error-quark, yolose_pickle_error);
/* clang-format on */

static const char *
opcode_name (guint8 op)
{
  static const char *const names[256] = {
    [OP_MARK] = "MARK",
    [OP_STOP] = "STOP",
    [OP_POP] = "POP",
    [OP_POP_MARK] = "POP_MARK",
    [OP_DUP] = "DUP",
    [OP_FLOAT] = "FLOAT",
    [OP_INT] = "INT",
    [OP_BININT] = "BININT",
    [OP_BININT1] = "BININT1",
    [OP_LONG] = "LONG",
    [OP_BININT2] = "BININT2",
    [OP_NONE] = "NONE",
    [OP_PERSID] = "PERSID",
    [OP_BINPERSID] = "BINPERSID",
    [OP_REDUCE] = "REDUCE",
    [OP_STRING] = "STRING",
    [OP_BINSTRING] = "BINSTRING",
    [OP_SHORT_BINSTRING] = "SHORT_BINSTRING",
    [OP_UNICODE] = "UNICODE",
    [OP_BINUNICODE] = "BINUNICODE",
    [OP_APPEND] = "APPEND",
    [OP_BUILD] = "BUILD",
    [OP_GLOBAL] = "GLOBAL",
    [OP_DICT] = "DICT",
    [OP_EMPTY_DICT] = "EMPTY_DICT",
    [OP_APPENDS] = "APPENDS",
    [OP_GET] = "GET",
    [OP_BINGET] = "BINGET",
    [OP_INST] = "INST",
    [OP_LONG_BINGET] = "LONG_BINGET",
    [OP_LIST] = "LIST",
    [OP_EMPTY_LIST] = "EMPTY_LIST",
    [OP_OBJ] = "OBJ",
    [OP_PUT] = "PUT",
    [OP_BINPUT] = "BINPUT",
    [OP_LONG_BINPUT] = "LONG_BINPUT",
    [OP_SETITEM] = "SETITEM",
    [OP_TUPLE] = "TUPLE",
    [OP_EMPTY_TUPLE] = "EMPTY_TUPLE",
    [OP_SETITEMS] = "SETITEMS",
    [OP_BINFLOAT] = "BINFLOAT",
    [OP_PROTO] = "PROTO",
    [OP_NEWOBJ] = "NEWOBJ",
    [OP_EXT1] = "EXT1",
    [OP_EXT2] = "EXT2",
    [OP_EXT4] = "EXT4",
    [OP_TUPLE1] = "TUPLE1",
    [OP_TUPLE2] = "TUPLE2",
    [OP_TUPLE3] = "TUPLE3",
    [OP_NEWTRUE] = "NEWTRUE",
    [OP_NEWFALSE] = "NEWFALSE",
    [OP_LONG1] = "LONG1",
    [OP_LONG4] = "LONG4",
    [OP_BINBYTES] = "BINBYTES",
    [OP_SHORT_BINBYTES] = "SHORT_BINBYTES",
    [OP_SHORT_BINUNICODE] = "SHORT_BINUNICODE",
    [OP_BINUNICODE8] = "BINUNICODE8",
    [OP_BINBYTES8] = "BINBYTES8",
    [OP_EMPTY_SET] = "EMPTY_SET",
    [OP_ADDITEMS] = "ADDITEMS",
    [OP_FROZENSET] = "FROZENSET",
    [OP_NEWOBJ_EX] = "NEWOBJ_EX",
    [OP_STACK_GLOBAL] = "STACK_GLOBAL",
    [OP_MEMOIZE] = "MEMOIZE",
    [OP_FRAME] = "FRAME",
    [OP_BYTEARRAY8] = "BYTEARRAY8",
    [OP_NEXT_BUFFER] = "NEXT_BUFFER",
    [OP_READONLY_BUFFER] = "READONLY_BUFFER",
  };

  return names[op] ? names[op] : "unknown";
}

static gboolean fail (Unpickler *u, YolosePickleError code, const char *format,
    ...) G_GNUC_PRINTF (3, 4);

static YolosePyValue *fail_value (Unpickler *u, YolosePickleError code,
    const char *format, ...) G_GNUC_PRINTF (3, 4);

static void set_error (Unpickler *u, YolosePickleError code, const char *format,
    va_list args) G_GNUC_PRINTF (3, 0);

static void
set_error (Unpickler *u, YolosePickleError code, const char *format,
    va_list args)
{
  char *cause = g_strdup_vprintf (format, args);

  g_set_error (u->error, YOLOSE_PICKLE_ERROR, code,
      "%s (opcode 0x%02x %s at offset %" G_GSIZE_FORMAT ")", cause, u->op,
      opcode_name (u->op), u->op_offset);
  g_free (cause);
}

/* Always returns FALSE so handlers can `return fail (...)`.  The helpers
 * that hand back values through pointers (take, pop, pop_mark, ...) call
 * it and then return FALSE themselves: clang's analyzer does not follow
 * variadic calls, took `return fail (...)` for a possible success, and
 * saw their callers read outputs never set (20 reports). */
static gboolean
fail (Unpickler *u, YolosePickleError code, const char *format, ...)
{
  va_list args;

  va_start (args, format);
  set_error (u, code, format, args);
  va_end (args);
  return FALSE;
}

/* The same for constructors, which return the value they made. */
static YolosePyValue *
fail_value (Unpickler *u, YolosePickleError code, const char *format, ...)
{
  va_list args;

  va_start (args, format);
  set_error (u, code, format, args);
  va_end (args);
  return NULL;
}

/* ---- The document: value blocks -------------------------------------- */

static void
cell_clear (PyCell *cell)
{
  YolosePyValue *v = &cell->value;

  switch (v->kind) {
    case YOLOSE_PY_STRING:
    case YOLOSE_PY_BYTES:
      g_free (v->v.str.data);
      break;
    case YOLOSE_PY_LIST:
    case YOLOSE_PY_TUPLE:
      g_free (v->v.seq.items);
      break;
    case YOLOSE_PY_DICT:
      g_free (v->v.dict.keys);
      g_free (v->v.dict.values);
      break;
    case YOLOSE_PY_GLOBAL:
      g_free (v->v.global.module);
      g_free (v->v.global.name);
      break;
    case YOLOSE_PY_STORAGE:
      g_free (v->v.storage.key);
      break;
    default:
      /* OBJECT borrows its class names from its GLOBAL value. */
      break;
  }
  if (cell->dict_index != NULL)
    g_hash_table_destroy (cell->dict_index);
}

static void
block_free (gpointer block)
{
  PyCell *cells = block;

  /* Unused cells are zeroed: kind NONE, nothing to free. */
  for (gsize i = 0; i < CELLS_PER_BLOCK; i++)
    cell_clear (&cells[i]);
  g_free (cells);
}

void
yolose_pickle_free (YolosePickle *pickle)
{
  if (pickle == NULL)
    return;
  g_ptr_array_free (pickle->blocks, TRUE);
  g_free (pickle);
}

static YolosePickle *
document_new (void)
{
  YolosePickle *doc = g_new0 (YolosePickle, 1);

  doc->blocks = g_ptr_array_new_with_free_func (block_free);
  doc->cells_used_in_last_block = CELLS_PER_BLOCK;
  return doc;
}

static YolosePyValue *
new_value (Unpickler *u, YolosePyKind kind)
{
  YolosePickle *doc = u->doc;
  PyCell *block;
  PyCell *cell;

  if (doc->n_values >= MAX_VALUES) {
    fail (u, YOLOSE_PICKLE_ERROR_LIMIT,
        "pickle has more than %" G_GSIZE_FORMAT " values", MAX_VALUES);
    return NULL;
  }
  if (doc->cells_used_in_last_block == CELLS_PER_BLOCK) {
    g_ptr_array_add (doc->blocks, g_new0 (PyCell, CELLS_PER_BLOCK));
    doc->cells_used_in_last_block = 0;
  }
  block = g_ptr_array_index (doc->blocks, doc->blocks->len - 1);
  cell = &block[doc->cells_used_in_last_block++];
  doc->n_values++;
  cell->value.kind = kind;
  return &cell->value;
}

static YolosePyValue *
singleton (Unpickler *u, YolosePyValue **slot, YolosePyKind kind,
    gboolean boolean)
{
  if (*slot == NULL) {
    *slot = new_value (u, kind);
    if (*slot != NULL)
      (*slot)->v.boolean = boolean;
  }
  return *slot;
}

/* Reserves @count more container slots from the document-wide budget. */
static gboolean
reserve_items (Unpickler *u, gsize count)
{
  if (count > MAX_ITEMS - u->doc->n_items)
    return fail (u, YOLOSE_PICKLE_ERROR_LIMIT,
        "pickle containers hold more than %" G_GSIZE_FORMAT " items",
        MAX_ITEMS);
  u->doc->n_items += count;
  return TRUE;
}

static gboolean
reserve_text (Unpickler *u, gsize len)
{
  if (len > MAX_TEXT_BYTES - u->doc->text_bytes)
    return fail (u, YOLOSE_PICKLE_ERROR_LIMIT,
        "pickle strings total more than %" G_GSIZE_FORMAT " bytes",
        MAX_TEXT_BYTES);
  u->doc->text_bytes += len;
  return TRUE;
}

/* Grows an array of pointers to hold @needed; capacities stay below
 * MAX_ITEMS, so doubling cannot overflow. */
static void
grow_pointers (YolosePyValue ***array, gsize *cap, gsize needed)
{
  gsize new_cap = MAX (*cap, 4);

  if (needed <= *cap)
    return;
  while (new_cap < needed)
    new_cap *= 2;
  *array = g_renew (YolosePyValue *, *array, new_cap);
  *cap = new_cap;
}

static gboolean
seq_append_many (Unpickler *u, YolosePyValue *seq, YolosePyValue **items,
    gsize count)
{
  if (!reserve_items (u, count))
    return FALSE;
  grow_pointers (&seq->v.seq.items, &seq->v.seq.cap, seq->v.seq.len + count);
  if (count > 0)
    memcpy (seq->v.seq.items + seq->v.seq.len, items,
        count * sizeof (YolosePyValue *));
  seq->v.seq.len += count;
  return TRUE;
}

static YolosePyValue *
new_seq (Unpickler *u, YolosePyKind kind, YolosePyValue **items, gsize count)
{
  YolosePyValue *seq = new_value (u, kind);

  if (seq == NULL || !seq_append_many (u, seq, items, count))
    return NULL;
  return seq;
}

static YolosePyValue *
new_text (Unpickler *u, YolosePyKind kind, const guint8 *bytes, gsize len)
{
  YolosePyValue *value;

  if (!reserve_text (u, len))
    return NULL;
  if (kind == YOLOSE_PY_STRING
      && !g_utf8_validate_len ((const char *)bytes, len, NULL))
    return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "string of %" G_GSIZE_FORMAT " bytes is not valid UTF-8", len);
  value = new_value (u, kind);
  if (value == NULL)
    return NULL;
  /* NUL-terminated for convenience; len + 1 cannot overflow since len is
   * at most the input size. */
  value->v.str.data = g_malloc (len + 1);
  if (len > 0)
    memcpy (value->v.str.data, bytes, len);
  value->v.str.data[len] = '\0';
  value->v.str.len = len;
  return value;
}

/* ---- Dicts: insertion order, str/int/bytes keys unique ---------------- */

static gboolean
key_is_hashable (const YolosePyValue *key)
{
  return key->kind == YOLOSE_PY_STRING || key->kind == YOLOSE_PY_BYTES
      || key->kind == YOLOSE_PY_INT;
}

static guint
key_hash (gconstpointer data)
{
  const YolosePyValue *key = data;
  guint32 hash = 2166136261u; /* FNV-1a */
  const guint8 *bytes;
  gsize len;

  if (key->kind == YOLOSE_PY_INT) {
    bytes = (const guint8 *)&key->v.integer;
    len = sizeof key->v.integer;
  } else {
    bytes = (const guint8 *)key->v.str.data;
    len = key->v.str.len;
  }
  for (gsize i = 0; i < len; i++)
    hash = (hash ^ bytes[i]) * 16777619u;
  return hash ^ (guint)key->kind;
}

static gboolean
key_equal (gconstpointer a_data, gconstpointer b_data)
{
  const YolosePyValue *a = a_data;
  const YolosePyValue *b = b_data;

  if (a->kind != b->kind || !key_is_hashable (a))
    return a == b;
  if (a->kind == YOLOSE_PY_INT)
    return a->v.integer == b->v.integer;
  return a->v.str.len == b->v.str.len
      && memcmp (a->v.str.data, b->v.str.data, a->v.str.len) == 0;
}

static void
dict_build_index (PyCell *cell)
{
  YolosePyValue *dict = &cell->value;

  cell->dict_index = g_hash_table_new (key_hash, key_equal);
  for (gsize i = 0; i < dict->v.dict.len; i++)
    if (key_is_hashable (dict->v.dict.keys[i]))
      g_hash_table_insert (cell->dict_index, dict->v.dict.keys[i],
          GSIZE_TO_POINTER (i + 1));
}

/* Position of @key in @cell's dict, or -1. */
static gssize
dict_find (PyCell *cell, const YolosePyValue *key)
{
  const YolosePyValue *dict = &cell->value;
  gpointer found;

  if (!key_is_hashable (key))
    return -1;
  if (cell->dict_index != NULL) {
    found = g_hash_table_lookup (cell->dict_index, key);
    return found ? (gssize)GPOINTER_TO_SIZE (found) - 1 : -1;
  }
  for (gsize i = 0; i < dict->v.dict.len; i++)
    if (key_equal (dict->v.dict.keys[i], key))
      return (gssize)i;
  return -1;
}

/* Counts what dict_find will cost: hashing plus one comparison with an
 * index, else a comparison with each key. */
static gboolean
charge_dict_work (Unpickler *u, PyCell *cell, const YolosePyValue *key)
{
  guint64 key_bytes = 0;
  guint64 compares = cell->dict_index ? 2 : cell->value.v.dict.len + 1;

  if (key->kind == YOLOSE_PY_STRING || key->kind == YOLOSE_PY_BYTES)
    key_bytes = key->v.str.len;
  /* key_bytes <= 2^26 and compares <= 17: no overflow. */
  u->dict_work += 1 + key_bytes * compares;
  if (u->dict_work > MAX_DICT_WORK)
    return fail (u, YOLOSE_PICKLE_ERROR_LIMIT,
        "pickle dict updates exceed the work limit");
  return TRUE;
}

/* Python semantics: a key already present keeps its place and gets the
 * new value. */
static gboolean
dict_set (Unpickler *u, YolosePyValue *dict, YolosePyValue *key,
    YolosePyValue *value)
{
  PyCell *cell = (PyCell *)dict;
  gsize len = dict->v.dict.len;
  gsize cap = dict->v.dict.cap;
  gssize at;

  if (!charge_dict_work (u, cell, key))
    return FALSE;
  at = dict_find (cell, key);
  if (at >= 0) {
    dict->v.dict.values[at] = value;
    return TRUE;
  }
  if (!reserve_items (u, 2))
    return FALSE;
  grow_pointers (&dict->v.dict.keys, &cap, len + 1);
  grow_pointers (&dict->v.dict.values, &dict->v.dict.cap, len + 1);
  dict->v.dict.keys[len] = key;
  dict->v.dict.values[len] = value;
  dict->v.dict.len = len + 1;
  if (cell->dict_index != NULL && key_is_hashable (key))
    g_hash_table_insert (cell->dict_index, key, GSIZE_TO_POINTER (len + 1));
  else if (cell->dict_index == NULL && len + 1 > DICT_INDEX_MIN_KEYS)
    dict_build_index (cell);
  return TRUE;
}

static gboolean
dict_set_pairs (Unpickler *u, YolosePyValue *dict, YolosePyValue **pairs,
    gsize count)
{
  if (count % 2 != 0)
    return fail (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "odd number of stack items (%" G_GSIZE_FORMAT ") for key/value pairs",
        count);
  for (gsize i = 0; i < count; i += 2)
    if (!dict_set (u, dict, pairs[i], pairs[i + 1]))
      return FALSE;
  return TRUE;
}

/* ---- Input ------------------------------------------------------------ */

static gboolean
take (Unpickler *u, guint64 count, const guint8 **out)
{
  *out = NULL;
  if (count > u->len - u->pos) {
    fail (u, YOLOSE_PICKLE_ERROR_TRUNCATED,
        "pickle truncated: needs %" G_GUINT64_FORMAT " bytes, %" G_GSIZE_FORMAT
        " left",
        count, u->len - u->pos);
    return FALSE;
  }
  *out = u->data + u->pos;
  u->pos += count;
  return TRUE;
}

/* Little-endian unsigned integer of @size bytes (1 to 8). */
static gboolean
take_uint_le (Unpickler *u, guint size, guint64 *out)
{
  const guint8 *bytes;

  *out = 0;
  if (!take (u, size, &bytes))
    return FALSE;
  for (guint i = 0; i < size; i++)
    *out |= (guint64)bytes[i] << (8 * i);
  return TRUE;
}

/* A '\n'-terminated line (GLOBAL's module and name), without the '\n'. */
static gboolean
take_line (Unpickler *u, const guint8 **line, gsize *len)
{
  const guint8 *start = u->data + u->pos;
  const guint8 *newline = memchr (start, '\n', u->len - u->pos);

  if (newline == NULL) {
    fail (u, YOLOSE_PICKLE_ERROR_TRUNCATED,
        "pickle truncated: line without newline");
    return FALSE;
  }
  *line = start;
  *len = (gsize)(newline - start);
  u->pos += *len + 1;
  return TRUE;
}

/* ---- Stack ------------------------------------------------------------ */

static gsize
frame_base (Unpickler *u)
{
  return u->marks->len ? g_array_index (u->marks, gsize, u->marks->len - 1) : 0;
}

static gboolean
push (Unpickler *u, YolosePyValue *value)
{
  if (value == NULL)
    return FALSE; /* its constructor has set the error */
  if (u->stack->len >= MAX_STACK)
    return fail (u, YOLOSE_PICKLE_ERROR_LIMIT,
        "pickle stack deeper than %" G_GSIZE_FORMAT, MAX_STACK);
  g_ptr_array_add (u->stack, value);
  return TRUE;
}

static gboolean
pop (Unpickler *u, YolosePyValue **out)
{
  *out = NULL;
  if (u->stack->len <= frame_base (u)) {
    fail (u, YOLOSE_PICKLE_ERROR_MALFORMED, "pickle stack underflow");
    return FALSE;
  }
  *out = g_ptr_array_index (u->stack, u->stack->len - 1);
  g_ptr_array_set_size (u->stack, u->stack->len - 1);
  return TRUE;
}

static gboolean
peek (Unpickler *u, YolosePyValue **out)
{
  *out = NULL;
  if (u->stack->len <= frame_base (u)) {
    fail (u, YOLOSE_PICKLE_ERROR_MALFORMED, "pickle stack underflow");
    return FALSE;
  }
  *out = g_ptr_array_index (u->stack, u->stack->len - 1);
  return TRUE;
}

/* Closes the innermost MARK: the values above it are stack[*base...],
 * @count of them.  The caller drops them with drop_to(). */
static gboolean
pop_mark (Unpickler *u, gsize *base, gsize *count)
{
  if (u->marks->len == 0) {
    fail (u, YOLOSE_PICKLE_ERROR_MALFORMED, "no MARK on the stack");
    return FALSE;
  }
  *base = g_array_index (u->marks, gsize, u->marks->len - 1);
  g_array_set_size (u->marks, u->marks->len - 1);
  *count = u->stack->len - *base;
  return TRUE;
}

static YolosePyValue **
stack_at (Unpickler *u, gsize index)
{
  return (YolosePyValue **)u->stack->pdata + index;
}

static void
drop_to (Unpickler *u, gsize base)
{
  g_ptr_array_set_size (u->stack, base);
}

/* ---- Opcodes: scalars ------------------------------------------------- */

static gboolean
push_int (Unpickler *u, gint64 integer)
{
  YolosePyValue *value = new_value (u, YOLOSE_PY_INT);

  if (value != NULL)
    value->v.integer = integer;
  return push (u, value);
}

static gboolean
op_binint (Unpickler *u, guint size, gboolean is_signed)
{
  guint64 raw;

  if (!take_uint_le (u, size, &raw))
    return FALSE;
  if (is_signed) /* BININT: 32-bit two's complement */
    return push_int (u,
        raw >= 0x80000000u ? (gint64)raw - 0x100000000 : (gint64)raw);
  return push_int (u, (gint64)raw);
}

/* LONG1/LONG4: little-endian two's complement of @len_size-byte length. */
static gboolean
op_long (Unpickler *u, guint len_size)
{
  guint64 nbytes, raw;

  if (!take_uint_le (u, len_size, &nbytes))
    return FALSE;
  if (nbytes > MAX_LONG_BYTES)
    return fail (u, YOLOSE_PICKLE_ERROR_LIMIT,
        "integer of %" G_GUINT64_FORMAT " bytes does not fit in 64 bits",
        nbytes);
  if (nbytes == 0)
    return push_int (u, 0);
  if (!take_uint_le (u, (guint)nbytes, &raw))
    return FALSE;
  if (nbytes < 8 && (raw >> (8 * nbytes - 1)) & 1)
    raw |= G_MAXUINT64 << (8 * nbytes); /* sign-extend */
  /* Two's complement to signed without implementation-defined casts. */
  return push_int (u,
      raw > (guint64)G_MAXINT64 ? -(gint64)(~raw) - 1 : (gint64)raw);
}

static gboolean
op_binfloat (Unpickler *u)
{
  const guint8 *bytes;
  guint64 bits = 0;
  YolosePyValue *value;

  if (!take (u, 8, &bytes))
    return FALSE;
  for (int i = 0; i < 8; i++) /* big-endian */
    bits = (bits << 8) | bytes[i];
  value = new_value (u, YOLOSE_PY_FLOAT);
  if (value != NULL)
    memcpy (&value->v.real, &bits, sizeof bits);
  return push (u, value);
}

static gboolean
op_text (Unpickler *u, YolosePyKind kind, guint len_size)
{
  guint64 len;
  const guint8 *bytes;

  if (!take_uint_le (u, len_size, &len) || !take (u, len, &bytes))
    return FALSE;
  return push (u, new_text (u, kind, bytes, (gsize)len));
}

static gboolean
op_proto (Unpickler *u)
{
  guint64 version;

  if (!take_uint_le (u, 1, &version))
    return FALSE;
  if (version < 2 || version > 5)
    return fail (u, YOLOSE_PICKLE_ERROR_UNSUPPORTED_OPCODE,
        "pickle protocol %" G_GUINT64_FORMAT " is not supported (2 to 5 are)",
        version);
  return TRUE;
}

/* FRAME only announces how many bytes the next opcodes take. */
static gboolean
op_frame (Unpickler *u)
{
  guint64 frame_len;

  if (!take_uint_le (u, 8, &frame_len))
    return FALSE;
  if (frame_len > u->len - u->pos)
    return fail (u, YOLOSE_PICKLE_ERROR_TRUNCATED,
        "pickle truncated: frame of %" G_GUINT64_FORMAT
        " bytes, %" G_GSIZE_FORMAT " left",
        frame_len, u->len - u->pos);
  return TRUE;
}

/* ---- Opcodes: containers ---------------------------------------------- */

static gboolean
op_tuple_n (Unpickler *u, gsize count)
{
  gsize base = frame_base (u);

  if (u->stack->len - base < count)
    return fail (u, YOLOSE_PICKLE_ERROR_MALFORMED, "pickle stack underflow");
  base = u->stack->len - count;
  if (!push (u, new_seq (u, YOLOSE_PY_TUPLE, stack_at (u, base), count)))
    return FALSE;
  /* Move the new tuple down over its items. */
  *stack_at (u, base) = *stack_at (u, u->stack->len - 1);
  drop_to (u, base + 1);
  return TRUE;
}

/* TUPLE, LIST, FROZENSET: a new sequence of the values above the MARK. */
static gboolean
op_seq_from_mark (Unpickler *u, YolosePyKind kind)
{
  gsize base, count;
  YolosePyValue *seq;

  if (!pop_mark (u, &base, &count))
    return FALSE;
  seq = new_seq (u, kind, stack_at (u, base), count);
  drop_to (u, base);
  return push (u, seq);
}

static gboolean
op_dict_from_mark (Unpickler *u)
{
  gsize base, count;
  YolosePyValue *dict;

  if (!pop_mark (u, &base, &count))
    return FALSE;
  dict = new_value (u, YOLOSE_PY_DICT);
  if (dict == NULL || !dict_set_pairs (u, dict, stack_at (u, base), count))
    return FALSE;
  drop_to (u, base);
  return push (u, dict);
}

static gboolean
expect_kind (Unpickler *u, const YolosePyValue *target, YolosePyKind kind)
{
  if (target->kind != kind)
    return fail (u, YOLOSE_PICKLE_ERROR_MALFORMED, "target is a %s, not a %s",
        yolose_py_kind_name (target->kind), yolose_py_kind_name (kind));
  return TRUE;
}

static gboolean
op_append (Unpickler *u)
{
  YolosePyValue *item, *list;

  if (!pop (u, &item) || !peek (u, &list)
      || !expect_kind (u, list, YOLOSE_PY_LIST))
    return FALSE;
  return seq_append_many (u, list, &item, 1);
}

/* APPENDS and ADDITEMS (sets are lists here). */
static gboolean
op_appends (Unpickler *u)
{
  gsize base, count;
  YolosePyValue *list;

  if (!pop_mark (u, &base, &count))
    return FALSE;
  if (base <= frame_base (u))
    return fail (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "nothing below the MARK to append to");
  list = *stack_at (u, base - 1);
  if (!expect_kind (u, list, YOLOSE_PY_LIST)
      || !seq_append_many (u, list, stack_at (u, base), count))
    return FALSE;
  drop_to (u, base);
  return TRUE;
}

static gboolean
op_setitem (Unpickler *u)
{
  YolosePyValue *key, *value, *dict;

  if (!pop (u, &value) || !pop (u, &key) || !peek (u, &dict)
      || !expect_kind (u, dict, YOLOSE_PY_DICT))
    return FALSE;
  return dict_set (u, dict, key, value);
}

static gboolean
op_setitems (Unpickler *u)
{
  gsize base, count;
  YolosePyValue *dict;

  if (!pop_mark (u, &base, &count))
    return FALSE;
  if (base <= frame_base (u))
    return fail (u, YOLOSE_PICKLE_ERROR_MALFORMED, "no dict below the MARK");
  dict = *stack_at (u, base - 1);
  if (!expect_kind (u, dict, YOLOSE_PY_DICT)
      || !dict_set_pairs (u, dict, stack_at (u, base), count))
    return FALSE;
  drop_to (u, base);
  return TRUE;
}

static gboolean
op_mark (Unpickler *u)
{
  gsize len = u->stack->len;

  if (u->marks->len >= MAX_MARKS)
    return fail (u, YOLOSE_PICKLE_ERROR_LIMIT,
        "more than %" G_GSIZE_FORMAT " nested MARKs", MAX_MARKS);
  g_array_append_val (u->marks, len);
  return TRUE;
}

/* CPython: POP on an empty frame removes the MARK instead. */
static gboolean
op_pop (Unpickler *u)
{
  YolosePyValue *ignored;
  gsize base, count;

  if (u->stack->len > frame_base (u))
    return pop (u, &ignored);
  return pop_mark (u, &base, &count);
}

static gboolean
op_pop_mark (Unpickler *u)
{
  gsize base, count;

  if (!pop_mark (u, &base, &count))
    return FALSE;
  drop_to (u, base);
  return TRUE;
}

/* ---- Opcodes: memo ---------------------------------------------------- */

static gboolean
memo_put (Unpickler *u, guint64 index)
{
  YolosePyValue *value;

  if (!peek (u, &value))
    return FALSE;
  if (index >= MAX_MEMO)
    return fail (u, YOLOSE_PICKLE_ERROR_LIMIT,
        "memo index %" G_GUINT64_FORMAT
        " exceeds the limit of %" G_GSIZE_FORMAT,
        index, MAX_MEMO);
  if (index >= u->memo->len)
    g_ptr_array_set_size (u->memo, (guint)index + 1);
  if (g_ptr_array_index (u->memo, index) == NULL)
    u->memo_count++;
  g_ptr_array_index (u->memo, index) = value;
  return TRUE;
}

static gboolean
op_put (Unpickler *u, guint index_size)
{
  guint64 index;

  return take_uint_le (u, index_size, &index) && memo_put (u, index);
}

static gboolean
op_get (Unpickler *u, guint index_size)
{
  guint64 index;

  if (!take_uint_le (u, index_size, &index))
    return FALSE;
  if (index >= u->memo->len || g_ptr_array_index (u->memo, index) == NULL)
    return fail (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "memo index %" G_GUINT64_FORMAT " is not set", index);
  return push (u, g_ptr_array_index (u->memo, index));
}

/* ---- Opcodes: globals and the data constructors ----------------------- */

static YolosePyValue *
new_global (Unpickler *u, const guint8 *module, gsize module_len,
    const guint8 *name, gsize name_len)
{
  YolosePyValue *global;

  /* Both lengths are at most the input size: no overflow. */
  if (!reserve_text (u, module_len + name_len))
    return NULL;
  if (!g_utf8_validate_len ((const char *)module, module_len, NULL)
      || !g_utf8_validate_len ((const char *)name, name_len, NULL)
      || memchr (module, '\0', module_len) || memchr (name, '\0', name_len))
    return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "global name is not valid text");
  global = new_value (u, YOLOSE_PY_GLOBAL);
  if (global == NULL)
    return NULL;
  global->v.global.module = g_strndup ((const char *)module, module_len);
  global->v.global.name = g_strndup ((const char *)name, name_len);
  return global;
}

static gboolean
op_global (Unpickler *u)
{
  const guint8 *module, *name;
  gsize module_len, name_len;

  if (!take_line (u, &module, &module_len) || !take_line (u, &name, &name_len))
    return FALSE;
  return push (u, new_global (u, module, module_len, name, name_len));
}

static gboolean
op_stack_global (Unpickler *u)
{
  YolosePyValue *module, *name;

  if (!pop (u, &name) || !pop (u, &module))
    return FALSE;
  if (module->kind != YOLOSE_PY_STRING || name->kind != YOLOSE_PY_STRING)
    return fail (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "STACK_GLOBAL needs two strings, got %s and %s",
        yolose_py_kind_name (module->kind), yolose_py_kind_name (name->kind));
  return push (u,
      new_global (u, (const guint8 *)module->v.str.data, module->v.str.len,
          (const guint8 *)name->v.str.data, name->v.str.len));
}

static gboolean
global_is (const YolosePyValue *global, const char *module, const char *name)
{
  return strcmp (global->v.global.module, module) == 0
      && strcmp (global->v.global.name, name) == 0;
}

/* collections.OrderedDict() or OrderedDict([(key, value), ...]). */
static YolosePyValue *
make_ordered_dict (Unpickler *u, const YolosePyValue *args)
{
  YolosePyValue *dict = new_value (u, YOLOSE_PY_DICT);
  const YolosePyValue *pairs;

  if (dict == NULL || args->v.seq.len == 0)
    return dict;
  pairs = args->v.seq.items[0];
  if (args->v.seq.len != 1
      || (pairs->kind != YOLOSE_PY_LIST && pairs->kind != YOLOSE_PY_TUPLE))
    return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "OrderedDict arguments are not a list of pairs");
  for (gsize i = 0; i < pairs->v.seq.len; i++) {
    const YolosePyValue *pair = pairs->v.seq.items[i];
    if ((pair->kind != YOLOSE_PY_LIST && pair->kind != YOLOSE_PY_TUPLE)
        || pair->v.seq.len != 2)
      return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED,
          "OrderedDict item %" G_GSIZE_FORMAT " is not a pair", i);
    if (!dict_set (u, dict, pair->v.seq.items[0], pair->v.seq.items[1]))
      return NULL;
  }
  return dict;
}

/* set() / set(iterable) as a LIST copy of the iterable's items. */
static YolosePyValue *
make_set (Unpickler *u, const YolosePyValue *args)
{
  const YolosePyValue *items;

  if (args->v.seq.len == 0)
    return new_seq (u, YOLOSE_PY_LIST, NULL, 0);
  items = args->v.seq.items[0];
  if (args->v.seq.len != 1
      || (items->kind != YOLOSE_PY_LIST && items->kind != YOLOSE_PY_TUPLE))
    return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "set arguments are not a list");
  return new_seq (u, YOLOSE_PY_LIST, items->v.seq.items, items->v.seq.len);
}

static gboolean
int_tuple (Unpickler *u, const YolosePyValue *tuple, const char *what,
    gint64 *out)
{
  if (tuple->kind != YOLOSE_PY_TUPLE)
    return fail (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "tensor %s is a %s, not a tuple", what,
        yolose_py_kind_name (tuple->kind));
  if (tuple->v.seq.len > YOLOSE_TENSOR_MAX_DIMS)
    return fail (u, YOLOSE_PICKLE_ERROR_LIMIT,
        "tensor has %" G_GSIZE_FORMAT " dimensions, at most %d are supported",
        tuple->v.seq.len, YOLOSE_TENSOR_MAX_DIMS);
  for (gsize i = 0; i < tuple->v.seq.len; i++)
    if (!yolose_py_get_int (tuple->v.seq.items[i], &out[i]))
      return fail (u, YOLOSE_PICKLE_ERROR_MALFORMED,
          "tensor %s item %" G_GSIZE_FORMAT " is not an int", what, i);
  return TRUE;
}

/* _rebuild_tensor_v2 (storage, offset, size, stride, requires_grad,
 * backward_hooks[, metadata]).  The numbers are only type-checked here;
 * yolose_checkpoint_tensor_f32() checks them against the storage. */
static YolosePyValue *
make_tensor (Unpickler *u, const YolosePyValue *args)
{
  YolosePyValue *const *arg = args->v.seq.items;
  YolosePyValue *tensor;
  gint64 sizes[YOLOSE_TENSOR_MAX_DIMS], strides[YOLOSE_TENSOR_MAX_DIMS];
  gint64 offset;

  if (args->v.seq.len != 6 && args->v.seq.len != 7)
    return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "_rebuild_tensor_v2 takes 6 or 7 arguments, not %" G_GSIZE_FORMAT,
        args->v.seq.len);
  if (arg[0]->kind != YOLOSE_PY_STORAGE)
    return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "tensor storage is a %s", yolose_py_kind_name (arg[0]->kind));
  if (!yolose_py_get_int (arg[1], &offset))
    return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "tensor offset is not an int");
  if (!int_tuple (u, arg[2], "size", sizes)
      || !int_tuple (u, arg[3], "stride", strides))
    return NULL;
  if (arg[2]->v.seq.len != arg[3]->v.seq.len)
    return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "tensor has %" G_GSIZE_FORMAT " sizes but %" G_GSIZE_FORMAT " strides",
        arg[2]->v.seq.len, arg[3]->v.seq.len);
  tensor = new_value (u, YOLOSE_PY_TENSOR);
  if (tensor == NULL)
    return NULL;
  tensor->v.tensor.storage = arg[0];
  tensor->v.tensor.offset = offset;
  tensor->v.tensor.ndim = (int)arg[2]->v.seq.len;
  memcpy (tensor->v.tensor.sizes, sizes, sizeof sizes);
  memcpy (tensor->v.tensor.strides, strides, sizeof strides);
  return tensor;
}

static YolosePyValue *
make_object (Unpickler *u, const YolosePyValue *global, YolosePyValue *args)
{
  YolosePyValue *object = new_value (u, YOLOSE_PY_OBJECT);

  if (object == NULL)
    return NULL;
  object->v.object.module = global->v.global.module;
  object->v.object.name = global->v.global.name;
  object->v.object.args = args;
  return object;
}

/* What calling @callable (*@args) gives, for REDUCE and NEWOBJ. */
static YolosePyValue *
construct (Unpickler *u, YolosePyValue *callable, YolosePyValue *args)
{
  if (callable->kind != YOLOSE_PY_GLOBAL)
    return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED, "cannot call a %s",
        yolose_py_kind_name (callable->kind));
  if (args->kind != YOLOSE_PY_TUPLE)
    return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "call arguments are a %s, not a tuple",
        yolose_py_kind_name (args->kind));
  if (global_is (callable, "collections", "OrderedDict"))
    return make_ordered_dict (u, args);
  if (global_is (callable, "builtins", "set")
      || global_is (callable, "__builtin__", "set")
      || global_is (callable, "builtins", "frozenset")
      || global_is (callable, "__builtin__", "frozenset"))
    return make_set (u, args);
  if (global_is (callable, "torch._utils", "_rebuild_tensor_v2"))
    return make_tensor (u, args);
  if (global_is (callable, "torch._utils", "_rebuild_parameter")
      || global_is (callable, "torch._utils",
          "_rebuild_parameter_with_state")) {
    /* A Parameter is its data; whatever that is, the caller checks it. */
    if (args->v.seq.len < 1)
      return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED,
          "_rebuild_parameter without arguments");
    return args->v.seq.items[0];
  }
  return make_object (u, callable, args);
}

static gboolean
op_reduce (Unpickler *u)
{
  YolosePyValue *args, *callable;

  if (!pop (u, &args) || !pop (u, &callable))
    return FALSE;
  return push (u, construct (u, callable, args));
}

/* dict.update(): every pair of @source into @target. */
static gboolean
dict_update (Unpickler *u, YolosePyValue *target, const YolosePyValue *source)
{
  if (target == source)
    return TRUE;
  for (gsize i = 0; i < source->v.dict.len; i++)
    if (!dict_set (u, target, source->v.dict.keys[i], source->v.dict.values[i]))
      return FALSE;
  return TRUE;
}

static gboolean
op_build (Unpickler *u)
{
  YolosePyValue *state, *target;

  if (!pop (u, &state) || !peek (u, &target))
    return FALSE;
  if (target->kind == YOLOSE_PY_OBJECT) {
    YolosePyValue *old = target->v.object.state;
    /* Like object.__setstate__'s default: a dict state updates __dict__. */
    if (old != NULL && old->kind == YOLOSE_PY_DICT
        && state->kind == YOLOSE_PY_DICT)
      return dict_update (u, old, state);
    target->v.object.state = state;
    return TRUE;
  }
  if (target->kind == YOLOSE_PY_DICT && state->kind == YOLOSE_PY_DICT)
    return dict_update (u, target, state);
  return fail (u, YOLOSE_PICKLE_ERROR_MALFORMED,
      "BUILD with a %s state on a %s", yolose_py_kind_name (state->kind),
      yolose_py_kind_name (target->kind));
}

static gboolean
storage_dtype (const char *class_name, YoloseDType *dtype)
{
  static const struct {
    const char *name;
    YoloseDType dtype;
  } classes[] = {
    { "HalfStorage", YOLOSE_DTYPE_F16 },
    { "BFloat16Storage", YOLOSE_DTYPE_BF16 },
    { "FloatStorage", YOLOSE_DTYPE_F32 },
    { "DoubleStorage", YOLOSE_DTYPE_F64 },
    { "LongStorage", YOLOSE_DTYPE_I64 },
    { "IntStorage", YOLOSE_DTYPE_I32 },
    { "ByteStorage", YOLOSE_DTYPE_U8 },
    { "BoolStorage", YOLOSE_DTYPE_BOOL },
    /* torch 2.x raw storages: bytes, numel counted in bytes. */
    { "UntypedStorage", YOLOSE_DTYPE_U8 },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (classes); i++) {
    if (strcmp (class_name, classes[i].name) == 0) {
      *dtype = classes[i].dtype;
      return TRUE;
    }
  }
  return FALSE;
}

/* ('storage', torch.<X>Storage, key, location, numel) */
static YolosePyValue *
make_storage (Unpickler *u, const YolosePyValue *pid)
{
  const YolosePyValue *tag, *cls, *key;
  YolosePyValue *storage;
  YoloseDType dtype;
  gint64 numel;

  if (pid->kind != YOLOSE_PY_TUPLE || pid->v.seq.len != 5)
    return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "persistent id is not a 5-tuple");
  tag = pid->v.seq.items[0];
  cls = pid->v.seq.items[1];
  key = pid->v.seq.items[2];
  if (g_strcmp0 (yolose_py_get_string (tag), "storage") != 0)
    return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "persistent id is not a 'storage' id");
  if (cls->kind != YOLOSE_PY_GLOBAL
      || (strcmp (cls->v.global.module, "torch") != 0
          && strcmp (cls->v.global.module, "torch.cuda") != 0))
    return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "storage class is not a torch storage");
  if (!storage_dtype (cls->v.global.name, &dtype))
    return fail_value (u, YOLOSE_PICKLE_ERROR_UNSUPPORTED_OPCODE,
        "unsupported storage class %s.%s", cls->v.global.module,
        cls->v.global.name);
  if (key->kind == YOLOSE_PY_STRING && !reserve_text (u, key->v.str.len))
    return NULL;
  if (key->kind != YOLOSE_PY_STRING || key->v.str.len == 0
      || strlen (key->v.str.data) != key->v.str.len)
    return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "storage key is not a name");
  if (!yolose_py_get_int (pid->v.seq.items[4], &numel) || numel < 0)
    return fail_value (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "storage size is not a count");
  storage = new_value (u, YOLOSE_PY_STORAGE);
  if (storage == NULL)
    return NULL;
  storage->v.storage.dtype = dtype;
  storage->v.storage.key = g_strdup (key->v.str.data);
  storage->v.storage.numel = numel;
  return storage;
}

static gboolean
op_binpersid (Unpickler *u)
{
  YolosePyValue *pid;

  return pop (u, &pid) && push (u, make_storage (u, pid));
}

static gboolean
op_newobj (Unpickler *u)
{
  YolosePyValue *args, *cls;

  if (!pop (u, &args) || !pop (u, &cls))
    return FALSE;
  return push (u, construct (u, cls, args));
}

static gboolean
op_stop (Unpickler *u)
{
  if (u->marks->len != 0)
    return fail (u, YOLOSE_PICKLE_ERROR_MALFORMED, "STOP with %u MARKs open",
        u->marks->len);
  if (u->stack->len != 1)
    return fail (u, YOLOSE_PICKLE_ERROR_MALFORMED,
        "STOP with %u values on the stack, not 1", u->stack->len);
  u->result = g_ptr_array_index (u->stack, 0);
  return TRUE;
}

/* ---- The loop --------------------------------------------------------- */

static gboolean
step (Unpickler *u)
{
  switch (u->op) {
    case OP_PROTO:
      return op_proto (u);
    case OP_FRAME:
      return op_frame (u);
    case OP_STOP:
      return op_stop (u);
    case OP_MARK:
      return op_mark (u);
    case OP_POP:
      return op_pop (u);
    case OP_POP_MARK:
      return op_pop_mark (u);
    case OP_DUP: {
      YolosePyValue *top;
      return peek (u, &top) && push (u, top);
    }
    case OP_NONE:
      return push (u, singleton (u, &u->doc->none, YOLOSE_PY_NONE, FALSE));
    case OP_NEWTRUE:
      return push (u, singleton (u, &u->doc->true_value, YOLOSE_PY_BOOL, TRUE));
    case OP_NEWFALSE:
      return push (u,
          singleton (u, &u->doc->false_value, YOLOSE_PY_BOOL, FALSE));
    case OP_BININT:
      return op_binint (u, 4, TRUE);
    case OP_BININT1:
      return op_binint (u, 1, FALSE);
    case OP_BININT2:
      return op_binint (u, 2, FALSE);
    case OP_LONG1:
      return op_long (u, 1);
    case OP_LONG4:
      return op_long (u, 4);
    case OP_BINFLOAT:
      return op_binfloat (u);
    case OP_SHORT_BINUNICODE:
      return op_text (u, YOLOSE_PY_STRING, 1);
    case OP_BINUNICODE:
      return op_text (u, YOLOSE_PY_STRING, 4);
    case OP_BINUNICODE8:
      return op_text (u, YOLOSE_PY_STRING, 8);
    case OP_SHORT_BINBYTES:
      return op_text (u, YOLOSE_PY_BYTES, 1);
    case OP_BINBYTES:
      return op_text (u, YOLOSE_PY_BYTES, 4);
    case OP_BINBYTES8:
    case OP_BYTEARRAY8:
      return op_text (u, YOLOSE_PY_BYTES, 8);
    case OP_EMPTY_TUPLE:
      return push (u, new_seq (u, YOLOSE_PY_TUPLE, NULL, 0));
    case OP_TUPLE1:
      return op_tuple_n (u, 1);
    case OP_TUPLE2:
      return op_tuple_n (u, 2);
    case OP_TUPLE3:
      return op_tuple_n (u, 3);
    case OP_TUPLE:
      return op_seq_from_mark (u, YOLOSE_PY_TUPLE);
    case OP_EMPTY_LIST:
    case OP_EMPTY_SET:
      return push (u, new_seq (u, YOLOSE_PY_LIST, NULL, 0));
    case OP_LIST:
    case OP_FROZENSET:
      return op_seq_from_mark (u, YOLOSE_PY_LIST);
    case OP_EMPTY_DICT:
      return push (u, new_value (u, YOLOSE_PY_DICT));
    case OP_DICT:
      return op_dict_from_mark (u);
    case OP_APPEND:
      return op_append (u);
    case OP_APPENDS:
    case OP_ADDITEMS:
      return op_appends (u);
    case OP_SETITEM:
      return op_setitem (u);
    case OP_SETITEMS:
      return op_setitems (u);
    case OP_BINPUT:
      return op_put (u, 1);
    case OP_LONG_BINPUT:
      return op_put (u, 4);
    case OP_MEMOIZE:
      return memo_put (u, u->memo_count);
    case OP_BINGET:
      return op_get (u, 1);
    case OP_LONG_BINGET:
      return op_get (u, 4);
    case OP_GLOBAL:
      return op_global (u);
    case OP_STACK_GLOBAL:
      return op_stack_global (u);
    case OP_REDUCE:
      return op_reduce (u);
    case OP_NEWOBJ:
      return op_newobj (u);
    case OP_BUILD:
      return op_build (u);
    case OP_BINPERSID:
      return op_binpersid (u);
    default:
      g_set_error (u->error, YOLOSE_PICKLE_ERROR,
          YOLOSE_PICKLE_ERROR_UNSUPPORTED_OPCODE,
          "unsupported pickle opcode 0x%02x (%s) at offset %" G_GSIZE_FORMAT,
          u->op, opcode_name (u->op), u->op_offset);
      return FALSE;
  }
}

static gboolean
run (Unpickler *u)
{
  while (u->result == NULL) {
    if (u->pos >= u->len) {
      g_set_error (u->error, YOLOSE_PICKLE_ERROR, YOLOSE_PICKLE_ERROR_TRUNCATED,
          "pickle truncated: no STOP opcode in %" G_GSIZE_FORMAT " bytes",
          u->len);
      return FALSE;
    }
    u->op_offset = u->pos;
    u->op = u->data[u->pos++];
    if (!step (u))
      return FALSE;
  }
  return TRUE;
}

YolosePickle *
yolose_pickle_parse (const guint8 *data, gsize len, GError **error)
{
  Unpickler u = { 0 };
  gboolean ok;

  g_return_val_if_fail (data != NULL || len == 0, NULL);
  if (len > MAX_INPUT_BYTES) {
    g_set_error (error, YOLOSE_PICKLE_ERROR, YOLOSE_PICKLE_ERROR_LIMIT,
        "pickle of %" G_GSIZE_FORMAT
        " bytes is larger than the limit of %" G_GSIZE_FORMAT,
        len, MAX_INPUT_BYTES);
    return NULL;
  }
  u.doc = document_new ();
  u.data = data;
  u.len = len;
  /* Reserved so that pdata is never NULL: stack_at (u, base) of an empty
   * stack (a MARK then DICT) would otherwise compute NULL + 0, which is
   * undefined behaviour (UBSan). */
  u.stack = g_ptr_array_sized_new (64);
  u.marks = g_array_new (FALSE, FALSE, sizeof (gsize));
  u.memo = g_ptr_array_new ();
  u.error = error;
  ok = run (&u);
  g_ptr_array_free (u.stack, TRUE);
  g_array_free (u.marks, TRUE);
  g_ptr_array_free (u.memo, TRUE);
  if (!ok) {
    yolose_pickle_free (u.doc);
    return NULL;
  }
  u.doc->root = u.result;
  return u.doc;
}

const YolosePyValue *
yolose_pickle_root (const YolosePickle *pickle)
{
  return pickle ? pickle->root : NULL;
}

/* ---- Lookup helpers --------------------------------------------------- */

const YolosePyValue *
yolose_py_dict_get (const YolosePyValue *dict, const char *key)
{
  gsize key_len;

  if (dict == NULL || dict->kind != YOLOSE_PY_DICT || key == NULL)
    return NULL;
  key_len = strlen (key);
  for (gsize i = 0; i < dict->v.dict.len; i++) {
    const YolosePyValue *k = dict->v.dict.keys[i];
    if (k->kind == YOLOSE_PY_STRING && k->v.str.len == key_len
        && memcmp (k->v.str.data, key, key_len) == 0)
      return dict->v.dict.values[i];
  }
  return NULL;
}

const YolosePyValue *
yolose_py_attr (const YolosePyValue *object, const char *name)
{
  static const char *const module_dicts[]
      = { "_parameters", "_buffers", "_modules" };
  const YolosePyValue *state, *found;

  if (object == NULL || object->kind != YOLOSE_PY_OBJECT)
    return NULL;
  state = object->v.object.state;
  found = yolose_py_dict_get (state, name);
  for (gsize i = 0; found == NULL && i < G_N_ELEMENTS (module_dicts); i++)
    found = yolose_py_dict_get (yolose_py_dict_get (state, module_dicts[i]),
        name);
  return found;
}

gboolean
yolose_py_is_class (const YolosePyValue *object, const char *module,
    const char *name)
{
  const char *object_module, *object_name;

  if (object == NULL)
    return FALSE;
  if (object->kind == YOLOSE_PY_OBJECT) {
    object_module = object->v.object.module;
    object_name = object->v.object.name;
  } else if (object->kind == YOLOSE_PY_GLOBAL) {
    object_module = object->v.global.module;
    object_name = object->v.global.name;
  } else {
    return FALSE;
  }
  return (module == NULL || g_strcmp0 (object_module, module) == 0)
      && g_strcmp0 (object_name, name) == 0;
}

gboolean
yolose_py_get_int (const YolosePyValue *value, gint64 *out)
{
  if (value == NULL || value->kind != YOLOSE_PY_INT)
    return FALSE;
  *out = value->v.integer;
  return TRUE;
}

gboolean
yolose_py_get_number (const YolosePyValue *value, double *out)
{
  if (value == NULL)
    return FALSE;
  if (value->kind == YOLOSE_PY_INT) {
    *out = (double)value->v.integer;
    return TRUE;
  }
  if (value->kind == YOLOSE_PY_FLOAT) {
    *out = value->v.real;
    return TRUE;
  }
  return FALSE;
}

const char *
yolose_py_get_string (const YolosePyValue *value)
{
  if (value == NULL || value->kind != YOLOSE_PY_STRING)
    return NULL;
  return value->v.str.data;
}

gsize
yolose_py_len (const YolosePyValue *seq)
{
  if (seq == NULL
      || (seq->kind != YOLOSE_PY_LIST && seq->kind != YOLOSE_PY_TUPLE))
    return 0;
  return seq->v.seq.len;
}

const YolosePyValue *
yolose_py_item (const YolosePyValue *seq, gsize index)
{
  if (index >= yolose_py_len (seq))
    return NULL;
  return seq->v.seq.items[index];
}

const char *
yolose_py_kind_name (YolosePyKind kind)
{
  static const char *const names[] = {
    [YOLOSE_PY_NONE] = "None",
    [YOLOSE_PY_BOOL] = "bool",
    [YOLOSE_PY_INT] = "int",
    [YOLOSE_PY_FLOAT] = "float",
    [YOLOSE_PY_STRING] = "str",
    [YOLOSE_PY_BYTES] = "bytes",
    [YOLOSE_PY_LIST] = "list",
    [YOLOSE_PY_TUPLE] = "tuple",
    [YOLOSE_PY_DICT] = "dict",
    [YOLOSE_PY_GLOBAL] = "global",
    [YOLOSE_PY_OBJECT] = "object",
    [YOLOSE_PY_STORAGE] = "storage",
    [YOLOSE_PY_TENSOR] = "tensor",
  };

  if ((guint)kind >= G_N_ELEMENTS (names))
    return "unknown";
  return names[kind];
}

static const struct {
  const char *name;
  gsize size;
} dtype_info[] = {
  [YOLOSE_DTYPE_F16] = { "float16", 2 },
  [YOLOSE_DTYPE_BF16] = { "bfloat16", 2 },
  [YOLOSE_DTYPE_F32] = { "float32", 4 },
  [YOLOSE_DTYPE_F64] = { "float64", 8 },
  [YOLOSE_DTYPE_I64] = { "int64", 8 },
  [YOLOSE_DTYPE_I32] = { "int32", 4 },
  [YOLOSE_DTYPE_U8] = { "uint8", 1 },
  [YOLOSE_DTYPE_BOOL] = { "bool", 1 },
};

gsize
yolose_dtype_size (YoloseDType dtype)
{
  if ((guint)dtype >= G_N_ELEMENTS (dtype_info))
    return 0;
  return dtype_info[dtype].size;
}

const char *
yolose_dtype_name (YoloseDType dtype)
{
  if ((guint)dtype >= G_N_ELEMENTS (dtype_info))
    return "unknown";
  return dtype_info[dtype].name;
}
