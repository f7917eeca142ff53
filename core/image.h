/* yolose — a view of one 8-bit video frame or picture in memory.
 * Describes, without copying, every pixel layout the element accepts, so the
 * letterbox can read any of them straight into the network's input. */
#ifndef YOLOSE_IMAGE_H
#define YOLOSE_IMAGE_H

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  /* 3 or 4 bytes a pixel in any channel order (RGB, BGR, RGBx, BGRx,
   * xRGB, xBGR, RGBA, BGRA, ARGB, ABGR): plane 0, r/g/b_offset and
   * pixel_stride say where each channel is. */
  YOLOSE_IMAGE_PACKED_RGB,
  /* One byte a pixel, plane 0; replicated to R = G = B. */
  YOLOSE_IMAGE_GRAY8,
  /* 4:2:0 with three planes Y, U, V (I420; YV12 by passing its planes in
   * Y, U, V order). Chroma is (w+1)/2 x (h+1)/2. */
  YOLOSE_IMAGE_YUV420_PLANAR,
  /* 4:2:0 with Y in plane 0 and interleaved chroma in plane 1: u_offset and
   * v_offset are 0/1 (NV12) or 1/0 (NV21). */
  YOLOSE_IMAGE_YUV420_SEMIPLANAR,
  /* 4:2:2 packed in 4-byte groups of two pixels: y_offset is the first Y
   * (the second is y_offset + 2), u_offset and v_offset the chroma bytes.
   * YUY2: 0, 1, 3.  UYVY: 1, 0, 2. */
  YOLOSE_IMAGE_YUV422_PACKED,
} YoloseImageLayout;

typedef enum {
  YOLOSE_YUV_BT601,
  YOLOSE_YUV_BT709,
} YoloseYuvMatrix;

typedef struct {
  YoloseImageLayout layout;
  int width, height;
  const guint8 *planes[3];
  int strides[3]; /* bytes per row of each plane */
  int r_offset, g_offset, b_offset, pixel_stride; /* PACKED_RGB */
  int y_offset, u_offset, v_offset;               /* SEMIPLANAR, 422_PACKED */
  YoloseYuvMatrix matrix;                         /* YUV layouts */
  gboolean full_range; /* YUV: 0..255 instead of 16..235/240 */
} YoloseImage;

/* Fills @image for a tightly packed 3-byte RGB picture (the common case for
 * decoded files). */
void yolose_image_init_rgb (YoloseImage *image, const guint8 *rgb, int width,
    int height, int stride);

G_END_DECLS

#endif
