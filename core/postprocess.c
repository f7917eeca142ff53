/* yolose — postprocess (to be written) */
#include <glib.h>
