/* yolose tests — every raw video format the element accepts, as its sink
 * caps list them (gst-plugin/gstyolose.c), for the tests that run each. */
#ifndef YOLOSE_TEST_VIDEO_FORMATS_H
#define YOLOSE_TEST_VIDEO_FORMATS_H

#include <glib.h>

static const gchar *yolose_test_formats[] = {
  "RGB",
  "BGR",
  "RGBx",
  "BGRx",
  "xRGB",
  "xBGR",
  "RGBA",
  "BGRA",
  "ARGB",
  "ABGR",
  "I420",
  "YV12",
  "NV12",
  "NV21",
  "YUY2",
  "UYVY",
  "GRAY8",
};

#endif
