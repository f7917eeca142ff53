/* yolose — libFuzzer target for the pickle reader alone.
 *
 * Faster than fuzz_checkpoint (no zip around the bytes), so it reaches the
 * unpickler's corners sooner.  Feeds the input to yolose_fuzz_pickle()
 * (fuzz_entry.c), which parses it and walks the result with the lookup
 * helpers; a failure must come with a message.  Every file in
 * tests/fuzz/regressions/pickle/ is replayed through the same function by
 * tests/core/test_fuzz_regressions.c on every build.
 *
 * Build: see fuzz_checkpoint.c (meson -Dfuzzing=true builds both).
 * Seeds: tests/fuzz/seeds/pickle (small pickle.dumps() outputs of
 * protocols 2 to 5, and the data.pkl of a tiny YOLOv5 checkpoint). */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_entry.h"

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  (void)yolose_fuzz_pickle (data, size, NULL);
  return 0;
}
