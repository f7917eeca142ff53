/* yolose tests — core/pickle.c on hand-built pickles.
 *
 * Every pickle here is written opcode by opcode with pickle_builder.h, so
 * each test states exactly what the file contains.  No data files. */
#include <check.h>
#include <math.h>
#include <string.h>

#include "pickle.h"
#include "pickle_builder.h"

static GByteArray *
start (void)
{
  GByteArray *b = g_byte_array_new ();

  pb_proto (b, 2);
  return b;
}

/* Appends STOP, parses, and insists it worked. */
static YolosePickle *
parse_ok (GByteArray *b)
{
  GError *error = NULL;
  YolosePickle *pickle;

  pb_op (b, PB_STOP);
  pickle = yolose_pickle_parse (b->data, b->len, &error);
  ck_assert_msg (pickle != NULL, "parse failed: %s",
      error ? error->message : "?");
  ck_assert_ptr_nonnull (yolose_pickle_root (pickle));
  g_byte_array_unref (b);
  return pickle;
}

/* Parses @b as is and insists it failed with @code; returns the message. */
static char *
parse_fail (GByteArray *b, YolosePickleError code)
{
  GError *error = NULL;
  YolosePickle *pickle = yolose_pickle_parse (b->data, b->len, &error);
  char *message;

  ck_assert_msg (pickle == NULL, "a bad pickle was accepted");
  ck_assert_ptr_nonnull (error);
  ck_assert_msg (g_error_matches (error, YOLOSE_PICKLE_ERROR, code),
      "expected error code %d, got %d: %s", code, error->code, error->message);
  message = g_strdup (error->message);
  g_error_free (error);
  g_byte_array_unref (b);
  return message;
}

/* Takes @message. */
static void
assert_contains (char *message, const char *part)
{
  ck_assert_msg (strstr (message, part) != NULL, "'%s' not in '%s'", part,
      message);
  g_free (message);
}

static gint64
int_at (const YolosePyValue *seq, gsize i)
{
  gint64 value = G_MININT64;

  ck_assert_msg (yolose_py_get_int (yolose_py_item (seq, i), &value),
      "item %zu is not an int", i);
  return value;
}

/* ---- scalars ---------------------------------------------------------- */

/* None, bools, every int opcode (incl. sign handling) and BINFLOAT. */
START_TEST (test_scalars)
{
  static const guint8 minus_two[] = { 0xfe };
  static const guint8 int64_min[] = { 0, 0, 0, 0, 0, 0, 0, 0x80 };
  /* clang-format off */
  static const guint8 big_positive[] = { 0xff, 0x00 }; /* 255 */
  GByteArray *b = start ();
  YolosePickle *p;
  const YolosePyValue *t;
  double real = 0;

  pb_op (b, PB_MARK);
  pb_op (b, PB_NONE);
  pb_op (b, PB_NEWTRUE);
  pb_op (b, PB_NEWFALSE);
  pb_int (b, 7);    /* BININT1 */
  pb_int (b, 1234); /* BININT2 */
  pb_int (b, -5);   /* BININT */
  pb_int (b, 100000);
  pb_long1 (b, minus_two, 1);
  pb_long1 (b, int64_min, 8);
  pb_long1 (b, big_positive, 2);
  pb_long1 (b, NULL, 0);
  pb_float (b, -2.5e-3);
  pb_op (b, PB_TUPLE);
  p = parse_ok (b);
  t = yolose_pickle_root (p);
  ck_assert_int_eq (t->kind, YOLOSE_PY_TUPLE);
  ck_assert_uint_eq (yolose_py_len (t), 12);
  ck_assert_int_eq (yolose_py_item (t, 0)->kind, YOLOSE_PY_NONE);
  ck_assert_int_eq (yolose_py_item (t, 1)->kind, YOLOSE_PY_BOOL);
  ck_assert (yolose_py_item (t, 1)->v.boolean);
  ck_assert (!yolose_py_item (t, 2)->v.boolean);
  ck_assert_int_eq (int_at (t, 3), 7);
  ck_assert_int_eq (int_at (t, 4), 1234);
  ck_assert_int_eq (int_at (t, 5), -5);
  ck_assert_int_eq (int_at (t, 6), 100000);
  ck_assert_int_eq (int_at (t, 7), -2);
  ck_assert (int_at (t, 8) == G_MININT64);
  ck_assert_int_eq (int_at (t, 9), 255);
  ck_assert_int_eq (int_at (t, 10), 0);
  ck_assert (yolose_py_get_number (yolose_py_item (t, 11), &real));
  ck_assert (real == -2.5e-3);
  yolose_pickle_free (p);
}
END_TEST

/* LONG1 wider than 64 bits is refused; LONG4 of 8 bytes is read. */
START_TEST (test_long_limits)
{
  static const guint8 nine[9] = { 1 };
  static const guint8 long4[]
      = { 0x8b, 8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f };
  GByteArray *b = start ();
  YolosePickle *p;
  gint64 value = 0;

  pb_long1 (b, nine, 9);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_LIMIT), "LONG1");

  b = start ();
  pb_bytes (b, long4, sizeof long4);
  p = parse_ok (b);
  ck_assert (yolose_py_get_int (yolose_pickle_root (p), &value));
  ck_assert (value == G_MAXINT64);
  yolose_pickle_free (p);
}
END_TEST

/* All string and bytes opcodes keep their exact bytes, NUL-terminated. */
START_TEST (test_strings)
{
  static const guint8 raw[] = { 0, 1, 0xff };
  GByteArray *b = start ();
  YolosePickle *p;
  const YolosePyValue *t, *v;

  pb_op (b, PB_MARK);
  pb_str (b, "weight");
  pb_short_str (b, "h\xc3\xa9"); /* é: 2 bytes */
  pb_str8 (b, "");
  pb_binbytes (b, raw, sizeof raw, 1);
  pb_binbytes (b, raw, sizeof raw, 4);
  pb_binbytes (b, raw, 2, 8);
  pb_op (b, PB_TUPLE);
  p = parse_ok (b);
  t = yolose_pickle_root (p);
  ck_assert_str_eq (yolose_py_get_string (yolose_py_item (t, 0)), "weight");
  ck_assert_str_eq (yolose_py_get_string (yolose_py_item (t, 1)), "h\xc3\xa9");
  ck_assert_uint_eq (yolose_py_item (t, 1)->v.str.len, 3);
  ck_assert_str_eq (yolose_py_get_string (yolose_py_item (t, 2)), "");
  for (gsize i = 3; i < 6; i++) {
    v = yolose_py_item (t, i);
    ck_assert_int_eq (v->kind, YOLOSE_PY_BYTES);
    ck_assert_uint_eq (v->v.str.len, i == 5 ? 2 : 3);
    ck_assert_mem_eq (v->v.str.data, raw, v->v.str.len);
    ck_assert_int_eq (v->v.str.data[v->v.str.len], 0);
    ck_assert_ptr_null (yolose_py_get_string (v));
  }
  yolose_pickle_free (p);
}
END_TEST

/* A str that is not UTF-8 is refused. */
START_TEST (test_invalid_utf8)
{
  GByteArray *b = start ();

  pb_short_str (b, "\xff\xfe");
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED), "UTF-8");
}
END_TEST

/* ---- containers ------------------------------------------------------- */

/* EMPTY_LIST/APPEND/APPENDS, LIST, TUPLE1-3, EMPTY_TUPLE build what they
 * say, in order. */
START_TEST (test_lists_and_tuples)
{
  GByteArray *b = start ();
  YolosePickle *p;
  const YolosePyValue *t, *list;

  pb_op (b, PB_MARK);
  pb_op (b, PB_EMPTY_LIST);
  pb_int (b, 1);
  pb_op (b, PB_APPEND);
  pb_op (b, PB_MARK);
  pb_int (b, 2);
  pb_int (b, 3);
  pb_op (b, PB_APPENDS);
  pb_op (b, PB_MARK);
  pb_int (b, 4);
  pb_int (b, 5);
  pb_op (b, PB_LIST);
  pb_int (b, 6);
  pb_op (b, PB_TUPLE1);
  pb_int (b, 7);
  pb_int (b, 8);
  pb_op (b, PB_TUPLE2);
  pb_int (b, 9);
  pb_int (b, 10);
  pb_int (b, 11);
  pb_op (b, PB_TUPLE3);
  pb_op (b, PB_EMPTY_TUPLE);
  pb_op (b, PB_TUPLE);
  p = parse_ok (b);
  t = yolose_pickle_root (p);
  ck_assert_uint_eq (yolose_py_len (t), 6);
  list = yolose_py_item (t, 0);
  ck_assert_int_eq (list->kind, YOLOSE_PY_LIST);
  ck_assert_uint_eq (yolose_py_len (list), 3);
  for (gsize i = 0; i < 3; i++)
    ck_assert_int_eq (int_at (list, i), (gint64)i + 1);
  ck_assert_int_eq (yolose_py_item (t, 1)->kind, YOLOSE_PY_LIST);
  ck_assert_int_eq (int_at (yolose_py_item (t, 1), 1), 5);
  ck_assert_int_eq (yolose_py_item (t, 2)->kind, YOLOSE_PY_TUPLE);
  ck_assert_int_eq (int_at (yolose_py_item (t, 2), 0), 6);
  ck_assert_int_eq (int_at (yolose_py_item (t, 3), 1), 8);
  ck_assert_uint_eq (yolose_py_len (yolose_py_item (t, 4)), 3);
  ck_assert_int_eq (int_at (yolose_py_item (t, 4), 2), 11);
  ck_assert_int_eq (yolose_py_item (t, 5)->kind, YOLOSE_PY_TUPLE);
  ck_assert_uint_eq (yolose_py_len (yolose_py_item (t, 5)), 0);
  ck_assert_ptr_null (yolose_py_item (t, 6));
  yolose_pickle_free (p);
}
END_TEST

/* EMPTY_DICT/SETITEM/SETITEMS and DICT keep insertion order; a repeated
 * key replaces the value in place, also in a dict big enough to be
 * indexed. */
START_TEST (test_dicts)
{
  GByteArray *b = start ();
  YolosePickle *p;
  const YolosePyValue *t, *d, *big;
  char key[16];

  pb_op (b, PB_EMPTY_DICT);
  pb_str (b, "b");
  pb_int (b, 1);
  pb_op (b, PB_SETITEM);
  pb_op (b, PB_MARK);
  pb_str (b, "a");
  pb_int (b, 2);
  pb_str (b, "b");
  pb_int (b, 3);
  pb_op (b, PB_SETITEMS);
  pb_op (b, PB_MARK);
  for (int i = 0; i < 100; i++) {
    g_snprintf (key, sizeof key, "k%d", i % 60);
    pb_str (b, key);
    pb_int (b, i);
  }
  pb_int (b, 42); /* an int key */
  pb_int (b, -1);
  pb_op (b, PB_DICT);
  pb_op (b, PB_TUPLE2);
  p = parse_ok (b);
  t = yolose_pickle_root (p);
  d = yolose_py_item (t, 0);
  ck_assert_int_eq (d->kind, YOLOSE_PY_DICT);
  ck_assert_uint_eq (d->v.dict.len, 2);
  ck_assert_str_eq (yolose_py_get_string (d->v.dict.keys[0]), "b");
  ck_assert_str_eq (yolose_py_get_string (d->v.dict.keys[1]), "a");
  ck_assert_int_eq (d->v.dict.values[0]->v.integer, 3);
  ck_assert_int_eq (yolose_py_dict_get (d, "a")->v.integer, 2);
  ck_assert_ptr_null (yolose_py_dict_get (d, "c"));
  big = yolose_py_item (t, 1);
  ck_assert_uint_eq (big->v.dict.len, 61);
  ck_assert_int_eq (yolose_py_dict_get (big, "k5")->v.integer, 65);
  ck_assert_int_eq (yolose_py_dict_get (big, "k59")->v.integer, 59);
  ck_assert_str_eq (yolose_py_get_string (big->v.dict.keys[5]), "k5");
  ck_assert_int_eq (big->v.dict.keys[60]->v.integer, 42);
  yolose_pickle_free (p);
}
END_TEST

/* Sets are lists: EMPTY_SET + ADDITEMS, FROZENSET, and builtins.set(list)
 * via REDUCE (a copy: appending to the argument later does not change
 * it). */
START_TEST (test_sets)
{
  GByteArray *b = start ();
  YolosePickle *p;
  const YolosePyValue *t;

  pb_op (b, PB_MARK);
  pb_op (b, PB_EMPTY_SET);
  pb_op (b, PB_MARK);
  pb_int (b, 1);
  pb_int (b, 2);
  pb_op (b, PB_ADDITEMS);
  pb_op (b, PB_MARK);
  pb_int (b, 3);
  pb_op (b, PB_FROZENSET);
  pb_global (b, "__builtin__", "set");
  pb_op (b, PB_EMPTY_LIST);
  pb_binput (b, 0);
  pb_int (b, 4);
  pb_op (b, PB_APPEND);
  pb_op (b, PB_TUPLE1);
  pb_op (b, PB_REDUCE);
  pb_global (b, "builtins", "set");
  pb_op (b, PB_EMPTY_TUPLE);
  pb_op (b, PB_REDUCE);
  pb_binget (b, 0);
  pb_int (b, 5);
  pb_op (b, PB_APPEND);
  pb_op (b, PB_POP);
  pb_op (b, PB_TUPLE);
  p = parse_ok (b);
  t = yolose_pickle_root (p);
  ck_assert_uint_eq (yolose_py_len (t), 4);
  for (gsize i = 0; i < 4; i++)
    ck_assert_int_eq (yolose_py_item (t, i)->kind, YOLOSE_PY_LIST);
  ck_assert_uint_eq (yolose_py_len (yolose_py_item (t, 0)), 2);
  ck_assert_int_eq (int_at (yolose_py_item (t, 1), 0), 3);
  ck_assert_uint_eq (yolose_py_len (yolose_py_item (t, 2)), 1);
  ck_assert_int_eq (int_at (yolose_py_item (t, 2), 0), 4);
  ck_assert_uint_eq (yolose_py_len (yolose_py_item (t, 3)), 0);
  yolose_pickle_free (p);
}
END_TEST

/* POP, POP_MARK and DUP move the stack like CPython; POP on an empty
 * frame removes the MARK. */
START_TEST (test_stack_ops)
{
  GByteArray *b = start ();
  YolosePickle *p;
  const YolosePyValue *t;

  pb_op (b, PB_MARK);
  pb_int (b, 1);
  pb_int (b, 99);
  pb_op (b, PB_POP);
  pb_op (b, PB_MARK);
  pb_int (b, 98);
  pb_int (b, 97);
  pb_op (b, PB_POP_MARK);
  pb_op (b, PB_MARK);
  pb_op (b, PB_POP); /* removes that MARK */
  pb_op (b, PB_EMPTY_LIST);
  pb_op (b, PB_DUP);
  pb_op (b, PB_TUPLE);
  p = parse_ok (b);
  t = yolose_pickle_root (p);
  ck_assert_uint_eq (yolose_py_len (t), 3);
  ck_assert_int_eq (int_at (t, 0), 1);
  ck_assert_ptr_eq (yolose_py_item (t, 1), yolose_py_item (t, 2));
  yolose_pickle_free (p);
}
END_TEST

/* ---- memo ------------------------------------------------------------- */

/* BINPUT/BINGET, LONG_BINPUT/LONG_BINGET and MEMOIZE share one value:
 * a list mutated after being memoised is seen mutated through every
 * reference. */
START_TEST (test_memo_sharing)
{
  GByteArray *b = start ();
  YolosePickle *p;
  const YolosePyValue *t, *list;

  pb_op (b, PB_MARK);
  pb_op (b, PB_EMPTY_LIST);
  pb_binput (b, 3);
  pb_str (b, "x");
  pb_long_binput (b, 70000);
  pb_op (b, PB_POP);
  pb_op (b, PB_EMPTY_DICT);
  pb_op (b, PB_MEMOIZE); /* two entries set: index 2 */
  pb_binget (b, 3);
  pb_int (b, 5);
  pb_op (b, PB_APPEND);
  pb_op (b, PB_POP);
  pb_long_binget (b, 70000);
  pb_binget (b, 2);
  pb_binget (b, 3);
  pb_op (b, PB_TUPLE);
  p = parse_ok (b);
  t = yolose_pickle_root (p);
  ck_assert_uint_eq (yolose_py_len (t), 5);
  list = yolose_py_item (t, 0);
  ck_assert_ptr_eq (list, yolose_py_item (t, 4));
  ck_assert_uint_eq (yolose_py_len (list), 1);
  ck_assert_int_eq (int_at (list, 0), 5);
  ck_assert_ptr_eq (yolose_py_item (t, 1), yolose_py_item (t, 3));
  ck_assert_int_eq (yolose_py_item (t, 1)->kind, YOLOSE_PY_DICT);
  ck_assert_str_eq (yolose_py_get_string (yolose_py_item (t, 2)), "x");
  yolose_pickle_free (p);
}
END_TEST

/* A list that contains itself parses and frees without looping. */
START_TEST (test_cycle)
{
  GByteArray *b = start ();
  YolosePickle *p;
  const YolosePyValue *list;

  pb_op (b, PB_EMPTY_LIST);
  pb_op (b, PB_DUP);
  pb_op (b, PB_APPEND);
  p = parse_ok (b);
  list = yolose_pickle_root (p);
  ck_assert_ptr_eq (yolose_py_item (list, 0), list);
  yolose_pickle_free (p);
}
END_TEST

/* BINGET of an unset slot, and a memo index beyond the limit, fail. */
START_TEST (test_memo_out_of_range)
{
  GByteArray *b = start ();

  pb_op (b, PB_NONE);
  pb_binput (b, 1);
  pb_binget (b, 0);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED),
                   "memo index 0 is not set");

  b = start ();
  pb_binget (b, 200);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED),
                   "memo index 200");

  b = start ();
  pb_op (b, PB_NONE);
  pb_long_binput (b, 0xffffffffu);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_LIMIT), "memo index");
}
END_TEST

/* ---- globals, objects and the data constructors ----------------------- */

/* NEWOBJ + BUILD make an OBJECT with args and state; yolose_py_attr finds
 * plain attributes and those kept in _parameters and _modules. */
START_TEST (test_objects_and_attr)
{
  GByteArray *b = start ();
  YolosePickle *p;
  const YolosePyValue *obj, *child;

  pb_global (b, "models.common", "Conv");
  pb_op (b, PB_EMPTY_TUPLE);
  pb_op (b, PB_NEWOBJ);
  pb_op (b, PB_EMPTY_DICT);
  pb_op (b, PB_MARK);
  pb_str (b, "training");
  pb_op (b, PB_NEWFALSE);
  pb_str (b, "_parameters");
  pb_global (b, "collections", "OrderedDict");
  pb_op (b, PB_EMPTY_TUPLE);
  pb_op (b, PB_REDUCE);
  pb_op (b, PB_MARK);
  pb_str (b, "bias");
  pb_op (b, PB_NONE);
  pb_op (b, PB_SETITEMS);
  pb_str (b, "_modules");
  pb_op (b, PB_EMPTY_DICT);
  pb_str (b, "act");
  pb_global (b, "torch.nn.modules.activation", "SiLU");
  pb_int (b, 3);
  pb_op (b, PB_TUPLE1);
  pb_op (b, PB_REDUCE);
  pb_op (b, PB_SETITEM);
  pb_op (b, PB_SETITEMS);
  pb_op (b, PB_BUILD);
  p = parse_ok (b);
  obj = yolose_pickle_root (p);
  ck_assert_int_eq (obj->kind, YOLOSE_PY_OBJECT);
  ck_assert (yolose_py_is_class (obj, "models.common", "Conv"));
  ck_assert (yolose_py_is_class (obj, NULL, "Conv"));
  ck_assert (!yolose_py_is_class (obj, "models.yolo", "Conv"));
  ck_assert_uint_eq (yolose_py_len (obj->v.object.args), 0);
  ck_assert_int_eq (yolose_py_attr (obj, "training")->kind, YOLOSE_PY_BOOL);
  ck_assert_int_eq (yolose_py_attr (obj, "bias")->kind, YOLOSE_PY_NONE);
  child = yolose_py_attr (obj, "act");
  ck_assert (yolose_py_is_class (child, "torch.nn.modules.activation", "SiLU"));
  ck_assert_int_eq (int_at (child->v.object.args, 0), 3);
  ck_assert_ptr_null (child->v.object.state);
  ck_assert_ptr_null (yolose_py_attr (child, "x"));
  ck_assert_ptr_null (yolose_py_attr (obj, "missing"));
  ck_assert_ptr_null (yolose_py_attr (yolose_py_attr (obj, "training"), "x"));
  yolose_pickle_free (p);
}
END_TEST

/* OrderedDict(), OrderedDict([(k, v)]) and BUILD of a dict state onto a
 * DICT (how OrderedDict subclasses restore) all give DICTs. */
START_TEST (test_ordered_dict)
{
  GByteArray *b = start ();
  YolosePickle *p;
  const YolosePyValue *t, *d;

  pb_op (b, PB_MARK);
  pb_global (b, "collections", "OrderedDict");
  pb_op (b, PB_EMPTY_TUPLE);
  pb_op (b, PB_REDUCE);
  pb_op (b, PB_EMPTY_DICT);
  pb_str (b, "z");
  pb_int (b, 26);
  pb_op (b, PB_SETITEM);
  pb_op (b, PB_BUILD);
  pb_global (b, "collections", "OrderedDict");
  pb_op (b, PB_MARK);
  pb_str (b, "a");
  pb_int (b, 1);
  pb_op (b, PB_TUPLE2);
  pb_op (b, PB_LIST);
  pb_op (b, PB_TUPLE1);
  pb_op (b, PB_REDUCE);
  pb_op (b, PB_TUPLE);
  p = parse_ok (b);
  t = yolose_pickle_root (p);
  d = yolose_py_item (t, 0);
  ck_assert_int_eq (d->kind, YOLOSE_PY_DICT);
  ck_assert_int_eq (yolose_py_dict_get (d, "z")->v.integer, 26);
  d = yolose_py_item (t, 1);
  ck_assert_int_eq (d->kind, YOLOSE_PY_DICT);
  ck_assert_int_eq (yolose_py_dict_get (d, "a")->v.integer, 1);
  yolose_pickle_free (p);
}
END_TEST

/* A torch Parameter becomes a TENSOR on a STORAGE with the pickled dtype,
 * key, numel, offset, sizes and strides; the storage is shared through the
 * memo as torch shares it between views. */
START_TEST (test_tensor_constructors)
{
  static const gint64 sizes[] = { 2, 3 }, strides[] = { 1, 2 };
  GByteArray *b = start ();
  YolosePickle *p;
  const YolosePyValue *t, *a, *c;

  pb_op (b, PB_MARK);
  pb_parameter (b, "HalfStorage", "17", 10, 4, 2, sizes, strides);
  /* A plain tensor (7 args, torch 2.x metadata) on the same storage. */
  pb_global (b, "torch._utils", "_rebuild_tensor_v2");
  pb_op (b, PB_MARK);
  pb_storage (b, "BFloat16Storage", "18", 6);
  pb_long_binput (b, 9);
  pb_int (b, 0);
  pb_int_tuple (b, 0, NULL);
  pb_int_tuple (b, 0, NULL);
  pb_op (b, PB_NEWTRUE);
  pb_op (b, PB_NONE);
  pb_op (b, PB_EMPTY_DICT);
  pb_op (b, PB_TUPLE);
  pb_op (b, PB_REDUCE);
  /* torch 2.x's Parameter with state, on the memoised storage. */
  pb_global (b, "torch._utils", "_rebuild_parameter_with_state");
  pb_op (b, PB_MARK);
  pb_global (b, "torch._utils", "_rebuild_tensor_v2");
  pb_op (b, PB_MARK);
  pb_long_binget (b, 9);
  pb_int (b, 1);
  pb_int_tuple (b, 1, (const gint64[]){ 5 });
  pb_int_tuple (b, 1, (const gint64[]){ 1 });
  pb_op (b, PB_NEWFALSE);
  pb_op (b, PB_NONE);
  pb_op (b, PB_TUPLE);
  pb_op (b, PB_REDUCE);
  pb_op (b, PB_NEWTRUE);
  pb_op (b, PB_NONE);
  pb_op (b, PB_EMPTY_DICT);
  pb_op (b, PB_TUPLE); /* 4 args */
  pb_op (b, PB_REDUCE);
  pb_op (b, PB_TUPLE);
  p = parse_ok (b);
  t = yolose_pickle_root (p);
  a = yolose_py_item (t, 0);
  ck_assert_int_eq (a->kind, YOLOSE_PY_TENSOR);
  ck_assert_int_eq (a->v.tensor.storage->kind, YOLOSE_PY_STORAGE);
  ck_assert_int_eq (a->v.tensor.storage->v.storage.dtype, YOLOSE_DTYPE_F16);
  ck_assert_str_eq (a->v.tensor.storage->v.storage.key, "17");
  ck_assert_int_eq (a->v.tensor.storage->v.storage.numel, 10);
  ck_assert_int_eq (a->v.tensor.offset, 4);
  ck_assert_int_eq (a->v.tensor.ndim, 2);
  ck_assert_int_eq (a->v.tensor.sizes[0], 2);
  ck_assert_int_eq (a->v.tensor.sizes[1], 3);
  ck_assert_int_eq (a->v.tensor.strides[0], 1);
  ck_assert_int_eq (a->v.tensor.strides[1], 2);
  c = yolose_py_item (t, 1);
  ck_assert_int_eq (c->kind, YOLOSE_PY_TENSOR);
  ck_assert_int_eq (c->v.tensor.ndim, 0);
  ck_assert_int_eq (c->v.tensor.storage->v.storage.dtype, YOLOSE_DTYPE_BF16);
  ck_assert_int_eq (yolose_py_item (t, 2)->kind, YOLOSE_PY_TENSOR);
  ck_assert_ptr_eq (yolose_py_item (t, 2)->v.tensor.storage,
                    c->v.tensor.storage);
  ck_assert_int_eq (yolose_py_item (t, 2)->v.tensor.sizes[0], 5);
  yolose_pickle_free (p);
}
END_TEST

/* Every storage class maps to its dtype; an unknown one is named in the
 * error. */
START_TEST (test_storage_classes)
{
  static const struct {
    const char *cls;
    YoloseDType dtype;
  } known[] = {
    { "HalfStorage", YOLOSE_DTYPE_F16 },
    { "BFloat16Storage", YOLOSE_DTYPE_BF16 },
    { "FloatStorage", YOLOSE_DTYPE_F32 },
    { "DoubleStorage", YOLOSE_DTYPE_F64 },
    { "LongStorage", YOLOSE_DTYPE_I64 },
    { "IntStorage", YOLOSE_DTYPE_I32 },
    { "ByteStorage", YOLOSE_DTYPE_U8 },
    { "BoolStorage", YOLOSE_DTYPE_BOOL },
  };
  /* clang-format on */
  GByteArray *b;
  YolosePickle *p;

  for (gsize i = 0; i < G_N_ELEMENTS (known); i++) {
    b = start ();
    pb_storage (b, known[i].cls, "0", 3);
    p = parse_ok (b);
    ck_assert_int_eq (yolose_pickle_root (p)->v.storage.dtype, known[i].dtype);
    yolose_pickle_free (p);
  }
  b = start ();
  pb_storage (b, "ComplexFloatStorage", "0", 3);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_UNSUPPORTED_OPCODE),
      "torch.ComplexFloatStorage");
}
END_TEST

/* Persistent ids that are not ('storage', torch class, key, loc, numel)
 * are refused. */
START_TEST (test_bad_persistent_ids)
{
  GByteArray *b = start ();

  pb_str (b, "storage");
  pb_op (b, PB_BINPERSID);
  pb_op (b, PB_STOP);
  g_free (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED));

  b = start ();
  pb_op (b, PB_MARK);
  pb_str (b, "storage");
  pb_global (b, "numpy", "HalfStorage");
  pb_str (b, "0");
  pb_str (b, "cpu");
  pb_int (b, 1);
  pb_op (b, PB_TUPLE);
  pb_op (b, PB_BINPERSID);
  pb_op (b, PB_STOP);
  g_free (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED));

  b = start ();
  pb_storage (b, "HalfStorage", "0", -1);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED),
      "storage size");
}
END_TEST

/* _rebuild_tensor_v2 with 9 dims, mismatched strides, a non-int size or
 * no storage is refused. */
START_TEST (test_bad_tensor_args)
{
  static const gint64 nine[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
  static const gint64 two[2] = { 1, 1 };
  GByteArray *b = start ();

  pb_parameter (b, "FloatStorage", "0", 1, 0, 9, nine, nine);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_LIMIT), "9 dimensions");

  b = start ();
  pb_global (b, "torch._utils", "_rebuild_tensor_v2");
  pb_op (b, PB_MARK);
  pb_storage (b, "FloatStorage", "0", 1);
  pb_int (b, 0);
  pb_int_tuple (b, 2, two);
  pb_int_tuple (b, 1, two);
  pb_op (b, PB_NEWFALSE);
  pb_op (b, PB_NONE);
  pb_op (b, PB_TUPLE);
  pb_op (b, PB_REDUCE);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED),
      "2 sizes but 1 strides");

  b = start ();
  pb_global (b, "torch._utils", "_rebuild_tensor_v2");
  pb_op (b, PB_MARK);
  pb_op (b, PB_NONE);
  pb_int (b, 0);
  pb_int_tuple (b, 0, NULL);
  pb_int_tuple (b, 0, NULL);
  pb_op (b, PB_NEWFALSE);
  pb_op (b, PB_NONE);
  pb_op (b, PB_TUPLE);
  pb_op (b, PB_REDUCE);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED),
      "storage is a None");

  b = start ();
  pb_global (b, "torch._utils", "_rebuild_tensor_v2");
  pb_op (b, PB_MARK);
  pb_storage (b, "FloatStorage", "0", 1);
  pb_int (b, 0);
  pb_str (b, "x");
  pb_op (b, PB_TUPLE1);
  pb_op (b, PB_DUP);
  pb_op (b, PB_NEWFALSE);
  pb_op (b, PB_NONE);
  pb_op (b, PB_TUPLE);
  pb_op (b, PB_REDUCE);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED), "not an int");
}
END_TEST

/* ---- protocol 4 and 5 ------------------------------------------------- */

/* FRAME, SHORT_BINUNICODE, MEMOIZE and STACK_GLOBAL as protocol 4 writes
 * them: a frame, then an object made through a stack global. */
START_TEST (test_protocol4)
{
  GByteArray *body = g_byte_array_new ();
  GByteArray *b = g_byte_array_new ();
  YolosePickle *p;
  const YolosePyValue *obj;

  pb_short_str (body, "models.yolo");
  pb_op (body, PB_MEMOIZE);
  pb_short_str (body, "Detect");
  pb_op (body, PB_MEMOIZE);
  pb_op (body, PB_STACK_GLOBAL);
  pb_op (body, PB_MEMOIZE);
  pb_op (body, PB_EMPTY_TUPLE);
  pb_op (body, PB_NEWOBJ);
  pb_op (body, PB_MEMOIZE);
  pb_op (body, PB_EMPTY_DICT);
  pb_short_str (body, "nc");
  pb_int (body, 80);
  pb_op (body, PB_SETITEM);
  pb_op (body, PB_BUILD);
  pb_binget (body, 1);
  pb_op (body, PB_POP);
  pb_op (body, PB_STOP);
  pb_proto (b, 4);
  pb_frame (b, body->len);
  pb_bytes (b, body->data, body->len);
  g_byte_array_unref (body);
  b->len--; /* parse_ok appends the STOP */
  p = parse_ok (b);
  obj = yolose_pickle_root (p);
  ck_assert (yolose_py_is_class (obj, "models.yolo", "Detect"));
  ck_assert_int_eq (yolose_py_attr (obj, "nc")->v.integer, 80);
  yolose_pickle_free (p);
}
END_TEST

/* A FRAME longer than the bytes left is refused. */
START_TEST (test_frame_too_long)
{
  GByteArray *b = g_byte_array_new ();

  pb_proto (b, 4);
  pb_frame (b, 100);
  pb_op (b, PB_NONE);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_TRUNCATED), "frame");
}
END_TEST

/* Code-running, text-protocol and out-of-band opcodes are refused with the
 * opcode's hex code, name and offset. */
START_TEST (test_unsupported_opcodes)
{
  static const struct {
    guint8 op;
    const char *name;
  } refused[] = {
    { 'i', "INST" },
    { 'o', "OBJ" },
    { 0x82, "EXT1" },
    { 0x83, "EXT2" },
    { 0x84, "EXT4" },
    { 'P', "PERSID" },
    { 0x92, "NEWOBJ_EX" },
    { 0x97, "NEXT_BUFFER" },
    { 0x98, "READONLY_BUFFER" },
    { 'I', "INT" },
    { 'L', "LONG" },
    { 'S', "STRING" },
    { 'V', "UNICODE" },
    { 'F', "FLOAT" },
    { 'g', "GET" },
    { 'p', "PUT" },
    { 'T', "BINSTRING" },
    { 0xff, "unknown" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (refused); i++) {
    GByteArray *b = start ();
    char *expected, *message;
    pb_op (b, PB_NONE);
    pb_op (b, refused[i].op);
    pb_op (b, PB_STOP);
    expected = g_strdup_printf ("opcode 0x%02x (%s) at offset 3", refused[i].op,
        refused[i].name);
    message = parse_fail (b, YOLOSE_PICKLE_ERROR_UNSUPPORTED_OPCODE);
    assert_contains (message, expected);
    g_free (expected);
  }
}
END_TEST

/* PROTO outside 2..5 is refused. */
START_TEST (test_protocol_versions)
{
  for (guint8 v = 0; v < 8; v++) {
    GByteArray *b = g_byte_array_new ();
    YolosePickle *p;
    pb_proto (b, v);
    pb_op (b, PB_NONE);
    pb_op (b, PB_STOP);
    p = yolose_pickle_parse (b->data, b->len, NULL);
    ck_assert_msg ((p != NULL) == (v >= 2 && v <= 5), "protocol %u", v);
    yolose_pickle_free (p);
    g_byte_array_unref (b);
  }
}
END_TEST

/* What CPython 3 writes for {'a': [1, 2.5, 'x', None, True],
 * 'big': (2**40, -2**63, -70000), 's': {3}, 'o': OrderedDict(k=1)
 * [, 'b': b'yz' from protocol 3 on]} with each protocol. */
/* pickle.dumps (..., protocol=2) */
/* clang-format off */
static const guint8 cpython_proto2[] = {
  0x80, 0x02, 0x7d, 0x71, 0x00, 0x28, 0x58, 0x01, 0x00, 0x00, 0x00, 0x61, 0x71,
  0x01, 0x5d, 0x71, 0x02, 0x28, 0x4b, 0x01, 0x47, 0x40, 0x04, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x58, 0x01, 0x00, 0x00, 0x00, 0x78, 0x71, 0x03, 0x4e, 0x88,
  0x65, 0x58, 0x03, 0x00, 0x00, 0x00, 0x62, 0x69, 0x67, 0x71, 0x04, 0x8a, 0x06,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x8a, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x80, 0x4a, 0x90, 0xee, 0xfe, 0xff, 0x87, 0x71, 0x05, 0x58, 0x01,
  0x00, 0x00, 0x00, 0x73, 0x71, 0x06, 0x63, 0x5f, 0x5f, 0x62, 0x75, 0x69, 0x6c,
  0x74, 0x69, 0x6e, 0x5f, 0x5f, 0x0a, 0x73, 0x65, 0x74, 0x0a, 0x71, 0x07, 0x5d,
  0x71, 0x08, 0x4b, 0x03, 0x61, 0x85, 0x71, 0x09, 0x52, 0x71, 0x0a, 0x58, 0x01,
  0x00, 0x00, 0x00, 0x6f, 0x71, 0x0b, 0x63, 0x63, 0x6f, 0x6c, 0x6c, 0x65, 0x63,
  0x74, 0x69, 0x6f, 0x6e, 0x73, 0x0a, 0x4f, 0x72, 0x64, 0x65, 0x72, 0x65, 0x64,
  0x44, 0x69, 0x63, 0x74, 0x0a, 0x71, 0x0c, 0x29, 0x52, 0x71, 0x0d, 0x58, 0x01,
  0x00, 0x00, 0x00, 0x6b, 0x71, 0x0e, 0x4b, 0x01, 0x73, 0x75, 0x2e,
};
/* clang-format on */

/* pickle.dumps (..., protocol=3) */
/* clang-format off */
static const guint8 cpython_proto3[] = {
  0x80, 0x03, 0x7d, 0x71, 0x00, 0x28, 0x58, 0x01, 0x00, 0x00, 0x00, 0x61, 0x71,
  0x01, 0x5d, 0x71, 0x02, 0x28, 0x4b, 0x01, 0x47, 0x40, 0x04, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x58, 0x01, 0x00, 0x00, 0x00, 0x78, 0x71, 0x03, 0x4e, 0x88,
  0x65, 0x58, 0x03, 0x00, 0x00, 0x00, 0x62, 0x69, 0x67, 0x71, 0x04, 0x8a, 0x06,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x8a, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x80, 0x4a, 0x90, 0xee, 0xfe, 0xff, 0x87, 0x71, 0x05, 0x58, 0x01,
  0x00, 0x00, 0x00, 0x73, 0x71, 0x06, 0x63, 0x62, 0x75, 0x69, 0x6c, 0x74, 0x69,
  0x6e, 0x73, 0x0a, 0x73, 0x65, 0x74, 0x0a, 0x71, 0x07, 0x5d, 0x71, 0x08, 0x4b,
  0x03, 0x61, 0x85, 0x71, 0x09, 0x52, 0x71, 0x0a, 0x58, 0x01, 0x00, 0x00, 0x00,
  0x6f, 0x71, 0x0b, 0x63, 0x63, 0x6f, 0x6c, 0x6c, 0x65, 0x63, 0x74, 0x69, 0x6f,
  0x6e, 0x73, 0x0a, 0x4f, 0x72, 0x64, 0x65, 0x72, 0x65, 0x64, 0x44, 0x69, 0x63,
  0x74, 0x0a, 0x71, 0x0c, 0x29, 0x52, 0x71, 0x0d, 0x58, 0x01, 0x00, 0x00, 0x00,
  0x6b, 0x71, 0x0e, 0x4b, 0x01, 0x73, 0x58, 0x01, 0x00, 0x00, 0x00, 0x62, 0x71,
  0x0f, 0x43, 0x02, 0x79, 0x7a, 0x71, 0x10, 0x75, 0x2e,
};
/* clang-format on */

/* pickle.dumps (..., protocol=4) */
/* clang-format off */
static const guint8 cpython_proto4[] = {
  0x80, 0x04, 0x95, 0x7c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7d, 0x94,
  0x28, 0x8c, 0x01, 0x61, 0x94, 0x5d, 0x94, 0x28, 0x4b, 0x01, 0x47, 0x40, 0x04,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x8c, 0x01, 0x78, 0x94, 0x4e, 0x88, 0x65,
  0x8c, 0x03, 0x62, 0x69, 0x67, 0x94, 0x8a, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x01, 0x8a, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x4a, 0x90,
  0xee, 0xfe, 0xff, 0x87, 0x94, 0x8c, 0x01, 0x73, 0x94, 0x8f, 0x94, 0x28, 0x4b,
  0x03, 0x90, 0x8c, 0x01, 0x6f, 0x94, 0x8c, 0x0b, 0x63, 0x6f, 0x6c, 0x6c, 0x65,
  0x63, 0x74, 0x69, 0x6f, 0x6e, 0x73, 0x94, 0x8c, 0x0b, 0x4f, 0x72, 0x64, 0x65,
  0x72, 0x65, 0x64, 0x44, 0x69, 0x63, 0x74, 0x94, 0x93, 0x94, 0x29, 0x52, 0x94,
  0x8c, 0x01, 0x6b, 0x94, 0x4b, 0x01, 0x73, 0x8c, 0x01, 0x62, 0x94, 0x43, 0x02,
  0x79, 0x7a, 0x94, 0x75, 0x2e,
};
/* clang-format on */

/* pickle.dumps (..., protocol=5) */
/* clang-format off */
static const guint8 cpython_proto5[] = {
  0x80, 0x05, 0x95, 0x7c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7d, 0x94,
  0x28, 0x8c, 0x01, 0x61, 0x94, 0x5d, 0x94, 0x28, 0x4b, 0x01, 0x47, 0x40, 0x04,
  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x8c, 0x01, 0x78, 0x94, 0x4e, 0x88, 0x65,
  0x8c, 0x03, 0x62, 0x69, 0x67, 0x94, 0x8a, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x01, 0x8a, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x4a, 0x90,
  0xee, 0xfe, 0xff, 0x87, 0x94, 0x8c, 0x01, 0x73, 0x94, 0x8f, 0x94, 0x28, 0x4b,
  0x03, 0x90, 0x8c, 0x01, 0x6f, 0x94, 0x8c, 0x0b, 0x63, 0x6f, 0x6c, 0x6c, 0x65,
  0x63, 0x74, 0x69, 0x6f, 0x6e, 0x73, 0x94, 0x8c, 0x0b, 0x4f, 0x72, 0x64, 0x65,
  0x72, 0x65, 0x64, 0x44, 0x69, 0x63, 0x74, 0x94, 0x93, 0x94, 0x29, 0x52, 0x94,
  0x8c, 0x01, 0x6b, 0x94, 0x4b, 0x01, 0x73, 0x8c, 0x01, 0x62, 0x94, 0x43, 0x02,
  0x79, 0x7a, 0x94, 0x75, 0x2e,
};
/* clang-format on */

/* Pickles written by CPython itself, protocols 2 to 5, read back to the
 * values that were dumped. */
START_TEST (test_cpython_protocols)
{
  static const struct {
    const guint8 *data;
    gsize len;
  } pickles[] = {
    { cpython_proto2, sizeof cpython_proto2 },
    { cpython_proto3, sizeof cpython_proto3 },
    { cpython_proto4, sizeof cpython_proto4 },
    { cpython_proto5, sizeof cpython_proto5 },
  };
  const YolosePyValue *root, *a, *big, *b;
  GError *error = NULL;
  YolosePickle *p
      = yolose_pickle_parse (pickles[_i].data, pickles[_i].len, &error);
  double real = 0;

  ck_assert_msg (p != NULL, "protocol %d: %s", _i + 2, error->message);
  root = yolose_pickle_root (p);
  a = yolose_py_dict_get (root, "a");
  ck_assert_uint_eq (yolose_py_len (a), 5);
  ck_assert_int_eq (int_at (a, 0), 1);
  ck_assert (yolose_py_get_number (yolose_py_item (a, 1), &real));
  ck_assert (real == 2.5);
  ck_assert_str_eq (yolose_py_get_string (yolose_py_item (a, 2)), "x");
  ck_assert_int_eq (yolose_py_item (a, 3)->kind, YOLOSE_PY_NONE);
  ck_assert (yolose_py_item (a, 4)->v.boolean);
  big = yolose_py_dict_get (root, "big");
  ck_assert (int_at (big, 0) == G_GINT64_CONSTANT (1) << 40);
  ck_assert (int_at (big, 1) == G_MININT64);
  ck_assert_int_eq (int_at (big, 2), -70000);
  ck_assert_int_eq (int_at (yolose_py_dict_get (root, "s"), 0), 3);
  ck_assert_int_eq (
      yolose_py_dict_get (yolose_py_dict_get (root, "o"), "k")->v.integer, 1);
  b = yolose_py_dict_get (root, "b");
  if (_i > 0) {
    ck_assert_int_eq (b->kind, YOLOSE_PY_BYTES);
    ck_assert_mem_eq (b->v.str.data, "yz", 2);
  }
  yolose_pickle_free (p);
}
END_TEST

/* ---- hostile input ---------------------------------------------------- */

/* A pickle using most opcodes, cut at every length, always fails cleanly
 * (the full one parses). */
START_TEST (test_truncated_everywhere)
{
  static const gint64 sizes[] = { 2, 2 }, strides[] = { 2, 1 };
  GByteArray *b = g_byte_array_new ();
  static const guint8 one[] = { 1 };

  pb_proto (b, 4);
  pb_frame (b, 0);
  pb_op (b, PB_EMPTY_DICT);
  pb_op (b, PB_MEMOIZE);
  pb_op (b, PB_MARK);
  pb_str (b, "w");
  pb_parameter (b, "HalfStorage", "0", 4, 0, 2, sizes, strides);
  pb_short_str (b, "l");
  pb_op (b, PB_EMPTY_LIST);
  pb_op (b, PB_MARK);
  pb_float (b, 1.5);
  pb_long1 (b, one, 1);
  pb_int (b, 70000);
  pb_op (b, PB_NEWTRUE);
  pb_op (b, PB_APPENDS);
  pb_str8 (b, "o");
  pb_short_str (b, "m");
  pb_short_str (b, "C");
  pb_op (b, PB_STACK_GLOBAL);
  pb_op (b, PB_EMPTY_TUPLE);
  pb_op (b, PB_NEWOBJ);
  pb_op (b, PB_EMPTY_DICT);
  pb_op (b, PB_BUILD);
  pb_binbytes (b, "ab", 2, 1);
  pb_long_binget (b, 0);
  pb_op (b, PB_SETITEMS);
  pb_op (b, PB_STOP);

  for (guint cut = 0; cut <= b->len; cut++) {
    GError *error = NULL;
    YolosePickle *p = yolose_pickle_parse (b->data, cut, &error);
    if (cut == b->len) {
      ck_assert_msg (p != NULL, "full pickle: %s", error->message);
    } else {
      ck_assert_msg (p == NULL, "pickle cut at %u accepted", cut);
      ck_assert_ptr_nonnull (error);
      ck_assert_int_eq (error->code, YOLOSE_PICKLE_ERROR_TRUNCATED);
    }
    g_clear_error (&error);
    yolose_pickle_free (p);
  }
  g_byte_array_unref (b);
}
END_TEST

/* MARKs nested deeper than the limit fail; 100k nested lists (no MARK)
 * parse without recursion. */
START_TEST (test_deep_nesting)
{
  GByteArray *b = start ();
  YolosePickle *p;
  const YolosePyValue *v;
  gsize depth = 0;

  for (int i = 0; i < 70000; i++)
    pb_op (b, PB_MARK);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_LIMIT), "MARK");

  b = start ();
  pb_op (b, PB_EMPTY_LIST);
  for (int i = 0; i < 100000; i++)
    pb_op (b, PB_EMPTY_LIST);
  for (int i = 0; i < 100000; i++)
    pb_op (b, PB_APPEND);
  p = parse_ok (b);
  for (v = yolose_pickle_root (p); yolose_py_len (v) == 1;
       v = yolose_py_item (v, 0))
    depth++;
  ck_assert_uint_eq (depth, 100000);
  yolose_pickle_free (p);
}
END_TEST

/* A stack deeper than the limit fails (2 MB of BINGETs). */
START_TEST (test_stack_limit)
{
  GByteArray *b = start ();

  pb_op (b, PB_NONE);
  pb_binput (b, 0);
  for (int i = 0; i < (1 << 20) + 1; i++)
    pb_binget (b, 0);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_LIMIT), "stack");
}
END_TEST

/* Input larger than 64 MiB is refused before parsing. */
START_TEST (test_input_limit)
{
  gsize len = ((gsize)64 << 20) + 1;
  guint8 *data = g_malloc0 (len);
  GError *error = NULL;

  ck_assert_ptr_null (yolose_pickle_parse (data, len, &error));
  ck_assert (
      g_error_matches (error, YOLOSE_PICKLE_ERROR, YOLOSE_PICKLE_ERROR_LIMIT));
  g_error_free (error);
  g_free (data);
}
END_TEST

/* A memoised 1 MiB string reused as a GLOBAL name over and over hits the
 * text limit instead of copying gigabytes. */
START_TEST (test_text_limit)
{
  GByteArray *b = start ();
  char *big = g_malloc (1 << 20);

  memset (big, 'm', 1 << 20);
  pb_byte (b, 'X');
  pb_le (b, 1 << 20, 4);
  pb_bytes (b, big, 1 << 20);
  pb_binput (b, 0);
  for (int i = 0; i < 200; i++) {
    pb_binget (b, 0);
    pb_binget (b, 0);
    pb_op (b, PB_STACK_GLOBAL);
    pb_op (b, PB_POP);
  }
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_LIMIT),
      "strings total more than");
  g_free (big);
}
END_TEST

/* Rewriting a dict entry with a memoised 1 MiB key thousands of times hits
 * the dict work limit instead of hashing for minutes. */
START_TEST (test_dict_work_limit)
{
  GByteArray *b = start ();
  char *big = g_malloc (1 << 20);

  memset (big, 'k', 1 << 20);
  pb_byte (b, 'X');
  pb_le (b, 1 << 20, 4);
  pb_bytes (b, big, 1 << 20);
  pb_binput (b, 0);
  pb_op (b, PB_EMPTY_DICT);
  pb_binput (b, 1);
  for (int i = 0; i < 5000; i++) {
    pb_binget (b, 1);
    pb_binget (b, 0);
    pb_op (b, PB_NONE);
    pb_op (b, PB_SETITEM);
    pb_op (b, PB_POP);
  }
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_LIMIT), "work limit");
  g_free (big);
}
END_TEST

/* Popping below the stack bottom or the innermost MARK is an error, for
 * every opcode that pops. */
START_TEST (test_stack_underflow)
{
  /* clang-format off */
  static const guint8 poppers[] = {
    'a', 's', 'R', 'b', 0x81, 'Q', 0x85, 0x86, 0x87, 0x93, 0x32, 'q', 0x94, '.',
  };
  /* clang-format on */

  for (gsize i = 0; i < G_N_ELEMENTS (poppers); i++) {
    GByteArray *b = start ();
    pb_op (b, PB_MARK);
    pb_op (b, poppers[i]);
    pb_byte (b, 0); /* BINPUT's index */
    pb_op (b, PB_STOP);
    g_free (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED));
  }
}
END_TEST

/* MARK misuse: closing a MARK that is not there, an odd SETITEMS, APPENDS
 * with nothing under the MARK, STOP with a MARK open or two values. */
START_TEST (test_mark_misuse)
{
  static const guint8 closers[] = { 't', 'l', 'd', 'e', 'u', '1', 0x90, 0x91 };
  GByteArray *b;

  for (gsize i = 0; i < G_N_ELEMENTS (closers); i++) {
    b = start ();
    pb_op (b, PB_EMPTY_LIST);
    pb_op (b, closers[i]);
    pb_op (b, PB_STOP);
    assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED), "no MARK");
  }
  b = start ();
  pb_op (b, PB_EMPTY_DICT);
  pb_op (b, PB_MARK);
  pb_str (b, "k");
  pb_op (b, PB_SETITEMS);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED), "odd");

  b = start ();
  pb_op (b, PB_MARK);
  pb_int (b, 1);
  pb_op (b, PB_APPENDS);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED), "below");

  b = start ();
  pb_op (b, PB_NONE);
  pb_op (b, PB_MARK);
  pb_op (b, PB_NONE);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED), "MARKs open");

  b = start ();
  pb_op (b, PB_NONE);
  pb_op (b, PB_NONE);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED), "2 values");
}
END_TEST

/* BUILD on a list or a tensor, a non-dict state on a dict, APPEND to a
 * dict, SETITEM on a list and REDUCE of a non-global are refused. */
START_TEST (test_wrong_kinds)
{
  GByteArray *b;

  b = start ();
  pb_op (b, PB_EMPTY_LIST);
  pb_op (b, PB_EMPTY_DICT);
  pb_op (b, PB_BUILD);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED),
      "BUILD with a dict state on a list");

  b = start ();
  pb_op (b, PB_EMPTY_DICT);
  pb_op (b, PB_EMPTY_LIST);
  pb_op (b, PB_BUILD);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED),
      "BUILD with a list state on a dict");

  b = start ();
  pb_op (b, PB_EMPTY_DICT);
  pb_op (b, PB_NONE);
  pb_op (b, PB_APPEND);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED),
      "dict, not a list");

  b = start ();
  pb_op (b, PB_EMPTY_LIST);
  pb_op (b, PB_NONE);
  pb_op (b, PB_NONE);
  pb_op (b, PB_SETITEM);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED),
      "list, not a dict");

  b = start ();
  pb_str (b, "os.system");
  pb_op (b, PB_EMPTY_TUPLE);
  pb_op (b, PB_REDUCE);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED),
      "cannot call a str");

  b = start ();
  pb_global (b, "collections", "OrderedDict");
  pb_op (b, PB_EMPTY_LIST);
  pb_op (b, PB_REDUCE);
  pb_op (b, PB_STOP);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_MALFORMED),
      "not a tuple");
}
END_TEST

/* A GLOBAL line without a newline, and a string longer than the input,
 * are truncation errors; lengths near 2^64 do not wrap. */
START_TEST (test_lengths_checked)
{
  GByteArray *b = start ();

  pb_bytes (b, "cmodule\nname", 12);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_TRUNCATED), "newline");

  b = start ();
  pb_byte (b, 'X');
  pb_le (b, 0xffffffffu, 4);
  pb_bytes (b, "abc", 3);
  assert_contains (parse_fail (b, YOLOSE_PICKLE_ERROR_TRUNCATED), "left");

  b = start ();
  pb_byte (b, 0x8e); /* BINBYTES8 */
  pb_le (b, G_MAXUINT64, 8);
  pb_op (b, PB_STOP);
  g_free (parse_fail (b, YOLOSE_PICKLE_ERROR_TRUNCATED));
}
END_TEST

/* The small helpers: wrong kinds give NULL/FALSE/0, names are right. */
START_TEST (test_helpers)
{
  GByteArray *b = start ();
  YolosePickle *p;
  const YolosePyValue *t;
  gint64 i = 0;
  double d = 0;

  pb_int (b, 3);
  pb_float (b, 0.5);
  pb_str (b, "s");
  pb_op (b, PB_TUPLE3);
  p = parse_ok (b);
  t = yolose_pickle_root (p);
  ck_assert (!yolose_py_get_int (yolose_py_item (t, 1), &i));
  ck_assert (yolose_py_get_number (yolose_py_item (t, 0), &d) && d == 3.0);
  ck_assert (!yolose_py_get_number (yolose_py_item (t, 2), &d));
  ck_assert (!yolose_py_get_int (NULL, &i));
  ck_assert_ptr_null (yolose_py_get_string (yolose_py_item (t, 0)));
  ck_assert_ptr_null (yolose_py_dict_get (t, "s"));
  ck_assert_uint_eq (yolose_py_len (yolose_py_item (t, 2)), 0);
  ck_assert_uint_eq (yolose_py_len (NULL), 0);
  ck_assert (!yolose_py_is_class (t, NULL, "tuple"));
  ck_assert_str_eq (yolose_py_kind_name (YOLOSE_PY_TENSOR), "tensor");
  ck_assert_uint_eq (yolose_dtype_size (YOLOSE_DTYPE_F16), 2);
  ck_assert_uint_eq (yolose_dtype_size (YOLOSE_DTYPE_BF16), 2);
  ck_assert_uint_eq (yolose_dtype_size (YOLOSE_DTYPE_F64), 8);
  ck_assert_uint_eq (yolose_dtype_size (YOLOSE_DTYPE_I32), 4);
  ck_assert_uint_eq (yolose_dtype_size (YOLOSE_DTYPE_BOOL), 1);
  ck_assert_str_eq (yolose_dtype_name (YOLOSE_DTYPE_BF16), "bfloat16");
  ck_assert_ptr_null (yolose_pickle_root (NULL));
  yolose_pickle_free (NULL);
  yolose_pickle_free (p);
}
END_TEST

static Suite *
pickle_suite (void)
{
  Suite *s = suite_create ("pickle");
  TCase *tc = tcase_create ("core");

  tcase_set_timeout (tc, 120);
  tcase_add_test (tc, test_scalars);
  tcase_add_test (tc, test_long_limits);
  tcase_add_test (tc, test_strings);
  tcase_add_test (tc, test_invalid_utf8);
  tcase_add_test (tc, test_lists_and_tuples);
  tcase_add_test (tc, test_dicts);
  tcase_add_test (tc, test_sets);
  tcase_add_test (tc, test_stack_ops);
  tcase_add_test (tc, test_memo_sharing);
  tcase_add_test (tc, test_cycle);
  tcase_add_test (tc, test_memo_out_of_range);
  tcase_add_test (tc, test_objects_and_attr);
  tcase_add_test (tc, test_ordered_dict);
  tcase_add_test (tc, test_tensor_constructors);
  tcase_add_test (tc, test_storage_classes);
  tcase_add_test (tc, test_bad_persistent_ids);
  tcase_add_test (tc, test_bad_tensor_args);
  tcase_add_test (tc, test_protocol4);
  tcase_add_test (tc, test_frame_too_long);
  tcase_add_test (tc, test_unsupported_opcodes);
  tcase_add_test (tc, test_protocol_versions);
  tcase_add_loop_test (tc, test_cpython_protocols, 0, 4);
  tcase_add_test (tc, test_truncated_everywhere);
  tcase_add_test (tc, test_deep_nesting);
  tcase_add_test (tc, test_stack_limit);
  tcase_add_test (tc, test_input_limit);
  tcase_add_test (tc, test_text_limit);
  tcase_add_test (tc, test_dict_work_limit);
  tcase_add_test (tc, test_stack_underflow);
  tcase_add_test (tc, test_mark_misuse);
  tcase_add_test (tc, test_wrong_kinds);
  tcase_add_test (tc, test_lengths_checked);
  tcase_add_test (tc, test_helpers);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *runner = srunner_create (pickle_suite ());
  int failed;

  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? 0 : 1;
}
