/* yolose — memory for the large buffers a network touches every frame.
 *
 * The activation arena, the network's input and output, and the packed
 * weights of the larger layers are read and written once per frame, a few
 * MiB each, through many 4 KiB pages at once (a convolution reads a row
 * of up to a few hundred input planes or weight panels).  Offered to the
 * kernel as 2 MiB pages they cost far fewer TLB misses. */
#ifndef YOLOSE_BIG_ALLOC_H
#define YOLOSE_BIG_ALLOC_H

#include <glib.h>

G_BEGIN_DECLS

/* At least @bytes (never NULL for 0), aligned to @align (a power of two,
 * at least sizeof (void *)); buffers of 2 MiB or more are aligned to 2 MiB
 * and offered as huge pages, a hint that may be ignored.  Not zeroed.
 * Free with free (); NULL when out of memory. */
void *yolose_big_alloc (gsize bytes, gsize align);

G_END_DECLS

#endif
