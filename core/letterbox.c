/* yolose — letterbox (to be written) */
#include <glib.h>
