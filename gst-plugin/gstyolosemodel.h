/* yolose element — one loaded detector with the names the element shows.
 *
 * The element never touches YoloseDetector directly: it holds a
 * GstYoloseModel, which adds what a GStreamer user sees (the label of each
 * class, from the checkpoint or a labels file, interned as quarks so that a
 * detection can carry its label across a model swap) and the parsing of the
 * `classes` filter, which needs those labels. */
#ifndef GST_YOLOSE_MODEL_H
#define GST_YOLOSE_MODEL_H

#include <glib.h>
#include "yolose.h"

G_BEGIN_DECLS

typedef struct {
  YoloseDetector *detector;
  int num_classes;
  int input_size;       /* S, the network's square input */
  gchar **labels;       /* num_classes names, NULL-terminated */
  GQuark *label_quarks; /* num_classes */
} GstYoloseModel;

/* One detection as the element stores it between frames.  The label is a
 * quark so it stays valid whatever model is loaded later. */
typedef struct {
  float x1, y1, x2, y2; /* frame pixels */
  float confidence;
  int class_id;
  GQuark label;
} GstYoloseBox;

/* Loads @config's checkpoint; when @labels_file is non-NULL and not empty,
 * its lines (one label a line) replace the checkpoint's class names and
 * must be exactly as many as the model has classes. */
GstYoloseModel *gst_yolose_model_load (const YoloseConfig *config,
    const gchar *labels_file, GError **error);
void gst_yolose_model_free (GstYoloseModel *model);

/* Reads a labels file: one label a line, surrounding blanks removed,
 * blank lines ignored. */
gchar **gst_yolose_read_labels_file (const gchar *path, GError **error);

/* Parses a `classes` filter: comma-separated labels or numeric ids.  Fills
 * @mask (@num_classes bytes, non-zero = keep) and returns TRUE; an empty or
 * NULL @spec keeps every class.  An entry that names no class fails with an
 * error naming it. */
gboolean gst_yolose_parse_classes (const gchar *spec,
    const gchar *const *labels, int num_classes, guint8 *mask, GError **error);

G_END_DECLS

#endif
