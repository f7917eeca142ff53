/* yolose tests — running a built command-line tool and keeping what it said.
 *
 * The tools' tests (yolose-detect, yolose-bench) run the freshly built
 * program, whose path meson passes them, and check its exit status and
 * output.  The child is started by g_spawn_sync straight from its path (no
 * shell, no PATH search), so that valgrind's --trace-children in CI's
 * memcheck step follows it into the tool itself; a memory error there makes
 * the tool exit 99, which fails every check that expects a run to succeed.
 *
 * A run whose first argument is "--model" gets $YOLOSE_TEST_KERNELS as
 * --kernels before it (see slowcheck.h), and, when the caller allows it,
 * a smaller network input in quick mode. */
#ifndef YOLOSE_TESTS_TOOL_RUN_H
#define YOLOSE_TESTS_TOOL_RUN_H

#include <check.h>
#include <glib.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>

#include "slowcheck.h"

typedef struct {
  int status; /* exit code, or -1 if it did not exit */
  char *out, *err;
} YoloseToolRun;

static inline void
yolose_tool_run_clear (YoloseToolRun *run)
{
  g_free (run->out);
  g_free (run->err);
}

/* Runs @tool with the NULL-terminated arguments @first, @ap and waits for
 * it.  When @quick_size is not NULL, a run with a model gets
 * "--size @quick_size" in quick mode (for checks that hold at any network
 * input size).  Fails the test when the tool cannot be started at all. */
static inline YoloseToolRun
yolose_test_run_toolv (const char *tool, const char *quick_size,
    const char *first, va_list ap)
{
  GPtrArray *argv = g_ptr_array_new ();
  YoloseToolRun run = { -1, NULL, NULL };
  GError *error = NULL;
  int wait_status = 0;
  const char *kernels = yolose_test_kernels_default ();

  g_ptr_array_add (argv, (gpointer)tool);
  if (first != NULL && strcmp (first, "--model") == 0) {
    if (kernels != NULL) {
      g_ptr_array_add (argv, "--kernels");
      g_ptr_array_add (argv, (gpointer)kernels);
    }
    if (quick_size != NULL && yolose_test_quick ()) {
      g_ptr_array_add (argv, "--size");
      g_ptr_array_add (argv, (gpointer)quick_size);
    }
  }
  for (const char *a = first; a != NULL; a = va_arg (ap, const char *))
    g_ptr_array_add (argv, (gpointer)a);
  g_ptr_array_add (argv, NULL);
  ck_assert_msg (g_spawn_sync (NULL, (char **)argv->pdata, NULL,
                     G_SPAWN_DEFAULT, NULL, NULL, &run.out, &run.err,
                     &wait_status, &error),
      "cannot run %s: %s", tool, error ? error->message : "");
  if (WIFEXITED (wait_status))
    run.status = WEXITSTATUS (wait_status);
  g_ptr_array_free (argv, TRUE);
  return run;
}

/* Runs @tool with the NULL-terminated arguments after it. */
static inline YoloseToolRun
yolose_test_run_tool (const char *tool, const char *first, ...)
{
  YoloseToolRun run;
  va_list ap;

  va_start (ap, first);
  run = yolose_test_run_toolv (tool, NULL, first, ap);
  va_end (ap);
  return run;
}

#endif
