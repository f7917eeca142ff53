/* yolose — pickle (to be written) */
#include <glib.h>
