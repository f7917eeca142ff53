/* yolose — image (to be written) */
#include <glib.h>
