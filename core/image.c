/* yolose — views of 8-bit pictures in memory. */
#include "image.h"

#include <string.h>

void
yolose_image_init_rgb (YoloseImage *image, const guint8 *rgb, int width,
    int height, int stride)
{
  memset (image, 0, sizeof *image);
  image->layout = YOLOSE_IMAGE_PACKED_RGB;
  image->width = width;
  image->height = height;
  image->planes[0] = rgb;
  image->strides[0] = stride;
  image->r_offset = 0;
  image->g_offset = 1;
  image->b_offset = 2;
  image->pixel_stride = 3;
  image->matrix = YOLOSE_YUV_BT601;
}
