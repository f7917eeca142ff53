/* yolose tests — running under a slow checker (valgrind's memcheck).
 *
 * CI runs the whole test suite under memcheck too, which makes a test 20 to
 * 60 times slower (800 times for the AVX2 kernels: valgrind 3.19 emulates
 * each lane of an FMA instruction with a helper call, and it cannot run
 * AVX-512 at all).  There it sets two variables, which the normal test
 * command never sets:
 *
 *   YOLOSE_TEST_QUICK=1         fewer repetitions and sizes; every code path
 *                               still runs at least once, and each test
 *                               prints what it leaves out.
 *   YOLOSE_TEST_KERNELS=NAME    only that kernel table ("generic") in the
 *                               tests that loop over the tables; the others
 *                               say they skipped it.
 */
#ifndef YOLOSE_TESTS_SLOWCHECK_H
#define YOLOSE_TESTS_SLOWCHECK_H

#include <glib.h>
#include <stdio.h>
#include <string.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define YOLOSE_TEST_HAVE_VALGRIND_H 1
#endif
#endif

/* Whether YOLOSE_TEST_QUICK is set (to anything but "" or "0"). */
static inline gboolean
yolose_test_quick (void)
{
  const char *quick = g_getenv ("YOLOSE_TEST_QUICK");

  return quick != NULL && *quick != '\0' && strcmp (quick, "0") != 0;
}

/* @normal, or @fast in quick mode. */
static inline int
yolose_test_count (int normal, int fast)
{
  return yolose_test_quick () ? fast : normal;
}

/* Prints, in quick mode only, what the test leaves out (a printf format). */
#define yolose_test_quick_note(...)                                            \
  do {                                                                         \
    if (yolose_test_quick ()) {                                                \
      printf ("quick mode (YOLOSE_TEST_QUICK): ");                             \
      printf (__VA_ARGS__);                                                    \
      printf ("\n");                                                           \
      fflush (stdout);                                                         \
    }                                                                          \
  } while (0)

/* TRUE, with a note, when $YOLOSE_TEST_KERNELS names a table other than
 * @name: the test then skips that table. */
static inline gboolean
yolose_test_kernels_excluded (const char *name)
{
  const char *only = g_getenv ("YOLOSE_TEST_KERNELS");

  if (only == NULL || *only == '\0' || strcmp (only, "auto") == 0
      || strcmp (only, name) == 0)
    return FALSE;
  printf ("note: YOLOSE_TEST_KERNELS=%s: the %s kernels are not tested in "
          "this run\n",
      only, name);
  fflush (stdout);
  return TRUE;
}

/* The kernel table for the tests' "best this CPU runs" detectors:
 * $YOLOSE_TEST_KERNELS when set, otherwise NULL ("auto"). */
static inline const char *
yolose_test_kernels_default (void)
{
  const char *only = g_getenv ("YOLOSE_TEST_KERNELS");

  return only != NULL && *only != '\0' ? only : NULL;
}

/* Whether the program runs under valgrind: its client request when the
 * header is there, otherwise its preloaded library in LD_PRELOAD. */
static inline gboolean
yolose_test_under_valgrind (void)
{
  const char *preload = g_getenv ("LD_PRELOAD");

#ifdef YOLOSE_TEST_HAVE_VALGRIND_H
  if (RUNNING_ON_VALGRIND)
    return TRUE;
#endif
  return preload != NULL && strstr (preload, "vgpreload") != NULL;
}

#endif
