/* yolose tests — finding ../shared/testdata.
 *
 * Tests that need the upstream checkpoints or reference tensors read them in
 * place from $YOLOSE_TESTDATA (set by .ci/run).  When the variable is unset
 * or a file is missing, the test program prints why and exits with 77,
 * which meson reports as SKIP — never as a pass. */
#ifndef YOLOSE_TESTS_TESTDATA_H
#define YOLOSE_TESTS_TESTDATA_H

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>

#define YOLOSE_TEST_SKIP 77

/* Newly allocated absolute path of @relative inside the test data folder,
 * or NULL when the folder or the file is not there. */
static inline char *
yolose_test_data_path (const char *relative)
{
  const char *root = g_getenv ("YOLOSE_TESTDATA");
  char *path;

  if (root == NULL || *root == '\0')
    return NULL;
  path = g_build_filename (root, relative, NULL);
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR)) {
    g_free (path);
    return NULL;
  }
  return path;
}

/* Exits the test program as skipped, saying why, unless every file in the
 * NULL-terminated list exists. */
static inline void
yolose_test_require_data (const char *first, ...)
{
  va_list ap;
  const char *rel;

  va_start (ap, first);
  for (rel = first; rel != NULL; rel = va_arg (ap, const char *)) {
    char *path = yolose_test_data_path (rel);
    if (path == NULL) {
      const char *root = g_getenv ("YOLOSE_TESTDATA");
      printf ("SKIP: test data file '%s' not found (YOLOSE_TESTDATA=%s); "
              "set YOLOSE_TESTDATA to the shared testdata folder\n",
          rel, root ? root : "(unset)");
      fflush (stdout);
      va_end (ap);
      exit (YOLOSE_TEST_SKIP);
    }
    g_free (path);
  }
  va_end (ap);
}

#endif
