/* yolose — kernels_generic (to be written) */
#include <glib.h>
