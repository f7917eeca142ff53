/* yolose tests — core/big_alloc.c: sizes, alignment, the 2 MiB rule.
 *
 * Whether the kernel grants huge pages is up to it (the madvise is a
 * hint), so that is not asserted; what callers rely on is. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "big_alloc.h"

#define MIB ((gsize)1 << 20)

/* Every byte is usable (ASan would see an overrun) and the alignment is
 * the one asked for, or 2 MiB from 2 MiB up. */
START_TEST (test_alignment_and_size)
{
  static const gsize sizes[]
      = { 0, 1, 63, 64, 4096, 2 * MIB - 1, 2 * MIB, 5 * MIB + 3 };
  static const gsize aligns[] = { 8, 64, 4096 };

  for (gsize i = 0; i < G_N_ELEMENTS (sizes); i++)
    for (gsize j = 0; j < G_N_ELEMENTS (aligns); j++) {
      gsize bytes = sizes[i], align = aligns[j];
      gsize expect = bytes >= 2 * MIB ? 2 * MIB : align;
      unsigned char *p = yolose_big_alloc (bytes, align);

      ck_assert_msg (p != NULL, "%zu bytes, align %zu: NULL", bytes, align);
      ck_assert_msg ((uintptr_t)p % expect == 0,
          "%zu bytes, align %zu: %p is not aligned to %zu", bytes, align,
          (void *)p, expect);
      memset (p, 0xa5, bytes);
      if (bytes > 0)
        ck_assert_int_eq (p[bytes - 1], 0xa5);
      free (p);
    }
}
END_TEST

static Suite *
big_alloc_suite (void)
{
  Suite *s = suite_create ("big_alloc");
  TCase *tc = tcase_create ("big_alloc");

  tcase_add_test (tc, test_alignment_and_size);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *runner = srunner_create (big_alloc_suite ());
  int failed;

  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? 0 : 1;
}
