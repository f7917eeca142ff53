/* yolose — kernels_select (to be written) */
#include <glib.h>
