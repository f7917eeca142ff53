/* yolose — run-time CPU feature checks.
 *
 * This file is compiled without -mavx2 so that it runs on any x86-64: the
 * checks use <cpuid.h> and the xgetbv instruction through inline assembly
 * (the _xgetbv intrinsic would need -mxsave). */
#include "cpu_features.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

#define CPUID1_ECX_FMA (1u << 12)
#define CPUID1_ECX_OSXSAVE (1u << 27)
#define CPUID7_EBX_AVX2 (1u << 5)
#define CPUID7_EBX_AVX512F (1u << 16)
/* XCR0 bits 1 (SSE state) and 2 (AVX state): the OS saves ymm registers. */
#define XCR0_SSE_AVX 0x6u
/* XCR0 bits 5-7: opmask registers, upper halves of zmm0-15, zmm16-31. */
#define XCR0_AVX512 0xe0u

static guint64
read_xcr0 (void)
{
  guint32 eax, edx;

  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return ((guint64)edx << 32) | eax;
}

static gboolean
detect_avx512 (void)
{
  unsigned int eax, ebx, ecx, edx;

  /* Called only once AVX2 + FMA + OSXSAVE are known to be there. */
  if ((read_xcr0 () & XCR0_AVX512) != XCR0_AVX512)
    return FALSE;
  if (!__get_cpuid_count (7, 0, &eax, &ebx, &ecx, &edx))
    return FALSE;
  return (ebx & CPUID7_EBX_AVX512F) != 0;
}

static gboolean
detect_avx2_fma (void)
{
  unsigned int eax, ebx, ecx, edx;

  if (!__get_cpuid (1, &eax, &ebx, &ecx, &edx))
    return FALSE;
  if ((ecx & CPUID1_ECX_FMA) == 0 || (ecx & CPUID1_ECX_OSXSAVE) == 0)
    return FALSE;
  /* Only after OSXSAVE is known to be set is xgetbv a valid instruction. */
  if ((read_xcr0 () & XCR0_SSE_AVX) != XCR0_SSE_AVX)
    return FALSE;
  if (!__get_cpuid_count (7, 0, &eax, &ebx, &ecx, &edx))
    return FALSE;
  return (ebx & CPUID7_EBX_AVX2) != 0;
}
#else
static gboolean
detect_avx2_fma (void)
{
  return FALSE;
}

static gboolean
detect_avx512 (void)
{
  return FALSE;
}
#endif

gboolean
yolose_cpu_has_avx2_fma (void)
{
  /* 0 = not yet known; then 1 + the answer, so the value is never 0. */
  static gsize cached = 0;

  if (g_once_init_enter (&cached))
    g_once_init_leave (&cached, detect_avx2_fma () ? 2 : 1);
  return cached == 2;
}

gboolean
yolose_cpu_has_avx512 (void)
{
  static gsize cached = 0;

  if (g_once_init_enter (&cached))
    g_once_init_leave (&cached,
        yolose_cpu_has_avx2_fma () && detect_avx512 () ? 2 : 1);
  return cached == 2;
}
