/* yolose — checkpoint (to be written) */
#include <glib.h>
