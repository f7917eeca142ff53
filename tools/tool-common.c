/* yolose tools — the JSON lines and option checks the tools share. */
#include "tool-common.h"

#include <math.h>
#include <stdio.h>

gboolean
tool_check_option (const char *problem, GError **error)
{
  if (problem == NULL)
    return TRUE;
  g_set_error_literal (error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
      problem);
  return FALSE;
}

void
tool_json_add_detection (JsonBuilder *b, int class_id, const char *label,
    double confidence, const double box[4])
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "class_id");
  json_builder_add_int_value (b, class_id);
  json_builder_set_member_name (b, "label");
  json_builder_add_string_value (b, label);
  json_builder_set_member_name (b, "confidence");
  json_builder_add_double_value (b, round (confidence * 1e5) / 1e5);
  json_builder_set_member_name (b, "box");
  json_builder_begin_array (b);
  /* nearbyint() in the default rounding mode: half to even, as torch */
  for (int i = 0; i < 4; i++)
    json_builder_add_double_value (b, nearbyint (box[i]));
  json_builder_end_array (b);
  json_builder_end_object (b);
}

char *
tool_json_finish_line (JsonBuilder *b)
{
  JsonGenerator *gen = json_generator_new ();
  JsonNode *root = json_builder_get_root (b);
  char *line;

  json_generator_set_root (gen, root);
  line = json_generator_to_data (gen, NULL);
  json_node_unref (root);
  g_object_unref (gen);
  g_object_unref (b);
  return line;
}

void
tool_json_print_line (JsonBuilder *b)
{
  char *line = tool_json_finish_line (b);

  printf ("%s\n", line);
  fflush (stdout);
  g_free (line);
}
