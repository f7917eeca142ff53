/* yolose — detector (to be written) */
#include <glib.h>
