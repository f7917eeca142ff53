/* yolose — graph (to be written) */
#include <glib.h>
