/* yolose — the plugin: registers the yolose element, nothing else.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <gst/gst.h>
#include "gstyolose.h"

static gboolean
plugin_init (GstPlugin *plugin)
{
  return GST_ELEMENT_REGISTER (yolose, plugin);
}

#ifndef PACKAGE
#define PACKAGE "yolose"
#endif

GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, yolose,
    "YOLOv5 (+SE) object detection on the CPU", plugin_init, YOLOSE_VERSION,
    "LGPL", "yolose", "https://github.com/yolose/yolose")
