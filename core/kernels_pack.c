/* yolose — conv weights into MR-row panels (see kernels_pack.h). */
#include "kernels_pack.h"

#include "big_alloc.h"

float *
yolose_pack_weight_panels (const float *weight, int groups, int m, int k,
    int mr)
{
  int m_panels = (m + mr - 1) / mr;
  size_t panel = (size_t)k * mr;
  size_t bytes = (size_t)groups * m_panels * panel * sizeof (float);
  void *mem = NULL;
  float *a;

  /* at least one block: a size of 0 may give NULL, which reads as out of
   * memory */
  mem = yolose_big_alloc (bytes, YOLOSE_PANEL_ALIGN_BYTES);
  if (mem == NULL)
    return NULL;
  a = mem;
  for (int g = 0; g < groups; g++)
    for (int i = 0; i < m_panels; i++) {
      float *dst = a + ((size_t)g * m_panels + i) * panel;

      for (int kk = 0; kk < k; kk++)
        for (int r = 0; r < mr; r++) {
          int row = i * mr + r;

          dst[(size_t)kk * mr + r]
              = row < m ? weight[((size_t)g * m + row) * k + kk] : 0.0f;
        }
    }
  return a;
}
