/* yolose element — loading a detector and naming its classes. */
#include "gstyolosemodel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

gchar **
gst_yolose_read_labels_file (const gchar *path, GError **error)
{
  gchar *contents = NULL;
  gchar **lines;
  GPtrArray *labels;

  if (!g_file_get_contents (path, &contents, NULL, error))
    return NULL;

  labels = g_ptr_array_new ();
  lines = g_strsplit (contents, "\n", -1);
  for (gchar **line = lines; *line != NULL; line++) {
    gchar *label = g_strstrip (*line);
    if (*label != '\0')
      g_ptr_array_add (labels, g_strdup (label));
  }
  g_strfreev (lines);
  g_free (contents);

  if (labels->len == 0) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
        "labels file '%s' holds no label", path);
    g_ptr_array_free (labels, TRUE);
    return NULL;
  }
  g_ptr_array_add (labels, NULL);
  return (gchar **)g_ptr_array_free (labels, FALSE);
}

/* The checkpoint's own names; a class the checkpoint leaves unnamed is
 * called by its number so that every detection has a label. */
static gchar **
labels_from_detector (const YoloseDetector *det, int num_classes)
{
  gchar **labels = g_new0 (gchar *, num_classes + 1);

  for (int i = 0; i < num_classes; i++) {
    const char *name = yolose_detector_get_class_name (det, i);
    labels[i] = name ? g_strdup (name) : g_strdup_printf ("class%d", i);
  }
  return labels;
}

static gchar **
labels_from_file (const gchar *path, int num_classes, GError **error)
{
  gchar **labels = gst_yolose_read_labels_file (path, error);

  if (labels == NULL)
    return NULL;
  if (g_strv_length (labels) != (guint)num_classes) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_INVAL,
        "labels file '%s' has %u labels but the model has %d classes", path,
        g_strv_length (labels), num_classes);
    g_strfreev (labels);
    return NULL;
  }
  return labels;
}

GstYoloseModel *
gst_yolose_model_load (const YoloseConfig *config, const gchar *labels_file,
    GError **error)
{
  YoloseDetector *det;
  GstYoloseModel *model;
  gchar **labels;
  int num_classes;

  det = yolose_detector_new (config, error);
  if (det == NULL)
    return NULL;

  num_classes = yolose_detector_get_num_classes (det);
  if (labels_file != NULL && *labels_file != '\0')
    labels = labels_from_file (labels_file, num_classes, error);
  else
    labels = labels_from_detector (det, num_classes);
  if (labels == NULL) {
    yolose_detector_free (det);
    return NULL;
  }

  model = g_new0 (GstYoloseModel, 1);
  model->detector = det;
  model->num_classes = num_classes;
  model->input_size = yolose_detector_get_input_size (det);
  model->labels = labels;
  model->label_quarks = g_new (GQuark, num_classes > 0 ? num_classes : 1);
  for (int i = 0; i < num_classes; i++)
    model->label_quarks[i] = g_quark_from_string (labels[i]);
  return model;
}

void
gst_yolose_model_free (GstYoloseModel *model)
{
  if (model == NULL)
    return;
  yolose_detector_free (model->detector);
  g_strfreev (model->labels);
  g_free (model->label_quarks);
  g_free (model);
}

/* A class id written in decimal, or -1 when @entry is not a number. */
static int
parse_class_id (const gchar *entry)
{
  gchar *end;
  gint64 id;

  if (!g_ascii_isdigit (entry[0]))
    return -1;
  errno = 0;
  id = g_ascii_strtoll (entry, &end, 10);
  if (errno != 0 || *end != '\0' || id > G_MAXINT)
    return -1;
  return (int)id;
}

static int
find_label (const gchar *entry, const gchar *const *labels, int num_classes)
{
  for (int i = 0; i < num_classes; i++) {
    if (g_strcmp0 (labels[i], entry) == 0)
      return i;
  }
  return -1;
}

gboolean
gst_yolose_parse_classes (const gchar *spec, const gchar *const *labels,
    int num_classes, guint8 *mask, GError **error)
{
  gchar **entries;
  gboolean any = FALSE;
  gboolean ok = TRUE;

  memset (mask, 0, num_classes);
  entries = g_strsplit (spec ? spec : "", ",", -1);
  for (gchar **e = entries; *e != NULL && ok; e++) {
    const gchar *entry = g_strstrip (*e);
    int id;

    if (*entry == '\0')
      continue;
    /* A label wins over a number so that a model whose classes are called
     * "0", "1", ... still filters by name. */
    id = find_label (entry, labels, num_classes);
    if (id < 0)
      id = parse_class_id (entry);
    if (id < 0 || id >= num_classes) {
      g_set_error (error, YOLOSE_ERROR, YOLOSE_ERROR_CONFIG,
          "'%s' in classes names no class of the model (it has %d classes, "
          "ids 0 to %d)",
          entry, num_classes, num_classes - 1);
      ok = FALSE;
      break;
    }
    mask[id] = 1;
    any = TRUE;
  }
  g_strfreev (entries);

  if (ok && !any)
    memset (mask, 1, num_classes);
  return ok;
}
