/* yolose — model_builder (to be written) */
#include <glib.h>
