/* yolose — memory for the large per-frame buffers (see big_alloc.h). */
#include "big_alloc.h"

#include <stdlib.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#define HUGE_PAGE_BYTES ((gsize)2 << 20)

void *
yolose_big_alloc (gsize bytes, gsize align)
{
  void *mem = NULL;

  bytes = MAX (bytes, align);
  if (bytes >= HUGE_PAGE_BYTES)
    align = MAX (align, HUGE_PAGE_BYTES);
  if (posix_memalign (&mem, align, bytes) != 0)
    return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (align >= HUGE_PAGE_BYTES)
    madvise (mem, bytes, MADV_HUGEPAGE); /* a hint: failure is harmless */
#endif
  return mem;
}
