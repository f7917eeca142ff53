/* yolose tests — a frame through the detector allocates nothing.
 *
 * The detector plans its arena, scratch and NMS buffers when it is built;
 * a frame (letterbox, network, decode, NMS) must then run without a single
 * malloc, on every kernel table.  The test program counts calls by
 * defining malloc and friends itself (they forward to glibc's __libc_*
 * entry points), which every library of the process then uses.
 * Sanitizer builds replace malloc themselves, and so does valgrind (its
 * preloaded library takes over malloc in the program too: the counter sees
 * nothing), so there the test skips. */
#include <check.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parity.h"
#include "slowcheck.h"
#include "testdata.h"
#include "yolose.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define COUNTING_POSSIBLE 0
#endif
#if !defined(COUNTING_POSSIBLE) && defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define COUNTING_POSSIBLE 0
#endif
#endif
#if !defined(COUNTING_POSSIBLE) && defined(__GLIBC__)
#define COUNTING_POSSIBLE 1
#endif
#ifndef COUNTING_POSSIBLE
#define COUNTING_POSSIBLE 0
#endif

static atomic_int counting;
static atomic_long n_allocations;

#if COUNTING_POSSIBLE
extern void *__libc_malloc (size_t size);
extern void *__libc_calloc (size_t n, size_t size);
extern void *__libc_realloc (void *p, size_t size);
extern void *__libc_memalign (size_t align, size_t size);
extern void __libc_free (void *p);

static void
note_allocation (void)
{
  if (atomic_load_explicit (&counting, memory_order_relaxed))
    atomic_fetch_add_explicit (&n_allocations, 1, memory_order_relaxed);
}

void *
malloc (size_t size)
{
  note_allocation ();
  return __libc_malloc (size);
}

void *
calloc (size_t n, size_t size)
{
  note_allocation ();
  return __libc_calloc (n, size);
}

void *
realloc (void *p, size_t size)
{
  note_allocation ();
  return __libc_realloc (p, size);
}

void *
aligned_alloc (size_t align, size_t size)
{
  note_allocation ();
  return __libc_memalign (align, size);
}

int
posix_memalign (void **out, size_t align, size_t size)
{
  void *p;

  note_allocation ();
  p = __libc_memalign (align, size);
  if (p == NULL)
    return 12; /* ENOMEM */
  *out = p;
  return 0;
}

void
free (void *p)
{
  __libc_free (p);
}
#endif

static long
stop_counting (void)
{
  atomic_store (&counting, 0);
  return atomic_load (&n_allocations);
}

static void
start_counting (void)
{
  atomic_store (&n_allocations, 0);
  atomic_store (&counting, 1);
}

/* A picture of noise, 500 x 375 (the letterbox pads it), in RGB. */
static guint8 *
noise_picture (int width, int height)
{
  GRand *rand = g_rand_new_with_seed (42);
  guint8 *rgb = g_malloc ((gsize)width * height * 3);

  for (gsize i = 0; i < (gsize)width * height * 3; i++)
    rgb[i] = (guint8)g_rand_int_range (rand, 0, 256);
  g_rand_free (rand);
  return rgb;
}

/* The counter sees the allocations of this process, including GLib's:
 * without that, the test below could never fail. */
START_TEST (test_counter_counts)
{
  gpointer p;

  start_counting ();
  p = g_malloc (100);
  g_free (p);
  ck_assert_int_eq (stop_counting (), 1);
}
END_TEST

/* Frames through yolose_detector_detect allocate nothing, on 2 threads,
 * once the detector exists (the first frames may start the thread pool). */
START_TEST (test_frames_allocate_nothing)
{
  const char *table = yolose_test_kernels_name (_i);
  char *model = yolose_test_data_path ("models/yolov5n-se-coco.pt");
  int width = 500, height = 375;
  guint8 *rgb = noise_picture (width, height);
  YoloseDetection found[300];
  YoloseNmsParams params;
  YoloseDetector *det;
  YoloseImage image;
  long counted;

  if (yolose_test_kernels_excluded (table)
      || !yolose_test_kernels_available (_i)) {
    g_free (model);
    g_free (rgb);
    return;
  }
  det = yolose_test_detector_new (model, 320, table);
  yolose_nms_params_init (&params);
  params.conf_threshold = 0.001f; /* plenty of candidates for NMS */
  yolose_image_init_rgb (&image, rgb, width, height, width * 3);
  for (int i = 0; i < 2; i++)
    yolose_detector_detect (det, &image, &params, found, G_N_ELEMENTS (found));

  start_counting ();
  for (int i = 0; i < 3; i++)
    yolose_detector_detect (det, &image, &params, found, G_N_ELEMENTS (found));
  yolose_detector_forward (det);
  counted = stop_counting ();
  printf ("%s: %ld allocations in 3 frames and 1 forward pass\n", table,
      counted);
  ck_assert_int_eq (counted, 0);

  yolose_detector_free (det);
  g_free (model);
  g_free (rgb);
}
END_TEST

static Suite *
allocations_suite (void)
{
  Suite *s = suite_create ("allocations");
  TCase *tc = tcase_create ("frames");

  tcase_set_timeout (tc, 600);
  tcase_add_test (tc, test_counter_counts);
  tcase_add_loop_test (tc, test_frames_allocate_nothing, 0,
      YOLOSE_TEST_N_KERNELS);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *runner;
  int failed;

  if (!COUNTING_POSSIBLE) {
    printf ("SKIP: this build replaces malloc itself (a sanitizer), so "
            "allocations cannot be counted here\n");
    return YOLOSE_TEST_SKIP;
  }
  if (yolose_test_under_valgrind ()) {
    printf ("SKIP: valgrind replaces malloc in this program too, so "
            "allocations cannot be counted under it\n");
    return YOLOSE_TEST_SKIP;
  }
  yolose_test_require_data ("models/yolov5n-se-coco.pt", NULL);
  runner = srunner_create (allocations_suite ());
  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
