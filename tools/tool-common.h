/* yolose tools — what yolose-detect, yolose-bench and yolose-monitor share.
 *
 * Their JSON lines (detections in the schema of upstream's reference
 * detections.json) and the way they reject a bad command line.  Only GLib
 * and json-glib: yolose-monitor does not link the core library. */
#ifndef YOLOSE_TOOL_COMMON_H
#define YOLOSE_TOOL_COMMON_H

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* TRUE when @problem is NULL; otherwise FALSE with @problem as a
 * G_OPTION_ERROR_BAD_VALUE, the error main() reports as a usage error. */
gboolean tool_check_option (const char *problem, GError **error);

/* Adds one detection object: {"class_id", "label", "confidence", "box":
 * [x1, y1, x2, y2]}, as upstream writes it: the confidence to 5 decimals,
 * the box in picture pixels rounded half to even (torch.round). */
void tool_json_add_detection (JsonBuilder *b, int class_id, const char *label,
    double confidence, const double box[4]);

/* The object built in @b as one line of JSON, without the newline; frees
 * @b. */
char *tool_json_finish_line (JsonBuilder *b);

/* Prints the object built in @b as one line on stdout, flushed so that a
 * reader sees it at once; frees @b. */
void tool_json_print_line (JsonBuilder *b);

G_END_DECLS

#endif /* YOLOSE_TOOL_COMMON_H */
