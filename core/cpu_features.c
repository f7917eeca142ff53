/* yolose — cpu_features (to be written) */
#include <glib.h>
