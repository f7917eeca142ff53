/* yolose tests — writing pickle byte strings by hand.
 *
 * Each helper appends one opcode (with its argument) to a GByteArray, so a
 * test reads like the `pickletools.dis` listing of the pickle it builds.
 * The opcode bytes are spelled out here, independently of core/pickle.c. */
#ifndef YOLOSE_TESTS_PICKLE_BUILDER_H
#define YOLOSE_TESTS_PICKLE_BUILDER_H

#include <glib.h>
#include <string.h>

static inline void
pb_byte (GByteArray *b, guint8 byte)
{
  g_byte_array_append (b, &byte, 1);
}

static inline void
pb_le (GByteArray *b, guint64 value, guint size)
{
  for (guint i = 0; i < size; i++)
    pb_byte (b, (guint8)(value >> (8 * i)));
}

static inline void
pb_bytes (GByteArray *b, const void *data, gsize len)
{
  g_byte_array_append (b, data, (guint)len);
}

static inline void
pb_proto (GByteArray *b, guint8 version)
{
  pb_byte (b, 0x80);
  pb_byte (b, version);
}

static inline void
pb_op (GByteArray *b, guint8 op)
{
  pb_byte (b, op);
}

#define PB_MARK '('
#define PB_STOP '.'
#define PB_POP '0'
#define PB_POP_MARK '1'
#define PB_DUP '2'
#define PB_NONE 'N'
#define PB_NEWTRUE 0x88
#define PB_NEWFALSE 0x89
#define PB_EMPTY_TUPLE ')'
#define PB_EMPTY_LIST ']'
#define PB_EMPTY_DICT '}'
#define PB_EMPTY_SET 0x8f
#define PB_TUPLE 't'
#define PB_TUPLE1 0x85
#define PB_TUPLE2 0x86
#define PB_TUPLE3 0x87
#define PB_LIST 'l'
#define PB_DICT 'd'
#define PB_APPEND 'a'
#define PB_APPENDS 'e'
#define PB_SETITEM 's'
#define PB_SETITEMS 'u'
#define PB_ADDITEMS 0x90
#define PB_FROZENSET 0x91
#define PB_REDUCE 'R'
#define PB_BUILD 'b'
#define PB_NEWOBJ 0x81
#define PB_BINPERSID 'Q'
#define PB_MEMOIZE 0x94
#define PB_STACK_GLOBAL 0x93

/* BININT1, BININT2 or BININT as CPython's pickler chooses. */
static inline void
pb_int (GByteArray *b, gint32 value)
{
  if (value >= 0 && value < 256) {
    pb_byte (b, 'K');
    pb_le (b, (guint64)value, 1);
  } else if (value >= 0 && value < 65536) {
    pb_byte (b, 'M');
    pb_le (b, (guint64)value, 2);
  } else {
    pb_byte (b, 'J');
    pb_le (b, (guint32)value, 4);
  }
}

/* LONG1 with an explicit little-endian two's complement body. */
static inline void
pb_long1 (GByteArray *b, const guint8 *body, guint8 len)
{
  pb_byte (b, 0x8a);
  pb_byte (b, len);
  pb_bytes (b, body, len);
}

static inline void
pb_float (GByteArray *b, double value)
{
  guint64 bits;

  memcpy (&bits, &value, sizeof bits);
  pb_byte (b, 'G');
  for (int i = 7; i >= 0; i--)
    pb_byte (b, (guint8)(bits >> (8 * i)));
}

/* BINUNICODE (4-byte length). */
static inline void
pb_str (GByteArray *b, const char *text)
{
  gsize len = strlen (text);

  pb_byte (b, 'X');
  pb_le (b, len, 4);
  pb_bytes (b, text, len);
}

static inline void
pb_short_str (GByteArray *b, const char *text)
{
  gsize len = strlen (text);

  pb_byte (b, 0x8c);
  pb_le (b, len, 1);
  pb_bytes (b, text, len);
}

static inline void
pb_str8 (GByteArray *b, const char *text)
{
  gsize len = strlen (text);

  pb_byte (b, 0x8d);
  pb_le (b, len, 8);
  pb_bytes (b, text, len);
}

/* BINBYTES (size 4), SHORT_BINBYTES (size 1) or BINBYTES8 (size 8). */
static inline void
pb_binbytes (GByteArray *b, const void *data, gsize len, guint len_size)
{
  pb_byte (b, len_size == 1 ? 'C' : len_size == 4 ? 'B' : 0x8e);
  pb_le (b, len, len_size);
  pb_bytes (b, data, len);
}

static inline void
pb_global (GByteArray *b, const char *module, const char *name)
{
  pb_byte (b, 'c');
  pb_bytes (b, module, strlen (module));
  pb_byte (b, '\n');
  pb_bytes (b, name, strlen (name));
  pb_byte (b, '\n');
}

static inline void
pb_binput (GByteArray *b, guint8 index)
{
  pb_byte (b, 'q');
  pb_byte (b, index);
}

static inline void
pb_long_binput (GByteArray *b, guint32 index)
{
  pb_byte (b, 'r');
  pb_le (b, index, 4);
}

static inline void
pb_binget (GByteArray *b, guint8 index)
{
  pb_byte (b, 'h');
  pb_byte (b, index);
}

static inline void
pb_long_binget (GByteArray *b, guint32 index)
{
  pb_byte (b, 'j');
  pb_le (b, index, 4);
}

static inline void
pb_frame (GByteArray *b, guint64 len)
{
  pb_byte (b, 0x95);
  pb_le (b, len, 8);
}

/* Any 64-bit int: BININT* when it fits in 32 bits, else an 8-byte LONG1. */
static inline void
pb_int64 (GByteArray *b, gint64 value)
{
  guint8 body[8];

  if (value >= G_MININT32 && value <= G_MAXINT32) {
    pb_int (b, (gint32)value);
    return;
  }
  for (int i = 0; i < 8; i++)
    body[i] = (guint8)((guint64)value >> (8 * i));
  pb_long1 (b, body, 8);
}

/* A tuple of ints, as torch writes sizes and strides. */
static inline void
pb_int_tuple (GByteArray *b, int n, const gint64 *values)
{
  pb_op (b, PB_MARK);
  for (int i = 0; i < n; i++)
    pb_int64 (b, values[i]);
  pb_op (b, PB_TUPLE);
}

/* torch's persistent id: ('storage', torch.<cls>, key, 'cpu', numel). */
static inline void
pb_storage (GByteArray *b, const char *cls, const char *key, gint32 numel)
{
  pb_op (b, PB_MARK);
  pb_str (b, "storage");
  pb_global (b, "torch", cls);
  pb_str (b, key);
  pb_str (b, "cpu");
  pb_int (b, numel);
  pb_op (b, PB_TUPLE);
  pb_op (b, PB_BINPERSID);
}

/* _rebuild_parameter (_rebuild_tensor_v2 (storage, offset, sizes, strides,
 * False, OrderedDict ()), False, OrderedDict ()), exactly as torch 1.x
 * pickles an nn.Parameter. */
static inline void
pb_parameter (GByteArray *b, const char *cls, const char *key,
    gint32 storage_numel, gint32 offset, int ndim, const gint64 *sizes,
    const gint64 *strides)
{
  pb_global (b, "torch._utils", "_rebuild_parameter");
  pb_global (b, "torch._utils", "_rebuild_tensor_v2");
  pb_op (b, PB_MARK);
  pb_storage (b, cls, key, storage_numel);
  pb_int (b, offset);
  pb_int_tuple (b, ndim, sizes);
  pb_int_tuple (b, ndim, strides);
  pb_op (b, PB_NEWFALSE);
  pb_global (b, "collections", "OrderedDict");
  pb_op (b, PB_EMPTY_TUPLE);
  pb_op (b, PB_REDUCE);
  pb_op (b, PB_TUPLE);
  pb_op (b, PB_REDUCE);
  pb_op (b, PB_NEWFALSE);
  pb_global (b, "collections", "OrderedDict");
  pb_op (b, PB_EMPTY_TUPLE);
  pb_op (b, PB_REDUCE);
  pb_op (b, PB_TUPLE3);
  pb_op (b, PB_REDUCE);
}

#endif
