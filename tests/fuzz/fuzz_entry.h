/* yolose — what the fuzz targets do with one input.
 *
 * Shared by the libFuzzer targets (clang only) and by
 * tests/core/test_fuzz_regressions.c (any compiler), so every file kept in
 * tests/fuzz/regressions/ is replayed through exactly the code the fuzzer
 * ran, on every CI build.
 *
 * Both functions return normally for any input, valid or not.  A refusal
 * without an error message is a finding: they abort, which libFuzzer and
 * libcheck both report. */
#ifndef YOLOSE_FUZZ_ENTRY_H
#define YOLOSE_FUZZ_ENTRY_H

#include <glib.h>

G_BEGIN_DECLS

/* The input size the model is built and run at: small, so an input costs
 * milliseconds, and a multiple of 32 like every size the detector takes. */
#define YOLOSE_FUZZ_INPUT_SIZE 64

typedef enum {
  YOLOSE_FUZZ_REFUSED_ARCHIVE, /* not a checkpoint: zip, pickle, layout */
  YOLOSE_FUZZ_REFUSED_MODEL,   /* a checkpoint, but no model yolose runs */
  YOLOSE_FUZZ_RAN,             /* built, prepared and one forward pass */
} YoloseFuzzOutcome;

/* The whole loading path of a .pt held in memory: the zip, the pickle, the
 * tensor table (every tensor reachable, within a budget), the model
 * builder, the graph's memory plan and weight packing, and one forward
 * pass at YOLOSE_FUZZ_INPUT_SIZE.  When @message is not NULL it receives
 * the refusal's message (or NULL), to free with g_free(). */
YoloseFuzzOutcome yolose_fuzz_checkpoint (const guint8 *data, gsize size,
    char **message);

/* The pickle reader alone, then a walk over every value it built. */
YoloseFuzzOutcome yolose_fuzz_pickle (const guint8 *data, gsize size,
    char **message);

G_END_DECLS

#endif
