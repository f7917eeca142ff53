/* yolose — kernels_avx2 (to be written) */
#include <glib.h>
