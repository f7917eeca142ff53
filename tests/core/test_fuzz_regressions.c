/* yolose tests — the fuzzers' findings and seeds, replayed on every build.
 *
 * Every file in tests/fuzz/regressions/{checkpoint,pickle}/ goes through the
 * same entry function the libFuzzer targets call (tests/fuzz/fuzz_entry.c),
 * so an input that once crashed the loader, or a corpus entry that reached
 * a deep corner, is checked without clang on every CI build, and under
 * ASan + UBSan in the sanitizer build.  libcheck forks per file: a crash is
 * reported with the file's name.
 *
 * tests/fuzz/regressions/EXPECTED says how each file must end: "ran", or
 * "refused" with a piece of the message, so a regression that turns a clear
 * refusal into another one is caught too.  The seeds (tests/fuzz/seeds/,
 * written by make_seeds.py) must all load and run: the fuzzer starts from
 * valid models. */
#include <check.h>
#include <glib/gstdio.h>
#include <string.h>

#include "../fuzz/fuzz_entry.h"

#ifndef YOLOSE_FUZZ_DIR
#error "YOLOSE_FUZZ_DIR must name tests/fuzz in the source tree"
#endif

typedef struct {
  char *path; /* absolute */
  char *name; /* relative to its top folder: "checkpoint/x.pt" */
  gboolean is_pickle;
} InputFile;

static GPtrArray *regressions; /* InputFile * */
static GPtrArray *seeds;       /* InputFile * */
static GHashTable *expected;   /* name -> "ran" | "refused\tpart" */

static void
input_file_free (gpointer data)
{
  InputFile *f = data;

  g_free (f->path);
  g_free (f->name);
  g_free (f);
}

static gint
compare_inputs (gconstpointer a, gconstpointer b)
{
  const InputFile *fa = *(const InputFile *const *)a;
  const InputFile *fb = *(const InputFile *const *)b;

  return strcmp (fa->name, fb->name);
}

/* The files of @top/checkpoint and @top/pickle, sorted by name. */
static GPtrArray *
list_inputs (const char *top)
{
  static const char *const kinds[] = { "checkpoint", "pickle" };
  GPtrArray *files = g_ptr_array_new_with_free_func (input_file_free);

  for (gsize k = 0; k < G_N_ELEMENTS (kinds); k++) {
    char *dir_path = g_build_filename (top, kinds[k], NULL);
    GDir *dir = g_dir_open (dir_path, 0, NULL);
    const char *entry;

    while (dir != NULL && (entry = g_dir_read_name (dir)) != NULL) {
      InputFile *f = g_new0 (InputFile, 1);

      f->path = g_build_filename (dir_path, entry, NULL);
      f->name = g_strdup_printf ("%s/%s", kinds[k], entry);
      f->is_pickle = k == 1;
      g_ptr_array_add (files, f);
    }
    if (dir != NULL)
      g_dir_close (dir);
    g_free (dir_path);
  }
  g_ptr_array_sort (files, compare_inputs);
  return files;
}

/* EXPECTED: one "NAME OUTCOME [MESSAGE PART]" line per file; '#' comments. */
static GHashTable *
read_expected (const char *path)
{
  GHashTable *table
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  char *text = NULL;
  char **lines;

  if (!g_file_get_contents (path, &text, NULL, NULL))
    return table;
  lines = g_strsplit (text, "\n", -1);
  for (char **line = lines; *line != NULL; line++) {
    char **fields;

    if (**line == '#' || **line == '\0')
      continue;
    fields = g_strsplit (*line, " ", 2);
    if (fields[0] != NULL && fields[1] != NULL)
      g_hash_table_insert (table, g_strdup (fields[0]),
          g_strdup (g_strstrip (fields[1])));
    g_strfreev (fields);
  }
  g_strfreev (lines);
  g_free (text);
  return table;
}

static YoloseFuzzOutcome
replay (const InputFile *f, char **message)
{
  char *data;
  gsize len;
  YoloseFuzzOutcome outcome;

  ck_assert_msg (g_file_get_contents (f->path, &data, &len, NULL),
      "cannot read %s", f->path);
  if (f->is_pickle)
    outcome = yolose_fuzz_pickle ((const guint8 *)data, len, message);
  else
    outcome = yolose_fuzz_checkpoint ((const guint8 *)data, len, message);
  g_free (data);
  return outcome;
}

static const char *
outcome_name (YoloseFuzzOutcome outcome)
{
  return outcome == YOLOSE_FUZZ_RAN ? "ran" : "refused";
}

/* A regression file ends the way EXPECTED says: no crash, no sanitizer
 * report, and the same kind of ending with the same message. */
START_TEST (test_regression_replays)
{
  const InputFile *f = g_ptr_array_index (regressions, _i);
  const char *want = g_hash_table_lookup (expected, f->name);
  char *message = NULL;
  YoloseFuzzOutcome outcome;
  char **parts;

  outcome = replay (f, &message);
  printf ("%-58s %s%s%s\n", f->name, outcome_name (outcome),
      message ? ": " : "", message ? message : "");
  fflush (stdout); /* a failed check ends the forked test with _exit */
  ck_assert_msg (want != NULL, "%s has no line in EXPECTED", f->name);
  parts = g_strsplit (want, " ", 2);
  ck_assert_msg (strcmp (parts[0], outcome_name (outcome)) == 0,
      "%s: expected %s, got %s (%s)", f->name, parts[0], outcome_name (outcome),
      message ? message : "");
  if (parts[1] != NULL)
    ck_assert_msg (message != NULL && strstr (message, parts[1]) != NULL,
        "%s: the message '%s' does not say '%s'", f->name,
        message ? message : "", parts[1]);
  g_strfreev (parts);
  g_free (message);
}
END_TEST

/* Every regression file has an EXPECTED line, every line a file, and each
 * file stays small (the real checkpoints are not regression files). */
START_TEST (test_expected_matches_files)
{
  GHashTable *names = g_hash_table_new (g_str_hash, g_str_equal);
  GHashTableIter iter;
  gpointer key;

  ck_assert_uint_gt (regressions->len, 0);
  for (guint i = 0; i < regressions->len; i++) {
    const InputFile *f = g_ptr_array_index (regressions, i);
    GStatBuf st;

    g_hash_table_add (names, f->name);
    ck_assert_msg (g_hash_table_contains (expected, f->name),
        "%s has no line in EXPECTED", f->name);
    ck_assert_int_eq (g_stat (f->path, &st), 0);
    ck_assert_msg (st.st_size < 64 * 1024, "%s is %ld bytes (>= 64 KiB)",
        f->name, (long)st.st_size);
  }
  g_hash_table_iter_init (&iter, expected);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    ck_assert_msg (g_hash_table_contains (names, key),
        "EXPECTED names %s, which is not in regressions/", (const char *)key);
  g_hash_table_destroy (names);
}
END_TEST

/* The seeds are valid: each loads, builds, prepares and runs. */
START_TEST (test_seed_runs)
{
  const InputFile *f = g_ptr_array_index (seeds, _i);
  char *message = NULL;
  YoloseFuzzOutcome outcome = replay (f, &message);

  printf ("%-58s %s%s%s\n", f->name, outcome_name (outcome),
      message ? ": " : "", message ? message : "");
  ck_assert_msg (outcome == YOLOSE_FUZZ_RAN, "seed %s was refused: %s", f->name,
      message ? message : "");
  g_free (message);
}
END_TEST

static Suite *
fuzz_regressions_suite (void)
{
  Suite *s = suite_create ("fuzz_regressions");
  TCase *tc = tcase_create ("replay");

  tcase_add_test (tc, test_expected_matches_files);
  tcase_add_loop_test (tc, test_regression_replays, 0, (int)regressions->len);
  tcase_add_loop_test (tc, test_seed_runs, 0, (int)seeds->len);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  char *top = g_build_filename (YOLOSE_FUZZ_DIR, "regressions", NULL);
  char *expected_path = g_build_filename (top, "EXPECTED", NULL);
  char *seed_top = g_build_filename (YOLOSE_FUZZ_DIR, "seeds", NULL);
  SRunner *runner;
  int failed;

  regressions = list_inputs (top);
  seeds = list_inputs (seed_top);
  expected = read_expected (expected_path);
  printf ("%u regression files, %u seeds\n", regressions->len, seeds->len);
  runner = srunner_create (fuzz_regressions_suite ());
  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  g_hash_table_destroy (expected);
  g_ptr_array_free (seeds, TRUE);
  g_ptr_array_free (regressions, TRUE);
  g_free (seed_top);
  g_free (expected_path);
  g_free (top);
  return failed == 0 ? 0 : 1;
}
