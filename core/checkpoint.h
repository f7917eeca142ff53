/* yolose — an upstream PyTorch checkpoint (.pt, a zip archive written by
 * torch.save): the archive, its pickle, and its tensor storages.
 *
 * The archive is read with libzip.  The pickle is "<prefix>/data.pkl" where
 * <prefix> is whatever single top folder the saver chose; storages are
 * "<prefix>/data/<key>".  Nothing in the file is trusted: every offset, size
 * and stride is checked against the bytes really present. */
#ifndef YOLOSE_CHECKPOINT_H
#define YOLOSE_CHECKPOINT_H

#include <glib.h>
#include "pickle.h"

G_BEGIN_DECLS

#define YOLOSE_CHECKPOINT_ERROR (yolose_checkpoint_error_quark ())
GQuark yolose_checkpoint_error_quark (void);

typedef enum {
  YOLOSE_CHECKPOINT_ERROR_OPEN,
  YOLOSE_CHECKPOINT_ERROR_NOT_ZIP,
  YOLOSE_CHECKPOINT_ERROR_LAYOUT, /* no data.pkl, missing storage ... */
  YOLOSE_CHECKPOINT_ERROR_TENSOR, /* bad shape, stride, dtype, bounds */
} YoloseCheckpointError;

typedef struct _YoloseCheckpoint YoloseCheckpoint;

YoloseCheckpoint *yolose_checkpoint_open (const char *path, GError **error);
/* Same, from bytes in memory (the fuzzer's entry point); @data is copied. */
YoloseCheckpoint *yolose_checkpoint_open_bytes (const guint8 *data, gsize len,
    GError **error);
void yolose_checkpoint_free (YoloseCheckpoint *ckpt);

/* The unpickled data.pkl (for an upstream checkpoint: a dict with 'model',
 * 'ema', 'epoch', ...). Owned by the checkpoint. */
const YolosePyValue *yolose_checkpoint_root (const YoloseCheckpoint *ckpt);

/* Number of elements of a TENSOR value (product of sizes; 1 for 0-d), or -1
 * when @tensor is not a tensor, a size is negative or the product
 * overflows. */
gint64 yolose_tensor_numel (const YolosePyValue *tensor);

/* Copies @tensor, converted to float32 in row-major (C-contiguous) order of
 * its sizes, into a newly allocated array of yolose_tensor_numel() floats.
 * Any dtype among F16, BF16, F32, F64 is accepted; strides may be anything
 * that stays inside the storage.  Returns NULL with @error set when the
 * value is not a tensor, the storage entry is missing, too small or
 * damaged (its whole entry is read so the zip CRC is checked), or the
 * dtype is not a floating type.  An empty tensor gives a valid pointer to no
 * elements.  At most 2^28 elements per tensor.  Calls on one checkpoint are
 * serialised by a lock.  Free with g_free(). */
float *yolose_checkpoint_tensor_f32 (YoloseCheckpoint *ckpt,
    const YolosePyValue *tensor, GError **error);

G_END_DECLS

#endif
