/* yolose — run-time CPU feature checks, cached on first use. */
#ifndef YOLOSE_CPU_FEATURES_H
#define YOLOSE_CPU_FEATURES_H

#include <glib.h>

G_BEGIN_DECLS

/* TRUE when the CPU has AVX2 and FMA and the OS saves the AVX state
 * (OSXSAVE + XCR0 bits 1 and 2). */
gboolean yolose_cpu_has_avx2_fma (void);

/* TRUE when, on top of that, the CPU has AVX-512F and the OS saves the
 * opmask and zmm state (XCR0 bits 5, 6 and 7). */
gboolean yolose_cpu_has_avx512 (void);

G_END_DECLS

#endif
