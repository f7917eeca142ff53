/* yolose — a data-only reader for Python pickles (protocols 2–5).
 *
 * It builds values (None, bool, int, float, str, bytes, list, tuple, dict)
 * and represents every class it meets as an opaque named object holding its
 * constructor arguments and its state.  It never imports or runs anything:
 * GLOBAL only records a (module, name) pair.  A handful of well-known
 * callables are interpreted as data constructors:
 *   collections.OrderedDict()          -> YOLOSE_PY_DICT
 *   __builtin__.set / builtins.set     -> YOLOSE_PY_LIST
 *   torch._utils._rebuild_tensor_v2    -> YOLOSE_PY_TENSOR
 *   torch._utils._rebuild_parameter    -> its tensor argument
 *   torch._utils._rebuild_parameter_with_state (torch 2.x) -> the same
 * Persistent ids ('storage', <class>, key, location, numel) become
 * YOLOSE_PY_STORAGE.
 *
 * All values belong to the YolosePickle document and are freed with it, so a
 * memo shared by many places (or a hostile cycle) never leaks. */
#ifndef YOLOSE_PICKLE_H
#define YOLOSE_PICKLE_H

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  YOLOSE_PY_NONE,
  YOLOSE_PY_BOOL,
  YOLOSE_PY_INT,
  YOLOSE_PY_FLOAT,
  YOLOSE_PY_STRING, /* UTF-8, NUL-terminated, length in len */
  YOLOSE_PY_BYTES,
  YOLOSE_PY_LIST,
  YOLOSE_PY_TUPLE,
  YOLOSE_PY_DICT,   /* keys kept in insertion order */
  YOLOSE_PY_GLOBAL, /* a class or function reference */
  YOLOSE_PY_OBJECT, /* instance of a class: args + state */
  YOLOSE_PY_STORAGE,
  YOLOSE_PY_TENSOR,
} YolosePyKind;

typedef enum {
  YOLOSE_DTYPE_F16,
  YOLOSE_DTYPE_BF16,
  YOLOSE_DTYPE_F32,
  YOLOSE_DTYPE_F64,
  YOLOSE_DTYPE_I64,
  YOLOSE_DTYPE_I32,
  YOLOSE_DTYPE_U8,
  YOLOSE_DTYPE_BOOL,
} YoloseDType;

#define YOLOSE_TENSOR_MAX_DIMS 8

typedef struct _YolosePyValue YolosePyValue;

struct _YolosePyValue {
  YolosePyKind kind;
  union {
    gboolean boolean;
    gint64 integer;
    double real;
    struct {
      char *data;
      gsize len;
    } str; /* STRING and BYTES */
    struct {
      YolosePyValue **items;
      gsize len;
      gsize cap;
    } seq; /* LIST and TUPLE */
    struct {
      YolosePyValue **keys;
      YolosePyValue **values;
      gsize len;
      gsize cap;
    } dict;
    struct {
      char *module;
      char *name;
    } global;
    struct {
      char *module; /* class of the instance */
      char *name;
      YolosePyValue *args;  /* tuple, may be NULL */
      YolosePyValue *state; /* set by BUILD, may be NULL */
    } object;
    struct {
      YoloseDType dtype;
      char *key; /* entry name under <prefix>/data/ */
      gint64 numel;
    } storage;
    struct {
      YolosePyValue *storage; /* kind YOLOSE_PY_STORAGE */
      gint64 offset;          /* in elements */
      int ndim;
      gint64 sizes[YOLOSE_TENSOR_MAX_DIMS];
      gint64 strides[YOLOSE_TENSOR_MAX_DIMS];
    } tensor;
  } v;
};

typedef struct _YolosePickle YolosePickle;

#define YOLOSE_PICKLE_ERROR (yolose_pickle_error_quark ())
GQuark yolose_pickle_error_quark (void);

typedef enum {
  YOLOSE_PICKLE_ERROR_TRUNCATED,
  YOLOSE_PICKLE_ERROR_UNSUPPORTED_OPCODE,
  YOLOSE_PICKLE_ERROR_MALFORMED,
  YOLOSE_PICKLE_ERROR_LIMIT,
} YolosePickleError;

/* Parses @len bytes of pickle.  Never reads outside [data, data+len).  On
 * failure returns NULL and sets @error with a message naming the offset and
 * the cause (e.g. "unsupported pickle opcode 0x69 (INST) at offset 1234").
 *
 * Data opcodes of protocols 2-5 are accepted; the text forms of protocols
 * 0-1, INST/OBJ/EXT*, PERSID, NEWOBJ_EX and out-of-band buffers are refused.
 * Integers must fit in 64 bits.  Dict keys that are str, bytes or int are
 * unique (a later SETITEM replaces the value in place, as in Python); other
 * keys are kept as given.  None, True and False are shared values.  Every
 * resource has a ceiling (64 MiB input, 4M values, 16M container items,
 * 256 MiB of string copies, 1M stack entries, 64k open MARKs, 4M memo
 * slots, ~1 s of dict hashing), and the parser never recurses, so a
 * hostile file gets an error in bounded time and memory, not a crash.
 * BUILD sets an OBJECT's state (merging dict into dict) or updates a DICT
 * from a dict; anything else is refused.  Persistent ids must be torch
 * storages; the storage classes Half, BFloat16, Float, Double, Long, Int,
 * Byte, Bool and Untyped (bytes) are known, others are refused. */
YolosePickle *yolose_pickle_parse (const guint8 *data, gsize len,
    GError **error);
void yolose_pickle_free (YolosePickle *pickle);
const YolosePyValue *yolose_pickle_root (const YolosePickle *pickle);

/* Lookup helpers; all return NULL when absent or of the wrong kind. */
/* The value of the str key @key. */
const YolosePyValue *yolose_py_dict_get (const YolosePyValue *dict,
    const char *key);
/* For an OBJECT: its state dict's entry @name, else the entry in
 * state['_parameters'], state['_buffers'] or state['_modules'] (torch
 * nn.Module keeps parameters and children there). */
const YolosePyValue *yolose_py_attr (const YolosePyValue *object,
    const char *name);
/* TRUE when @object is an OBJECT of class @module.@name, or that GLOBAL
 * itself; a NULL @module matches any module. */
gboolean yolose_py_is_class (const YolosePyValue *object, const char *module,
    const char *name);
gboolean yolose_py_get_int (const YolosePyValue *value, gint64 *out);
/* Accepts INT and FLOAT. */
gboolean yolose_py_get_number (const YolosePyValue *value, double *out);
const char *yolose_py_get_string (const YolosePyValue *value);
/* Number of items of a LIST or TUPLE, 0 otherwise; and the item. */
gsize yolose_py_len (const YolosePyValue *seq);
const YolosePyValue *yolose_py_item (const YolosePyValue *seq, gsize index);
const char *yolose_py_kind_name (YolosePyKind kind);
gsize yolose_dtype_size (YoloseDType dtype);
const char *yolose_dtype_name (YoloseDType dtype);

G_END_DECLS

#endif
